"""Settings come from the environment; bad values stop the process with the variable's name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from deployments.rendering.constants import WEIGHTS_STRATEGIES
from portal.env import Env, database_from_url

ROOT = Path(__file__).resolve().parents[2]
GOOD_SECRET = "x7!Qm2#pL9$wZ4&vR8*tY1^uE6(oI3)aS5-dF0+gH7=jK2_lN4"


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("SECRET_KEY", "ALLOWED_HOSTS", "PORTAL_MODE", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TestEnvParsers:
    def test_bool_accepts_common_spellings(self) -> None:
        env = Env({"A": "yes", "B": "0", "C": "On"})
        assert env.boolean("A", False) is True
        assert env.boolean("B", True) is False
        assert env.boolean("C", False) is True
        assert env.boolean("MISSING", True) is True

    def test_bool_rejects_other_words_naming_the_variable(self) -> None:
        with pytest.raises(ImproperlyConfigured, match=r"DEBUG='maybe' is not a boolean"):
            Env({"DEBUG": "maybe"}).boolean("DEBUG", False)

    def test_int_checks_type_and_bounds(self) -> None:
        assert Env({"N": "42"}).integer("N", 1) == 42
        with pytest.raises(ImproperlyConfigured, match=r"N='4x' is not a whole number"):
            Env({"N": "4x"}).integer("N", 1)
        with pytest.raises(ImproperlyConfigured, match=r"N=0 is below the minimum of 1"):
            Env({"N": "0"}).integer("N", 5, minimum=1)

    def test_url_requires_scheme_and_host(self) -> None:
        env = Env({"REDIS_URL": "localhost:6379"})
        with pytest.raises(ImproperlyConfigured, match="REDIS_URL='localhost:6379' is not a URL"):
            env.url("REDIS_URL", "redis://x", schemes=("redis",))
        with pytest.raises(ImproperlyConfigured, match="invalid port"):
            Env({"U": "redis://h:99999/0"}).url("U", "", schemes=("redis",))

    def test_choice_lists_the_choices(self) -> None:
        with pytest.raises(ImproperlyConfigured, match="must be one of: development, production"):
            Env({"PORTAL_MODE": "prod"}).choice(
                "PORTAL_MODE", "development", ("development", "production")
            )

    def test_required_string_names_the_variable(self) -> None:
        with pytest.raises(ImproperlyConfigured, match="SECRET_KEY must be set"):
            Env({}).string("SECRET_KEY")

    def test_list_splits_commas(self) -> None:
        assert Env({"H": " a.example , b.example ,"}).csv("H") == ["a.example", "b.example"]

    def test_database_url_is_parsed(self) -> None:
        db = database_from_url("DATABASE_URL", "postgres://u:p@db.internal:6543/portal")
        assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
            "portal",
            "u",
            "p",
            "db.internal",
            "6543",
        )
        with pytest.raises(ImproperlyConfigured, match="DATABASE_URL="):
            database_from_url("DATABASE_URL", "mysql://u@h/db")


class TestProcessStart:
    def test_production_refuses_to_start_without_secret_key(self) -> None:
        result = run_manage("check", PORTAL_MODE="production", ALLOWED_HOSTS="portal.example.com")
        assert result.returncode != 0
        assert "SECRET_KEY must be set" in result.stderr

    def test_production_refuses_to_start_without_allowed_hosts(self) -> None:
        result = run_manage("check", PORTAL_MODE="production", SECRET_KEY=GOOD_SECRET)
        assert result.returncode != 0
        assert "ALLOWED_HOSTS must be set" in result.stderr

    def test_production_refuses_a_weak_secret_key(self) -> None:
        result = run_manage(
            "check", PORTAL_MODE="production", SECRET_KEY="short", ALLOWED_HOSTS="p.example.com"
        )
        assert result.returncode != 0
        assert "SECRET_KEY must be at least 50 characters" in result.stderr

    def test_bad_value_fails_at_start_naming_the_variable(self) -> None:
        result = run_manage("check", API_TOKEN_DEFAULT_DAYS="ninety")
        assert result.returncode != 0
        assert "API_TOKEN_DEFAULT_DAYS='ninety' is not a whole number" in result.stderr

    def test_a_shared_weights_volume_without_a_storage_class_fails_at_start(self) -> None:
        result = run_manage("check", WEIGHTS_STRATEGY="shared-volume", WEIGHTS_STORAGE_CLASS="")
        assert result.returncode != 0
        assert "WEIGHTS_STRATEGY=shared-volume needs WEIGHTS_STORAGE_CLASS" in result.stderr

    def test_an_unknown_weights_strategy_names_the_renderers_strategies(self) -> None:
        result = run_manage("check", WEIGHTS_STRATEGY="nfs")
        assert result.returncode != 0
        # The setting offers exactly the strategies the renderers know.
        assert f"must be one of: {', '.join(WEIGHTS_STRATEGIES)}" in result.stderr

    def test_production_settings_pass_check_deploy_without_warnings(self) -> None:
        result = run_manage(
            "check",
            "--deploy",
            "--fail-level",
            "WARNING",
            PORTAL_MODE="production",
            SECRET_KEY=GOOD_SECRET,
            ALLOWED_HOSTS="portal.example.com",
        )
        assert result.returncode == 0, result.stderr
        assert "System check identified no issues" in result.stdout

    def test_development_defaults_start_without_any_variable(self) -> None:
        result = run_manage("check")
        assert result.returncode == 0, result.stderr

"""docker-compose.yml describes the same stack as ./dev up, and every command it runs exists here.

There is no Docker engine on this machine, so the file's structure is checked instead of run.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_stack_has_the_expected_services(compose: dict[str, Any]) -> None:
    expected = {"web", "worker", "beat", "gateway", "postgres", "redis", "migrate"}
    assert expected <= set(compose["services"])


def test_portal_services_use_postgres_and_redis_in_production_mode(compose: dict[str, Any]) -> None:
    for name in ("web", "worker", "beat", "gateway", "migrate"):
        env = compose["services"][name]["environment"]
        assert env["PORTAL_MODE"] == "production"
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert "SECRET_KEY" in env and "ALLOWED_HOSTS" in env


def test_dependencies_point_at_defined_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_every_command_exists_in_the_project(compose: dict[str, Any]) -> None:
    for name in ("web", "worker", "beat", "gateway", "migrate"):
        command = compose["services"][name]["command"]
        if command[0] == "gunicorn":
            module, _, attribute = command[1].partition(":")
            assert hasattr(importlib.import_module(module), attribute), command
        elif command[0] == "celery":
            assert command[1] == "-A"
            assert isinstance(importlib.import_module(command[2]).celery_app, Celery)
            assert command[3] in ("worker", "beat")
        elif command[:2] == ["python", "manage.py"]:
            assert command[2] in get_commands(), command
        elif command[:3] == ["python", "-m", "gateway"]:
            assert importlib.util.find_spec("gateway.__main__") is not None
        else:
            pytest.fail(f"{name}: unknown command {command}")


def test_gateway_listens_on_8080_and_publishes_it(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    command = gateway["command"]
    assert command[command.index("--port") + 1] == "8080"
    assert command[command.index("--host") + 1] == "0.0.0.0"  # reachable from outside
    assert "127.0.0.1:8080:8080" in gateway["ports"]
    assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_healthcheck_url_exists(compose: dict[str, Any]) -> None:
    from django.test import Client

    test = " ".join(compose["services"]["web"]["healthcheck"]["test"])
    path = re.search(r"127\.0\.0\.1:8000(/\S+?)'", test)
    assert path is not None
    assert Client().get(path.group(1)).status_code == 200


def test_dockerfile_builds_from_this_project(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile
    assert compose["services"]["web"]["build"] == "."
    assert "portal.wsgi:application" in dockerfile
    assert "collectstatic" in dockerfile

"""Shared set-up for rollout benchmarks: a bench database, the cluster, the Hub, a worker."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH_DB = "portal_bench"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


@contextlib.contextmanager
def bench_environment(
    queue: str | None = None, database: str = BENCH_DB
) -> Iterator[dict[str, str]]:
    """Cluster up, local Hub running, a fresh bench database; Django configured for it."""
    from devstack import localservices
    from devstack.cluster import ensure_up
    from devstack.hub.server import running_hub

    localservices.up()
    localservices._psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    localservices._psql(f"CREATE DATABASE {database} OWNER {localservices.DB_USER}")
    info = ensure_up()
    with running_hub() as hub_url:
        env = {
            "DATABASE_URL": f"postgres://portal:portal@127.0.0.1:55432/{database}",
            "KUBECONFIG": str(info.kubeconfig),
            "HF_ENDPOINT": hub_url,
            "WEIGHTS_HF_ENDPOINT": hub_url,
            "CELERY_QUEUE": queue or f"bench-{uuid.uuid4().hex[:6]}",
            "ROLLOUT_RECONCILE_SECONDS": "5",
            "DJANGO_SETTINGS_MODULE": "portal.settings",
        }
        os.environ.update(env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        yield env


@contextlib.contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    from portal.celery import app

    hostname = f"{env['CELERY_QUEUE']}@bench"
    # Benches log under var/ folders that a fresh checkout does not have yet.
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                "-Q",
                env["CELERY_QUEUE"],
                "-n",
                hostname,
                "-c",
                "2",
                "-l",
                "warning",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        app.conf.task_default_queue = env["CELERY_QUEUE"]
        deadline = time.monotonic() + 60
        while not app.control.ping(destination=[hostname], timeout=0.5):
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"bench worker did not start; see {log}")
        try:
            yield process
        finally:
            process.terminate()
            process.wait(timeout=20)


def bench_tenant(name: str, namespace: str, **quota: Any) -> Any:
    from django.contrib.auth import get_user_model

    from deployments.services import ensure_default_tiers
    from tenants import services
    from tenants.audit import Actor

    ensure_default_tiers()
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    actor = Actor(user, "cli")
    tenant = services.create_tenant(
        actor,
        name=name,
        slug=name,
        namespace=namespace,
        quota={
            "allowed_tiers": ["a100-80g", "l4"],
            "max_gpus": 64,
            "max_deployments": 1000,
            **quota,
        },
    )
    services.add_member(actor, tenant, username="bench", role="owner")
    return tenant, actor

"""Fixtures of the newcomer walk-through: a tenant on the local cluster, workers with beat,
a logged-in browser, and a helper that keeps a screenshot for the docs."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tenants import services as tenant_services
from tenants.audit import Actor
from tenants.models import Tenant
from tests.fixtures.browser import SCREENSHOTS
from tests.fixtures.personas import PASSWORD, World
from tests.fixtures.worker import WorkerPool

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def keep(path: Path, name: str) -> None:
    """Keep a screenshot the test saved under a stable name: in test-artifacts/docs/ always,
    and in docs/screenshots/ when UPDATE_DOC_SCREENSHOTS=1 (so an ordinary run never
    changes tracked files)."""
    target = (
        DOCS_SCREENSHOTS
        if os.environ.get("UPDATE_DOC_SCREENSHOTS") == "1"
        else SCREENSHOTS.parent / "docs"
    )
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, target / name)


def clip(page: Any, selector: str, name: str) -> Path:
    """Like the `screenshot` fixture, but of one element: readable at the docs' width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.locator(selector).screenshot(path=str(path))
    return path


def log_in(page: Any, base: str, username: str, before_submit: Any = None) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    if before_submit is not None:
        before_submit()
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


@dataclass
class Newcomer:
    """Tenant alpha on a fresh namespace of the local cluster, as its owner will find it."""

    world: World
    tenant: Tenant
    pool: WorkerPool


@pytest.fixture
def newcomer(world: World, cluster_tenant: Tenant, worker_pool: WorkerPool) -> Newcomer:
    """Like tests/deployments' `fleet`, but no model is made deployable behind the UI's back:
    the test registers (and acknowledges) its model through the pages."""
    admin = Actor(world.users["admin"], "cli")
    tenant_services.update_quota(
        admin, cluster_tenant, {"allowed_tiers": ["l4", "a100-80g"], "max_gpus": 16}
    )
    worker_pool.env.update({"ROLLOUT_RECONCILE_SECONDS": "1", "ROLLOUT_CLAIM_SECONDS": "4"})
    worker_pool.start(beat=True)
    return Newcomer(world=world, tenant=cluster_tenant, pool=worker_pool)

"""The web UI as a member meets it: login, switcher, dashboard, HTMX member and token forms."""

from __future__ import annotations

import re
from typing import Any

from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from tenants.models import ApiToken, Membership
from tests.fixtures.personas import World

HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


def test_seeded_admin_logs_in_and_sees_both_demo_tenants(db: None) -> None:
    call_command("seed_demo")
    call_command("seed_demo")  # idempotent
    client = Client()
    login = client.post(reverse("login"), {"username": "admin", "password": "portal-demo"})
    assert login.status_code == 302
    page = client.get(reverse("tenant-list")).content.decode()
    assert "Search Platform" in page and "Assistants" in page


def test_wrong_password_shows_an_error(db: None) -> None:
    call_command("seed_demo")
    response = Client().post(reverse("login"), {"username": "admin", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_pages_require_login(world: World) -> None:
    response = world.client_for("anonymous").get(reverse("tenant-dashboard", args=["alpha"]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_switcher_lists_only_my_tenants_and_home_remembers_the_last_one(world: World) -> None:
    from tenants import services
    from tenants.audit import Actor

    services.add_member(
        Actor(world.users["admin"], "cli"), world.tenant_b, username="viewer_a", role="viewer"
    )
    client = world.client_for("viewer_a")
    page = client.get(reverse("tenant-dashboard", args=["beta"])).content.decode()
    switcher = re.search(r'<select id="tenant-switcher".*?</select>', page, re.S)
    assert switcher is not None
    assert re.findall(r'<option value="(\w+)"', switcher.group(0)) == ["alpha", "beta"]
    assert 'value="beta" selected' in switcher.group(0)
    assert client.get(reverse("home"))["Location"] == reverse("tenant-dashboard", args=["beta"])


def test_dashboard_shows_quota_usage_bars(world: World) -> None:
    page = (
        world.client_for("viewer_a")
        .get(reverse("tenant-dashboard", args=["alpha"]))
        .content.decode()
    )
    # the world's deployment has never been rolled out: no GPUs in use, 1 of 5 deployments
    assert 'aria-label="GPUs" aria-valuenow="0"' in page
    assert 'aria-label="Deployments" aria-valuenow="20"' in page
    assert "Deployments" in page and "Tokens per minute" in page


def test_htmx_add_member_returns_only_the_panel(world: World) -> None:
    response = world.client_for("owner_a").post(
        reverse("tenant-members", args=["alpha"]), {"username": "owner_b", "role": "viewer"}, **HTMX
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="members-panel">') and "<html" not in body
    assert "owner_b" in body
    assert Membership.objects.filter(tenant=world.tenant_a, user__username="owner_b").exists()


def test_htmx_add_unknown_member_shows_the_field_error(world: World) -> None:
    response = world.client_for("owner_a").post(
        reverse("tenant-members", args=["alpha"]), {"username": "ghost", "role": "viewer"}, **HTMX
    )
    assert response.status_code == 422
    assert "no user named &#x27;ghost&#x27;" in response.content.decode()


def test_demoting_the_last_owner_is_explained(world: World) -> None:
    owner = Membership.objects.get(tenant=world.tenant_a, user=world.users["owner_a"])
    response = world.client_for("owner_a").post(
        reverse("tenant-member-change", args=["alpha", owner.pk]), {"role": "viewer"}, **HTMX
    )
    assert response.status_code == 422
    assert "a tenant must keep at least one owner" in response.content.decode()


def test_viewer_sees_no_write_controls(world: World) -> None:
    page = (
        world.client_for("viewer_a").get(reverse("tenant-members", args=["alpha"])).content.decode()
    )
    assert "Add a member" not in page and "Remove" not in page
    page = (
        world.client_for("viewer_a").get(reverse("tenant-tokens", args=["alpha"])).content.decode()
    )
    assert "Create a token" not in page


def test_new_token_secret_is_shown_once(world: World) -> None:
    client = world.client_for("maintainer_a")
    created = client.post(
        reverse("tenant-tokens", args=["alpha"]),
        {"name": "ci", "role": "viewer", "expires_in_days": 30},
        **HTMX,
    )
    assert created.status_code == 201
    assert created["Cache-Control"] == "no-store"
    secret = re.search(r'id="new-token-value">(ipt_[^<]+)<', created.content.decode())
    assert secret is not None
    again = client.get(reverse("tenant-tokens", args=["alpha"])).content.decode()
    assert secret.group(1) not in again
    assert ApiToken.objects.filter(name="ci", user=world.users["maintainer_a"]).exists()


def test_audit_log_filters_by_action(world: World) -> None:
    client = world.client_for("viewer_a")
    response = client.get(reverse("tenant-audit", args=["alpha"]), {"action": "api_token."}, **HTMX)
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="audit-table">')
    assert "api_token.create" in body and "membership.create" not in body


def test_htmx_is_served_from_our_static_files(world: World) -> None:
    page = (
        world.client_for("viewer_a")
        .get(reverse("tenant-dashboard", args=["alpha"]))
        .content.decode()
    )
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', page)
    assert scripts and all(src.startswith("/static/") for src in scripts)
    assert 'hx-headers=\'{"X-CSRFToken": "' in page


def test_dashboard_counts_this_months_gpu_hours_from_the_replica_history(
    world: World, settings: Any
) -> None:
    """2 replicas x 2 GPUs for the last 3 hours = 12 GPU-hours (if the month began before)."""
    from datetime import timedelta

    from django.utils import timezone

    from deployments.models import ReplicaChange
    from usage.queries import quota_usage

    settings.PROMETHEUS_URL = "http://127.0.0.1:9"  # away: the gateway rows read 0, no error
    now = timezone.now()
    start = max(now - timedelta(hours=3), now.replace(day=1, hour=0, minute=0, second=0))
    ReplicaChange.objects.create(
        deployment=world.objects["deployment_a"],
        colour="blue",
        at=start,
        replicas=2,
        gpus_per_replica=2,
        price_per_gpu_hour=1,
    )
    rows = {row.label: row for row in quota_usage(world.tenant_a)}
    expected = 4 * (now - start).total_seconds() / 3600
    assert abs(rows["GPU-hours this month"].used - expected) <= 0.1
    assert rows["Requests per minute"].used == 0

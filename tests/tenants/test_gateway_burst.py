"""The requests burst: an explicit setting on the tenant quota and on gateway keys, never above
the per-minute limit it smooths, carried to the gateway and shown on the Gateway page beside the
window semantics of every per-minute limit."""

from __future__ import annotations

import html
import json

import pytest
from django.urls import reverse

from gateway.snapshot import load_snapshot
from tenants import services
from tenants.audit import Actor
from tenants.models import GatewayKey, TenantQuota
from tests.fixtures.personas import World


def _json(world: World, persona: str, method: str, url: str, body: dict):
    return getattr(world.client_for(persona), method)(
        url, data=json.dumps(body), content_type="application/json"
    )


# The burst's rules (never above the limit it smooths) are tested once, at the service, in
# test_services.py; here, that the API and the forms carry the field and show its refusal.


def test_a_keys_burst_is_written_and_read_through_the_api(world: World) -> None:
    url = reverse("api-gateway-key-list", args=["alpha"])
    created = _json(
        world,
        "owner_a",
        "post",
        url,
        {"name": "bursty", "requests_per_minute": 60, "requests_burst": 10},
    )
    assert created.status_code == 201, created.content
    assert created.json()["requests_burst"] == 10
    detail = reverse("api-gateway-key-detail", args=["alpha", created.json()["id"]])
    changed = _json(world, "owner_a", "patch", detail, {"requests_burst": 20})
    assert changed.status_code == 200, changed.content
    assert changed.json()["requests_burst"] == 20
    assert GatewayKey.objects.get(name="bursty").requests_burst == 20


def test_a_quota_burst_is_written_through_the_api_and_refused_by_field(world: World) -> None:
    url = reverse("api-quota", args=["alpha"])
    refused = _json(world, "admin", "patch", url, {"requests_per_minute": 60, "requests_burst": 61})
    assert refused.status_code == 400, refused.content
    assert "requests_burst" in refused.json()["error"]["fields"]
    assert TenantQuota.objects.get(tenant=world.tenant_a).requests_burst is None

    accepted = _json(world, "admin", "patch", url, {"requests_burst": 20})
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["requests_burst"] == 20


def test_key_limits_form_shows_the_burst_error_and_saves_nothing(world: World) -> None:
    key = world.objects["gateway_key_a"]
    client = world.client_for("owner_a")
    url = reverse("tenant-gateway-key-limits", args=["alpha", key.pk])
    refused = client.post(
        url, {"requests_per_minute": 60, "requests_burst": 61}, HTTP_HX_REQUEST="true"
    )
    assert refused.status_code == 422
    shown = html.unescape(refused.content.decode())
    assert "requests_burst: cannot exceed requests_per_minute (60)" in shown
    key.refresh_from_db()
    assert key.requests_burst is None

    assert client.post(url, {"requests_per_minute": 60, "requests_burst": 10}).status_code == 302
    key.refresh_from_db()
    assert (key.requests_per_minute, key.requests_burst) == (60, 10)


def test_create_key_form_shows_the_burst_error_beside_the_field(world: World) -> None:
    response = world.client_for("owner_a").post(
        reverse("tenant-gateway", args=["alpha"]),
        {"name": "bursty", "requests_per_minute": 60, "requests_burst": 61},
    )
    assert response.status_code == 422
    assert "cannot exceed requests_per_minute (60)" in html.unescape(response.content.decode())
    assert not GatewayKey.objects.filter(name="bursty").exists()


def test_admin_quota_form_refuses_a_burst_above_the_limit(world: World) -> None:
    quota = TenantQuota.objects.get(tenant=world.tenant_a)
    response = world.client_for("admin").post(
        reverse("admin:tenants_tenantquota_change", args=[quota.pk]),
        {
            "max_gpus": quota.max_gpus,
            "max_deployments": quota.max_deployments,
            "max_replicas_per_deployment": quota.max_replicas_per_deployment,
            "allowed_tiers": ",".join(quota.allowed_tiers),
            "monthly_gpu_hour_budget": str(quota.monthly_gpu_hour_budget),
            "requests_per_minute": 60,
            "requests_burst": 61,
            "tokens_per_minute": quota.tokens_per_minute,
            "max_request_bytes": quota.max_request_bytes,
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert "cannot exceed requests_per_minute (60)" in html.unescape(response.content.decode())
    quota.refresh_from_db()
    assert (quota.requests_per_minute, quota.requests_burst) == (600, None)


def test_snapshot_carries_the_bursts_to_the_gateway(world: World) -> None:
    admin = Actor(world.users["admin"], "cli")
    services.update_quota(admin, world.tenant_a, {"requests_burst": 50})
    key = world.objects["gateway_key_a"]
    services.update_gateway_key(
        Actor(world.users["owner_a"], "cli"), key, {"requests_per_minute": 30, "requests_burst": 5}
    )
    entry = load_snapshot().keys_by_hash[GatewayKey.objects.get(pk=key.pk).secret_hash]
    assert (entry.requests_per_minute, entry.requests_burst) == (30, 5)
    assert entry.tenant.requests_burst == 50


@pytest.mark.parametrize(
    ("burst", "shown"),
    [
        (None, "all of them may arrive at once (no burst limit)"),
        (10, "at most 10 at once, then 1 more every 5 s"),
    ],
)
def test_gateway_page_states_the_window_and_the_burst(
    world: World, burst: int | None, shown: str
) -> None:
    services.update_quota(
        Actor(world.users["admin"], "cli"),
        world.tenant_a,
        {"requests_per_minute": 12, "requests_burst": burst, "tokens_per_minute": 300},
    )
    page = world.client_for("viewer_a").get(reverse("tenant-gateway", args=["alpha"]))
    body = html.unescape(page.content.decode())
    assert f"12 requests in any 60-second window; {shown}" in body
    assert "300 tokens in any 60-second window" in body
    assert "at most N in any 60-second window, across all gateway processes" in body

"""Gateway keys in the portal: shown once, stored hashed, limits within the tenant's ceiling,
scoped to deployments, revocable; the gateway page shows live usage against each limit."""

from __future__ import annotations

import asyncio
import html
import json

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.urls import reverse

from gateway.ratelimit import Limits, RateLimiter, redis_client
from tenants import services
from tenants.audit import Actor
from tenants.models import AuditEvent, GatewayKey
from tests.fixtures.personas import World


def owner(world: World) -> Actor:
    return Actor(world.users["owner_a"], "cli")


def post_json(world: World, persona: str, url: str, body: dict, method: str = "post"):
    return getattr(world.client_for(persona), method)(
        url, data=json.dumps(body), content_type="application/json"
    )


def test_key_is_shown_once_and_only_a_keyed_hash_is_stored(world: World) -> None:
    created = post_json(
        world, "owner_a", reverse("api-gateway-key-list", args=["alpha"]), {"name": "web"}
    )
    assert created.status_code == 201
    plaintext = created.json()["key"]
    assert plaintext.startswith("igk_")
    secret = plaintext.split("_", 2)[2]
    listed = world.client_for("owner_a").get(reverse("api-gateway-key-list", args=["alpha"]))
    assert secret not in listed.content.decode()
    assert all("key" not in row for row in listed.json()["results"])
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, prefix, secret_hash FROM tenants_gatewaykey")
        assert secret not in json.dumps(cursor.fetchall())
    key = GatewayKey.objects.get(name="web")
    assert key.secret_hash == services.hash_gateway_key_secret(secret)
    assert AuditEvent.objects.filter(action="gateway_key.create", target_id=str(key.pk)).exists()


# How each kind of refusal reaches the client; the rules themselves are tested once, at the
# service, in test_services.py.
@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"name": "  "}, 400, "invalid", "name"),  # the serializer's own check
        ({"name": "x", "requests_per_minute": 601}, 400, "invalid", "requests_per_minute"),
        ({"name": "alpha-app"}, 409, "conflict", "name"),
    ],
    ids=["serializer", "domain-error", "conflict"],
)
def test_bad_key_input_answers_its_status_names_the_field_and_saves_nothing(
    world: World, body: dict, status: int, code: str, field: str
) -> None:
    before = GatewayKey.objects.count()
    response = post_json(world, "owner_a", reverse("api-gateway-key-list", args=["alpha"]), body)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    assert field in error["fields"], error
    assert GatewayKey.objects.count() == before


def test_owner_changes_a_keys_limits_and_scope_within_the_ceiling(world: World) -> None:
    key = world.objects["gateway_key_a"]
    url = reverse("api-gateway-key-detail", args=["alpha", key.pk])
    changed = post_json(
        world,
        "owner_a",
        url,
        {"requests_per_minute": 60, "tokens_per_minute": 9000, "deployments": ["alpha-chat"]},
        "patch",
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["deployments"] == ["alpha-chat"]
    assert changed.json()["requests_per_minute"] == 60
    too_high = post_json(world, "owner_a", url, {"tokens_per_minute": 10**9}, "patch")
    assert too_high.status_code == 400
    assert "tokens_per_minute" in json.dumps(too_high.json())
    key.refresh_from_db()
    assert key.tokens_per_minute == 9000  # unchanged by the refused update
    cleared = post_json(world, "owner_a", url, {"requests_per_minute": None}, "patch")
    assert cleared.json()["requests_per_minute"] is None


def test_revoked_key_leaves_the_gateway_snapshot(world: World) -> None:
    from gateway.snapshot import load_snapshot

    key = world.objects["gateway_key_a"]
    assert key.secret_hash in load_snapshot().keys_by_hash
    services.revoke_gateway_key(owner(world), key)
    snapshot = load_snapshot()
    assert key.secret_hash not in snapshot.keys_by_hash
    assert world.objects["gateway_key_b"].secret_hash in snapshot.keys_by_hash
    # Revoking twice records one event and keeps the first time.
    first = GatewayKey.objects.get(pk=key.pk).revoked_at
    services.revoke_gateway_key(owner(world), key)
    assert GatewayKey.objects.get(pk=key.pk).revoked_at == first
    assert AuditEvent.objects.filter(action="gateway_key.revoke").count() == 1


def test_changes_bump_the_config_version_gateways_follow(world: World) -> None:
    from tenants.gateway_sync import CONFIG_VERSION_KEY

    client = redis.Redis.from_url(settings.REDIS_URL)
    before = int(client.get(CONFIG_VERSION_KEY) or 0)
    with pytest.MonkeyPatch.context() as patch:
        # on_commit hooks run at once outside a test transaction; here, run them on demand.
        hooks: list = []
        patch.setattr("django.db.transaction.on_commit", hooks.append)
        services.revoke_gateway_key(owner(world), world.objects["gateway_key_a"])
        for hook in hooks:
            hook()
    assert int(client.get(CONFIG_VERSION_KEY) or 0) > before


def test_gateway_page_shows_a_new_key_once_and_live_usage(world: World, settings) -> None:
    settings.GATEWAY_RATELIMIT_PREFIX = "rl-page-test"
    client = world.client_for("owner_a")
    url = reverse("tenant-gateway", args=["alpha"])
    created = client.post(url, {"name": "notebook", "requests_per_minute": 10})
    assert created.status_code == 201
    key = GatewayKey.objects.get(name="notebook")
    page = created.content.decode()
    assert "Copy your new key now" in page and "igk_" in page
    again = client.get(url).content.decode()
    assert "Copy your new key now" not in again
    assert "igk_" + key.prefix + "_" not in again

    # Three requests through the real limiter stay in its 60-second windows: 7 of 10 left for
    # the key, 9 of 12 for the tenant.
    services.update_quota(
        Actor(world.users["admin"], "cli"),
        world.tenant_a,
        {"requests_per_minute": 12, "tokens_per_minute": 300},
    )
    limiter = RateLimiter(redis_client(settings.REDIS_URL), prefix="rl-page-test")
    limits = Limits(tenant_rpm=12, tenant_tpm=300, key_rpm=10)
    redis.Redis.from_url(settings.REDIS_URL).delete(
        *(
            f"{base}:{part}"
            for base in (
                "rl-page-test:{alpha}:tenant:rpm",
                "rl-page-test:{alpha}:tenant:tpm",
                f"rl-page-test:{{alpha}}:key:{key.id}:rpm",
            )
            for part in ("log", "meta")
        )
    )

    async def consume() -> None:
        for _ in range(3):
            decision = await limiter.reserve("alpha", str(key.id), limits, 50)
            assert decision.allowed

    asyncio.run(consume())
    page = client.get(url).content.decode()
    assert "(7 admissible now)" in page  # the key's row
    assert "3 admitted in the last 60 s; 9 more would be admitted now" in page  # tenant requests
    # Tenant tokens: 300 - 3 × 50.
    assert "150 admitted in the last 60 s; 150 more would be admitted now" in page


def test_viewer_sees_keys_but_cannot_create_or_revoke(world: World) -> None:
    page = world.client_for("viewer_a").get(reverse("tenant-gateway", args=["alpha"]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "alpha-app" in body
    assert "Create a key" not in body and "Revoke" not in body


def test_deployment_page_shows_endpoint_and_client_snippets(world: World, no_cluster) -> None:
    deployment = world.objects["deployment_a"]
    page = world.client_for("viewer_a").get(
        reverse("deployment-detail", args=["alpha", deployment.pk])
    )
    body = page.content.decode()
    assert f"{settings.GATEWAY_PUBLIC_URL}/v1" in body
    assert f'model="{deployment.name}"' in body  # Python
    assert f'model: "{deployment.name}"' in body  # JavaScript
    assert "npm install openai" in body and "pip install openai" in body


def test_platform_admin_revokes_a_key_from_the_admin_console(world: World) -> None:
    key = world.objects["gateway_key_b"]
    client = world.client_for("admin")
    listing = client.get(reverse("admin:tenants_gatewaykey_changelist")).content.decode()
    assert key.prefix in listing and key.secret_hash not in listing
    response = client.post(
        reverse("admin:tenants_gatewaykey_changelist"),
        {"action": "revoke_selected", "_selected_action": [key.pk]},
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.is_revoked
    assert AuditEvent.objects.filter(
        action="gateway_key.revoke", channel="admin", target_id=str(key.pk)
    ).exists()
    # Tenant owners and other members never reach the admin console.
    assert (
        world.client_for("owner_b").get(reverse("admin:tenants_gatewaykey_changelist")).status_code
        == 302
    )


def test_owner_edits_a_keys_limits_on_the_gateway_page(world: World) -> None:
    key = world.objects["gateway_key_a"]
    client = world.client_for("owner_a")
    url = reverse("tenant-gateway-key-limits", args=["alpha", key.pk])
    assert client.post(url, {"requests_per_minute": 30, "tokens_per_minute": ""}).status_code == 302
    key.refresh_from_db()
    assert (key.requests_per_minute, key.tokens_per_minute) == (30, None)
    refused = client.post(url, {"requests_per_minute": 601}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 422
    shown = html.unescape(refused.content.decode())
    assert "requests_per_minute: must not exceed the tenant's limit of 600" in shown
    key.refresh_from_db()
    assert key.requests_per_minute == 30

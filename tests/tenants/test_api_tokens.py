"""API tokens: shown once, stored hashed, scoped to one tenant and role, expiring and revocable."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from tenants.models import ApiToken
from tests.fixtures.personas import World


def api(world: World, method: str, url: str, header: str, body: dict | None = None):
    client = world.client_for("anonymous")
    kwargs = {"HTTP_AUTHORIZATION": header}
    if body is not None:
        return getattr(client, method)(
            url, data=json.dumps(body), content_type="application/json", **kwargs
        )
    return getattr(client, method)(url, **kwargs)


def test_token_is_shown_once_and_only_a_hash_is_stored(world: World) -> None:
    client = world.client_for("maintainer_a")
    created = client.post(
        reverse("api-token-list", args=["alpha"]),
        data=json.dumps({"name": "ci", "role": "maintainer", "expires_in_days": 7}),
        content_type="application/json",
    )
    assert created.status_code == 201
    plaintext = created.json()["token"]
    assert plaintext.startswith("ipt_")
    secret = plaintext.split("_", 2)[2]
    listed = client.get(reverse("api-token-list", args=["alpha"])).content.decode()
    assert secret not in listed and "token" not in json.loads(listed)["results"][0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, prefix, secret_hash FROM tenants_apitoken")
        dump = json.dumps(cursor.fetchall())
    assert secret not in dump
    assert api(world, "get", reverse("api-me"), f"Bearer {plaintext}").status_code == 200


def test_expired_token_gets_401_with_reason(world: World, api_token_for) -> None:
    header = api_token_for("owner_a", world.tenant_a, "owner")
    ApiToken.objects.filter(name="test").update(expires_at=timezone.now() - timedelta(seconds=1))
    response = api(world, "get", reverse("api-tenant-detail", args=["alpha"]), header)
    assert response.status_code == 401
    assert response.json()["error"] == {
        "status": 401,
        "code": "authentication_failed",
        "message": "API token has expired",
    }
    assert response["WWW-Authenticate"] == "Bearer"


def test_revoked_token_gets_401(world: World) -> None:
    header = f"Bearer {world.objects['token_plaintext_a']}"
    url = reverse("api-tenant-detail", args=["alpha"])
    assert api(world, "get", url, header).status_code == 200
    world.client_for("owner_a").delete(
        reverse("api-token-detail", args=["alpha", world.objects["token_a"].pk])
    )
    response = api(world, "get", url, header)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "API token has been revoked"


@pytest.mark.parametrize(
    ("presented", "message"),
    [
        ("Bearer nonsense", "malformed API token"),
        ("Bearer ipt_deadbeef00_wrongsecret", "invalid API token"),
        ("Bearer ", "missing API token after 'Bearer'"),
    ],
)
def test_bad_tokens_get_401_with_reason(world: World, presented: str, message: str) -> None:
    response = api(world, "get", reverse("api-me"), presented)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == message


def test_token_reaches_only_its_own_tenant(world: World, api_token_for) -> None:
    # admin is staff, yet a token never carries platform powers or another tenant's access.
    header = api_token_for("owner_a", world.tenant_a, "owner")
    assert api(world, "get", reverse("api-tenant-detail", args=["beta"]), header).status_code == 404
    listed = api(world, "get", reverse("api-tenant-list"), header).json()["results"]
    assert [t["slug"] for t in listed] == ["alpha"]


def test_token_role_limits_writes(world: World, api_token_for) -> None:
    header = api_token_for("owner_a", world.tenant_a, "viewer")
    url = reverse("api-membership-list", args=["alpha"])
    assert api(world, "get", url, header).status_code == 200
    refused = api(world, "post", url, header, {"username": "owner_b", "role": "viewer"})
    assert refused.status_code == 403


def test_token_cannot_exceed_its_holders_role(world: World) -> None:
    response = world.client_for("viewer_a").post(
        reverse("api-token-list", args=["alpha"]),
        data=json.dumps({"name": "x", "role": "owner"}),
        content_type="application/json",
    )
    # viewers cannot create tokens at all
    assert response.status_code == 403
    response = world.client_for("maintainer_a").post(
        reverse("api-token-list", args=["alpha"]),
        data=json.dumps({"name": "x", "role": "owner"}),
        content_type="application/json",
    )
    # The service's refusal (test_services.py) as a 403 naming the field.
    assert response.status_code == 403
    assert set(response.json()["error"]["fields"]) == {"role"}


def test_platform_admin_token_has_no_platform_powers(world: World, api_token_for) -> None:
    from tenants import services
    from tenants.audit import Actor

    services.add_member(
        Actor(world.users["admin"], "cli"), world.tenant_a, username="platform_admin", role="owner"
    )
    header = api_token_for("admin", world.tenant_a, "owner")
    response = api(world, "patch", reverse("api-quota", args=["alpha"]), header, {"max_gpus": 99})
    assert response.status_code == 403


def test_unknown_token_expiry_is_refused_by_field(world: World) -> None:
    response = world.client_for("owner_a").post(
        reverse("api-token-list", args=["alpha"]),
        data=json.dumps({"name": "x", "role": "viewer", "expires_in_days": 0}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "expires_in_days" in response.json()["error"]["fields"]


def test_lists_are_paginated(world: World) -> None:
    client = world.client_for("owner_a")
    body = client.get(reverse("api-audit-list", args=["alpha"]), {"page_size": 2}).json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert len(body["results"]) == 2 and body["count"] > 2 and body["next"]


def test_a_token_cannot_mint_a_stronger_token(world: World, api_token_for) -> None:
    # An owner's maintainer-role token (e.g. in CI) must not be a path to owner powers.
    header = api_token_for("owner_a", world.tenant_a, "maintainer")
    refused = api(
        world,
        "post",
        reverse("api-token-list", args=["alpha"]),
        header,
        {"name": "escalate", "role": "owner"},
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["fields"] == {
        "role": ["a token cannot create a token with more than its own role (maintainer)"]
    }
    assert not ApiToken.objects.filter(name="escalate").exists()
    same = api(
        world,
        "post",
        reverse("api-token-list", args=["alpha"]),
        header,
        {"name": "peer", "role": "maintainer"},
    )
    assert same.status_code == 201

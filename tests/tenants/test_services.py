"""Domain rules of tenants, memberships, quotas, API tokens and gateway keys, tested once here by
calling the services directly, and that refused writes leave nothing behind. The API and UI
tests check only how a refusal reaches the user (status, envelope, the field on the form)."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from portal.errors import Conflict, DomainError, Forbidden
from tenants import services
from tenants.audit import Actor
from tenants.choices import Channel
from tenants.models import (
    ApiToken,
    AuditEvent,
    GatewayKey,
    Membership,
    QuotaChange,
    Tenant,
    TenantQuota,
)
from tests.fixtures.personas import World


def admin_actor(world: World) -> Actor:
    return Actor(user=world.users["admin"], channel=Channel.CLI)


@pytest.mark.parametrize(
    ("namespace", "reason"),
    [
        ("Tenant_One", "DNS-1123 label"),
        ("-leading-dash", "DNS-1123 label"),
        ("trailing-dash-", "DNS-1123 label"),
        ("a" * 64, "at most 63 characters"),
        ("kube-system", "reserved"),
        ("default", "reserved"),
    ],
)
def test_namespace_must_be_a_usable_dns1123_label(
    world: World, namespace: str, reason: str
) -> None:
    before = Tenant.objects.count()
    with pytest.raises(ValidationError) as error:
        services.create_tenant(admin_actor(world), name="N", slug="n", namespace=namespace)
    assert reason in " ".join(error.value.message_dict["namespace"])
    assert Tenant.objects.count() == before


def test_duplicate_slug_and_namespace_are_refused_by_field(world: World) -> None:
    with pytest.raises(ValidationError) as error:
        services.create_tenant(
            admin_actor(world), name="Dup", slug="alpha", namespace="tenant-beta"
        )
    assert set(error.value.message_dict) == {"slug", "namespace"}


def test_invalid_quota_on_create_saves_no_tenant(world: World) -> None:
    tenants_before, events_before = Tenant.objects.count(), AuditEvent.objects.count()
    with pytest.raises(ValidationError) as error:
        services.create_tenant(
            admin_actor(world),
            name="Gamma",
            slug="gamma",
            namespace="tenant-gamma",
            quota={"max_gpus": -2},
        )
    assert "max_gpus" in error.value.message_dict
    assert Tenant.objects.count() == tenants_before
    assert AuditEvent.objects.count() == events_before


def test_unknown_role_names_the_allowed_roles(world: World) -> None:
    with pytest.raises(DomainError) as error:
        services.add_member(
            admin_actor(world), world.tenant_a, username="owner_b", role="superuser"
        )
    assert error.value.field == "role"
    assert "owner, maintainer, viewer" in error.value.message
    assert not Membership.objects.filter(tenant=world.tenant_a, user__username="owner_b").exists()


def test_adding_an_unknown_user_names_the_username(world: World) -> None:
    with pytest.raises(DomainError) as error:
        services.add_member(admin_actor(world), world.tenant_a, username="ghost", role="viewer")
    assert (error.value.field, error.value.message) == ("username", "no user named 'ghost'")


def test_adding_an_existing_member_is_a_conflict(world: World) -> None:
    with pytest.raises(Conflict):
        services.add_member(admin_actor(world), world.tenant_a, username="viewer_a", role="owner")


def test_the_last_owner_can_neither_leave_nor_be_demoted(world: World) -> None:
    owner = Membership.objects.get(tenant=world.tenant_b, user=world.users["owner_b"])
    with pytest.raises(Conflict, match="at least one owner") as demoted:
        services.change_member_role(admin_actor(world), owner, role="viewer")
    assert (demoted.value.field, demoted.value.code) == ("role", "last_owner")
    with pytest.raises(Conflict, match="at least one owner"):
        services.remove_member(admin_actor(world), owner)
    owner.refresh_from_db()
    assert owner.role == "owner"


def test_removing_a_member_revokes_their_tokens_in_that_tenant(world: World, api_token_for) -> None:
    header = api_token_for("maintainer_a", world.tenant_a, "maintainer")
    membership = Membership.objects.get(tenant=world.tenant_a, user=world.users["maintainer_a"])
    services.remove_member(admin_actor(world), membership)
    response = world.client_for("anonymous").get(reverse("api-me"), HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "API token has been revoked"


def test_quota_update_records_history_and_audit(world: World) -> None:
    services.update_quota(
        admin_actor(world), world.tenant_a, {"max_gpus": 12, "allowed_tiers": ["l4", "h100-80g"]}
    )
    change = QuotaChange.objects.get(tenant=world.tenant_a)
    assert change.changes == {"max_gpus": [8, 12], "allowed_tiers": [["l4"], ["l4", "h100-80g"]]}
    assert change.changed_by == world.users["admin"]
    event = AuditEvent.objects.filter(tenant=world.tenant_a, action="quota.update").get()
    assert event.actor_name == "platform_admin"


def test_malformed_quota_changes_nothing(world: World) -> None:
    with pytest.raises(ValidationError) as error:
        services.update_quota(
            admin_actor(world), world.tenant_a, {"max_gpus": 5, "allowed_tiers": ["L4!"]}
        )
    assert "allowed_tiers" in error.value.message_dict
    assert TenantQuota.objects.get(tenant=world.tenant_a).max_gpus == 8
    assert not QuotaChange.objects.filter(tenant=world.tenant_a).exists()


def test_quota_api_names_the_bad_field_and_saves_nothing(world: World) -> None:
    client = world.client_for("admin")
    response = client.patch(
        reverse("api-quota", args=["alpha"]),
        data=json.dumps({"max_gpus": 4, "tokens_per_minute": "lots"}),
        content_type="application/json",
    )
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "invalid"
    assert "tokens_per_minute" in body["fields"]
    assert body["message"].startswith("tokens_per_minute:")
    assert TenantQuota.objects.get(tenant=world.tenant_a).max_gpus == 8


def test_unknown_quota_field_is_refused(world: World) -> None:
    with pytest.raises(DomainError) as error:
        services.update_quota(admin_actor(world), world.tenant_a, {"max_gpu": 3})
    assert error.value.field == "max_gpu"


def test_a_quota_burst_cannot_exceed_the_per_minute_limit(world: World) -> None:
    with pytest.raises(ValidationError) as error:
        services.update_quota(
            admin_actor(world), world.tenant_a, {"requests_per_minute": 60, "requests_burst": 61}
        )
    assert error.value.message_dict == {
        "requests_burst": ["cannot exceed requests_per_minute (60)"]
    }
    assert TenantQuota.objects.get(tenant=world.tenant_a).requests_burst is None


# --- API tokens ----------------------------------------------------------------------------


def member_actor(world: World, persona: str) -> Actor:
    return Actor(user=world.users[persona], channel=Channel.CLI)


@pytest.mark.parametrize(
    ("persona", "changes", "error_class", "field", "message"),
    [
        (
            "maintainer_a",
            {"role": "owner"},
            Forbidden,
            "role",
            "a token cannot carry more than its holder's role (maintainer)",
        ),
        ("owner_b", {}, Forbidden, "user", "only members of the tenant can hold its tokens"),
        ("owner_a", {"name": "  "}, DomainError, "name", "a token needs a name"),
        (
            "owner_a",
            {"expires_in_days": 0},
            DomainError,
            "expires_in_days",
            "must be between 1 and 3650 days",
        ),
    ],
    ids=["above-holders-role", "not-a-member", "blank-name", "bad-expiry"],
)
def test_token_refusals_name_the_field_and_save_nothing(
    world: World,
    persona: str,
    changes: dict,
    error_class: type[DomainError],
    field: str,
    message: str,
) -> None:
    before = ApiToken.objects.count()
    arguments = {"name": "ci", "role": "viewer"} | changes
    with pytest.raises(error_class) as error:
        services.issue_api_token(
            member_actor(world, persona), world.tenant_a, user=world.users[persona], **arguments
        )
    assert error.value.field == field
    assert message in error.value.message, error.value.message
    assert ApiToken.objects.count() == before


# --- gateway keys --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "error_class", "field", "message"),
    [
        ({"name": "  "}, DomainError, "name", "a key needs a name"),
        (
            {"requests_per_minute": 601},
            DomainError,
            "requests_per_minute",
            "must not exceed the tenant's limit of 600",
        ),
        (
            {"tokens_per_minute": 200_001},
            DomainError,
            "tokens_per_minute",
            "must not exceed the tenant's limit of 200000",
        ),
        (
            {"requests_per_minute": 0},
            DomainError,
            "requests_per_minute",
            "must be at least 1 (leave empty for the tenant's limit)",
        ),
        (
            {"requests_per_minute": 60, "requests_burst": 61},
            DomainError,
            "requests_burst",
            "cannot exceed requests_per_minute (60)",
        ),
        (
            {"requests_burst": 601},
            DomainError,
            "requests_burst",
            "cannot exceed the tenant's requests_per_minute (600)",
        ),
        (
            {"deployments": ["beta-chat"]},
            DomainError,
            "deployments",
            "no such deployment: beta-chat",
        ),
        (
            {"name": "alpha-app"},
            Conflict,
            "name",
            "an active key of this tenant already has this name",
        ),
    ],
    ids=[
        "blank-name",
        "rpm-above-tenant",
        "tpm-above-tenant",
        "rpm-below-one",
        "burst-above-own-rpm",
        "burst-above-tenant-rpm",
        "other-tenants-deployment",
        "name-taken",
    ],
)
def test_gateway_key_refusals_name_the_field_and_save_nothing(
    world: World, arguments: dict, error_class: type[DomainError], field: str, message: str
) -> None:
    before = GatewayKey.objects.count()
    with pytest.raises(error_class) as error:
        services.create_gateway_key(
            member_actor(world, "owner_a"), world.tenant_a, **({"name": "x"} | arguments)
        )
    assert error.value.field == field
    assert error.value.message == message
    assert GatewayKey.objects.count() == before


def test_lowering_a_keys_limit_below_its_burst_is_refused(world: World) -> None:
    owner = member_actor(world, "owner_a")
    key = world.objects["gateway_key_a"]
    services.update_gateway_key(owner, key, {"requests_per_minute": 60, "requests_burst": 10})
    with pytest.raises(DomainError) as error:
        services.update_gateway_key(owner, key, {"requests_per_minute": 5})
    assert (error.value.field, error.value.message) == (
        "requests_burst",
        "cannot exceed requests_per_minute (5)",
    )
    key.refresh_from_db()
    assert (key.requests_per_minute, key.requests_burst) == (60, 10)


def test_a_revoked_key_cannot_be_changed(world: World) -> None:
    owner = member_actor(world, "owner_a")
    key = services.revoke_gateway_key(owner, world.objects["gateway_key_a"])
    with pytest.raises(Conflict) as error:
        services.update_gateway_key(owner, key, {"requests_per_minute": 5})
    assert error.value.field == "revoked_at"


def test_tenant_create_api_answers_clear_errors(world: World) -> None:
    client = world.client_for("admin")
    response = client.post(
        reverse("api-tenant-list"),
        data=json.dumps({"name": "G", "slug": "alpha", "namespace": "Bad_NS"}),
        content_type="application/json",
    )
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert "DNS-1123" in fields["namespace"][0]
    assert "already exists" in fields["slug"][0]


def test_every_write_is_audited_with_actor_and_channel(world: World) -> None:
    client = world.client_for("owner_a")
    client.post(
        reverse("tenant-members", args=["alpha"]), {"username": "owner_b", "role": "viewer"}
    )
    event = AuditEvent.objects.filter(action="membership.create", tenant=world.tenant_a).latest(
        "id"
    )
    assert (event.actor_name, event.channel) == ("owner_a", "ui")
    assert event.changes == {"user": "owner_b", "role": "viewer"}

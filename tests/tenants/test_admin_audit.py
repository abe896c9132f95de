"""Every write through the admin console's pages leaves an audit event (channel `admin`).

Driven through the real admin pages with the Django test client, as a platform admin would.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from deployments.models import Tier
from tenants import services
from tenants.audit import Actor
from tenants.choices import Channel
from tenants.models import ApiToken, AuditEvent, GatewayKey, Tenant, TenantQuota
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def platform_admin() -> Any:
    return UserFactory(username="platform_admin", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(platform_admin: Any) -> Client:
    client = Client()
    client.force_login(platform_admin)
    return client


@pytest.fixture
def tenant(platform_admin: Any) -> Tenant:
    actor = Actor(user=platform_admin, channel=Channel.CLI)
    tenant = services.create_tenant(actor, name="Alpha", slug="alpha", namespace="tenant-alpha")
    services.add_member(actor, tenant, username=platform_admin.username, role="owner")
    return tenant


def _tier_form(**overrides: Any) -> dict[str, Any]:
    form = {
        "slug": "h100-x2",
        "name": "H100 ×2",
        "description": "",
        "is_active": "on",
        "node_selector": '{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}',
        "tolerations": "[]",
        "gpu_product": "NVIDIA-H100-80GB-HBM3",
        "gpu_memory_gb": "80",
        "gpus_per_replica": "2",
        "cpu_request": "8",
        "memory_request": "64Gi",
        "engine_images": '{"tgi": "ghcr.io/huggingface/text-generation-inference:3.3.4"}',
        "default_max_total_tokens": "4096",
        "max_total_tokens_limit": "32768",
        "price_per_gpu_hour": "4.5",
    }
    return {**form, **overrides}


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, channel="admin"))


def test_creating_a_tier_records_an_event(admin_client: Client) -> None:
    response = admin_client.post(reverse("admin:deployments_tier_add"), _tier_form())

    assert response.status_code == 302, response.content.decode()[:2000]
    tier = Tier.objects.get(slug="h100-x2")
    (event,) = _events("tier.create")
    assert event.actor_name == "platform_admin"
    assert event.target_id == str(tier.pk)
    assert event.tenant is None
    assert event.changes["gpus_per_replica"] == [None, 2]


def test_editing_a_tier_records_what_changed(admin_client: Client) -> None:
    admin_client.post(reverse("admin:deployments_tier_add"), _tier_form())
    tier = Tier.objects.get(slug="h100-x2")

    response = admin_client.post(
        reverse("admin:deployments_tier_change", args=[tier.pk]),
        _tier_form(price_per_gpu_hour="5.25", is_active=""),
    )

    assert response.status_code == 302
    (event,) = _events("tier.update")
    assert event.changes == {"price_per_gpu_hour": ["4.5000", "5.25"], "is_active": [True, False]}


def test_saving_a_tier_unchanged_records_nothing(admin_client: Client) -> None:
    admin_client.post(reverse("admin:deployments_tier_add"), _tier_form())
    tier = Tier.objects.get(slug="h100-x2")

    admin_client.post(reverse("admin:deployments_tier_change", args=[tier.pk]), _tier_form())

    assert _events("tier.update") == []


def test_deleting_a_tier_records_an_event(admin_client: Client) -> None:
    admin_client.post(reverse("admin:deployments_tier_add"), _tier_form())
    tier = Tier.objects.get(slug="h100-x2")

    response = admin_client.post(
        reverse("admin:deployments_tier_delete", args=[tier.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    assert not Tier.objects.filter(pk=tier.pk).exists()
    (event,) = _events("tier.delete")
    assert event.target_id == str(tier.pk) and event.target_repr == str(tier)


def test_bulk_deleting_tiers_records_one_event_each(admin_client: Client) -> None:
    admin_client.post(reverse("admin:deployments_tier_add"), _tier_form())
    admin_client.post(reverse("admin:deployments_tier_add"), _tier_form(slug="h100-x4"))
    pks = list(Tier.objects.filter(slug__startswith="h100").values_list("pk", flat=True))

    response = admin_client.post(
        reverse("admin:deployments_tier_changelist"),
        {"action": "delete_selected", "_selected_action": pks, "post": "yes"},
    )

    assert response.status_code == 302
    assert sorted(int(e.target_id) for e in _events("tier.delete")) == sorted(pks)


def test_deleting_a_tenant_records_an_event(admin_client: Client, tenant: Tenant) -> None:
    response = admin_client.post(
        reverse("admin:tenants_tenant_delete", args=[tenant.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    (event,) = _events("tenant.delete")
    assert event.tenant_slug == "alpha"


def test_deleting_tokens_and_keys_records_events(
    admin_client: Client, tenant: Tenant, platform_admin: Any
) -> None:
    actor = Actor(user=platform_admin, channel=Channel.CLI)
    services.issue_api_token(actor, tenant, user=platform_admin, name="ci", role="viewer")
    services.create_gateway_key(actor, tenant, name="app")
    token, key = ApiToken.objects.get(name="ci"), GatewayKey.objects.get(name="app")

    admin_client.post(reverse("admin:tenants_apitoken_delete", args=[token.pk]), {"post": "yes"})
    admin_client.post(reverse("admin:tenants_gatewaykey_delete", args=[key.pk]), {"post": "yes"})

    assert [e.tenant_slug for e in _events("api_token.delete")] == ["alpha"]
    assert [e.tenant_slug for e in _events("gateway_key.delete")] == ["alpha"]


def test_deleting_a_quota_records_an_event(admin_client: Client, tenant: Tenant) -> None:
    quota = TenantQuota.objects.get(tenant=tenant)

    response = admin_client.post(
        reverse("admin:tenants_tenantquota_delete", args=[quota.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    assert [e.tenant_slug for e in _events("quota.delete")] == ["alpha"]


def test_user_and_group_writes_record_events_without_secrets(admin_client: Client) -> None:
    admin_client.post(
        reverse("admin:auth_user_add"),
        {"username": "erin", "password1": "Sekr3t-pass-123", "password2": "Sekr3t-pass-123"},
    )
    erin = User.objects.get(username="erin")
    admin_client.post(
        reverse("admin:auth_user_password_change", args=[erin.pk]),
        {"password1": "An0ther-pass-456", "password2": "An0ther-pass-456"},
    )
    admin_client.post(reverse("admin:auth_group_add"), {"name": "operators"})
    group = Group.objects.get(name="operators")
    admin_client.post(reverse("admin:auth_group_delete", args=[group.pk]), {"post": "yes"})

    (created,) = _events("user.create")
    assert created.changes["username"] == [None, "erin"]
    assert _events("user.set_password")[0].target_id == str(erin.pk)
    assert [e.target_repr for e in _events("group.create")] == ["operators"]
    assert [e.target_repr for e in _events("group.delete")] == ["operators"]
    recorded = str(list(AuditEvent.objects.values_list("changes", flat=True)))
    assert "Sekr3t" not in recorded and "An0ther" not in recorded

"""The admin console: platform admins only, quota edits audited with history, search and filters."""

from __future__ import annotations

from django.urls import reverse

from tenants.models import AuditEvent, QuotaChange, TenantQuota
from tests.fixtures.personas import World


def test_members_cannot_open_the_admin_console(world: World) -> None:
    for persona in ("owner_a", "maintainer_a", "viewer_a", "owner_b", "anonymous"):
        response = world.client_for(persona).get(reverse("admin:tenants_tenant_changelist"))
        assert response.status_code == 302, persona
        assert "/admin/login/" in response["Location"]


def test_admin_edits_quota_with_history(world: World) -> None:
    client = world.client_for("admin")
    quota = TenantQuota.objects.get(tenant=world.tenant_a)
    url = reverse("admin:tenants_tenantquota_change", args=[quota.pk])
    form = {
        "max_gpus": 20,
        "max_deployments": quota.max_deployments,
        "max_replicas_per_deployment": quota.max_replicas_per_deployment,
        "allowed_tiers": "l4,a100-80g",
        "monthly_gpu_hour_budget": "750.0",
        "requests_per_minute": quota.requests_per_minute,
        "tokens_per_minute": quota.tokens_per_minute,
        # The gateway's output caps: require max_tokens and cap it at 512 per request.
        "require_max_tokens": "on",
        "max_output_tokens": 512,
        "max_request_bytes": quota.max_request_bytes,
    }
    assert client.post(url, form).status_code == 302
    change = QuotaChange.objects.get(tenant=world.tenant_a)
    assert change.changes["max_gpus"] == [8, 20]
    assert change.changes["allowed_tiers"] == [["l4"], ["l4", "a100-80g"]]
    assert change.changes["max_output_tokens"] == [None, 512]
    assert change.changes["require_max_tokens"] == [False, True]
    assert AuditEvent.objects.filter(action="quota.update", channel="admin").exists()
    history = client.get(
        reverse("admin:tenants_tenant_change", args=[world.tenant_a.pk])
    ).content.decode()
    assert "Quota history" in history and "max_gpus" in history


def test_admin_rejects_a_malformed_quota_naming_the_field(world: World) -> None:
    client = world.client_for("admin")
    quota = TenantQuota.objects.get(tenant=world.tenant_a)
    response = client.post(
        reverse("admin:tenants_tenantquota_change", args=[quota.pk]),
        {
            "max_gpus": -1,
            "max_deployments": 1,
            "max_replicas_per_deployment": 1,
            "allowed_tiers": "",
            "monthly_gpu_hour_budget": "1",
            "requests_per_minute": 1,
            "tokens_per_minute": 1,
        },
    )
    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 0" in response.content.decode()
    assert TenantQuota.objects.get(pk=quota.pk).max_gpus == 8


def test_admin_creates_a_tenant_through_the_service(world: World) -> None:
    client = world.client_for("admin")
    response = client.post(
        reverse("admin:tenants_tenant_add"),
        {
            "name": "Gamma",
            "slug": "gamma",
            "namespace": "tenant-gamma",
            "memberships-TOTAL_FORMS": 1,
            "memberships-INITIAL_FORMS": 0,
            "memberships-0-user": world.users["owner_b"].pk,
            "memberships-0-role": "owner",
            "quota_changes-TOTAL_FORMS": 0,
            "quota_changes-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert AuditEvent.objects.filter(
        action="tenant.create", target_repr="Gamma", channel="admin"
    ).exists()
    assert AuditEvent.objects.filter(action="membership.create", tenant__slug="gamma").exists()


def test_tenant_list_has_search_and_filters(world: World) -> None:
    client = world.client_for("admin")
    page = client.get(
        reverse("admin:tenants_tenant_changelist"), {"q": "tenant-beta"}
    ).content.decode()
    assert "Beta" in page and ">Alpha<" not in page
    assert (
        client.get(reverse("admin:tenants_auditevent_changelist"), {"channel": "cli"}).status_code
        == 200
    )

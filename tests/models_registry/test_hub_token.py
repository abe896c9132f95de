"""Tenants' Hub tokens live only in a Kubernetes Secret; the database keeps a fingerprint."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse

from deployments.rendering.tenant import render_namespace, render_tenant_namespace
from deployments.specs import tenant_spec
from devstack.hub import fixtures as hub
from devstack.hub.server import HubControl
from models_registry import services
from models_registry.models import HubCredential, RegisteredModel
from models_registry.tasks import recheck_gated_access
from portal import kube
from tenants.models import AuditEvent, Tenant
from tests.fixtures.personas import World

pytestmark = pytest.mark.cluster


def put_token(world: World, token: str, persona: str = "owner_a") -> Any:
    return world.client_for(persona).put(
        reverse("api-hub-token", args=["alpha"]),
        data=json.dumps({"token": token}),
        content_type="application/json",
    )


def secret_token(k8s: Any, tenant: Tenant) -> str | None:
    from kubernetes.client.exceptions import ApiException

    try:
        secret = k8s.core.read_namespaced_secret("hf-token", tenant.namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return base64.b64decode(secret.data["token"]).decode()


def test_valid_token_is_stored_in_the_tenant_secret(
    world: World, cluster_tenant: Tenant, k8s: Any
) -> None:
    response = put_token(world, hub.TOKEN_READ)
    assert response.status_code == 200, response.content
    body = response.json()["token"]
    assert body["fingerprint"] == services.fingerprint(hub.TOKEN_READ)
    assert body["status"] == "valid" and body["hub_username"]
    assert hub.TOKEN_READ not in response.content.decode()
    assert secret_token(k8s, cluster_tenant) == hub.TOKEN_READ
    credential = HubCredential.objects.get(tenant=cluster_tenant)
    assert credential.set_by == world.users["owner_a"]
    assert AuditEvent.objects.filter(action="hub_token.set", tenant=cluster_tenant).exists()


def test_setting_and_rotating_the_token_keeps_every_namespace_label(
    world: World, cluster_tenant: Tenant, k8s: Any
) -> None:
    """The token's writer applies the tenant Namespace from the one rendering the rollouts use:
    a Namespace applied with fewer labels under the same field manager would drop the rest
    (server-side apply), e.g. the Pod Security level."""
    expected = render_namespace(cluster_tenant.slug, cluster_tenant.namespace)["metadata"]
    for manifest in render_tenant_namespace(tenant_spec(cluster_tenant)):  # as a rollout does
        kube.apply(manifest)
    for token in (hub.TOKEN_READ, hub.TOKEN_READ):  # set, then rotate
        assert put_token(world, token).status_code == 200
        labels = k8s.core.read_namespace(cluster_tenant.namespace).metadata.labels
        assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
        assert labels["app.kubernetes.io/part-of"] == "inference-portal"
        assert expected["labels"].items() <= labels.items()


def test_invalid_token_is_refused_and_nothing_is_stored(
    world: World, cluster_tenant: Tenant, k8s: Any
) -> None:
    response = put_token(world, hub.TOKEN_INVALID)
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["token"] == [
        "the Hub does not accept this token (invalid or revoked)"
    ]
    assert secret_token(k8s, cluster_tenant) is None
    assert not HubCredential.objects.filter(tenant=cluster_tenant).exists()


def test_rotation_validates_before_replacing(
    world: World, cluster_tenant: Tenant, k8s: Any
) -> None:
    assert put_token(world, hub.TOKEN_READ).status_code == 200
    assert put_token(world, hub.TOKEN_INVALID).status_code == 400
    assert secret_token(k8s, cluster_tenant) == hub.TOKEN_READ  # the old one still serves
    assert put_token(world, hub.TOKEN_FINE_GRAINED).status_code == 200
    assert secret_token(k8s, cluster_tenant) == hub.TOKEN_FINE_GRAINED
    rotation = AuditEvent.objects.get(action="hub_token.rotate", tenant=cluster_tenant)
    assert rotation.changes["fingerprint"] == [
        services.fingerprint(hub.TOKEN_READ),
        services.fingerprint(hub.TOKEN_FINE_GRAINED),
    ]


def test_gated_model_needs_a_token_with_access(world: World, cluster_tenant: Tenant) -> None:
    url = reverse("api-model-list", args=["alpha"])
    client = world.client_for("maintainer_a")
    body = json.dumps({"repo_id": hub.LLAMA_8B_ID})
    put_token(world, hub.TOKEN_NO_GATED)
    refused = client.post(url, data=body, content_type="application/json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "gated_no_access"
    put_token(world, hub.TOKEN_READ)
    accepted = client.post(url, data=body, content_type="application/json")
    assert accepted.status_code == 201, accepted.content
    assert accepted.json()["current"]["gated"] == "manual"


def test_nightly_check_flags_models_the_token_lost(
    world: World, cluster_tenant: Tenant, hub_control: HubControl, settings: Any
) -> None:
    from portal.celery import app

    schedule = settings.CELERY_BEAT_SCHEDULE["recheck-gated-model-access"]
    assert schedule["task"] == recheck_gated_access.name
    assert app.conf.beat_schedule["recheck-gated-model-access"]["schedule"] == schedule["schedule"]
    put_token(world, hub.TOKEN_READ)
    services.register_model(
        services.Actor(world.users["maintainer_a"], "api"), cluster_tenant, repo_id=hub.LLAMA_8B_ID
    )
    hub_control.revoke(hub.TOKEN_READ, hub.LLAMA_8B_ID)
    assert recheck_gated_access() == {"checked": 1, "lost": 1, "restored": 0, "errors": 0}
    model = RegisteredModel.objects.get(repo_id=hub.LLAMA_8B_ID)
    assert model.access_status == "lost"
    assert (
        "the tenant's Hub token can no longer access this gated model"
        in services.deployment_blockers(model)
    )
    assert AuditEvent.objects.filter(action="model.access_lost", target_id=str(model.pk)).exists()
    page = (
        world.client_for("viewer_a")
        .get(reverse("model-detail", args=["alpha", model.pk]))
        .content.decode()
    )
    assert "Access lost" in page
    hub_control.grant(hub.TOKEN_READ, hub.LLAMA_8B_ID)
    assert recheck_gated_access()["restored"] == 1


@pytest.mark.django_db(transaction=True)
def test_no_token_in_database_dump_logs_pages_or_api(
    world: World, cluster_tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    responses = [put_token(world, hub.TOKEN_READ)]
    client = world.client_for("owner_a")
    responses.append(
        client.post(
            reverse("api-model-list", args=["alpha"]),
            data=json.dumps({"repo_id": hub.LLAMA_8B_ID}),
            content_type="application/json",
        )
    )
    for url in (
        reverse("api-hub-token", args=["alpha"]),
        reverse("api-model-list", args=["alpha"]),
        reverse("api-audit-list", args=["alpha"]),
        reverse("hub-token", args=["alpha"]),
        reverse("tenant-audit", args=["alpha"]),
        reverse("tenant-dashboard", args=["alpha"]),
    ):
        responses.append(client.get(url))
    assert all(r.status_code in (200, 201) for r in responses), [r.status_code for r in responses]
    for response in responses:
        assert hub.TOKEN_READ not in response.content.decode()
    assert hub.TOKEN_READ not in caplog.text
    db = connection.settings_dict
    dump = subprocess.run(
        ["pg_dump", "-h", db["HOST"], "-p", str(db["PORT"]), "-U", db["USER"], db["NAME"]],
        env={**os.environ, "PGPASSWORD": db["PASSWORD"]},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "hub_token.set" in dump  # the dump really holds this test's data
    assert hub.TOKEN_READ not in dump


def test_a_new_token_rechecks_gated_access_at_once(
    world: World, cluster_tenant: Tenant, hub_control: HubControl
) -> None:
    put_token(world, hub.TOKEN_READ)
    services.register_model(
        services.Actor(world.users["maintainer_a"], "api"), cluster_tenant, repo_id=hub.LLAMA_8B_ID
    )
    hub_control.revoke(hub.TOKEN_READ, hub.LLAMA_8B_ID)
    recheck_gated_access()
    model = RegisteredModel.objects.get(repo_id=hub.LLAMA_8B_ID)
    assert model.access_status == "lost"
    # The owner sets a token of an account with access: deployable again without waiting for
    # the nightly check.
    put_token(world, hub.TOKEN_WRITE)
    model.refresh_from_db()
    assert model.access_status == "ok"
    assert "gated" not in " ".join(services.deployment_blockers(model))

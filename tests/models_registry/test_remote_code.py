"""A remote-code approval belongs to one commit: a model moved to new code is reviewed again."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from deployments import admission
from deployments.capacity import ClusterCapacity, NodeGpus
from deployments.choices import RolloutState
from deployments.models import Deployment, Rollout, Tier
from deployments.specs import serving_spec
from devstack.hub import fixtures as hub
from models_registry import services
from models_registry.models import RegisteredModel
from portal.errors import Forbidden
from tenants.audit import Actor
from tenants.models import AuditEvent, TenantQuota
from tests.fixtures.personas import World

CUSTOM = hub.repo(hub.CUSTOM_CODE_ID)
FIRST_SHA = CUSTOM.branches["main"]
NEXT_SHA = CUSTOM.branches[hub.CUSTOM_CODE_NEXT_BRANCH]
NOT_APPROVED = f"a platform admin must approve trust_remote_code for commit {NEXT_SHA[:12]}"


def post(client: Client, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json")


def patch(client: Client, url: str, body: dict[str, Any]) -> Any:
    return client.patch(url, data=json.dumps(body), content_type="application/json")


def refusal(response: Any, field: str) -> str:
    assert response.status_code == 400, response.content
    return str(response.json()["error"]["fields"][field][0])


@pytest.fixture
def room(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """No cluster here: the L4 pool has free GPUs, and the tenant room for two deployments."""
    l4 = Tier.objects.get(slug="l4").node_selector
    pool = ClusterCapacity([NodeGpus(name, l4, allocatable=1, requested=0) for name in "ab"])
    monkeypatch.setattr(admission, "pool_capacity", lambda: pool)
    TenantQuota.objects.filter(tenant=world.tenant_a).update(max_gpus=8, max_deployments=10)
    Tier.objects.filter(slug="l4").update(max_total_tokens_limit=16384)
    return world


def finish_rollouts(deployment_id: int) -> None:
    """No worker runs here: settle the deployment's rollouts so it can take another."""
    deployment = Deployment.objects.get(pk=deployment_id)
    latest = deployment.rollouts.order_by("-id").first()
    assert latest is not None
    Rollout.objects.filter(deployment=deployment).update(state=RolloutState.COMPLETED)
    Deployment.objects.filter(pk=deployment.pk).update(
        active_revision=latest.revision, active_colour=latest.colour
    )


def trusted(deployment_id: int) -> bool:
    """Whether the deployment's newest revision renders --trust-remote-code."""
    revision = Deployment.objects.get(pk=deployment_id).revisions.order_by("-number").first()
    assert revision is not None
    return serving_spec(revision).model.trust_remote_code


def approval_on_page(world: World, model_id: int) -> str:
    """The model page's custom-code line, as a viewer reads it."""
    page = world.client_for("viewer_a").get(reverse("model-detail", args=["alpha", model_id]))
    text = page.content.decode()
    start = text.index('data-testid="remote-code-approval"')
    return text[start : text.index("</dd>", start)]


def test_a_new_commit_needs_its_own_approval_before_it_is_deployed(room: World) -> None:
    world = room
    maintainer, admin = world.client_for("maintainer_a"), world.client_for("admin")
    models_url = reverse("api-model-list", args=["alpha"])
    registered = post(maintainer, models_url, {"repo_id": hub.CUSTOM_CODE_ID})
    assert registered.status_code == 201, registered.content
    model_id = registered.json()["id"]
    assert registered.json()["remote_code_approval"] is None
    approve_url = reverse("api-model-approve-code", args=["alpha", model_id])

    approved = post(admin, approve_url, {})
    assert approved.status_code == 200, approved.content
    approval = approved.json()["remote_code_approval"]
    assert approval["commit_sha"] == FIRST_SHA and approval["approved_by"] == "platform_admin"
    assert approval["approved_at"]
    deployments_url = reverse("api-deployment-list", args=["alpha"])
    body = {"name": "acme", "model": model_id, "tier": "l4", "max_total_tokens": 2048}
    created = post(maintainer, deployments_url, body)
    assert created.status_code == 201, created.content
    deployment_id = created.json()["deployment"]["id"]
    assert trusted(deployment_id)
    finish_rollouts(deployment_id)

    # Move the model to a commit whose modelling code changed.
    update_url = reverse("api-model-update", args=["alpha", model_id])
    moved = post(
        maintainer,
        update_url,
        {"revision": hub.CUSTOM_CODE_NEXT_BRANCH, "expected_sha": NEXT_SHA},
    )
    assert moved.status_code == 200, moved.content
    assert moved.json()["current"]["commit_sha"] == NEXT_SHA
    assert moved.json()["remote_code_approval"] is None
    assert NOT_APPROVED in moved.json()["blockers"]
    assert f"{NEXT_SHA[:12]}</span> not approved" in approval_on_page(world, model_id)

    detail_url = reverse("api-deployment-detail", args=["alpha", deployment_id])
    message = refusal(patch(maintainer, detail_url, {"max_total_tokens": 3072}), "model")
    assert NOT_APPROVED in message
    second = post(maintainer, deployments_url, body | {"name": "acme-2"})
    assert NOT_APPROVED in refusal(second, "model")
    assert not Deployment.objects.filter(name="acme-2").exists()
    # Revision 1 pins the commit that was reviewed: deploying it again is still allowed.
    rollouts_url = reverse("api-rollout-list", args=["alpha", deployment_id])
    again = post(maintainer, rollouts_url, {"revision": 1})
    assert again.status_code == 201, again.content
    finish_rollouts(deployment_id)

    reapproved = post(admin, approve_url, {})
    assert reapproved.json()["remote_code_approval"]["commit_sha"] == NEXT_SHA
    assert reapproved.json()["blockers"] == []
    line = approval_on_page(world, model_id)
    assert f"{NEXT_SHA[:12]}</span> approved by platform_admin" in line
    changed = patch(maintainer, detail_url, {"max_total_tokens": 3072})
    assert changed.status_code == 201, changed.content
    assert trusted(deployment_id)
    events = AuditEvent.objects.filter(action="model.approve_remote_code").order_by("id")
    assert [(e.actor_name, e.changes["commit"]) for e in events] == [
        ("platform_admin", FIRST_SHA),
        ("platform_admin", NEXT_SHA),
    ]


def test_an_approval_covers_only_the_commit_it_was_given_for(world: World) -> None:
    admin = Actor(world.users["admin"], "cli")
    model = services.register_model(
        Actor(world.users["maintainer_a"], "cli"), world.tenant_a, repo_id=hub.CUSTOM_CODE_ID
    )
    first = model.current_revision
    assert first is not None and not services.trusts_remote_code(first)
    with pytest.raises(Forbidden):
        services.approve_remote_code(Actor(world.users["owner_a"], "cli"), model)
    services.approve_remote_code(admin, model)
    assert services.trusts_remote_code(first) and services.deployment_blockers(model) == []

    services.apply_update(admin, model, revision=hub.CUSTOM_CODE_NEXT_BRANCH, expected_sha=NEXT_SHA)
    model = RegisteredModel.objects.get(pk=model.pk)
    second = model.current_revision
    assert second is not None and second.commit_sha == NEXT_SHA
    assert not services.trusts_remote_code(second)
    assert services.deployment_blockers(model) == [NOT_APPROVED]
    # The older commit keeps its review: a revision pinned to it may still be deployed.
    assert services.deployment_blockers(model, first) == []
    approval = services.remote_code_approval(first)
    assert approval is not None and approval.approved_by == world.users["admin"]

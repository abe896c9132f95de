"""The domain rules of deployments, tested once here by calling the services directly: every
admission refusal, the GPU quota arithmetic and what steering a rollout needs. The API and UI
tests check only how a refusal reaches the user (status, envelope, the field on the form)."""

from __future__ import annotations

from typing import Any

import pytest

from deployments import services
from deployments.admission import AdmissionRefused, ServingRequest
from deployments.choices import RolloutState
from deployments.models import Deployment, DeploymentRevision, Rollout, Tier
from portal.errors import Conflict, DomainError
from tenants import services as tenant_services
from tenants.audit import Actor
from tests.deployments.test_api import a_rollout, acknowledge
from tests.deployments.test_ui import serving
from tests.fixtures.personas import World


@pytest.fixture
def actor(world: World) -> Actor:
    return Actor(world.users["maintainer_a"], "cli")


def request_for(world: World, **overrides: Any) -> ServingRequest:
    """Tenant A's Mistral on an L4, small enough to pass every check."""
    values: dict[str, Any] = {
        "model": world.objects["model_a"],
        "tier": Tier.objects.get(slug="l4"),
        "max_input_tokens": 1024,
        "max_total_tokens": 2048,
        "replicas": 1,
    }
    tier = overrides.pop("tier", None)
    if tier is not None:
        values["tier"] = Tier.objects.get(slug=tier)
    return ServingRequest(**(values | overrides))


def set_quota(world: World, **changes: Any) -> None:
    tenant_services.update_quota(Actor(world.users["admin"], "cli"), world.tenant_a, changes)


def nothing_saved(world: World) -> bool:
    return not Deployment.objects.filter(tenant=world.tenant_a).exclude(name="alpha-chat").exists()


# --- creating a deployment -------------------------------------------------------------------


def test_a_name_that_is_no_dns_label_is_refused(world: World, actor: Actor) -> None:
    with pytest.raises(DomainError) as refused:
        services.create_deployment(
            actor, world.tenant_a, name="Chat_Bot", request=request_for(world)
        )
    assert (refused.value.field, refused.value.status_code) == ("name", 400)
    assert refused.value.message.startswith("must be a DNS-1123 label")
    assert nothing_saved(world)


def test_a_name_too_long_for_the_preview_service_is_refused(world: World, actor: Actor) -> None:
    with pytest.raises(DomainError) as refused:
        services.create_deployment(actor, world.tenant_a, name="a" * 60, request=request_for(world))
    assert refused.value.field == "name"
    assert "the Services add -preview" in refused.value.message


def test_a_taken_name_is_a_conflict(world: World, actor: Actor) -> None:
    with pytest.raises(Conflict) as refused:
        services.create_deployment(
            actor, world.tenant_a, name="alpha-chat", request=request_for(world)
        )
    assert (refused.value.field, refused.value.status_code) == ("name", 409)
    assert refused.value.message == "a deployment named 'alpha-chat' already exists"


@pytest.mark.parametrize(
    ("acknowledged", "overrides", "quota", "field", "message"),
    [
        pytest.param(
            False,
            {},
            {},
            "model",
            "the model cannot be deployed yet: a tenant owner must acknowledge the Creative "
            "Commons Non-Commercial",
            id="model-with-blockers",
        ),
        pytest.param(
            True,
            {"tier": "a100-80g"},
            {},
            "tier",
            "tier 'a100-80g' is not allowed for this tenant (allowed: l4)",
            id="tier-not-allowed",
        ),
        pytest.param(
            True,
            {"max_input_tokens": 2048, "max_total_tokens": 2048},
            {},
            "max_input_tokens",
            "max_input_tokens (2048) must be less than max_total_tokens (2048)",
            id="max-input-not-below-max-total",
        ),
        pytest.param(
            True,
            {"max_total_tokens": 20000},
            {},
            "max_total_tokens",
            "max_total_tokens (20000) is above tier 'l4''s limit of 16384",
            id="max-total-above-the-tiers-limit",
        ),
        pytest.param(
            True,
            {"replicas": 5},
            {},
            "replicas",
            "5 replicas exceed the tenant's limit of 4 per deployment",
            id="replicas-over-the-per-deployment-limit",
        ),
        pytest.param(
            True,
            {},
            {"max_deployments": 1},
            "name",
            "the tenant already has 1 of its 1 deployments",
            id="deployments-quota-full",
        ),
        pytest.param(
            True,
            {"pod_annotations": {"inference.portal/x": "1"}},
            {},
            "pod_annotations",
            "'inference.portal/x' is set by the portal",
            id="protected-pod-annotation",
        ),
    ],
)
def test_admission_refuses_naming_the_field(
    world: World,
    actor: Actor,
    acknowledged: bool,
    overrides: dict[str, Any],
    quota: dict[str, Any],
    field: str,
    message: str,
) -> None:
    if acknowledged:
        acknowledge(world)
    if quota:
        set_quota(world, **quota)
    with pytest.raises(AdmissionRefused) as refused:
        services.create_deployment(
            actor, world.tenant_a, name="chat", request=request_for(world, **overrides)
        )
    assert refused.value.field == field
    assert (refused.value.code, refused.value.status_code) == ("admission_refused", 400)
    assert message in refused.value.message, refused.value.message
    assert nothing_saved(world)


def test_another_tenants_model_is_refused(world: World, actor: Actor) -> None:
    request = request_for(world, model=world.objects["model_b"])
    with pytest.raises(AdmissionRefused) as refused:
        services.create_deployment(actor, world.tenant_a, name="chat", request=request)
    assert refused.value.field == "model"
    assert refused.value.message == "the model is not registered in this tenant"
    assert nothing_saved(world)


# --- the GPU quota arithmetic ------------------------------------------------------------------


def test_gpu_quota_counts_the_gpus_of_the_tenants_other_deployments(
    world: World, actor: Actor
) -> None:
    acknowledge(world)
    serving(world)  # alpha-chat's blue side holds one L4
    set_quota(world, max_gpus=2)
    request = request_for(world, replicas=2)
    with pytest.raises(AdmissionRefused) as refused:
        services.create_deployment(actor, world.tenant_a, name="chat", request=request)
    assert refused.value.field == "replicas"
    assert refused.value.message == (
        "needs 2 GPUs (2) while 1 are in use by other deployments; the tenant's quota is 2 GPUs"
    )
    assert nothing_saved(world)


def test_gpu_quota_of_a_new_revision_counts_the_live_side_it_replaces(
    world: World, actor: Actor
) -> None:
    acknowledge(world)
    deployment = serving(world)
    set_quota(world, max_gpus=2)
    with pytest.raises(AdmissionRefused) as refused:
        services.change_deployment(actor, deployment, request_for(world, replicas=2))
    assert refused.value.field == "replicas"
    # Both sides run until the new one is promoted: 1 live + 2 new > 2.
    assert refused.value.message == (
        "needs 3 GPUs (1 old side + 2 new side) while 0 are in use by other deployments; "
        "the tenant's quota is 2 GPUs"
    )
    assert deployment.revisions.count() == 1 and deployment.rollouts.count() == 1


# --- new revisions and redeploys ---------------------------------------------------------------


def test_a_new_revision_waits_for_the_running_rollout(world: World, actor: Actor) -> None:
    acknowledge(world)
    deployment = world.objects["deployment_a"]
    a_rollout(deployment, state=RolloutState.WAITING_READY)
    with pytest.raises(Conflict) as refused:
        services.change_deployment(actor, deployment, request_for(world, max_total_tokens=4096))
    assert (refused.value.field, refused.value.code) == ("deployment", "rollout_in_progress")
    assert "already running" in refused.value.message
    assert DeploymentRevision.objects.filter(deployment=deployment).count() == 1


def test_redeploying_an_unknown_revision_names_it(world: World, actor: Actor) -> None:
    with pytest.raises(DomainError) as refused:
        services.deploy_revision(actor, world.objects["deployment_a"], 7)
    assert refused.value.field == "revision"
    assert refused.value.message == "'alpha-chat' has no revision 7"


def test_redeploying_a_revision_of_a_blocked_model_is_refused_by_admission(
    world: World, actor: Actor
) -> None:
    deployment = world.objects["deployment_a"]
    a_rollout(deployment, state=RolloutState.COMPLETED)
    with pytest.raises(AdmissionRefused) as refused:
        services.deploy_revision(actor, deployment, 1)
    assert refused.value.field == "model" and "acknowledge" in refused.value.message
    assert Rollout.objects.filter(deployment=deployment).count() == 1


# --- steering a rollout (which states allow what: test_policy.py) ------------------------------


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        (services.promote, "'alpha-chat' has no rollout in progress"),
        (services.abort, "'alpha-chat' has no rollout in progress"),
        (
            services.rollback,
            "an instant rollback is only possible while the previous side is on standby;",
        ),
    ],
    ids=["promote", "abort", "rollback"],
)
def test_steering_without_a_rollout_is_a_conflict(
    world: World, actor: Actor, operation: Any, message: str
) -> None:
    with pytest.raises(Conflict) as refused:
        operation(actor, world.objects["deployment_a"])
    assert (refused.value.field, refused.value.status_code) == ("rollout", 409)
    assert refused.value.message == message

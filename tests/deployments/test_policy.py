"""What each rollout state allows (deployments.policy), and the services refusing by it; the
wizard's review figures are admission's own."""

from __future__ import annotations

from typing import Any

import pytest

from deployments import admission, policy, services, views
from deployments.capacity import ClusterCapacity, NodeGpus
from deployments.choices import RolloutState
from deployments.forms import DeploymentForm, RevisionForm
from deployments.models import Deployment, Rollout
from deployments.policy import Action
from deployments.rendering.constants import LABEL_GKE_NODEPOOL, LABEL_GPU_PRODUCT
from portal.errors import Conflict
from tenants.audit import Actor
from tenants.roles import OPERATION_ROLES
from tests.deployments.test_api import a_rollout, acknowledge
from tests.deployments.test_ui import revision_data, serving, wizard_data
from tests.fixtures.personas import World

S = RolloutState
L4_NODE = {LABEL_GPU_PRODUCT: "NVIDIA-L4", LABEL_GKE_NODEPOOL: "l4"}
P, A, R = Action.PROMOTE, Action.ABORT, Action.ROLLBACK

# The state's actions on a rollout that replaces a previous side.
EXPECTED: dict[str, set[Action]] = {
    S.PENDING: {P, A},
    S.WEIGHTS: {P, A},
    S.CREATING: {P, A},
    S.WAITING_READY: {P, A},
    S.PRE_PROMOTION: {P, A},
    S.AWAITING_PROMOTION: {P, A},
    S.PROMOTING: {A},
    S.POST_PROMOTION: {A, R},
    S.SCALE_DOWN_DELAY: {A, R},
    S.SCALING_DOWN: set(),
    S.COMPLETED: set(),
    S.ABORTED: set(),
    S.FAILED: set(),
    S.ROLLED_BACK: set(),
}


def test_every_state_is_in_the_table() -> None:
    assert set(EXPECTED) == set(RolloutState)


@pytest.mark.parametrize("state", list(RolloutState))
def test_each_state_allows_its_actions(state: str) -> None:
    rollout = Rollout(state=state, colour="green", previous_colour="blue")
    steering = policy.allowed_actions(rollout, running=True) - {Action.DELETE}
    assert steering == EXPECTED[state]


@pytest.mark.parametrize("state", list(RolloutState))
def test_a_first_rollout_has_nothing_to_roll_back_to(state: str) -> None:
    rollout = Rollout(state=state, colour="blue", previous_colour="")
    assert R not in policy.allowed_actions(rollout, running=True)


def test_deploying_waits_for_the_running_rollout_and_delete_is_always_allowed() -> None:
    assert policy.allowed_actions(None, running=False) == {Action.DEPLOY, Action.DELETE}
    assert policy.allowed_actions(None, running=True) == {Action.DELETE}


def test_every_action_is_an_operation_with_a_role() -> None:
    assert set(policy.OPERATIONS) == set(Action)
    assert set(policy.OPERATIONS.values()) <= set(OPERATION_ROLES)


STEERING = {P: services.promote, A: services.abort, R: services.rollback}


@pytest.mark.parametrize("state", list(RolloutState))
def test_services_refuse_exactly_what_the_state_does_not_allow(world: World, state: str) -> None:
    deployment = world.objects["deployment_a"]
    a_rollout(deployment, state=state, previous_colour="green")
    actor = Actor(world.users["maintainer_a"], "cli")
    for action, operation in STEERING.items():
        try:
            operation(actor, deployment)
        except Conflict:
            refused = True
        else:
            refused = False
        assert refused == (action not in EXPECTED[state]), (state, action)


# --- the wizard's review is admission's arithmetic ------------------------------------------


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> ClusterCapacity:
    """Three L4 nodes, one of them busy: room for two replicas of one GPU."""
    found = ClusterCapacity(
        [
            NodeGpus("a", L4_NODE, allocatable=1, requested=0),
            NodeGpus("b", L4_NODE, allocatable=1, requested=0),
            NodeGpus("c", L4_NODE, allocatable=1, requested=1),
        ]
    )
    monkeypatch.setattr(admission, "pool_capacity", lambda: found)
    monkeypatch.setattr(views, "pool_capacity", lambda: found)
    return found


def assert_same_figures(review: dict[str, Any], admitted: admission.Admission) -> None:
    assert review["in_use"] == admitted.tenant_gpus_in_use
    assert review["needed"] == admitted.gpus_needed
    assert review["after"] == admitted.tenant_gpus_in_use + admitted.gpus_needed
    assert review["pool"].free == admitted.pool_free_gpus
    assert not review["over_quota"] and not review["pool_short"]


@pytest.mark.parametrize("replicas", [1, 2])
def test_wizard_review_of_a_new_deployment_is_admissions(
    world: World, pools: ClusterCapacity, replicas: int
) -> None:
    acknowledge(world)
    form = DeploymentForm(wizard_data(world, name="chat", replicas=replicas), tenant=world.tenant_a)
    assert form.is_valid(), form.errors
    review = views.serving_checks(world.tenant_a, form)["review"]
    admitted = admission.admit(world.tenant_a, form.serving_request(), None, name="chat")
    assert_same_figures(review, admitted)
    assert review["needed"] == replicas


def test_wizard_review_of_a_new_revision_counts_the_live_side_as_admission_does(
    world: World, pools: ClusterCapacity
) -> None:
    acknowledge(world)
    deployment = serving(world)
    form = RevisionForm(revision_data(replicas=2, max_replicas=2), deployment=deployment)
    assert form.is_valid(), form.errors
    review = views.serving_checks(world.tenant_a, form, deployment)["review"]
    admitted = admission.admit(world.tenant_a, form.serving_request(), deployment)
    assert_same_figures(review, admitted)
    assert (review["in_use"], review["needed"]) == (1, 2)  # the live blue side holds one


def test_wizard_review_flags_what_admission_refuses(world: World, pools: ClusterCapacity) -> None:
    acknowledge(world)
    form = DeploymentForm(wizard_data(world, name="chat", replicas=3), tenant=world.tenant_a)
    assert form.is_valid(), form.errors
    review = views.serving_checks(world.tenant_a, form)["review"]
    assert review["pool_short"]  # two free GPUs, three replicas of one
    with pytest.raises(admission.AdmissionRefused) as refused:
        admission.admit(world.tenant_a, form.serving_request(), None, name="chat")
    assert refused.value.field == "replicas"
    assert Deployment.objects.filter(name="chat").count() == 0

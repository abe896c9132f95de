"""What a deployment's rollout state allows, stated once.

deployments.services refuses by these rules; the API answers with its refusals; the UI views and
templates show a button only when the rule allows it. Roles are a separate question
(tenants.roles.OPERATION_ROLES): the rules here say what the state allows to anyone.
"""

from __future__ import annotations

from enum import StrEnum

from deployments.choices import ACTIVE_STATES, RolloutState
from deployments.models import Deployment, Rollout


class Action(StrEnum):
    """What can be done to a deployment; the UI's action URLs use these names."""

    PROMOTE = "promote"
    ABORT = "abort"
    ROLLBACK = "rollback"
    DEPLOY = "deploy"  # roll out a new or an existing revision
    DELETE = "delete"


# The operation (tenants.roles.OPERATION_ROLES) each action is, for the role it needs.
OPERATIONS: dict[Action, str] = {
    Action.PROMOTE: "rollout.promote",
    Action.ABORT: "rollout.abort",
    Action.ROLLBACK: "rollout.rollback",
    Action.DEPLOY: "rollout.start",
    Action.DELETE: "deployment.delete",
}

# Promotion is under way or done: promoting again means nothing.
PROMOTED_STATES = frozenset(
    {
        RolloutState.PROMOTING,
        RolloutState.POST_PROMOTION,
        RolloutState.SCALE_DOWN_DELAY,
        RolloutState.SCALING_DOWN,
    }
)
# The old side still runs beside the new one, so traffic can flip back at once.
STANDBY_STATES = frozenset({RolloutState.POST_PROMOTION, RolloutState.SCALE_DOWN_DELAY})
# The old side is being removed: aborting can no longer keep it.
UNABORTABLE_STATES = frozenset({RolloutState.SCALING_DOWN})


def can_promote(rollout: Rollout) -> bool:
    return rollout.state in ACTIVE_STATES and rollout.state not in PROMOTED_STATES


def can_abort(rollout: Rollout) -> bool:
    return rollout.state in ACTIVE_STATES and rollout.state not in UNABORTABLE_STATES


def old_side_on_standby(rollout: Rollout) -> bool:
    return rollout.state in STANDBY_STATES


def can_rollback(rollout: Rollout) -> bool:
    """The deployment's latest rollout keeps a previous side on standby."""
    return old_side_on_standby(rollout) and bool(rollout.previous_colour)


def rollout_running(deployment: Deployment) -> bool:
    return Rollout.objects.filter(deployment=deployment, state__in=ACTIVE_STATES).exists()


def allowed_actions(rollout: Rollout | None, *, running: bool) -> frozenset[Action]:
    """What the state allows, given the deployment's latest rollout and whether one of its
    rollouts is running (a new rollout waits for the running one)."""
    allowed = {Action.DELETE}
    if not running:
        allowed.add(Action.DEPLOY)
    if rollout is not None:
        if can_promote(rollout):
            allowed.add(Action.PROMOTE)
        if can_abort(rollout):
            allowed.add(Action.ABORT)
        if can_rollback(rollout):
            allowed.add(Action.ROLLBACK)
    return frozenset(allowed)

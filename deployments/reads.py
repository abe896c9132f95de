"""Reads of rollouts that the API's serializers and the UI's views share: where a rollout is
on its way, and the newest rollout of each deployment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deployments.choices import STEP_ORDER, RolloutState
from deployments.models import Deployment, Rollout


@dataclass(frozen=True)
class Progress:
    """Where a rollout is on its way through STEP_ORDER (terminal failures keep their step)."""

    index: int
    total: int
    percent: int
    step: str  # the step shown as current: the state itself, or the last one reached

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "total": self.total, "percent": self.percent}


def rollout_progress(rollout: Rollout) -> Progress:
    total = len(STEP_ORDER)
    step = rollout.state
    if step not in STEP_ORDER:
        # Aborted, failed, rolled back: show the furthest step the rollout got to.
        order = [str(state) for state in STEP_ORDER]
        reached = [e.state for e in rollout.events.all() if e.state in order]
        step = max(reached, key=order.index, default=RolloutState.PENDING)
    index = STEP_ORDER.index(RolloutState(step))
    return Progress(index=index, total=total, percent=round(100 * index / (total - 1)), step=step)


def latest_rollouts(deployments: list[Deployment]) -> dict[int, Rollout]:
    """The newest rollout of each deployment, in one query."""
    rollouts = (
        Rollout.objects.filter(deployment__in=deployments)
        .select_related("revision")
        .order_by("deployment_id", "-started_at", "-id")
        .distinct("deployment_id")
    )
    return {rollout.deployment_id: rollout for rollout in rollouts}

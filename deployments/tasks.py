"""Celery tasks of deployments: thin wrappers that take ids; state lives in PostgreSQL."""

from __future__ import annotations

from celery import shared_task

from deployments import rollout

# Polls are short and chained: a countdown longer than the broker's visibility timeout would
# run twice, and a long one would slow the rollout down for nothing.
MAX_POLL_SECONDS = 5.0


@shared_task(name="deployments.tasks.advance_rollout", acks_late=True)
def advance_rollout(rollout_id: int) -> None:
    """Run one step of a rollout and schedule the next poll (exits if another worker has it)."""
    delay = rollout.advance(rollout_id)
    if delay is not None:
        advance_rollout.apply_async((rollout_id,), countdown=min(delay, MAX_POLL_SECONDS))


@shared_task(name="deployments.tasks.reconcile_rollouts")
def reconcile_rollouts() -> list[int]:
    """Level-triggered: re-drive every unfinished rollout that no worker is driving."""
    stalled = rollout.needs_driving()
    for rollout_id in stalled:
        advance_rollout.delay(rollout_id)
    return stalled

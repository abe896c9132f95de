"""Celery tasks of deployments: thin wrappers that take ids; state lives in PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.conf import settings

from deployments import cost, deletion, rollout
from deployments.reconcile import Shard, reconcile_pass

# Polls are short and chained: a countdown longer than the broker's visibility timeout would
# run twice, and a long one would slow the rollout down for nothing.
MAX_POLL_SECONDS = 5.0
# Steps that hand over at once run in this task, each committed before the next: a round trip
# through the broker per state costs tens of milliseconds and buys nothing. Bounded, so one
# rollout cannot hold a worker if its steps kept handing over.
MAX_STEPS_PER_TASK = 16


def _run_ready_steps(advance: Callable[[int], float | None], object_id: int) -> float | None:
    """Steps of ``advance`` while each hands over at once; the wait the last one asked for."""
    delay = advance(object_id)
    for _ in range(MAX_STEPS_PER_TASK - 1):
        if delay != 0:
            break
        delay = advance(object_id)
    return delay


@shared_task(name="deployments.tasks.advance_rollout", acks_late=True)
def advance_rollout(rollout_id: int) -> None:
    """Run one step of a rollout and schedule the next poll (exits if another worker has it)."""
    delay = _run_ready_steps(rollout.advance, rollout_id)
    if delay is not None:
        advance_rollout.apply_async((rollout_id,), countdown=min(delay, MAX_POLL_SECONDS))


@shared_task(name="deployments.tasks.delete_deployment", acks_late=True)
def delete_deployment(deployment_id: int) -> None:
    """Run the deletion's steps that are ready and schedule the next poll (deletion.py)."""
    delay = _run_ready_steps(deletion.advance, deployment_id)
    if delay is not None:
        delete_deployment.apply_async((deployment_id,), countdown=min(delay, MAX_POLL_SECONDS))


@shared_task(name="deployments.tasks.reconcile_rollouts")
def reconcile_rollouts(
    shard_index: int | None = None, shard_count: int | None = None
) -> dict[str, Any]:
    """Level-triggered: re-drive unfinished rollouts and deletions nobody drives, repair
    drifted deployments. Beat calls it without a shard: with ROLLOUT_RECONCILE_SHARDS above 1
    it sends one task per shard, which workers then run side by side."""
    if shard_index is None:
        shard_count = settings.ROLLOUT_RECONCILE_SHARDS
        if shard_count > 1:
            for index in range(shard_count):
                reconcile_rollouts.delay(index, shard_count)
            return {"shards": shard_count}
    report = reconcile_pass(shard=Shard(shard_index or 0, shard_count or 1))
    for rollout_id in report.stalled_rollouts:
        advance_rollout.delay(rollout_id)
    for deployment_id in report.stalled_deletions:
        delete_deployment.delay(deployment_id)
    return {
        "stalled": report.stalled_rollouts,
        "stalled_deletions": report.stalled_deletions,
        "checked": report.checked,
        "repaired": report.repaired,
    }


@shared_task(name="deployments.tasks.record_replica_history")
def record_replica_history() -> int:
    """Observe every portal TGI Deployment's replicas and record changes (cost history)."""
    return cost.sample_replicas()

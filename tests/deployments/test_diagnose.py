"""Why a new side is not becoming available, in words a platform engineer can act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodCondition,
    V1PodStatus,
)

from deployments.rollout import UNSCHEDULABLE_GRACE_SECONDS, diagnose

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def pod(*, conditions: list[V1PodCondition] | None = None, **container: Any) -> V1Pod:
    status = V1ContainerStatus(
        name="tgi",
        image="tgi",
        image_id="",
        ready=False,
        restart_count=container.get("restarts", 0),
        state=V1ContainerState(waiting=container.get("waiting")),
        last_state=V1ContainerState(terminated=container.get("terminated")),
    )
    return V1Pod(
        metadata=V1ObjectMeta(name="tgi-chat-green-abc"),
        status=V1PodStatus(conditions=conditions or [], container_statuses=[status]),
    )


UNSCHEDULABLE = V1PodCondition(
    type="PodScheduled",
    status="False",
    reason="Unschedulable",
    message="0/9 nodes are available: 3 Insufficient nvidia.com/gpu.",
)


def test_unschedulable_waits_out_a_grace_period_then_names_the_gpus() -> None:
    pending = pod(conditions=[UNSCHEDULABLE])
    assert diagnose([pending], NOW, NOW - timedelta(seconds=2)) is None
    reason, remedy = diagnose(
        [pending], NOW, NOW - timedelta(seconds=UNSCHEDULABLE_GRACE_SECONDS + 1)
    )  # type: ignore[misc]
    assert "Insufficient nvidia.com/gpu" in reason
    assert "no free GPUs in the node pool" in remedy


def test_oom_killed() -> None:
    oom = pod(terminated=V1ContainerStateTerminated(exit_code=137, reason="OOMKilled"), restarts=1)
    reason, remedy = diagnose([oom], NOW, NOW)  # type: ignore[misc]
    assert "OOMKilled" in reason and "lower max input tokens" in remedy and "quantize" in remedy


def test_image_pull_errors() -> None:
    pulling = pod(waiting=V1ContainerStateWaiting(reason="ImagePullBackOff", message="not found"))
    reason, remedy = diagnose([pulling], NOW, NOW)  # type: ignore[misc]
    assert "cannot be pulled: not found" in reason and "pinned TGI image" in remedy


def test_crash_loop_needs_repeated_crashes() -> None:
    once = pod(
        waiting=V1ContainerStateWaiting(reason="CrashLoopBackOff"),
        restarts=1,
        terminated=V1ContainerStateTerminated(exit_code=1),
    )
    assert diagnose([once], NOW, NOW) is None
    twice = pod(
        waiting=V1ContainerStateWaiting(reason="CrashLoopBackOff"),
        restarts=2,
        terminated=V1ContainerStateTerminated(exit_code=1),
    )
    reason, _ = diagnose([twice], NOW, NOW)  # type: ignore[misc]
    assert "keeps crashing (CrashLoopBackOff, 2 restarts, last exit code 1)" in reason


def test_missing_secret() -> None:
    config = pod(
        waiting=V1ContainerStateWaiting(
            reason="CreateContainerConfigError", message='secret "hf-token" not found'
        )
    )
    reason, remedy = diagnose([config], NOW, NOW)  # type: ignore[misc]
    assert 'secret "hf-token" not found' in reason and "Hub token" in remedy


def test_healthy_pods_have_nothing_to_report() -> None:
    assert (
        diagnose([pod(waiting=V1ContainerStateWaiting(reason="ContainerCreating"))], NOW, NOW)
        is None
    )

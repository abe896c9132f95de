"""Why a new side is not becoming available, in words a platform engineer can act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client import (
    CoreV1Event,
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1ObjectMeta,
    V1ObjectReference,
    V1Pod,
    V1PodCondition,
    V1PodStatus,
)

from deployments.rollout import UNSCHEDULABLE_GRACE_SECONDS
from deployments.serving_checks import (
    MULTI_ATTACH_GRACE_SECONDS,
    diagnose_download,
    init_progress,
)
from deployments.serving_checks import diagnose as diagnose_with_logs
from engines import ENGINES

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def no_logs(pod: str, namespace: str, container: str) -> list[str]:
    return []


def diagnose(pods: list[V1Pod], now: datetime, since: datetime) -> tuple[str, str] | None:
    return diagnose_with_logs(pods, now, since, read_log=no_logs)


def pod(
    *, conditions: list[V1PodCondition] | None = None, engine: str = "tgi", **container: Any
) -> V1Pod:
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
        metadata=V1ObjectMeta(
            name="tgi-chat-green-abc", namespace="tenant-acme", labels={"inference.backend": engine}
        ),
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
    assert "cannot be pulled: not found" in reason
    assert "pinned Text Generation Inference image" in remedy


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


# The last lines each real engine prints when the GPU runs out of memory while starting
# (TGI: launcher/src/main.rs exits 1 after the shard's torch error; vLLM: the engine core's
# ValueError or torch OOM, then exit 1; SGLang: the scheduler's RuntimeError, after which the
# launcher kills its own process tree: exit 137 without the kubelet's OOMKilled).
GPU_OOM_LOGS = {
    "tgi": (
        1,
        [
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.",
            "ERROR text_generation_launcher: Shard 0 failed to start",
            "Error: ShardCannotStart",
        ],
    ),
    "vllm": (
        1,
        [
            "ValueError: No available memory for the cache blocks. Try increasing "
            "`gpu_memory_utilization` when initializing the engine.",
            "RuntimeError: Engine core initialization failed. See root cause above.",
        ],
    ),
    "sglang": (
        137,
        [
            "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.",
            "Received sigquit from a child process. It usually means the child failed.",
        ],
    ),
}


@pytest.mark.parametrize("engine", list(ENGINES))
def test_gpu_out_of_memory_is_read_from_the_previous_log(engine: str) -> None:
    exit_code, lines = GPU_OOM_LOGS[engine]
    crashed = pod(
        engine=engine,
        waiting=V1ContainerStateWaiting(reason="CrashLoopBackOff"),
        restarts=1,
        terminated=V1ContainerStateTerminated(exit_code=exit_code, reason="Error"),
    )
    asked: list[tuple[str, str, str]] = []

    def read_log(pod_name: str, namespace: str, container: str) -> list[str]:
        asked.append((pod_name, namespace, container))
        return lines

    reason, remedy = diagnose_with_logs([crashed], NOW, NOW, read_log=read_log)  # type: ignore[misc]
    assert asked == [("tgi-chat-green-abc", "tenant-acme", "tgi")]
    assert ENGINES[engine].label in reason and f"exited with code {exit_code}" in reason
    assert "memory" in reason and "OOMKilled" not in reason
    assert "quantize" in remedy
    if engine == "tgi":
        assert remedy.startswith("lower max input tokens or quantize")


@pytest.mark.parametrize("engine", list(ENGINES))
def test_offline_start_without_cached_weights(engine: str) -> None:
    crashed = pod(engine=engine, terminated=V1ContainerStateTerminated(exit_code=1), restarts=1)
    lines = [
        "huggingface_hub.errors.LocalEntryNotFoundError: Cannot find the requested files in the "
        "local cache and outgoing traffic has been disabled."
    ]
    reason, remedy = diagnose_with_logs(  # type: ignore[misc]
        [crashed], NOW, NOW, read_log=lambda *_: lines
    )
    assert "no cached weights" in reason and "weight download" in remedy


def test_an_unrecognised_crash_waits_for_the_crash_loop_and_quotes_the_log() -> None:
    once = pod(terminated=V1ContainerStateTerminated(exit_code=1), restarts=1)
    assert diagnose_with_logs([once], NOW, NOW, read_log=lambda *_: ["something odd"]) is None
    looping = pod(
        waiting=V1ContainerStateWaiting(reason="CrashLoopBackOff"),
        terminated=V1ContainerStateTerminated(exit_code=1),
        restarts=2,
    )
    reason, _ = diagnose_with_logs(  # type: ignore[misc]
        [looping], NOW, NOW, read_log=lambda *_: ["first", "something odd"]
    )
    assert reason.endswith("last log line: something odd")


# --- the weight-download pod ----------------------------------------------------------------

TGI_IMAGE = "registry.invalid/huggingface/text-generation-inference:3.3.6"
NOT_FOUND = 'rpc error: code = NotFound desc = failed to pull and unpack image "' + TGI_IMAGE + '"'


def download_pod(**waiting_by_container: V1ContainerStateWaiting | None) -> V1Pod:
    """The Job's pod: TGI's download-weights as an init container, then the Hub CLI."""

    def status(name: str) -> V1ContainerStatus:
        return V1ContainerStatus(
            name=name,
            image=TGI_IMAGE,
            image_id="",
            ready=False,
            restart_count=0,
            state=V1ContainerState(waiting=waiting_by_container.get(name)),
        )

    return V1Pod(
        metadata=V1ObjectMeta(name="weights-llama-0e9e39f2-download-x7k2p"),
        status=V1PodStatus(
            phase="Pending",
            init_container_statuses=[status("download-weights")],
            container_statuses=[status("download")],
        ),
    )


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("ErrImagePull", NOT_FOUND),
        ("ImagePullBackOff", f'Back-off pulling image "{TGI_IMAGE}"'),
        ("InvalidImageName", 'Failed to apply default image tag "UPPER:case"'),
    ],
)
def test_a_download_pod_that_cannot_pull_its_image_is_diagnosed_with_the_image(
    reason: str, message: str
) -> None:
    pending = download_pod(
        **{
            "download-weights": V1ContainerStateWaiting(reason=reason, message=message),
            "download": V1ContainerStateWaiting(reason="PodInitializing"),
        }
    )
    found = diagnose_download([pending])
    assert found is not None
    cause, remedy = found
    assert TGI_IMAGE in cause and "weights-llama-0e9e39f2-download-x7k2p" in cause
    assert message in cause
    assert "engine image" in remedy and "registry" in remedy and "deploy again" in remedy


def test_a_download_pod_that_is_only_starting_is_not_a_failure() -> None:
    starting = download_pod(
        **{
            "download-weights": V1ContainerStateWaiting(reason="ContainerCreating"),
            "download": V1ContainerStateWaiting(reason="PodInitializing"),
        }
    )
    assert diagnose_download([starting]) is None
    assert diagnose_download([]) is None
    # The Job's pod has no GPU: waiting for a node is not "no free GPUs".
    unscheduled = download_pod()
    assert unscheduled.status is not None
    unscheduled.status.conditions = [UNSCHEDULABLE]
    assert diagnose_download([unscheduled]) is None


# --- weights volumes on real storage -------------------------------------------------------

MULTI_ATTACH = (
    'Multi-Attach error for volume "pvc-7f3a" Volume is already used by pod(s) tgi-chat-blue-xyz'
)


def attach_event(pod_name: str, first_seen: datetime, message: str = MULTI_ATTACH) -> CoreV1Event:
    return CoreV1Event(
        metadata=V1ObjectMeta(name=f"{pod_name}.1", namespace="tenant-acme"),
        involved_object=V1ObjectReference(kind="Pod", name=pod_name, namespace="tenant-acme"),
        reason="FailedAttachVolume",
        type="Warning",
        message=message,
        first_timestamp=first_seen,
        last_timestamp=NOW,
        count=4,
    )


def creating() -> V1Pod:
    waiting = pod(waiting=V1ContainerStateWaiting(reason="ContainerCreating"))
    assert waiting.status is not None
    waiting.status.phase = "Pending"
    return waiting


def test_a_multi_attach_error_fails_with_the_volume_the_other_pod_and_the_strategies() -> None:
    stuck = creating()
    since = NOW - timedelta(minutes=5)
    late = attach_event(
        "tgi-chat-green-abc", NOW - timedelta(seconds=MULTI_ATTACH_GRACE_SECONDS + 1)
    )

    reason, remedy = diagnose_with_logs([stuck], NOW, since, read_log=no_logs, events=[late])  # type: ignore[misc]

    assert "tgi-chat-green-abc" in reason
    assert '"pvc-7f3a"' in reason and "tgi-chat-blue-xyz" in reason
    assert "ReadWriteOnce" in remedy and "shared-volume" in remedy and "node-local" in remedy


def test_a_multi_attach_error_waits_for_a_detach_in_progress_and_ignores_other_pods() -> None:
    stuck = creating()
    since = NOW - timedelta(minutes=5)
    fresh = attach_event("tgi-chat-green-abc", NOW - timedelta(seconds=5))
    elsewhere = attach_event("tgi-other-green-def", NOW - timedelta(minutes=3))
    other_error = attach_event(
        "tgi-chat-green-abc", NOW - timedelta(minutes=3), message="rpc error: timeout"
    )

    assert (
        diagnose_with_logs(
            [stuck], NOW, since, read_log=no_logs, events=[fresh, elsewhere, other_error]
        )
        is None
    )


@pytest.mark.parametrize(
    "conflict_text",
    [
        "2 node(s) didn't match PersistentVolume's node affinity",  # Kubernetes 1.35
        "2 node(s) had volume node affinity conflict",  # older schedulers
    ],
)
def test_a_volume_zone_conflict_is_not_blamed_on_missing_gpus(conflict_text: str) -> None:
    conflict = V1PodCondition(
        type="PodScheduled",
        status="False",
        reason="Unschedulable",
        message=f"0/4 nodes are available: {conflict_text}, "
        "2 node(s) didn't match Pod's node affinity/selector.",
    )
    pending = pod(conditions=[conflict])
    assert diagnose([pending], NOW, NOW - timedelta(seconds=2)) is None

    reason, remedy = diagnose(
        [pending], NOW, NOW - timedelta(seconds=UNSCHEDULABLE_GRACE_SECONDS + 1)
    )  # type: ignore[misc]

    assert conflict_text in reason
    assert "another zone" in remedy and "shared-volume" in remedy and "one zone" in remedy
    assert "no free GPUs" not in remedy


def node_local_pod(init_state: V1ContainerState, restarts: int = 0) -> V1Pod:
    started = creating()
    assert started.status is not None
    started.status.init_container_statuses = [
        V1ContainerStatus(
            name="download-weights",
            image="ghcr.io/huggingface/text-generation-inference:3.3.6",
            image_id="",
            ready=False,
            restart_count=restarts,
            state=init_state,
        )
    ]
    return started


def test_a_node_local_download_shows_its_progress_and_fails_when_it_keeps_failing() -> None:
    running = node_local_pod(V1ContainerState(running=V1ContainerStateRunning()))
    crashing = node_local_pod(
        V1ContainerState(waiting=V1ContainerStateWaiting(reason="CrashLoopBackOff")), restarts=3
    )

    assert init_progress([running]) == (
        "tgi-chat-green-abc: downloading weights (download-weights running)"
    )
    assert diagnose([running], NOW, NOW) is None
    reason, remedy = diagnose_with_logs(
        [crashing], NOW, NOW, read_log=lambda *_: ["401 Client Error: Unauthorized"]
    )  # type: ignore[misc]
    assert "weight download (download-weights)" in reason and "401" in reason
    assert "Hub token" in remedy


def test_a_node_local_download_whose_image_cannot_be_pulled_is_diagnosed() -> None:
    pulling = node_local_pod(
        V1ContainerState(
            waiting=V1ContainerStateWaiting(reason="ImagePullBackOff", message="not found")
        )
    )
    reason, remedy = diagnose([pulling], NOW, NOW)  # type: ignore[misc]
    assert "cannot be pulled" in reason and "engine image" in remedy

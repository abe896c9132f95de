"""The rollout's weights step against a stand-in cluster: what it does with the download Job."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.utils import timezone
from kubernetes.client import (
    CoreV1Event,
    CoreV1EventList,
    V1Container,
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1ObjectMeta,
    V1ObjectReference,
    V1Pod,
    V1PodList,
    V1PodSpec,
    V1PodStatus,
)

from deployments import rollout, serving_checks
from deployments.models import DeploymentRevision, Rollout
from portal import kube
from tests.fixtures.personas import World

PULL_ERROR = 'rpc error: code = NotFound desc = failed to pull and unpack image "x"'


class Cluster:
    """kube.apply/get/delete and the pod list, as much as step_weights reads."""

    def __init__(self, job_status: dict[str, Any], pods: list[V1Pod]) -> None:
        self.job_status = job_status
        self.pods = pods
        self.applied: list[dict[str, Any]] = []
        self.deleted: list[tuple[str, str]] = []

    def apply(self, manifest: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.applied.append(manifest)
        return {**manifest, "metadata": {**manifest["metadata"], "uid": "root-uid"}}

    def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any]:
        assert kind == "Job"
        return {"metadata": {"name": name}, "spec": {"activeDeadlineSeconds": 21600},
                "status": self.job_status}  # fmt: skip

    def delete(self, api_version: str, kind: str, name: str, namespace: str) -> bool:
        self.deleted.append((kind, name))
        return True

    def core(self) -> Any:
        cluster = self

        class Core:
            def list_namespaced_pod(self, namespace: str, label_selector: str) -> V1PodList:
                return V1PodList(items=cluster.pods)

            def read_namespaced_pod_log(self, name: str, namespace: str, **_: Any) -> str:
                return "Download file: model-00001-of-00004.safetensors"

        return Core()


def pulling_pod(reason: str, message: str) -> V1Pod:
    status = V1ContainerStatus(
        name="download-weights",
        image="registry.invalid/text-generation-inference:3.3.6",
        image_id="",
        ready=False,
        restart_count=0,
        state=V1ContainerState(waiting=V1ContainerStateWaiting(reason=reason, message=message)),
    )
    return V1Pod(
        metadata=V1ObjectMeta(name="weights-x-download-abcde"),
        status=V1PodStatus(phase="Pending", init_container_statuses=[status]),
    )


@pytest.fixture
def context(world: World) -> rollout.Context:
    deployment = world.objects["deployment_a"]
    revision = DeploymentRevision.objects.create(
        deployment=deployment,
        number=1,
        model_revision=deployment.model.current_revision,
        tier=deployment.tier,
        max_input_tokens=1024,
        max_total_tokens=2048,
        max_batch_prefill_tokens=1074,
    )
    return rollout.build_context(
        Rollout.objects.create(deployment=deployment, revision=revision, colour="blue")
    )


def use(monkeypatch: pytest.MonkeyPatch, cluster: Cluster) -> None:
    for name in ("apply", "get", "delete", "core"):
        monkeypatch.setattr(kube, name, getattr(cluster, name))


def test_an_unpullable_engine_image_fails_the_step_and_removes_the_job(
    context: rollout.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = Cluster({"active": 1}, [pulling_pod("ImagePullBackOff", PULL_ERROR)])
    use(monkeypatch, cluster)
    result = rollout.step_weights(context)
    assert result.fail and result.next_state is None
    assert "cannot be pulled" in result.fail and PULL_ERROR in result.fail
    assert "registry.invalid/text-generation-inference:3.3.6" in result.fail
    assert result.remedy and "engine image" in result.remedy
    # Deploying again (with the image fixed) starts a new Job instead of this stuck one.
    assert cluster.deleted and cluster.deleted[0][0] == "Job"


def test_a_download_in_progress_keeps_waiting_and_reports_its_log(
    context: rollout.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = pulling_pod("ContainerCreating", "")
    cluster = Cluster({"active": 1}, [running])
    use(monkeypatch, cluster)
    result = rollout.step_weights(context)
    assert not result.fail and result.wait == 1 and not cluster.deleted
    assert result.updates["weights_progress"].startswith("Download file:")


def test_a_download_past_its_deadline_names_the_deadline(
    context: rollout.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = {
        "failed": 1,
        "conditions": [
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
             "message": "Job was active longer than specified deadline"},
        ],
    }  # fmt: skip
    use(monkeypatch, Cluster(status, []))
    # The Job is this rollout's own (no creationTimestamp before the rollout started).
    result = rollout.step_weights(context)
    assert result.fail
    assert "did not finish within its deadline (21600 s)" in result.fail
    assert result.remedy and "Hub" in result.remedy


def test_node_local_weights_have_nothing_to_wait_for_and_say_so(
    context: rollout.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = Cluster({}, [])
    use(monkeypatch, cluster)
    local = dataclasses.replace(
        context.spec, tier=dataclasses.replace(context.spec.tier, weights_strategy="node-local")
    )
    result = rollout.step_weights(dataclasses.replace(context, spec=local))
    assert result.next_state == "creating" and not result.fail
    assert "init container" in result.message
    assert {m["kind"] for m in cluster.applied}.isdisjoint({"PersistentVolumeClaim", "Job"})


class Waiting:
    """The new side not available yet: its pod waits for its volume; the events say why."""

    def __init__(self, pod: V1Pod, events: list[CoreV1Event]) -> None:
        self.pod = pod
        self.events = events
        self.event_lists = 0

    def read_namespaced_deployment_status(self, name: str, namespace: str) -> Any:
        return SimpleNamespace(
            metadata=SimpleNamespace(name=name, generation=1),
            status=SimpleNamespace(observed_generation=1, available_replicas=0, updated_replicas=1),
        )

    def list_namespaced_pod(self, namespace: str, label_selector: str) -> V1PodList:
        return V1PodList(items=[self.pod])

    def list_namespaced_event(self, namespace: str, field_selector: str) -> CoreV1EventList:
        assert field_selector == "reason=FailedAttachVolume"
        self.event_lists += 1
        return CoreV1EventList(items=self.events)


def test_a_pod_stuck_on_a_readwriteonce_volume_fails_the_rollout_instead_of_hanging(
    context: rollout.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = timezone.now()
    stuck = V1Pod(
        metadata=V1ObjectMeta(name="tgi-chat-blue-abc", namespace=context.namespace),
        status=V1PodStatus(phase="Pending"),
    )
    event = CoreV1Event(
        metadata=V1ObjectMeta(name="tgi-chat-blue-abc.1"),
        involved_object=V1ObjectReference(kind="Pod", name="tgi-chat-blue-abc"),
        reason="FailedAttachVolume",
        message='Multi-Attach error for volume "pvc-1" Volume is already used by pod(s) old-pod',
        first_timestamp=now - timedelta(seconds=45),
    )
    cluster = Waiting(stuck, [event])
    monkeypatch.setattr(kube, "core", lambda: cluster)
    monkeypatch.setattr(rollout, "_apps", lambda: cluster)

    context.rollout.state_entered_at = now - timedelta(seconds=5)
    assert not rollout.step_waiting_ready(context).fail  # within the grace: not even listed
    assert cluster.event_lists == 0

    context.rollout.state_entered_at = now - timedelta(seconds=60)
    result = rollout.step_waiting_ready(context)
    assert "Multi-Attach error" in result.fail and "old-pod" in result.fail
    assert "shared-volume" in result.remedy


def test_progress_reads_the_download_step_at_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """TGI's download runs the snapshot download as an init container before download-weights:
    the progress line comes from the step that runs, not from the one still waiting for it."""

    def status(name: str, state: V1ContainerState) -> V1ContainerStatus:
        return V1ContainerStatus(
            name=name, image="i", image_id="", ready=False, restart_count=0, state=state
        )

    pod = V1Pod(
        metadata=V1ObjectMeta(name="weights-x-download-abcde"),
        spec=V1PodSpec(containers=[V1Container(name="download-weights")]),
        status=V1PodStatus(
            phase="Pending",
            init_container_statuses=[
                status("download", V1ContainerState(running=V1ContainerStateRunning()))
            ],
            container_statuses=[
                status(
                    "download-weights",
                    V1ContainerState(waiting=V1ContainerStateWaiting(reason="PodInitializing")),
                )
            ],
        ),
    )
    asked: list[str | None] = []

    class Core:
        def list_namespaced_pod(self, namespace: str, label_selector: str) -> V1PodList:
            return V1PodList(items=[pod])

        def read_namespaced_pod_log(
            self, name: str, namespace: str, container: str | None = None, **_: Any
        ) -> str:
            asked.append(container)
            return "Download file: model-00001-of-00004.safetensors\n"

    monkeypatch.setattr(serving_checks.kube, "core", lambda: Core())
    line = serving_checks._last_log_line("tenant-a", {"job-name": "weights-x-download"})
    assert line == "Download file: model-00001-of-00004.safetensors"
    assert asked == ["download"]

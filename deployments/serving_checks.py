"""What a rollout asks of the serving pods: why a side is not becoming available (diagnosis)
and whether it serves the spec (the pre-promotion check). The engine-specific parts — which
log lines mean what, which routes describe the server, which route answers a base model — are
the engine's (engines/<name>); this module reads the cluster and the pods like an operator would.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from kubernetes.client.exceptions import ApiException

from deployments.rendering import ServingSpec
from deployments.rendering.constants import LABEL_BACKEND
from deployments.rendering.meta import label_selector
from engines import DEFAULT_ENGINE, ENGINES, InferenceEngine
from engines.base import dig
from portal import kube

UNSCHEDULABLE_GRACE_SECONDS = 20
# The attach-detach controller reports a ReadWriteOnce volume still attached to another node
# as a Warning event (pkg/controller/volume/attachdetach/reconciler/reconciler.go,
# reportMultiAttachError: reason FailedAttachVolume, "Multi-Attach error for volume ...").
# It also says so for a moment while the old node detaches: allow that much.
FAILED_ATTACH_VOLUME = "FailedAttachVolume"
MULTI_ATTACH_ERROR = "Multi-Attach error"
MULTI_ATTACH_GRACE_SECONDS = 30
# The scheduler's VolumeBinding plugin (pkg/scheduler/framework/plugins/volumebinding:
# ErrReasonNodeConflict) when a bound zonal volume's nodeAffinity excludes every fitting node:
# "node(s) didn't match PersistentVolume's node affinity" in current releases, "node(s) had
# volume node affinity conflict" in older ones.
VOLUME_NODE_CONFLICTS = ("didn't match PersistentVolume's node affinity", "volume node affinity")
MULTI_ATTACH_REMEDY = (
    "the weights volume is ReadWriteOnce and attaches to one node; set the tier's weights "
    "strategy to shared-volume with a ReadWriteMany storage class, or node-local"
)
VOLUME_ZONE_REMEDY = (
    "the weights volume was created in another zone than the GPU nodes the pod fits; set the "
    "tier's weights strategy to shared-volume (a ReadWriteMany class without zone affinity) "
    "or node-local, or restrict the tier to one zone (e.g. topology.kubernetes.io/zone in its "
    "node selector)"
)
CRASH_RESTARTS_BEFORE_FAILING = 2
LOG_TAIL_LINES = 40
"""Enough for the traceback's last lines and the launcher's verdict after it."""

LogReader = Callable[[str, str, str], Sequence[str]]
"""(pod, namespace, container) -> the last lines of the container's previous run."""


def previous_log_tail(pod: str, namespace: str, container: str) -> list[str]:
    """The last lines the container printed before it last terminated ([] when unavailable)."""
    try:
        text = kube.core().read_namespaced_pod_log(
            pod, namespace, container=container, previous=True, tail_lines=LOG_TAIL_LINES
        )
    except ApiException:
        return []
    return [line for line in str(text or "").splitlines() if line.strip()]


def _engine_of(pod: Any) -> InferenceEngine:
    labels = (pod.metadata.labels if pod.metadata else None) or {}
    return ENGINES.get(labels.get(LABEL_BACKEND, ""), ENGINES[DEFAULT_ENGINE])


# The kubelet's waiting reasons for an image it cannot get (pkg/kubelet/images/types.go:
# ErrImagePull, ErrImagePullBackOff = "ImagePullBackOff", ErrInvalidImageName).
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})


def _image_pull_failure(pod_name: str, container: Any) -> str | None:
    """ "the image X of pod P cannot be pulled: <kubelet's message>", or None."""
    waiting = container.state.waiting if container.state else None
    if waiting is None or waiting.reason not in IMAGE_PULL_REASONS:
        return None
    image = f" {container.image}" if getattr(container, "image", None) else ""
    return (
        f"the image{image} of pod {pod_name} cannot be pulled: {waiting.message or waiting.reason}"
    )


def diagnose_download(pods: list[Any]) -> tuple[str, str] | None:
    """Why the weight-download pod cannot run, as (reason, remedy); None while it may still.

    The Job runs the engine's image: an image the serving pods could not pull either. Without
    this the download would wait in ImagePullBackOff until the Job's deadline.
    """
    for pod in pods:
        name = pod.metadata.name if pod.metadata else "?"
        status = pod.status
        if status is None:
            continue
        for container in [
            *(status.init_container_statuses or []),
            *(status.container_statuses or []),
        ]:
            pull = _image_pull_failure(name, container)
            if pull is not None:
                return (
                    pull,
                    "the weight download runs the tier's engine image: check that the image "
                    "and tag exist, that the nodes can reach its registry and have its pull "
                    "credentials, then deploy again",
                )
            waiting = container.state.waiting if container.state else None
            if waiting is not None and waiting.reason == "CreateContainerConfigError":
                return (
                    f"download pod {name} cannot start: {waiting.message or waiting.reason}",
                    "check the tenant's Hub token Secret, then deploy again",
                )
    return None


def _event_seen(event: Any) -> Any:
    """When an event was first reported (core/v1 events fill one of these)."""
    return (
        event.first_timestamp
        or event.event_time
        or (event.metadata.creation_timestamp if event.metadata else None)
    )


def _multi_attach(pod: Any, name: str, events: Sequence[Any], now: Any) -> str | None:
    """The Multi-Attach error message about this waiting pod, once it has lasted past the
    grace (a detach from the old node may be under way)."""
    if (pod.status.phase if pod.status else None) != "Pending":
        return None
    for event in events:
        involved = event.involved_object
        if (
            event.reason == FAILED_ATTACH_VOLUME
            and MULTI_ATTACH_ERROR in (event.message or "")
            and involved is not None
            and involved.kind == "Pod"
            and involved.name == name
        ):
            seen = _event_seen(event)
            if seen is not None and (now - seen).total_seconds() > MULTI_ATTACH_GRACE_SECONDS:
                return str(event.message)
    return None


def _download_failure(
    pod_name: str, status: Any, read_log: LogReader, namespace: str
) -> tuple[str, str] | None:
    """(reason, remedy) when a node-local pod's weight download (its init containers) cannot
    run or keeps failing; None otherwise."""
    for container in status.init_container_statuses or []:
        pull = _image_pull_failure(pod_name, container)
        if pull is not None:
            return (
                pull,
                "the weight download runs the tier's engine image: check that the image and "
                "tag exist and that the nodes can reach its registry",
            )
        waiting = container.state.waiting if container.state else None
        if (
            waiting is not None
            and waiting.reason == "CrashLoopBackOff"
            and container.restart_count >= CRASH_RESTARTS_BEFORE_FAILING
        ):
            tail = read_log(pod_name, namespace, container.name)
            last = f": {tail[-1].strip()}" if tail else ""
            return (
                f"the weight download ({container.name}) in pod {pod_name} keeps failing "
                f"({container.restart_count} restarts){last}",
                "check that the tenant's Hub token can read the model, that the Hub is "
                "reachable from the GPU nodes and that the node has disk for the weights, then "
                "deploy again",
            )
    return None


def init_progress(pods: list[Any]) -> str:
    """Where node-local pods are in downloading their weights (their init containers)."""
    if not pods:
        return "waiting for the serving pods"
    parts = []
    for pod in pods:
        name = pod.metadata.name if pod.metadata else "?"
        statuses = (pod.status.init_container_statuses if pod.status else None) or []
        state = "weights downloaded" if statuses else "waiting to start"
        for container in statuses:
            current = container.state
            terminated = current.terminated if current else None
            if terminated is not None and terminated.exit_code == 0:
                continue
            if current is not None and current.running is not None:
                state = f"downloading weights ({container.name} running)"
            else:
                waiting = current.waiting if current else None
                reason = (waiting.reason if waiting else None) or "waiting"
                state = f"weight download {container.name}: {reason}"
            break
        parts.append(f"{name}: {state}")
    return "; ".join(parts)


def diagnose(
    pods: list[Any],
    now: Any,
    since: Any,
    *,
    read_log: LogReader | None = None,
    events: Sequence[Any] = (),
) -> tuple[str, str] | None:
    """The first failure worth stopping a rollout for, as (reason, remedy).

    A container that terminated is judged by its engine from its exit code and the last lines
    of its previous log (an engine's CUDA out-of-memory exits 1 and says so only in the log).
    `events` are the namespace's FailedAttachVolume events (only events tell a Multi-Attach).
    """
    read_log = read_log or previous_log_tail
    for pod in pods:
        status = pod.status
        name = pod.metadata.name if pod.metadata else "?"
        namespace = (pod.metadata.namespace if pod.metadata else None) or ""
        engine = _engine_of(pod)
        for condition in status.conditions or []:
            if (
                condition.type == "PodScheduled"
                and condition.status == "False"
                and condition.reason == "Unschedulable"
                and (now - since).total_seconds() > UNSCHEDULABLE_GRACE_SECONDS
            ):
                if any(text in (condition.message or "") for text in VOLUME_NODE_CONFLICTS):
                    return (
                        f"pod {name} cannot be scheduled next to its weights volume: "
                        f"{condition.message}",
                        VOLUME_ZONE_REMEDY,
                    )
                return (
                    f"pod {name} cannot be scheduled: {condition.message}",
                    "no free GPUs in the node pool: free GPUs (scale down another deployment), "
                    "ask for more nodes, or choose another tier",
                )
        attach = _multi_attach(pod, name, events, now)
        if attach is not None:
            return (f"pod {name} cannot attach its weights volume: {attach}", MULTI_ATTACH_REMEDY)
        download = _download_failure(name, status, read_log, namespace)
        if download is not None:
            return download
        for container in status.container_statuses or []:
            terminated = container.last_state.terminated if container.last_state else None
            waiting = container.state.waiting if container.state else None
            if terminated is not None and terminated.reason == "OOMKilled":
                # The container's *host* memory limit, not the GPU's.
                return (
                    f"{engine.label} in pod {name} ran out of memory (OOMKilled)",
                    "lower max input tokens or max total tokens, quantize the model, or choose "
                    "a tier with more memory",
                )
            if terminated is not None and terminated.exit_code not in (0, None):
                failure = engine.classify_failure(
                    terminated.exit_code, read_log(name, namespace, container.name)
                )
                if failure is not None:
                    return (
                        f"{engine.label} in pod {name} exited with code "
                        f"{terminated.exit_code}: {failure.reason}",
                        failure.remedy,
                    )
            pull = _image_pull_failure(name, container)
            if pull is not None:
                return (
                    pull,
                    f"check the tier's pinned {engine.label} image and the registry's credentials",
                )
            if waiting is not None and waiting.reason == "CreateContainerConfigError":
                return (
                    f"pod {name} cannot start: {waiting.message or waiting.reason}",
                    "check the tenant's Hub token Secret",
                )
            if (
                waiting is not None
                and waiting.reason == "CrashLoopBackOff"
                and container.restart_count >= CRASH_RESTARTS_BEFORE_FAILING
            ):
                exit_code = terminated.exit_code if terminated is not None else "?"
                tail = read_log(name, namespace, container.name)
                last = f"; last log line: {tail[-1].strip()}" if tail else ""
                return (
                    f"{engine.label} in pod {name} keeps crashing (CrashLoopBackOff, "
                    f"{container.restart_count} restarts, last exit code {exit_code}){last}",
                    f"read the pod's logs: a setting {engine.label} refuses, a model it cannot "
                    "load, or memory; lower the token limits or change the quantization",
                )
    return None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Built once per process: loading the CA bundle costs ~25 ms, and every httpx client
    built without a context loads it again (it was most of a pre-promotion check's time)."""
    return ssl.create_default_context()


@dataclass(frozen=True)
class ServerPod:
    """A pod to check, by name (for the API server's pod proxy) and IP (to reach it directly)."""

    namespace: str
    name: str
    ip: str

    def __str__(self) -> str:
        return f"{self.name} ({self.ip})"


def check_server(pod: ServerPod, spec: ServingSpec) -> str:
    """Problems found on one server ("" when it serves the spec and answers a generation)."""
    port = spec.engine.port
    if kube.pods_reachable():
        http = httpx.Client(base_url=f"http://{pod.ip}:{port}", verify=_tls_context(), timeout=5)
    else:
        http = kube.pod_proxy_client(pod.namespace, pod.name, port, timeout=5)
    with http:
        return _check_server(http, str(pod), spec)


def _check_server(http: httpx.Client, who: str, spec: ServingSpec) -> str:
    engine = spec.engine
    smoke = engine.smoke_request(spec)
    try:
        for check in engine.info_checks(spec):
            answer = http.get(check.path)
            if answer.status_code != 200:
                return f"{who} answered {check.path} with {answer.status_code}: {answer.text[:200]}"
            info = answer.json()
            wrong = {
                key: (dig(info, key), want)
                for key, want in check.expected.items()
                if dig(info, key) != want
            }
            if wrong:
                return f"{who} serves something else ({check.path}): " + ", ".join(
                    f"{k} is {got!r}, expected {want!r}" for k, (got, want) in wrong.items()
                )
        response = http.post(smoke.path, json=dict(smoke.payload or {}), timeout=30)
        answered = response.status_code == 200 and engine.smoke_answered(smoke, response.json())
    except (httpx.HTTPError, ValueError) as error:
        return f"{who} did not answer: {error}"
    if not answered:
        return f"{who} answered {smoke.path} with {response.status_code}: {response.text[:200]}"
    return ""


def _working_container(pod: Any) -> str | None:
    """The download step at work: the first init container that has not finished well (TGI's
    download-weights runs before the tokenizer download), else the main container."""
    for status in (pod.status.init_container_statuses if pod.status else None) or []:
        done = status.state.terminated if status.state else None
        if done is None or done.exit_code != 0:
            return str(status.name)
    containers = pod.spec.containers if pod.spec else None
    return str(containers[0].name) if containers else None


def _last_log_line(namespace: str, labels: dict[str, str]) -> str:
    """The download pod's last log line, or its phase where the node serves no logs."""
    selector = label_selector(labels)
    phase = "starting"
    try:
        pods = kube.core().list_namespaced_pod(namespace, label_selector=selector).items
        if not pods:
            return "waiting for the download pod"
        pod = pods[-1]
        phase = (pod.status.phase if pod.status else None) or phase
        name = pod.metadata.name if pod.metadata else ""
        text = kube.core().read_namespaced_pod_log(
            str(name), namespace, container=_working_container(pod), tail_lines=1
        )
    except ApiException:
        return f"download pod {phase.lower()}"
    return (text or "").strip() or f"download pod {phase.lower()}"

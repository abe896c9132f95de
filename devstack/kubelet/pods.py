"""One worker thread per simulated pod: run its containers as processes, probe, write status."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from . import logs, network, runtime
from .events import PodEvents
from .kube import ApiError
from .probes import ProbeState, run_probe

if TYPE_CHECKING:
    from .agent import Kubelet

log = logging.getLogger(__name__)

PULL_BACKOFF_BASE_SECONDS = 10.0  # pkg/kubelet/kubelet.go: backOffPeriod
PULL_BACKOFF_MAX_SECONDS = 300.0  # MaxContainerBackOff
RETRY_CONFIG_SECONDS = 5.0  # CreateContainerConfigError / unbound PVC: retry like the kubelet
SIM_KUBELET_ANNOTATION = "devstack.inference.portal/runtime"  # devstack.cluster.stages
ATTACH_DETACH_COMPONENT = "attachdetach-controller"  # reports FailedAttachVolume upstream


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def multi_attach_forbidden(access_modes: list[str]) -> bool:
    """reconciler.go isMultiAttachForbidden for a PV: unknown modes or a ReadWriteMany /
    ReadOnlyMany mode allow attaching to several nodes; anything else (ReadWriteOnce) not."""
    return bool(access_modes) and not {"ReadWriteMany", "ReadOnlyMany"} & set(access_modes)


def attach_holders(node: str, users: list[dict[str, Any]]) -> list[str]:
    """Pods on other nodes that keep a single-node volume attached away from `node`.

    Upstream attaches the volume to whichever node the controller handles first and reports
    Multi-Attach for the rest. Here: a node with a Running user holds it; while no user runs
    yet, the node of the earliest-created user gets it (so two new pods never block each
    other). Empty: the volume can attach to `node`."""
    others = [u for u in users if u["spec"].get("nodeName") != node]
    if not others:
        return []
    names = sorted(str(u["metadata"]["name"]) for u in others)
    if any((u.get("status") or {}).get("phase") == "Running" for u in others):
        return names
    if any((u.get("status") or {}).get("phase") == "Running" for u in users):
        return []  # attached here already
    first = min(
        users,
        key=lambda u: (u["metadata"].get("creationTimestamp") or "", u["metadata"]["name"]),
    )
    return [] if first["spec"].get("nodeName") == node else names


def multi_attach_message(pv_name: str, pods: list[str]) -> str:
    """The FailedAttachVolume message of reconciler.go reportMultiAttachError (pods of the
    claim's own namespace; a claim is namespaced, so no "in different namespaces" part)."""
    return (
        f'Multi-Attach error for volume "{pv_name}" '
        f"Volume is already used by pod(s) {', '.join(sorted(pods))}"
    )


@dataclass
class Container:
    """Runtime state of one container of the pod (the API status is derived from it)."""

    spec: dict[str, Any]
    # tgi | vllm | sglang | portal | generic; None: an image this node does not have
    kind: str | None
    restart_count: int = 0
    ever_started: bool = False
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    started_at: str | None = None
    start_mono: float = 0.0
    exit_rc: int | None = None
    exited: bool = False
    killed_by_us: bool = False
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    terminated: dict[str, Any] | None = None  # final state (no restart)
    last_terminated: dict[str, Any] | None = None
    backoff_until: float = 0.0
    crashes: int = 0
    pull_failures: int = 0
    pull_backoff_until: float = 0.0
    started: bool = False
    ready: bool = False
    probes: dict[str, ProbeState] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return self.pid is not None and not self.exited


class PodWorker(threading.Thread):
    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.kubelet = kubelet
        self.cfg = kubelet.cfg
        self.kube = kubelet.kube
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.node: str = pod["spec"]["nodeName"]
        self._pod: dict[str, Any] | None = pod
        self._lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()  # kubelet shutdown
        self.pod_ip: str | None = None
        self.ip_released = False
        self.host_ip: str = ""
        self.start_time: str | None = (pod.get("status") or {}).get("startTime")
        self.prepared = False
        self.attached = False  # its ReadWriteOnce volumes may attach to this node
        self.pod_error: tuple[str, str] | None = None
        self.transitions: dict[str, tuple[str, str]] = {
            c["type"]: (c["status"], c.get("lastTransitionTime") or now_iso())
            for c in (pod.get("status") or {}).get("conditions") or []
        }
        self.last_status: dict[str, Any] | None = None
        opted_in = (meta.get("annotations") or {}).get(SIM_KUBELET_ANNOTATION) == "sim-kubelet"

        # Other images in an opted-in pod run their command as a plain local process.
        def kind(c: dict[str, Any]) -> str | None:
            return runtime.kind_of(c) or ("generic" if opted_in else None)

        self.containers = [Container(spec=c, kind=kind(c)) for c in pod["spec"]["containers"]]
        # Init containers run one after another before the app containers; native sidecars
        # (restartPolicy Always) are not simulated and reported as running.
        self.init_containers = [
            Container(spec=c, kind=kind(c) if c.get("restartPolicy") != "Always" else None)
            for c in pod["spec"].get("initContainers") or []
        ]
        self._restore(pod)
        self.events = PodEvents(self.kube, pod, self.node)
        self.dir = self.cfg.state_dir / "pods" / f"{self.namespace}_{self.pod_name}_{self.uid}"

    # --- lifecycle ------------------------------------------------------------------------

    def update(self, pod: dict[str, Any] | None) -> None:
        with self._lock:
            self._pod = pod
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    @property
    def pod(self) -> dict[str, Any] | None:
        with self._lock:
            return self._pod

    def run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("pod worker %s/%s crashed", self.namespace, self.pod_name)
            self._kill_all(grace=1.0)
        finally:
            self.kubelet.worker_done(self)

    def _loop(self) -> None:
        while True:
            self.wake.clear()
            pod = self.pod
            if self.stopping.is_set():
                self._shutdown()
                return
            if pod is None:  # deleted without us finalising (forced deletion)
                self._kill_all(grace=self.cfg.grace_cap)
                self._release()
                return
            try:
                if pod["metadata"].get("deletionTimestamp"):
                    self._terminate_and_finalize(pod)
                    return
                timeout = self._step(pod)
            except (ApiError, httpx.HTTPError, OSError, network.NetworkError, RuntimeError) as exc:
                # API hiccups must not take the pod's processes down: retry the pass.
                log.warning("%s/%s: %s; retrying", self.namespace, self.pod_name, exc)
                timeout = 2.0
            self.wake.wait(timeout)

    # --- one reconciliation pass ----------------------------------------------------------

    def _step(self, pod: dict[str, Any]) -> float:
        if self._terminal_phase(pod) and not any(c.running for c in self.containers):
            # Succeeded/Failed pods keep their status; only deletion is still to come.
            self._release_network()
            return 60.0
        if not self.prepared:
            self._prepare(pod)
        if not self.attached:
            conflict = self._multi_attach_error(pod)
            if conflict is not None:
                # The attach-detach controller's event; the pod waits in ContainerCreating
                # until the other node's pods are gone (then it retries and proceeds).
                self.events.emit(
                    "Warning", "FailedAttachVolume", conflict, component=ATTACH_DETACH_COMPONENT
                )
                self.write_status(pod)
                return RETRY_CONFIG_SECONDS
            self.attached = True
        now = time.monotonic()
        next_wake = now + self.cfg.resync
        initializing = self._init_step(pod)
        for ctr in self.init_containers:
            next_wake = min(next_wake, *self._due_times(ctr))
        for ctr in self.containers:
            if ctr.exited:
                self._handle_exit(pod, ctr)
            if initializing:
                ctr.waiting = ("PodInitializing", "")
                continue
            self._maybe_start(pod, ctr)
            if ctr.running:
                self._probe(pod, ctr)
            next_wake = min(next_wake, *self._due_times(ctr))
        self.write_status(pod)
        return max(0.05, next_wake - time.monotonic())

    def _init_step(self, pod: dict[str, Any]) -> bool:
        """Advance the init containers; True while the app containers must still wait."""
        for ctr in self.init_containers:
            if ctr.exited:
                self._handle_exit(pod, ctr, init=True)
            if ctr.terminated is not None:
                if ctr.terminated["exitCode"] == 0:
                    continue
                return True  # failed for good (restartPolicy Never): the pod is Failed
            if not self._image_ready(ctr):
                return True
            if ctr.kind is None:  # a native sidecar: not run here, as under KWOK
                ctr.ever_started, ctr.waiting = True, None
                ctr.started_at = ctr.started_at or now_iso()
                ctr.terminated = {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": ctr.started_at,
                    "finishedAt": now_iso(),
                }
                continue
            self._maybe_start(pod, ctr)
            return True
        return False

    def _multi_attach_error(self, pod: dict[str, Any]) -> str | None:
        """The attach-detach controller's refusal to attach a single-node volume to this node
        while pods on another node use it (pkg/controller/volume/attachdetach/reconciler/
        reconciler.go: isMultiAttachForbidden unless the PV allows ReadWriteMany or
        ReadOnlyMany; reportMultiAttachError's "Volume is already used by pod(s) ..." message,
        prefixed by GenerateMsg as `Multi-Attach error for volume "<pv>"`).

        None once nothing blocks, and always for a pod whose containers already ran (an
        attached volume stays attached, e.g. across a kubelet restart)."""
        if any(c.ever_started for c in [*self.init_containers, *self.containers]):
            return None
        for volume in pod["spec"].get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            pvc = self.kube.get(
                f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims/{claim}"
            )
            pv_name = ((pvc or {}).get("spec") or {}).get("volumeName")
            pv = self.kube.get(f"/api/v1/persistentvolumes/{pv_name}") if pv_name else None
            if pv is None:
                continue  # not bound yet: volume_sources keeps the pod waiting
            if not multi_attach_forbidden(pv["spec"].get("accessModes") or []):
                continue
            users = self.kubelet.pods_using_claim(self.namespace, claim)
            if not any(u["metadata"]["uid"] == self.uid for u in users):
                users.append(pod)
            holders = attach_holders(self.node, users)
            if holders:
                return multi_attach_message(str(pv_name), holders)
        return None

    def _inits_failed(self) -> bool:
        return any(
            c.terminated is not None and c.terminated["exitCode"] != 0 for c in self.init_containers
        )

    def _inits_succeeded(self) -> bool:
        return all(
            c.terminated is not None and c.terminated["exitCode"] == 0 for c in self.init_containers
        )

    def _due_times(self, ctr: Container) -> list[float]:
        times = [p.next_at for p in ctr.probes.values()] if ctr.running else []
        if ctr.backoff_until > time.monotonic():
            times.append(ctr.backoff_until)
        if ctr.waiting and ctr.waiting[0] in ("CreateContainerConfigError", "ContainerCreating"):
            times.append(time.monotonic() + RETRY_CONFIG_SECONDS)
        if ctr.waiting and ctr.waiting[0] == "ErrImagePull":
            times.append(time.monotonic() + 1.0)  # the next sync reports the back-off
        if ctr.waiting and ctr.waiting[0] == "ImagePullBackOff":
            times.append(ctr.pull_backoff_until)
        return times or [time.monotonic() + self.cfg.resync]

    def _terminal_phase(self, pod: dict[str, Any]) -> bool:
        managed = [c for c in self.containers if c.kind]
        if any(c.running for c in managed):
            return False
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return True
        if any(c.running for c in self.init_containers if c.kind):
            return False
        if self.prepared and self._inits_failed():
            return True
        return self.prepared and bool(managed) and all(c.terminated is not None for c in managed)

    def _restore(self, pod: dict[str, Any]) -> None:
        """Continue from the status a previous kubelet run wrote (restart counts, last state)."""
        status = pod.get("status") or {}
        statuses = {
            s["name"]: s
            for s in [
                *(status.get("containerStatuses") or []),
                *(status.get("initContainerStatuses") or []),
            ]
        }
        for ctr in self.init_containers:
            st = statuses.get(ctr.name) or {}
            done = (st.get("state") or {}).get("terminated")
            if done and done.get("exitCode") == 0:
                ctr.terminated, ctr.waiting, ctr.ever_started = done, None, True
        for ctr in self.containers:
            st = statuses.get(ctr.name)
            if not st:
                continue
            ctr.restart_count = int(st.get("restartCount", 0))
            ctr.last_terminated = (st.get("lastState") or {}).get("terminated")
            state = st.get("state") or {}
            ctr.ever_started = bool(
                "running" in state or "terminated" in state or ctr.last_terminated
            )
            if "terminated" in state and pod.get("status", {}).get("phase") in (
                "Succeeded",
                "Failed",
            ):
                ctr.terminated = state["terminated"]
                ctr.waiting = None

    def _prepare(self, pod: dict[str, Any]) -> None:
        node = self.kubelet.node_info(self.node)
        self.pod_ip = self.kubelet.allocate_ip(self.node, pod)
        self.host_ip = node.host_ip
        self.kubelet.ensure_node_network(self.node)
        network.add_pod_ip(self.node, self.pod_ip)
        self.start_time = self.start_time or now_iso()
        self.dir.mkdir(parents=True, exist_ok=True)
        for ctr in [*self.init_containers, *self.containers]:
            orphan = self.kubelet.claim_orphan(self.uid, ctr.name)
            if orphan is not None:
                self._adopt(pod, ctr, orphan)
        self.prepared = True

    def _adopt(self, pod: dict[str, Any], ctr: Container, orphan: dict[str, Any]) -> None:
        statuses = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
        st = statuses.get(ctr.name) or {}
        ctr.pid = int(orphan["pid"])
        ctr.started_at = orphan.get("startedAt") or now_iso()
        ctr.start_mono = time.monotonic()
        ctr.ever_started = True
        ctr.waiting = None
        ctr.restart_count = int(orphan.get("restartCount", ctr.restart_count))
        # Keep the reported readiness so a kubelet restart does not flap endpoints.
        ctr.started = bool(st.get("started", True))
        ctr.ready = bool(st.get("ready", False))
        self._init_probes(ctr, adopted=True)
        threading.Thread(target=self._watch_adopted, args=(ctr, ctr.pid), daemon=True).start()
        log.info("%s/%s: adopted %s pid %s", self.namespace, self.pod_name, ctr.name, ctr.pid)

    def _watch_adopted(self, ctr: Container, pid: int) -> None:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            fd = None
        if fd is not None:
            with contextlib.suppress(OSError):
                select.select([fd], [], [])
            os.close(fd)
        if ctr.pid == pid:
            ctr.exit_rc = None  # not our child: the exit code is not observable
            ctr.exited = True
            self.wake.set()

    # --- starting -------------------------------------------------------------------------

    def _base_env(self, ctr: Container) -> dict[str, str]:
        env = {k: os.environ[k] for k in runtime.HOST_ENV_KEYS if k in os.environ}
        env["PYTHONUNBUFFERED"] = "1"
        if ctr.kind in runtime.ENGINE_MARKERS:
            if ctr.kind == "tgi":
                # The TGI image's own ENV lines.
                env.update({"PORT": str(runtime.TGI_DEFAULT_PORT), "HF_HOME": "/data"})
            else:
                env["HOME"] = "/root"  # vLLM/SGLang images run as root, HF cache under ~
            env["HOSTNAME"] = self.pod_ip or ""
            env["PYTHONPATH"] = str(runtime.REPO_ROOT)  # so -m devstack.<engine>_simulator imports
        else:
            env["HOSTNAME"] = self.pod_name
            env["PYTHONPATH"] = runtime.APP_DIR
            env["HOME"] = "/root"
        return env

    def _launch_spec(self, pod: dict[str, Any], ctr: Container) -> runtime.LaunchSpec:
        objects = runtime.ObjectCache(self.kube, self.namespace)
        assert self.pod_ip is not None
        env = runtime.container_env(
            pod, ctr.spec, objects, self.pod_ip, self.host_ip, self._base_env(ctr)
        )
        sources = runtime.volume_sources(pod, self.kube, objects, self.dir)
        mounts = runtime.container_mounts(ctr.spec, sources, app_root=ctr.kind == "portal")
        in_pod_net = runtime.uses_pod_network(pod, ctr.spec)
        download = (
            runtime.download_argv(ctr.kind, ctr.spec, env)
            if ctr.kind in runtime.ENGINE_MARKERS
            else None
        )
        if download is not None:  # the engine image's download tool (a weight-download Job)
            argv = download
        elif ctr.kind in runtime.ENGINE_MARKERS:
            env["HOSTNAME"] = self.pod_ip
            faults = (pod["metadata"].get("annotations") or {}).get(runtime.FAULTS_ANNOTATION)
            if faults:
                env.update(self.kubelet.fault_env(faults))
            argv = runtime.engine_argv(ctr.kind, ctr.spec, env, self.pod_ip)
        else:
            argv = runtime.portal_argv(ctr.spec, env)
        # The portal image's WORKDIR is /app (= the checkout, bind-mounted); others run there too.
        default_dir = runtime.APP_DIR if ctr.kind == "portal" else str(runtime.REPO_ROOT)
        workdir = ctr.spec.get("workingDir") or default_dir
        return runtime.LaunchSpec(
            argv=argv,
            env=env,
            cwd=workdir,
            mounts=mounts,
            netns_prefix=network.exec_prefix(self.node) if in_pod_net else [],
            record_created=runtime.created_mountpoints_file(self.cfg.state_dir),
        )

    def _image_ready(self, ctr: Container) -> bool:
        """True when the node has the container's image; else the kubelet's pull failure.

        As pkg/kubelet/images/image_manager.go EnsureImageExists: a failed pull emits
        `Failed to pull image "<image>": <error>` and leaves the container waiting ErrImagePull;
        until the back-off (10 s, doubling to 300 s: flowcontrol.NewBackOff in kubelet.go)
        expires, syncs answer ImagePullBackOff `Back-off pulling image "<image>"` without
        pulling; kuberuntime adds `Error: <reason>` (kuberuntime_container.go startContainer).
        """
        image = str(ctr.spec.get("image") or "")
        if ctr.spec.get("restartPolicy") == "Always" or runtime.image_present(image, ctr.kind):
            return True
        now = time.monotonic()
        if now < ctr.pull_backoff_until:
            message = f'Back-off pulling image "{image}"'
            if ctr.waiting != ("ImagePullBackOff", message):
                ctr.waiting = ("ImagePullBackOff", message)
                self.events.emit("Normal", "BackOff", message, ctr.name)
                self.events.emit("Warning", "Failed", "Error: ImagePullBackOff", ctr.name)
            return False
        error = runtime.pull_error(image)
        self.events.emit("Normal", "Pulling", f'Pulling image "{image}"', ctr.name)
        self.events.emit("Warning", "Failed", f'Failed to pull image "{image}": {error}', ctr.name)
        self.events.emit("Warning", "Failed", "Error: ErrImagePull", ctr.name)
        ctr.waiting = ("ErrImagePull", error)
        delay = min(PULL_BACKOFF_BASE_SECONDS * 2**ctr.pull_failures, PULL_BACKOFF_MAX_SECONDS)
        ctr.pull_backoff_until = now + delay
        ctr.pull_failures += 1
        return False

    def _maybe_start(self, pod: dict[str, Any], ctr: Container) -> None:
        if ctr.running or ctr.terminated is not None:
            return
        if not self._image_ready(ctr):
            return
        if time.monotonic() < ctr.backoff_until:
            if ctr.waiting and ctr.waiting[0] == "CrashLoopBackOff":
                message = f"Back-off restarting failed container {ctr.name} in pod {self.pod_name}"
                self.events.emit("Warning", "BackOff", message, ctr.name)
            return
        try:
            spec = self._launch_spec(pod, ctr)
        except runtime.ConfigError as exc:
            ctr.waiting = ("CreateContainerConfigError", str(exc))
            self.events.emit("Warning", "Failed", f"Error: {exc}", ctr.name)
            return
        except runtime.NotReadyError as exc:
            ctr.waiting = ("ContainerCreating", str(exc))
            return
        if ctr.ever_started:
            ctr.restart_count += 1
        cdir = self.dir / ctr.name
        cdir.mkdir(parents=True, exist_ok=True)
        # One log per instance, as /var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log;
        # the runtime's own messages (mount or namespace failures) go beside it.
        spec.log_file = logs.instance_log(cdir, ctr.restart_count)
        spec.log_file.unlink(missing_ok=True)  # a stale file of an earlier kubelet run
        logs.prune_instances(cdir, keep_from=ctr.restart_count - 1)
        command = spec.command(cdir / "launch.json")
        proc = runtime.spawn(command, cdir / f"{ctr.restart_count}.runtime.log")
        ctr.proc, ctr.pid, ctr.exited, ctr.exit_rc = proc, proc.pid, False, None
        ctr.killed_by_us = False
        ctr.ever_started = True
        ctr.started_at = now_iso()
        ctr.start_mono = time.monotonic()
        ctr.waiting = None
        ctr.started = "startupProbe" not in ctr.spec
        ctr.ready = False
        self._init_probes(ctr)
        self.kubelet.write_pid_file(self, ctr)
        image = ctr.spec.get("image", "")
        self.events.emit(
            "Normal", "Pulled", f'Container image "{image}" already present on machine', ctr.name
        )
        self.events.emit("Normal", "Created", f"Created container: {ctr.name}", ctr.name)
        self.events.emit("Normal", "Started", f"Started container {ctr.name}", ctr.name)
        threading.Thread(target=self._wait_child, args=(ctr, proc), daemon=True).start()
        log.info(
            "%s/%s: started %s (pid %s, restart %s): %s",
            self.namespace,
            self.pod_name,
            ctr.name,
            proc.pid,
            ctr.restart_count,
            spec.describe(),
        )

    def _wait_child(self, ctr: Container, proc: subprocess.Popen[bytes]) -> None:
        rc = proc.wait()
        if ctr.proc is proc:
            ctr.exit_rc = rc
            ctr.exited = True
            self.wake.set()

    def _init_probes(self, ctr: Container, adopted: bool = False) -> None:
        ctr.probes = {}
        base = time.monotonic()
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            spec = ctr.spec.get(kind)
            if spec:
                delay = 0.0 if adopted else float(spec.get("initialDelaySeconds", 0))
                ctr.probes[kind] = ProbeState(spec=spec, next_at=base + delay)

    # --- exits, back-off, probes ----------------------------------------------------------

    def _handle_exit(self, pod: dict[str, Any], ctr: Container, init: bool = False) -> None:
        ctr.exited = False
        ran_for = time.monotonic() - ctr.start_mono
        if ctr.exit_rc is None:
            code, reason = 255, "Error"
            message = "exit code not observable (process adopted after a kubelet restart)"
        else:
            code = runtime.exit_code(ctr.exit_rc)
            message = ""
            # "OOMKilled" comes only from the runtime's cgroup OOM event (containerd's shim
            # watches memory.events and the CRI plugin sets the reason on TaskOOM), never from
            # the exit status: a process that SIGKILLs itself (SGLang's launcher after a
            # scheduler failure) exits 137 with reason Error. This kubelet runs no memory
            # cgroup, so it never observes an OOM kill.
            reason = "Completed" if code == 0 else "Error"
        terminated = {
            "exitCode": code,
            "reason": reason,
            "startedAt": ctr.started_at,
            "finishedAt": now_iso(),
            "containerID": f"sim://{self.uid}/{ctr.name}/{ctr.restart_count}",
        }
        if message:
            terminated["message"] = message
        log.info("%s/%s: %s exited %s (%s)", self.namespace, self.pod_name, ctr.name, code, reason)
        ctr.proc, ctr.pid = None, None
        ctr.started = ctr.ready = False
        ctr.probes = {}
        self.kubelet.remove_pid_file(self.uid, ctr.name)
        policy = pod["spec"].get("restartPolicy", "Always")
        if init and policy == "Always":
            policy = "OnFailure"  # an init container that succeeded is never run again
        if policy == "Always" or (policy == "OnFailure" and code != 0):
            # Kubelet resets the back-off once a container ran long enough.
            ctr.crashes = 1 if ran_for > 2 * self.cfg.backoff_max else ctr.crashes + 1
            delay = min(self.cfg.backoff_base * 2 ** (ctr.crashes - 1), self.cfg.backoff_max)
            ctr.backoff_until = time.monotonic() + delay
            ctr.last_terminated = terminated
            ctr.waiting = (
                "CrashLoopBackOff",
                f"back-off {delay:g}s restarting failed container={ctr.name} "
                f"pod={self.pod_name}_{self.namespace}({self.uid})",
            )
        else:
            ctr.terminated = terminated
            ctr.waiting = None

    def _run_probe(self, kind: str, state: ProbeState, ctr: Container, host: str) -> bool:
        ok, detail = run_probe(state.spec, ctr.spec, host, ctr.pid)
        state.record(ok, time.monotonic())
        if not ok:
            label = kind.removesuffix("Probe").capitalize()
            self.events.emit("Warning", "Unhealthy", f"{label} probe failed: {detail}", ctr.name)
        return ok

    def _probe(self, pod: dict[str, Any], ctr: Container) -> None:
        now = time.monotonic()
        host = self.pod_ip if runtime.uses_pod_network(pod, ctr.spec) else "127.0.0.1"
        assert host is not None
        startup = ctr.probes.get("startupProbe")
        if not ctr.started:
            if startup and startup.next_at <= now:
                if self._run_probe("startupProbe", startup, ctr, host):
                    ctr.started = True
                    for kind in ("livenessProbe", "readinessProbe"):
                        if kind in ctr.probes:
                            ctr.probes[kind].next_at = time.monotonic()
                elif startup.failures >= startup.failure_threshold:
                    self._kill(ctr, f"Container {ctr.name} failed startup probe, will be restarted")
            return
        liveness = ctr.probes.get("livenessProbe")
        if liveness and liveness.next_at <= now:
            self._run_probe("livenessProbe", liveness, ctr, host)
            if liveness.failures >= liveness.failure_threshold:
                self._kill(ctr, f"Container {ctr.name} failed liveness probe, will be restarted")
                return
        readiness = ctr.probes.get("readinessProbe")
        if readiness is None:
            ctr.ready = True
        elif readiness.next_at <= now:
            self._run_probe("readinessProbe", readiness, ctr, host)
            if readiness.successes >= readiness.success_threshold:
                ctr.ready = True
            elif readiness.failures >= readiness.failure_threshold:
                ctr.ready = False

    def _grace(self, pod: dict[str, Any] | None) -> float:
        grace = 30.0
        if pod is not None:
            grace = float(
                pod["metadata"].get("deletionGracePeriodSeconds")
                or pod["spec"].get("terminationGracePeriodSeconds", 30)
            )
        return min(grace, self.cfg.grace_cap)

    def _kill(self, ctr: Container, why: str) -> None:
        log.info("%s/%s: killing %s: %s", self.namespace, self.pod_name, ctr.name, why)
        self.events.emit("Normal", "Killing", why, ctr.name)
        ctr.killed_by_us = True
        ctr.ready = False
        self._stop_processes([ctr], self._grace(self.pod))

    def _stop_processes(self, ctrs: list[Container], grace: float) -> None:
        """SIGTERM, wait up to `grace`, SIGKILL: all given containers in parallel."""
        procs = [(c, c.pid) for c in ctrs if c.pid is not None and c.pid > 0 and not c.exited]
        for _, pid in procs:
            runtime.signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for ctr, pid in procs:
            while time.monotonic() < deadline and runtime.proc_start_time(pid) is not None:
                if ctr.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        ctr.proc.wait(timeout=max(0.01, deadline - time.monotonic()))
                    break
                time.sleep(0.1)  # adopted process: no wait() available
        for ctr, pid in procs:
            if runtime.proc_start_time(pid) is not None:
                runtime.signal_group(pid, signal.SIGKILL)
                if ctr.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        ctr.proc.wait(timeout=5)

    def _kill_all(self, grace: float) -> None:
        everything = [*self.init_containers, *self.containers]
        self._stop_processes([c for c in everything if c.kind], grace)
        for ctr in everything:
            self.kubelet.remove_pid_file(self.uid, ctr.name)

    # --- termination ----------------------------------------------------------------------

    def _release_network(self) -> None:
        if self.pod_ip and not self.ip_released:
            self.ip_released = True
            with contextlib.suppress(network.NetworkError):
                network.remove_pod_ip(self.node, self.pod_ip)
            self.kubelet.release_ip(self.node, self.pod_ip)

    def _release(self) -> None:
        """Free the IP and the pod's folder: volumes, launch specs, container logs.

        The kubelet removes /var/log/pods/<ns>_<pod>_<uid> with the pod; `kubectl logs` of a
        deleted pod is a 404 from the apiserver anyway.
        """
        self._release_network()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _terminate_and_finalize(self, pod: dict[str, Any]) -> None:
        grace = self._grace(pod)
        log.info("%s/%s: terminating (grace %.0fs)", self.namespace, self.pod_name, grace)
        for ctr in self.containers:
            if ctr.running and ctr.kind:
                self.events.emit("Normal", "Killing", f"Stopping container {ctr.name}", ctr.name)
        self._kill_all(grace)
        self._release()
        self.kube.delete(
            f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}",
            {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
        )
        self.kubelet.mark_finalized(self.uid)

    def _shutdown(self) -> None:
        """Kubelet exit: stop the processes and say so in the status (no stale Ready pods)."""
        running = [c for c in self.containers if c.running and c.kind]
        self._kill_all(self.cfg.grace_cap)
        pod = self.pod
        if pod is None or not running:
            return
        for ctr in running:
            # Recorded as a termination so the next kubelet run counts the restart.
            ctr.last_terminated = {
                "exitCode": runtime.exit_code(ctr.proc.returncode) if ctr.proc else 137,
                "reason": "Error",
                "message": "stopped with the simulated kubelet",
                "startedAt": ctr.started_at,
                "finishedAt": now_iso(),
                "containerID": f"sim://{self.uid}/{ctr.name}/{ctr.restart_count}",
            }
            ctr.pid, ctr.proc, ctr.exited = None, None, False
            ctr.started = ctr.ready = False
            ctr.waiting = ("ContainerCreating", "simulated kubelet stopped")
        with contextlib.suppress(ApiError, httpx.HTTPError, OSError):
            self.write_status(pod)

    # --- status -----------------------------------------------------------------------------

    def _container_status(self, ctr: Container) -> dict[str, Any]:
        state: dict[str, Any]
        if ctr.running:
            state = {"running": {"startedAt": ctr.started_at}}
        elif ctr.terminated is not None:
            state = {"terminated": ctr.terminated}
        else:
            reason, message = ctr.waiting or ("ContainerCreating", "")
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        status: dict[str, Any] = {
            "name": ctr.name,
            "image": ctr.spec.get("image", ""),
            "imageID": "",
            "ready": ctr.ready and ctr.running,
            "started": ctr.started and ctr.running,
            "restartCount": ctr.restart_count,
            "state": state,
            "lastState": {"terminated": ctr.last_terminated} if ctr.last_terminated else {},
        }
        if ctr.running or ctr.terminated is not None:
            status["containerID"] = f"sim://{self.uid}/{ctr.name}/{ctr.restart_count}"
        return status

    def _phase(self, pod: dict[str, Any]) -> str:
        if self._inits_failed():
            return "Failed"
        if not self._inits_succeeded():
            return "Pending"
        managed = [c for c in self.containers if c.kind]
        finals = [c.terminated for c in managed if c.terminated is not None]
        if managed and len(finals) == len(managed):
            return "Succeeded" if all(t["exitCode"] == 0 for t in finals) else "Failed"
        if any(c.ever_started for c in managed):
            return "Running"
        return "Pending"

    def _condition(self, ctype: str, ok: bool, reason: str = "") -> dict[str, Any]:
        value = "True" if ok else "False"
        previous = self.transitions.get(ctype)
        if previous is None or previous[0] != value:
            self.transitions[ctype] = (value, now_iso())
        cond: dict[str, Any] = {
            "type": ctype,
            "status": value,
            "lastTransitionTime": self.transitions[ctype][1],
            "lastProbeTime": None,
        }
        if reason and not ok:
            cond["reason"] = reason
        return cond

    def build_status(self, pod: dict[str, Any]) -> dict[str, Any]:
        phase = self._phase(pod)
        statuses = [self._container_status(c) for c in self.containers]
        containers_ready = all(s["ready"] for s in statuses)
        gates = [g["conditionType"] for g in pod["spec"].get("readinessGates") or []]
        current = {
            c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []
        }
        gates_ok = all(current.get(g) == "True" for g in gates)
        terminal = phase in ("Succeeded", "Failed")
        reason = "PodCompleted" if terminal else "ContainersNotReady"
        conditions = [
            self._condition("PodReadyToStartContainers", self.prepared and not terminal),
            self._condition("Initialized", self._inits_succeeded(), "ContainersNotInitialized"),
            self._condition("ContainersReady", containers_ready, reason),
            self._condition("Ready", containers_ready and gates_ok, reason),
        ]
        if "PodScheduled" not in current:
            conditions.append(self._condition("PodScheduled", True))
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": statuses,
            "initContainerStatuses": [self._container_status(c) for c in self.init_containers]
            or None,
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "startTime": self.start_time,
            "qosClass": (pod.get("status") or {}).get("qosClass"),
        }
        if self.pod_ip:
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
        return {k: v for k, v in status.items() if v is not None}

    def write_status(self, pod: dict[str, Any]) -> None:
        status = self.build_status(pod)
        if status == self.last_status:
            return
        try:
            self.kube.patch(
                f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}/status",
                {"metadata": {"uid": self.uid}, "status": status},
                field_manager="kubelet",  # managedFields show who wrote the status, as upstream
            )
            self.last_status = status
        except ApiError as exc:
            if exc.status not in (404, 409):
                log.warning("%s/%s: status patch failed: %s", self.namespace, self.pod_name, exc)

    def log_target(self) -> logs.LogTarget:
        """Container statuses as this worker sees them now (fresher than the API's copy)."""
        status = {
            "containerStatuses": [self._container_status(c) for c in self.containers],
            "initContainerStatuses": [self._container_status(c) for c in self.init_containers],
        }
        by_name = {c.name: c for c in [*self.init_containers, *self.containers]}

        def is_running(container: str, instance: int) -> bool:
            ctr = by_name.get(container)
            return ctr is not None and ctr.running and ctr.restart_count == instance

        return logs.LogTarget(
            pod_name=self.pod_name, status=status, directory=self.dir, is_running=is_running
        )

    def pid_record(self, ctr: Container) -> dict[str, Any]:
        assert ctr.pid is not None
        return {
            "pid": ctr.pid,
            "start": runtime.proc_start_time(ctr.pid),
            "uid": self.uid,
            "namespace": self.namespace,
            "pod": self.pod_name,
            "container": ctr.name,
            "node": self.node,
            "podIP": self.pod_ip,
            "restartCount": ctr.restart_count,
            "startedAt": ctr.started_at,
        }


def read_pid_file(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

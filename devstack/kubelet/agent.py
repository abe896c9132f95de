"""The simulated kubelet: watches pods on KWOK nodes that it owns and runs them as processes."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import logs, network, runtime
from .kube import KubeClient, Reflector
from .pods import Container, PodWorker, read_pid_file

log = logging.getLogger(__name__)

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"


def _is_sim_pod(pod: dict[str, Any]) -> bool:
    """The colleague-owned rule (KWOK skips exactly these pods); a local copy as fallback."""
    try:
        from devstack.cluster.stages import is_sim_kubelet_pod
    except ImportError:
        images = [c.get("image") or "" for c in pod["spec"].get("containers") or []]
        return any(runtime.kind_of({"image": image}) for image in images)
    return bool(is_sim_kubelet_pod(pod))


@dataclass
class KubeletConfig:
    kubeconfig: Path
    state_dir: Path
    volumes_dir: Path
    backoff_base: float = 10.0
    backoff_max: float = 300.0
    grace_cap: float = 5.0
    resync: float = 30.0
    provisioner: bool = True
    # The kubelet's HTTPS port (kubelet flags --address/--port/--tls-*/--client-ca-file): the
    # apiserver reaches it for pods/log at the address and port the nodes advertise.
    address: str = "127.0.0.1"
    port: int = 0  # 0: no server
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    client_ca_file: Path | None = None


@dataclass
class NodeInfo:
    name: str
    pod_cidr: str
    index: int
    host_ip: str


class Kubelet:
    def __init__(self, cfg: KubeletConfig) -> None:
        self.cfg = cfg
        self.kube = KubeClient(cfg.kubeconfig)
        self.stop_event = threading.Event()
        self._lock = threading.RLock()
        self.workers: dict[str, PodWorker] = {}
        self.finalized: set[str] = set()
        self.allocated: dict[str, set[str]] = {}
        self.networks_ready: set[str] = set()
        self.orphans: dict[tuple[str, str], dict[str, Any]] = {}
        self.nodes = Reflector(
            self.kube, "/api/v1/nodes", self._on_node, resync=cfg.resync, stop=self.stop_event
        )
        self.pods = Reflector(
            self.kube,
            "/api/v1/pods",
            self._on_pod,
            resync=cfg.resync,
            params={"fieldSelector": "spec.nodeName!="},
            stop=self.stop_event,
        )
        self.pid_dir = cfg.state_dir / "pids"

    # --- nodes and addresses ---------------------------------------------------------------

    def _on_node(self, event: str, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        if event == "DELETED":
            with self._lock:
                self.networks_ready.discard(name)
            with contextlib.suppress(network.NetworkError):
                network.teardown_node(name)

    def is_sim_node(self, name: str) -> bool:
        node = self.nodes.get(f"/{name}")
        if node is None:
            return False
        annotations = node["metadata"].get("annotations") or {}
        cidr = node["spec"].get("podCIDR")
        # Only a /24 of the pod network can get a node network namespace and host route.
        return KWOK_NODE_ANNOTATION in annotations and bool(cidr) and network.in_pod_network(cidr)

    def node_info(self, name: str) -> NodeInfo:
        node = self.nodes.get(f"/{name}")
        if node is None:
            raise RuntimeError(f"node {name} unknown")
        cidr = node["spec"]["podCIDR"]
        index = network.index_for_cidr(cidr)
        addresses = (node.get("status") or {}).get("addresses") or []
        internal = [a["address"] for a in addresses if a.get("type") == "InternalIP"]
        # Without a reported node address, the namespace's own transit address is the node.
        host_ip = internal[0] if internal else network.transit_addresses(index)[1]
        return NodeInfo(name=name, pod_cidr=cidr, index=index, host_ip=host_ip)

    def ensure_node_network(self, name: str) -> None:
        with self._lock:
            if name in self.networks_ready and network.netns_exists(network.netns_name(name)):
                return
            info = self.node_info(name)
            network.ensure_node_network(name, info.index, info.pod_cidr)
            self.networks_ready.add(name)

    def allocate_ip(self, node_name: str, pod: dict[str, Any]) -> str:
        """Our own pod IP: KWOK's pod stages (which allocate IPs) skip the pods we run.

        KWOK hands out addresses upwards from .1 of the node's podCIDR; we take the highest free
        address, skipping every IP any pod on the node reports, so the two never collide.
        """
        info = self.node_info(node_name)
        cidr = ipaddress.ip_network(info.pod_cidr)
        with self._lock:
            mine = self.allocated.setdefault(node_name, set())
            current = (pod.get("status") or {}).get("podIP")
            if current and ipaddress.ip_address(current) in cidr:
                mine.add(current)
                return str(current)
            used = set(mine)
            for other in self.pods.items():
                if other["spec"].get("nodeName") == node_name:
                    used.update(ip["ip"] for ip in (other.get("status") or {}).get("podIPs") or [])
                    if (other.get("status") or {}).get("podIP"):
                        used.add(other["status"]["podIP"])
            for candidate in reversed(list(cidr.hosts())):
                ip = str(candidate)
                if ip not in used:
                    mine.add(ip)
                    return ip
        raise RuntimeError(f"no free pod IP on {node_name}")

    def pods_using_claim(self, namespace: str, claim: str) -> list[dict[str, Any]]:
        """Scheduled pods that use the claim and have not finished: the attach-detach
        controller's desired state keeps their volume attached to their node."""
        users = []
        for pod in self.pods.items():
            spec, meta = pod["spec"], pod["metadata"]
            if meta["namespace"] != namespace or not spec.get("nodeName"):
                continue
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            claims = {
                (v.get("persistentVolumeClaim") or {}).get("claimName")
                for v in spec.get("volumes") or []
            }
            if claim in claims:
                users.append(pod)
        return users

    def release_ip(self, node_name: str, ip: str) -> None:
        with self._lock:
            self.allocated.get(node_name, set()).discard(ip)

    def fault_env(self, annotation: str) -> dict[str, str]:
        try:
            from devstack.tgi_simulator import faults
        except ImportError:
            return {"SIM_FAULTS": annotation}
        parse = getattr(faults, "parse_faults", None)
        if callable(parse):
            try:
                parse(annotation)
            except ValueError as exc:
                log.warning(
                    "invalid %s annotation %r: %s", runtime.FAULTS_ANNOTATION, annotation, exc
                )
        return {getattr(faults, "FAULTS_ENV", "SIM_FAULTS"): annotation}

    # --- pods ------------------------------------------------------------------------------

    def _on_pod(self, event: str, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        with self._lock:
            worker = self.workers.get(uid)
            if event == "DELETED":
                self.finalized.discard(uid)
                if worker is not None:
                    worker.update(None)
                return
            if worker is not None:
                worker.update(pod)
                return
            if self.stop_event.is_set() or uid in self.finalized:
                return
            if not (self.is_sim_node(spec.get("nodeName", "")) and _is_sim_pod(pod)):
                return
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed") and not meta.get("deletionTimestamp"):
                return  # finished before we (re)started: nothing to run
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
        worker.start()

    def worker_done(self, worker: PodWorker) -> None:
        with self._lock:
            if self.workers.get(worker.uid) is worker:
                del self.workers[worker.uid]

    def mark_finalized(self, uid: str) -> None:
        with self._lock:
            self.finalized.add(uid)

    # --- pid files, adoption ---------------------------------------------------------------

    def _pid_path(self, uid: str, container: str) -> Path:
        return self.pid_dir / f"{uid}--{container}.json"

    def write_pid_file(self, worker: PodWorker, ctr: Container) -> None:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self._pid_path(worker.uid, ctr.name).write_text(json.dumps(worker.pid_record(ctr)))

    def remove_pid_file(self, uid: str, container: str) -> None:
        self._pid_path(uid, container).unlink(missing_ok=True)

    def _load_orphans(self) -> None:
        """Processes a previous kubelet run left behind (it crashed or was SIGKILLed)."""
        if not self.pid_dir.is_dir():
            return
        for path in self.pid_dir.glob("*.json"):
            record = read_pid_file(path)
            alive = (
                record is not None
                and record.get("start") is not None
                and runtime.proc_start_time(int(record["pid"])) == record["start"]
            )
            if alive and record is not None:
                self.orphans[(record["uid"], record["container"])] = record
            else:
                path.unlink(missing_ok=True)

    def claim_orphan(self, uid: str, container: str) -> dict[str, Any] | None:
        with self._lock:
            return self.orphans.pop((uid, container), None)

    def _reap_unclaimed(self) -> None:
        with self._lock:
            claimable = {w.uid for w in self.workers.values()}
            leftovers = [o for k, o in self.orphans.items() if k[0] not in claimable]
            for record in leftovers:
                self.orphans.pop((record["uid"], record["container"]), None)
        for record in leftovers:
            log.info(
                "stopping orphaned process %s of %s/%s",
                record["pid"],
                record["namespace"],
                record["pod"],
            )
            runtime.signal_group(int(record["pid"]), signal.SIGKILL)
            self.remove_pid_file(record["uid"], record["container"])
            if record.get("podIP") and record.get("node"):
                with contextlib.suppress(network.NetworkError):
                    network.remove_pod_ip(record["node"], record["podIP"])

    # --- container logs --------------------------------------------------------------------

    def log_target(self, namespace: str, name: str) -> logs.LogTarget | None:
        """The pod as this kubelet knows it: its worker's live state, else the API's status."""
        with self._lock:
            worker = next(
                (
                    w
                    for w in self.workers.values()
                    if w.namespace == namespace and w.pod_name == name
                ),
                None,
            )
        if worker is not None:
            return worker.log_target()
        pod = self.pods.get(f"{namespace}/{name}")
        if pod is None:
            return None
        uid = pod["metadata"]["uid"]
        return logs.LogTarget(
            pod_name=name,
            status=pod.get("status") or {},
            directory=self.cfg.state_dir / "pods" / f"{namespace}_{name}_{uid}",
            is_running=lambda _container, _instance: False,
        )

    def _start_log_server(self) -> logs.LogServer | None:
        cfg = self.cfg
        if not cfg.port or cfg.tls_cert_file is None or cfg.tls_private_key_file is None:
            return None
        server = logs.LogServer(
            (cfg.address, cfg.port),
            self.log_target,
            cert_file=cfg.tls_cert_file,
            key_file=cfg.tls_private_key_file,
            client_ca_file=cfg.client_ca_file,
        )
        server.start()
        log.info("serving container logs on https://%s:%d", cfg.address, cfg.port)
        return server

    # --- main loop -------------------------------------------------------------------------

    def _prune_pod_dirs(self, max_age: float = 86400.0) -> None:
        """Log folders of pods finished more than a day ago (a kubelet's log GC, simplified)."""
        active = {r["uid"] for r in self.orphans.values()}
        cutoff = time.time() - max_age
        for pod_dir in (self.cfg.state_dir / "pods").glob("*"):
            uid = pod_dir.name.rsplit("_", 1)[-1]
            if uid not in active and pod_dir.stat().st_mtime < cutoff:
                shutil.rmtree(pod_dir, ignore_errors=True)

    def run(self) -> None:
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self._load_orphans()
        self._prune_pod_dirs()
        provisioner = None
        if self.cfg.provisioner:
            from .provisioner import LocalPathProvisioner

            provisioner = LocalPathProvisioner(self.kube, self.cfg.volumes_dir, self.stop_event)
            provisioner.start()
        log_server = self._start_log_server()
        self.nodes.start()
        self.nodes.synced.wait()
        self.pods.start()
        while not self.stop_event.is_set() and not self.pods.synced.wait(1.0):
            pass
        log.info("simulated kubelet running (%d pod workers)", len(self.workers))
        # Workers claim their orphans while preparing; give them one resync period.
        self.stop_event.wait(min(self.cfg.resync, 10.0))
        self._reap_unclaimed()
        while not self.stop_event.wait(self.cfg.resync):
            self._housekeeping()
        self._shutdown()
        if log_server is not None:
            log_server.shutdown()
            log_server.server_close()

    def _housekeeping(self) -> None:
        """Drop pod IPs in our namespaces that no live pod of ours owns any more."""
        with self._lock:
            nodes = set(self.networks_ready)
        for node in nodes:
            listed = network.list_pod_ips(node)
            # An address is a pod's from allocate_ip (under this lock) until release_ip, which
            # follows its removal. Deciding and removing under the lock means a pod allocated
            # an address meanwhile cannot lose it (a snapshot of the workers' IPs taken before
            # the listing once removed a new pod's address, which then failed to bind).
            with self._lock:
                allocated = set(self.allocated.get(node, set()))
                for ip in listed - allocated:
                    with contextlib.suppress(network.NetworkError):
                        network.remove_pod_ip(node, ip)

    def stop(self) -> None:
        self.stop_event.set()

    def _shutdown(self) -> None:
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join(timeout=self.cfg.grace_cap + 8)
        log.info("simulated kubelet stopped")

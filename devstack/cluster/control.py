"""Orchestration of the local control plane: up / down / status."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.ports import PortOwner

from . import autoscaler, build, config, nodes, pki, prometheus, stages
from .processes import (
    HealthProbe,
    ProcessSpec,
    check_health,
    client_tls,
    ensure_running,
    file_lock,
    find_processes,
    foreign_owner,
    insecure_tls,
    running_pid,
    stale_reason,
    stop,
    terminate,
)

KUBELET_MODULE = "devstack.kubelet"
KUBELET_ENTRY_POINT = "devstack.kubelet.__main__"
KUBELET_NETWORK_MODULE = "devstack.kubelet.network"
COMPONENT_ORDER = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "karpenter",
    "prometheus",
    "kubelet",
)


# The loopback ports each component listens on.
PORTS = {
    "etcd": (config.ETCD_CLIENT_PORT, config.ETCD_PEER_PORT),
    "kube-apiserver": (config.APISERVER_PORT,),
    "kube-controller-manager": (config.CONTROLLER_MANAGER_PORT,),
    "kube-scheduler": (config.SCHEDULER_PORT,),
    "kwok": (config.KWOK_PORT,),
    "karpenter": (config.KARPENTER_METRICS_PORT, config.KARPENTER_HEALTH_PORT),
    "prometheus": (config.PROMETHEUS_PORT,),
    "kubelet": (config.KUBELET_PORT,),
}


@dataclass(frozen=True)
class ClusterInfo:
    """Connection details handed to tests, the ./dev script and other tools."""

    kubeconfig: Path
    server: str
    ca_file: Path
    admin_cert_file: Path
    admin_key_file: Path
    prometheus_url: str
    kubernetes_version: str = config.KUBERNETES_VERSION
    etcd_version: str = config.ETCD_VERSION
    kwok_version: str = config.KWOK_VERSION

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}


def cluster_info(layout: config.Layout | None = None) -> ClusterInfo:
    layout = layout or config.default_layout()
    return ClusterInfo(
        kubeconfig=layout.kubeconfig,
        server=f"https://{config.HOST}:{config.APISERVER_PORT}",
        ca_file=layout.pki / "ca.crt",
        admin_cert_file=layout.pki / "admin.crt",
        admin_key_file=layout.pki / "admin.key",
        prometheus_url=f"http://{config.HOST}:{config.PROMETHEUS_PORT}",
    )


def kubelet_available() -> bool:
    """The simulated kubelet is optional: it is started only once its package exists."""
    try:
        return importlib.util.find_spec(KUBELET_ENTRY_POINT) is not None
    except ImportError:
        return False


def _python_path() -> str:
    """The checkout first, so `-m devstack.kubelet` resolves to this repository's code."""
    existing = os.environ.get("PYTHONPATH")
    return os.pathsep.join(p for p in (str(config.REPO_ROOT), existing) if p)


def _bin(name: str) -> str:
    return str(build.binary_path(name))


def component_specs(layout: config.Layout) -> dict[str, ProcessSpec]:
    """Command lines of all components, in start order."""
    p = layout.pki
    host = config.HOST
    # Before the PKI exists (status on a fresh checkout) the probes simply fail.
    have_pki = (p / "admin.crt").exists() and (p / "admin.key").exists()
    api_tls = client_tls(p / "ca.crt", p / "admin.crt", p / "admin.key") if have_pki else None
    insecure = insecure_tls()
    api = f"https://{host}:{config.APISERVER_PORT}"
    etcd_url = f"http://{host}:{config.ETCD_CLIENT_PORT}"
    peer_url = f"http://{host}:{config.ETCD_PEER_PORT}"

    def spec(name: str, argv: list[str], probes: list[HealthProbe], **kw: object) -> ProcessSpec:
        kw.setdefault("ports", PORTS.get(name, ()))
        return ProcessSpec(
            name=name,
            argv=argv,
            log_file=layout.log_file(name),
            pid_file=layout.pid_file(name),
            probes=probes,
            cwd=layout.root,
            **kw,  # type: ignore[arg-type]
        )

    cm_kubeconfig = str(layout.component_kubeconfig(pki.CONTROLLER_MANAGER.name))
    sched_kubeconfig = str(layout.component_kubeconfig(pki.SCHEDULER.name))
    specs = [
        spec(
            "etcd",
            [
                _bin("etcd"),
                "--name=portal-dev",
                f"--data-dir={layout.etcd_data}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=portal-dev={peer_url}",
                "--initial-cluster-state=new",
                # Throwaway dev data: skipping fsync makes the 2,000-pod runs far faster.
                "--unsafe-no-fsync",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
            [HealthProbe(f"{etcd_url}/health", expect_in_body='"health":"true"')],
        ),
        spec(
            "kube-apiserver",
            [
                _bin("kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={host}",
                f"--advertise-address={host}",
                f"--secure-port={config.APISERVER_PORT}",
                f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                f"--service-account-issuer={config.SERVICE_ACCOUNT_ISSUER}",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={config.SERVICE_CLUSTER_IP_RANGE}",
                f"--requestheader-client-ca-file={p / 'ca.crt'}",
                f"--requestheader-allowed-names={pki.FRONT_PROXY.common_name}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={p / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={p / 'front-proxy-client.key'}",
                # No real kubelets/endpoints for the apiserver itself (127.0.0.1 is refused there).
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",  # local: no request queueing surprises
                "--max-requests-inflight=1000",
                "--max-mutating-requests-inflight=500",
                "--profiling=false",
                # pods/log: the apiserver dials the node's kubelet endpoint (the simulated
                # kubelet, devstack.kubelet.logs) with its own client certificate and checks
                # the kubelet's serving certificate against the cluster CA.
                f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={p / 'ca.crt'}",
                f"--kubelet-preferred-address-types={config.KUBELET_ADDRESS_TYPE},"
                "Hostname,InternalIP,ExternalDNS,ExternalIP",
            ],
            [
                HealthProbe(f"{api}/livez", api_tls),
                HealthProbe(f"{api}/readyz", api_tls),
            ],
            ready_timeout=90.0,
        ),
        spec(
            "kube-controller-manager",
            [
                _bin("kube-controller-manager"),
                f"--kubeconfig={cm_kubeconfig}",
                f"--authentication-kubeconfig={cm_kubeconfig}",
                f"--authorization-kubeconfig={cm_kubeconfig}",
                f"--bind-address={host}",
                f"--secure-port={config.CONTROLLER_MANAGER_PORT}",
                f"--service-account-private-key-file={p / 'sa.key'}",
                f"--root-ca-file={p / 'ca.crt'}",
                f"--cluster-signing-cert-file={p / 'ca.crt'}",
                f"--cluster-signing-key-file={p / 'ca.key'}",
                "--use-service-account-credentials=true",
                "--controllers=*",
                "--leader-elect=false",
                # Static nodes come with spec.podCIDR from nodepools.yaml, which the node IPAM
                # controller marks as taken; it gives the nodes Karpenter adds a free /24 of the
                # pod network, as on kubeadm clusters (the simulated kubelet needs one).
                "--allocate-node-cidrs=true",
                f"--cluster-cidr={config.POD_NETWORK}",
                "--node-cidr-mask-size=24",
                f"--service-cluster-ip-range={config.SERVICE_CLUSTER_IP_RANGE}",
                # Client-side rate limits high enough for thousands of pods (defaults: 20/30).
                "--kube-api-qps=300",
                "--kube-api-burst=500",
                "--concurrent-replicaset-syncs=10",
                "--concurrent-deployment-syncs=10",
            ],
            [HealthProbe(f"https://{host}:{config.CONTROLLER_MANAGER_PORT}/healthz", insecure)],
        ),
        spec(
            "kube-scheduler",
            [
                _bin("kube-scheduler"),
                f"--kubeconfig={sched_kubeconfig}",
                f"--authentication-kubeconfig={sched_kubeconfig}",
                f"--authorization-kubeconfig={sched_kubeconfig}",
                f"--bind-address={host}",
                f"--secure-port={config.SCHEDULER_PORT}",
                "--leader-elect=false",
                "--kube-api-qps=300",
                "--kube-api-burst=500",
            ],
            [HealthProbe(f"https://{host}:{config.SCHEDULER_PORT}/healthz", insecure)],
        ),
        spec(
            "kwok",
            [
                _bin("kwok"),
                f"--kubeconfig={layout.kubeconfig}",
                f"--config={layout.kwok / 'stages.yaml'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector="
                f"{nodes.KWOK_NODE_ANNOTATION}={nodes.KWOK_NODE_ANNOTATION_VALUE}",
                # Fallback only: every node has spec.podCIDR, which kwok prefers.
                f"--cidr={config.POD_NETWORK}",
                f"--server-address={host}:{config.KWOK_PORT}",
                "--node-lease-duration-seconds=40",
                # Reported by every node as daemonEndpoints.kubeletEndpoint.Port: where the
                # apiserver finds the simulated kubelet's HTTPS server.
                f"--node-port={config.KUBELET_PORT}",
            ],
            [HealthProbe(f"http://{host}:{config.KWOK_PORT}/healthz")],
            config_files=[layout.kwok / "stages.yaml"],
        ),
        spec(
            "karpenter",
            [
                _bin("karpenter-kwok"),
                f"--instance-types-file-path={_instance_types_file(layout)}",
                f"--metrics-port={config.KARPENTER_METRICS_PORT}",
                f"--health-probe-port={config.KARPENTER_HEALTH_PORT}",
                "--disable-leader-election",
                "--log-level=info",
            ],
            # /readyz includes Karpenter's check that its NodePool and NodeClaim CRDs are served.
            [HealthProbe(f"http://{host}:{config.KARPENTER_HEALTH_PORT}/readyz")],
            # controller-runtime reads the kubeconfig from the environment only.
            env={**os.environ, "KUBECONFIG": str(layout.kubeconfig)},
            config_files=[_instance_types_file(layout)],
        ),
    ]
    specs.append(
        spec(
            "prometheus",
            prometheus.command(layout),
            [HealthProbe(f"http://{host}:{config.PROMETHEUS_PORT}/-/ready")],
        )
    )
    if kubelet_available():
        specs.append(
            spec(
                "kubelet",
                [
                    sys.executable,
                    "-m",
                    KUBELET_MODULE,
                    "--kubeconfig",
                    str(layout.kubeconfig),
                    f"--address={host}",
                    f"--port={config.KUBELET_PORT}",
                    f"--tls-cert-file={p / 'kubelet.crt'}",
                    f"--tls-private-key-file={p / 'kubelet.key'}",
                    f"--client-ca-file={p / 'ca.crt'}",
                ],
                [],
                identity=KUBELET_MODULE,
                env={**os.environ, "PYTHONPATH": _python_path()},
                min_uptime=1.0,
                required=False,
            )
        )
        specs[-1].cwd = config.REPO_ROOT
    return {s.name: s for s in specs}


def _instance_types_file(layout: config.Layout) -> Path:
    return layout.karpenter / "instance-types.json"


def _prepare(layout: config.Layout) -> None:
    layout.ensure()
    pki.ensure_pki(layout)
    pki.write_kubeconfigs(layout)
    stages.write_kwok_config(layout.kwok / "stages.yaml")
    pools = autoscaler.load_autoscaled_pools()
    autoscaler.write_instance_types(_instance_types_file(layout), pools)
    prometheus.write_config(layout)


def _log(message: str) -> None:
    print(f"[devstack.cluster] {message}", file=sys.stderr, flush=True)


def _api_client(layout: config.Layout):
    from kubernetes import config as kube_config

    return kube_config.new_client_from_config(config_file=str(layout.kubeconfig))


def _core_api(layout: config.Layout):
    from kubernetes import client

    return client.CoreV1Api(_api_client(layout))


def _declare_autoscaling(layout: config.Layout) -> None:
    """Karpenter's CRDs, node class and NodePools: before Karpenter starts, on every `up`."""
    api_client = _api_client(layout)
    autoscaler.apply_crds(api_client, build.karpenter_crd_files())
    autoscaler.apply_pools(
        api_client,
        autoscaler.load_autoscaled_pools(),
        boot_seconds=config.AUTOSCALED_NODE_BOOT_SECONDS,
        empty_seconds=config.AUTOSCALED_NODE_EMPTY_SECONDS,
    )


def _wait_nodes_ready(layout: config.Layout, names: set[str], timeout: float = 60.0) -> None:
    core = _core_api(layout)
    deadline = time.monotonic() + timeout
    pending = set(names)
    while time.monotonic() < deadline:
        for node in core.list_node().items:
            conditions = {c.type: c.status for c in node.status.conditions or []}
            if conditions.get("Ready") == "True":
                pending.discard(node.metadata.name)
        if not pending:
            return
        time.sleep(0.5)
    raise RuntimeError(f"nodes not Ready after {timeout:.0f}s: {sorted(pending)}")


def up(layout: config.Layout | None = None, *, verbose: bool = True) -> ClusterInfo:
    """Build if needed, then start every component that is not already running and healthy."""
    layout = layout or config.default_layout()
    started = time.monotonic()
    build.ensure_built()
    layout.ensure()
    with file_lock(layout.run / "up.lock"):
        _up_locked(layout, verbose=verbose)
    if verbose:
        _log(f"cluster ready in {time.monotonic() - started:.1f}s; KUBECONFIG={layout.kubeconfig}")
    return cluster_info(layout)


def _up_locked(layout: config.Layout, *, verbose: bool) -> None:
    _prepare(layout)
    specs = component_specs(layout)
    for name, spec in specs.items():
        t0 = time.monotonic()
        previous = running_pid(spec)
        stale = stale_reason(spec, previous) if previous is not None else None
        if stale and verbose:
            _log(f"{name}: {stale} since it started (pid {previous}); restarting it")
        try:
            pid, fresh = ensure_running(spec)
        except RuntimeError as exc:
            if spec.required:
                raise
            _log(f"warning: optional component {name} did not start: {exc}")
            continue
        if verbose:
            action = "started" if fresh else "already running"
            _log(f"{name}: {action} (pid {pid}, {time.monotonic() - t0:.1f}s)")
        if name == "kube-apiserver":
            created = nodes.ensure_pool_nodes(_core_api(layout))
            if verbose and created:
                _log(f"created {created} pool nodes from {config.NODEPOOLS_FILE.name}")
            relabelled = nodes.ensure_node_labels(_core_api(layout))
            if verbose and relabelled:
                _log(f"{relabelled} existing nodes relabelled from {config.NODEPOOLS_FILE.name}")
            updated = nodes.ensure_kubelet_endpoints(_core_api(layout))
            if verbose and updated:
                _log(f"{updated} nodes now advertise the simulated kubelet's endpoint")
            _declare_autoscaling(layout)
    pool_nodes = {m["metadata"]["name"] for m in nodes.pool_node_manifests()}
    _wait_nodes_ready(layout, pool_nodes)


def ensure_up(layout: config.Layout | None = None) -> ClusterInfo:
    """Library entry point: reuse a running healthy cluster, otherwise bring it up."""
    return up(layout, verbose=False)


def _is_our_process(layout: config.Layout, argv: list[str]) -> bool:
    """Recognises component processes even without pid files (crashed `up`, deleted var/).

    The binaries live in the per-user cache that every checkout shares, so a process is ours only
    if its command line names this layout (each component gets data, PKI or kubeconfig paths
    under it); another checkout's cluster is never taken for a stray of ours.
    """
    binaries = {_bin(name) for target in build.TARGETS for name in target.binaries}
    joined = " ".join(argv)
    if argv[0] in binaries:
        return str(layout.root) in joined
    return KUBELET_MODULE in joined and str(layout.kubeconfig) in joined


def _other_kubelets(layout: config.Layout) -> list[int]:
    return find_processes(
        lambda argv: KUBELET_MODULE in " ".join(argv) and not _is_our_process(layout, argv)
    )


def _teardown_kubelet_network() -> None:
    try:
        network = importlib.import_module(KUBELET_NETWORK_MODULE)
    except ImportError:
        return
    teardown = getattr(network, "teardown_all", None)
    if callable(teardown):
        try:
            teardown()
        except Exception as exc:  # best effort: report and keep shutting down
            _log(f"kubelet network teardown failed: {exc}")


def down(layout: config.Layout | None = None, *, purge: bool = False) -> list[str]:
    """Stop all components (reverse order); returns the names of those that were running."""
    layout = layout or config.default_layout()
    stopped = []
    specs = component_specs(layout)
    for name in reversed(COMPONENT_ORDER):
        spec = specs.get(name) or _pid_only_spec(layout, name)
        if stop(spec, grace=15.0 if name == "kubelet" else 10.0):
            stopped.append(name)
    # Pod namespaces are machine-wide (ipsim-*): leave them to a kubelet of another checkout.
    others = _other_kubelets(layout)
    if others:
        _log(f"pod network left in place: another checkout's kubelet runs (pids {others})")
    else:
        _teardown_kubelet_network()
    strays = find_processes(lambda argv: _is_our_process(layout, argv))
    for pid in strays:
        terminate(pid, grace=5.0)
    remaining = find_processes(lambda argv: _is_our_process(layout, argv))
    if remaining:
        raise RuntimeError(f"component processes still running after down: {remaining}")
    if purge:
        for path in (layout.etcd_data, layout.prometheus / "data"):
            shutil.rmtree(path, ignore_errors=True)
    return stopped


def _pid_only_spec(layout: config.Layout, name: str) -> ProcessSpec:
    """Enough of a spec to stop a process by pid file when the full spec cannot be built."""
    identity = KUBELET_MODULE if name == "kubelet" else name
    return ProcessSpec(
        name=name,
        argv=[name],
        log_file=layout.log_file(name),
        pid_file=layout.pid_file(name),
        identity=identity,
    )


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    healthy: bool
    detail: str
    # Set when our component is not running but its port is held by another process.
    foreign: PortOwner | None = None

    @property
    def state(self) -> str:
        if self.pid is None:
            return "foreign" if self.foreign else "stopped"
        return "healthy" if self.healthy else "unhealthy"


def status(layout: config.Layout | None = None) -> list[ComponentStatus]:
    layout = layout or config.default_layout()
    specs = component_specs(layout)
    result = []
    for name, spec in specs.items():
        pid = running_pid(spec)
        if pid is None:
            # Never probe a port we do not own: another checkout's healthy apiserver is not ours.
            owner = foreign_owner(spec)
            detail = f"{owner.describe()}; not this checkout's {name}" if owner else ""
            result.append(ComponentStatus(name, None, False, detail, owner))
            continue
        healthy, detail = check_health(spec)
        result.append(ComponentStatus(name, pid, healthy, detail))
    return result


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def resident_memory(layout: config.Layout | None = None) -> dict[str, int]:
    """Resident set size in bytes of each running component process (for benchmarks)."""
    layout = layout or config.default_layout()
    usage = {}
    for name, spec in component_specs(layout).items():
        pid = running_pid(spec)
        if pid is not None:
            usage[name] = _rss_bytes(pid)
    return usage

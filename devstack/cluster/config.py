"""Pinned versions, loopback ports and filesystem layout of the local control plane.

Everything that other modules (and colleagues) might need to agree on lives here, so there is a
single place to bump a version or move a port. Ports mirror docs/PORTS.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from devstack.ports import env_port


def env_seconds(variable: str, default: int) -> int:
    """Whole seconds (>= 0) from the environment; fails loudly on a bad value."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        seconds = int(raw)
    except ValueError:
        raise SystemExit(f"{variable}={raw!r} is not a whole number of seconds") from None
    if seconds < 0:
        raise SystemExit(f"{variable}={seconds} is negative")
    return seconds


# One pinned Kubernetes release (kwok v0.8.0 supports 1.34-1.36; 1.35.8 is the newest 1.35 patch
# on the module proxy), the etcd that kubeadm pairs with it, and kwok itself.
KUBERNETES_VERSION = "v1.35.8"
ETCD_VERSION = "v3.6.6"
KWOK_VERSION = "v0.8.0"
# Debian's prometheus 2.42 lacks kubernetes_sd_configs, so Prometheus is built too. Its Go module
# version v0.316.0 is release 3.16.0.
PROMETHEUS_MODULE_VERSION = "v0.316.0"
PROMETHEUS_VERSION = "v3.16.0"
# Karpenter with its kwok cloud provider (sigs.k8s.io/karpenter/kwok) is the node autoscaler.
# v1.14.1 is the newest release whose go.mod accepts the installed Go 1.26.8 (v1.14.3 and v1.15.0
# want Go >= 1.26.9) and its Kubernetes libraries are 0.35, the cluster's minor version.
KARPENTER_VERSION = "v1.14.1"

HOST = "127.0.0.1"
# Each overridable only for isolated runs (tests of a second checkout); defaults as in PORTS.md.
ETCD_CLIENT_PORT = env_port("PORTAL_ETCD_CLIENT_PORT", 52379)
ETCD_PEER_PORT = env_port("PORTAL_ETCD_PEER_PORT", 52380)
APISERVER_PORT = env_port("PORTAL_APISERVER_PORT", 56443)
CONTROLLER_MANAGER_PORT = env_port("PORTAL_CONTROLLER_MANAGER_PORT", 50257)
SCHEDULER_PORT = env_port("PORTAL_SCHEDULER_PORT", 50259)
KWOK_PORT = env_port("PORTAL_KWOK_PORT", 50247)
PROMETHEUS_PORT = env_port("PORTAL_PROMETHEUS_PORT", 59090)
# The simulated kubelet's HTTPS port (a real kubelet's 10250): every node advertises it as
# daemonEndpoints.kubeletEndpoint, and the apiserver proxies pods/log there.
KUBELET_PORT = env_port("PORTAL_KUBELET_PORT", 50250)
# The node address the apiserver dials for kubelet requests: all simulated nodes' kubelet is
# the one local process, so each node reports this loopback name as its InternalDNS address.
KUBELET_ADDRESS_TYPE = "InternalDNS"
KUBELET_HOSTNAME = "localhost"
# Karpenter binds both on all interfaces (it takes a port, not an address: operator.go).
KARPENTER_METRICS_PORT = env_port("PORTAL_KARPENTER_METRICS_PORT", 50280)
KARPENTER_HEALTH_PORT = env_port("PORTAL_KARPENTER_HEALTH_PORT", 50281)
PORTAL_WEB_PORT = 8000
GATEWAY_PORT = 8080

# How long an autoscaled node takes to come up, split as on a real cloud. Boot: the instance
# starts and its kubelet registers the Node (Karpenter's NodeClaim is Launched, not yet
# Registered). Ready: the registered node reports Ready=False (KubeletNotReady, CNI not
# initialised) until its runtime and network are up. GKE/EKS take 60-120 s for both, more for
# GPU drivers; locally the default total is 25 s. Overridable for quick tests.
AUTOSCALED_NODE_BOOT_SECONDS = env_seconds("PORTAL_AUTOSCALED_NODE_BOOT_SECONDS", 15)
AUTOSCALED_NODE_READY_SECONDS = env_seconds("PORTAL_AUTOSCALED_NODE_READY_SECONDS", 10)
# How long an autoscaled node must stay empty before Karpenter removes it (NodePool
# disruption.consolidateAfter; Karpenter's own default is 0 s, GKE's scale-down ~10 min).
AUTOSCALED_NODE_EMPTY_SECONDS = env_seconds("PORTAL_AUTOSCALED_NODE_EMPTY_SECONDS", 30)

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
POD_NETWORK = "10.244.0.0/16"
# Bench nodes (bench/cluster/scale.py) take their podCIDRs from a network of their own: a /25
# per node holds a node's 110 pods (126 addresses), and a /12 holds 8,192 such blocks. Their
# pods are never routed, and the controller-manager allocates no CIDRs (--allocate-node-cidrs
# is false: every node comes with its podCIDR), so neither network is one of its flags.
BENCH_POD_NETWORK = "10.128.0.0/12"
BENCH_NODE_CIDR_PREFIX = 25
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

REPO_ROOT = Path(__file__).resolve().parents[2]
GOBUILD_DIR = Path(__file__).resolve().parent / "gobuild"
NODEPOOLS_FILE = Path(__file__).resolve().parent / "nodepools.yaml"


def cache_dir() -> Path:
    """Root of the per-user build cache (never inside the repository)."""
    configured = os.environ.get("PORTAL_CACHE_DIR")
    base = Path(configured) if configured else Path.home() / ".cache" / "inference-portal"
    return base.expanduser()


def bin_dir(component: str, version: str) -> Path:
    """Directory holding the binaries of one component version, e.g. bin/etcd-v3.6.6/."""
    return cache_dir() / "bin" / f"{component}-{version}"


@dataclass(frozen=True)
class Layout:
    """Runtime paths under var/cluster/ (var/ is the gitignored runtime folder)."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def kwok(self) -> Path:
        return self.root / "kwok"

    @property
    def karpenter(self) -> Path:
        return self.root / "karpenter"

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (client cert in group system:masters)."""
        return self.root / "kubeconfig"

    def component_kubeconfig(self, name: str) -> Path:
        return self.root / f"{name}.kubeconfig"

    def log_file(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def pid_file(self, component: str) -> Path:
        return self.run / f"{component}.pid"

    def ensure(self) -> None:
        for path in (
            self.root,
            self.pki,
            self.logs,
            self.run,
            self.kwok,
            self.karpenter,
            self.prometheus,
        ):
            path.mkdir(parents=True, exist_ok=True)


def default_layout() -> Layout:
    """var/cluster/ in the checkout; PORTAL_CLUSTER_DIR overrides it (e.g. for isolated runs)."""
    configured = os.environ.get("PORTAL_CLUSTER_DIR")
    return Layout(Path(configured) if configured else REPO_ROOT / "var" / "cluster")

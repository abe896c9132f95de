"""A real local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler)
with KWOK-simulated GPU nodes and Prometheus, built from Go modules without Docker.

CLI: ``python -m devstack.cluster up|down|status|env``. Library: ``ensure_up()``.
"""

from .config import ETCD_VERSION, KUBERNETES_VERSION, KWOK_VERSION
from .control import ClusterInfo, cluster_info, down, ensure_up, status, up
from .nodes import GPU_RESOURCE, GPU_TAINT, POOL_LABEL
from .stages import (
    SIM_KUBELET_ANNOTATION,
    SIM_KUBELET_ANNOTATION_VALUE,
    SIM_KUBELET_IMAGE_MARKERS,
    SIM_KUBELET_POD_JQ,
    is_sim_kubelet_pod,
)

__all__ = [
    "ETCD_VERSION",
    "GPU_RESOURCE",
    "GPU_TAINT",
    "KUBERNETES_VERSION",
    "KWOK_VERSION",
    "POOL_LABEL",
    "SIM_KUBELET_ANNOTATION",
    "SIM_KUBELET_ANNOTATION_VALUE",
    "SIM_KUBELET_IMAGE_MARKERS",
    "SIM_KUBELET_POD_JQ",
    "ClusterInfo",
    "cluster_info",
    "down",
    "ensure_up",
    "is_sim_kubelet_pod",
    "status",
    "up",
]

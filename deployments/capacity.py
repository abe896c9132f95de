"""Live GPU capacity of the cluster's node pools: allocatable, requested and free GPUs."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from deployments.rendering.constants import GPU_RESOURCE, LABEL_GPU_PRODUCT, LABEL_POOL
from portal import kube


@dataclass
class PoolCapacity:
    pool: str
    gpu_product: str = ""
    nodes: int = 0
    allocatable: int = 0
    requested: int = 0
    free_per_node: dict[str, int] = field(default_factory=dict)

    @property
    def free(self) -> int:
        return self.allocatable - self.requested

    def replicas_that_fit(self, gpus_per_replica: int) -> int:
        """A replica's GPUs must sit on one node, so count per node."""
        return sum(free // gpus_per_replica for free in self.free_per_node.values())


def _gpus(resources: dict[str, str] | None) -> int:
    value = (resources or {}).get(GPU_RESOURCE, "0")
    return int(value) if str(value).isdigit() else 0


def pool_capacity() -> dict[str, PoolCapacity]:
    """One list of nodes and one list of running pods, whatever the cluster's size."""
    try:
        core = kube.core()
        nodes = core.list_node(label_selector=LABEL_POOL).items
        pods = core.list_pod_for_all_namespaces(
            field_selector="status.phase!=Succeeded,status.phase!=Failed"
        ).items
    except kube.ClusterUnavailable:
        raise
    except Exception as error:  # any client failure means: capacity unknown
        raise kube.ClusterUnavailable(f"cannot read node pools: {error}") from None
    requested_by_node: dict[str, int] = defaultdict(int)
    for pod in pods:
        if pod.spec is None or not pod.spec.node_name:
            continue
        requested_by_node[pod.spec.node_name] += sum(
            _gpus(c.resources.requests if c.resources else None) for c in pod.spec.containers
        )
    pools: dict[str, PoolCapacity] = {}
    for node in nodes:
        metadata, spec, status = node.metadata, node.spec, node.status
        assert metadata is not None and metadata.name is not None
        labels = metadata.labels or {}
        pool = pools.setdefault(labels[LABEL_POOL], PoolCapacity(pool=labels[LABEL_POOL]))
        unschedulable = bool(spec and spec.unschedulable)
        allocatable = 0 if unschedulable or status is None else _gpus(status.allocatable)
        requested = requested_by_node.get(metadata.name, 0)
        pool.gpu_product = labels.get(LABEL_GPU_PRODUCT, pool.gpu_product)
        pool.nodes += 1
        pool.allocatable += allocatable
        pool.requested += requested
        pool.free_per_node[metadata.name] = max(0, allocatable - requested)
    return pools

"""Live GPU capacity of the cluster: per node, per tier (the nodes its selector matches) and per
node pool as the cloud names it.

Nodes are found by the labels clouds and NVIDIA's GPU feature discovery already set; no label of
the portal's own is needed on a node.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from deployments.rendering.constants import (
    GPU_RESOURCE,
    LABEL_GPU_PRODUCT,
    LABEL_INSTANCE_TYPE,
    NODE_POOL_LABELS,
)
from deployments.rendering.meta import selector_text
from portal import kube


@dataclass(frozen=True)
class NodeGpus:
    name: str
    labels: Mapping[str, str]
    allocatable: int  # 0 when the node is cordoned
    requested: int

    @property
    def free(self) -> int:
        return max(0, self.allocatable - self.requested)

    def matches(self, selector: Mapping[str, str]) -> bool:
        """As the scheduler reads a nodeSelector: every key present with the same value."""
        return all(self.labels.get(key) == value for key, value in selector.items())


@dataclass
class PoolCapacity:
    """GPUs of a set of nodes: one node pool, or the nodes a tier's selector matches."""

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

    def add(self, node: NodeGpus) -> None:
        self.gpu_product = node.labels.get(LABEL_GPU_PRODUCT, self.gpu_product)
        self.nodes += 1
        self.allocatable += node.allocatable
        self.requested += node.requested
        self.free_per_node[node.name] = node.free


def pool_name(labels: Mapping[str, str]) -> str:
    """The node pool a node belongs to, as its cloud or autoscaler labels it."""
    for key in NODE_POOL_LABELS:
        if labels.get(key):
            return labels[key]
    return labels.get(LABEL_INSTANCE_TYPE) or "unpooled"


class ClusterCapacity:
    """GPU nodes of the cluster with what their running pods request, read once."""

    def __init__(self, nodes: Iterable[NodeGpus]) -> None:
        self.nodes = list(nodes)

    def matching(self, selector: Mapping[str, str]) -> PoolCapacity | None:
        """The GPU nodes a tier's node selector matches (None: no node matches)."""
        found = PoolCapacity(pool=selector_text(selector))
        for node in self.nodes:
            if node.matches(selector):
                found.add(node)
        return found if found.nodes else None

    def pools(self) -> dict[str, PoolCapacity]:
        pools: dict[str, PoolCapacity] = {}
        for node in self.nodes:
            name = pool_name(node.labels)
            pools.setdefault(name, PoolCapacity(pool=name)).add(node)
        return pools


def _gpus(resources: dict[str, str] | None) -> int:
    value = (resources or {}).get(GPU_RESOURCE, "0")
    return int(value) if str(value).isdigit() else 0


def pool_capacity() -> ClusterCapacity:
    """One list of nodes and one list of running pods, whatever the cluster's size."""
    try:
        core = kube.core()
        nodes = core.list_node().items
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
    found = []
    for node in nodes:
        metadata, spec, status = node.metadata, node.spec, node.status
        assert metadata is not None and metadata.name is not None
        if status is None or not _gpus(status.capacity):
            continue  # CPU nodes: nothing to count
        unschedulable = bool(spec and spec.unschedulable)
        allocatable = 0 if unschedulable else _gpus(status.allocatable)
        found.append(
            NodeGpus(
                name=metadata.name,
                labels=dict(metadata.labels or {}),
                allocatable=allocatable,
                requested=requested_by_node.get(metadata.name, 0),
            )
        )
    return ClusterCapacity(found)

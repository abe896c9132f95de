"""Node autoscaling of the local cluster: Karpenter with its kwok cloud provider.

nodepools.yaml's ``autoscaled`` section is the one place declaring the pools that start at zero
nodes. From it we render what Karpenter's kwok provider reads (sigs.k8s.io/karpenter v1.14.1,
kwok/cloudprovider/helpers.go ``ConstructInstanceTypes``): an instance-types JSON file, one
KWOKNodeClass, and one NodePool per pool. The provider turns a NodeClaim into a Node carrying
the NodeClaim's labels plus every single-valued requirement of the instance type and of the
chosen offering (cloudprovider.go ``addInstanceLabels``), so the GPU feature discovery labels go
into each offering's requirements and the nodes come out labelled like the static GPU nodes.

What happens to a node after Karpenter creates it (registration, Ready) is kwok's part: see
``stages.autoscaled_node_stages``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import config, nodes

NODEPOOL_LABEL = "karpenter.sh/nodepool"  # set by Karpenter on its NodeClaims and Nodes
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
# Karpenter's kwok provider labels each instance type with its cpu and memory
# (kwok/apis/v1alpha1/labels.go); the node stages read the machine's capacity from them.
INSTANCE_CPU_LABEL = "karpenter.kwok.sh/instance-cpu"
INSTANCE_MEMORY_LABEL = "karpenter.kwok.sh/instance-memory"

KARPENTER_GROUP = "karpenter.sh"
KARPENTER_VERSION = "v1"
KWOK_GROUP = "karpenter.kwok.sh"
KWOK_VERSION = "v1alpha1"
NODE_CLASS_NAME = "devstack"
# Marks the NodePools `up` owns, so a pool removed from nodepools.yaml is removed from the cluster.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "devstack"
# Every pool offers only on-demand capacity: spot interruption is not simulated.
CAPACITY_TYPE = "on-demand"
# Karpenter launches the cheapest compatible offering; each NodePool admits one instance type,
# so a nominal price only has to be the same in every zone (the zone is then picked at random).
NOMINAL_PRICE = 1.0


@dataclass(frozen=True)
class AutoscaledPool:
    """A pool Karpenter scales between 0 and max_nodes nodes of one shape."""

    shape: nodes.NodePool  # count is 0: Karpenter decides how many nodes exist
    max_nodes: int
    region: str
    zones: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.shape.name


def load_autoscaled_pools(path: Path = config.NODEPOOLS_FILE) -> list[AutoscaledPool]:
    raw = yaml.safe_load(path.read_text()).get("autoscaled") or {}
    pools = []
    for name, spec in raw.items():
        max_nodes = int(spec["max_nodes"])
        zones = tuple(str(zone) for zone in spec["zones"])
        if max_nodes < 1:
            raise ValueError(f"autoscaled pool {name}: max_nodes must be at least 1")
        if not zones:
            raise ValueError(f"autoscaled pool {name}: zones must list at least one zone")
        pools.append(
            AutoscaledPool(
                shape=nodes.parse_pool(name, spec, 0),
                max_nodes=max_nodes,
                region=str(spec["region"]),
                zones=zones,
            )
        )
    instance_types = [pool.shape.instance_type for pool in pools]
    duplicates = sorted({t for t in instance_types if instance_types.count(t) > 1})
    if duplicates:
        # The kwok provider knows instance types by name only: one shape per name.
        raise ValueError(f"autoscaled pools share instance types {duplicates}")
    return pools


def _requirement(key: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": list(values)}


def instance_type(pool: AutoscaledPool) -> dict[str, Any]:
    """The kwok provider's InstanceTypeOptions (helpers.go) for one pool's machine."""
    shape = pool.shape
    resources = {"cpu": shape.cpu, "memory": shape.memory, "pods": str(shape.pods)}
    hardware_labels = {nodes.INSTANCE_TYPE_LABEL: shape.instance_type}
    if shape.gpu:
        resources[nodes.GPU_RESOURCE] = str(shape.gpu.count)
        hardware_labels |= nodes.gpu_labels(shape.gpu)
    offerings = [
        {
            "Price": NOMINAL_PRICE,
            "Available": True,
            "Requirements": [
                _requirement(CAPACITY_TYPE_LABEL, CAPACITY_TYPE),
                _requirement(ZONE_LABEL, zone),
                _requirement(REGION_LABEL, pool.region),
                *(
                    _requirement(key, value)
                    for key, value in hardware_labels.items()
                    if key != nodes.INSTANCE_TYPE_LABEL  # the provider sets that one itself
                ),
            ],
        }
        for zone in pool.zones
    ]
    return {
        "name": shape.instance_type,
        "offerings": offerings,
        "architecture": "amd64",
        "operatingSystems": ["linux"],
        "resources": resources,
    }


def write_instance_types(target: Path, pools: list[AutoscaledPool]) -> Path:
    """The file Karpenter's --instance-types-file-path reads once at start."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps([instance_type(pool) for pool in pools], indent=2) + "\n")
    return target


def node_class(boot_seconds: int) -> dict[str, Any]:
    """The KWOKNodeClass: nodeRegistrationDelay is the provider's model of instance boot."""
    return {
        "apiVersion": f"{KWOK_GROUP}/{KWOK_VERSION}",
        "kind": "KWOKNodeClass",
        "metadata": {"name": NODE_CLASS_NAME, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        "spec": {"nodeRegistrationDelay": f"{boot_seconds}s"},
    }


def pool_limits(pool: AutoscaledPool) -> dict[str, str]:
    """NodePool limits holding the pool to max_nodes (Karpenter caps resources, not nodes)."""
    shape = pool.shape
    if shape.gpu:
        return {nodes.GPU_RESOURCE: str(pool.max_nodes * shape.gpu.count)}
    return {"cpu": str(pool.max_nodes * int(shape.cpu))}


def node_pool(pool: AutoscaledPool, empty_seconds: int) -> dict[str, Any]:
    shape = pool.shape
    spec: dict[str, Any] = {
        "nodeClassRef": {"group": KWOK_GROUP, "kind": "KWOKNodeClass", "name": NODE_CLASS_NAME},
        "requirements": [
            _requirement(nodes.INSTANCE_TYPE_LABEL, shape.instance_type),
            _requirement(CAPACITY_TYPE_LABEL, CAPACITY_TYPE),
            {"key": ZONE_LABEL, "operator": "In", "values": list(pool.zones)},
        ],
        # Nodes live until emptied: expiry would only replace them (Karpenter's default 720h).
        "expireAfter": "Never",
    }
    if shape.gpu:
        spec["taints"] = [dict(nodes.GPU_TAINT)]
        # As a GPU NodePool on a cloud says which accelerator it launches (on EKS e.g.
        # karpenter.k8s.aws/instance-gpu-name): readable while the pool has no node.
        spec["requirements"] += [
            _requirement(nodes.GPU_PRODUCT_LABEL, shape.gpu.product),
            _requirement(nodes.GPU_COUNT_LABEL, str(shape.gpu.count)),
        ]
    return {
        "apiVersion": f"{KARPENTER_GROUP}/{KARPENTER_VERSION}",
        "kind": "NodePool",
        "metadata": {"name": pool.name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        "spec": {
            "template": {"metadata": {"labels": {nodes.POOL_LABEL: pool.name}}, "spec": spec},
            "limits": pool_limits(pool),
            "disruption": {
                "consolidationPolicy": "WhenEmpty",
                "consolidateAfter": f"{empty_seconds}s",
            },
        },
    }


def apply_crds(api_client: client.ApiClient, files: list[Path], timeout: float = 30.0) -> None:
    """Create or update Karpenter's CRDs and wait until the apiserver serves them."""
    ext = client.ApiextensionsV1Api(api_client)
    names = []
    for path in files:
        manifest = yaml.safe_load(path.read_text())
        name = manifest["metadata"]["name"]
        names.append(name)
        try:
            current = ext.read_custom_resource_definition(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            ext.create_custom_resource_definition(manifest)
            continue
        manifest["metadata"]["resourceVersion"] = (
            current.metadata or client.V1ObjectMeta()
        ).resource_version
        ext.replace_custom_resource_definition(name, manifest)
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            crd = ext.read_custom_resource_definition(name)
            conditions = {c.type: c.status for c in (crd.status and crd.status.conditions) or []}
            if conditions.get("Established") == "True":
                pending.discard(name)
        if pending:
            time.sleep(0.2)
    if pending:
        raise RuntimeError(f"CRDs not established after {timeout:.0f}s: {sorted(pending)}")


def _apply_cluster_object(
    api: client.CustomObjectsApi, group: str, version: str, plural: str, manifest: dict[str, Any]
) -> None:
    name = manifest["metadata"]["name"]
    try:
        current: dict[str, Any] = api.get_cluster_custom_object(group, version, plural, name)  # type: ignore[assignment]
    except ApiException as exc:
        if exc.status != 404:
            raise
        api.create_cluster_custom_object(group, version, plural, manifest)
        return
    # A replace re-applies the CRD's defaults; one equal to the stored object changes nothing.
    wanted = {**manifest, "metadata": {**manifest["metadata"]}}
    wanted["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    api.replace_cluster_custom_object(group, version, plural, name, wanted)


def apply_pools(
    api_client: client.ApiClient,
    pools: list[AutoscaledPool],
    *,
    boot_seconds: int,
    empty_seconds: int,
) -> None:
    """Declare the node class and NodePools; delete our NodePools no longer declared."""
    api = client.CustomObjectsApi(api_client)
    nodeclass = node_class(boot_seconds)
    _apply_cluster_object(api, KWOK_GROUP, KWOK_VERSION, "kwoknodeclasses", nodeclass)
    for pool in pools:
        _apply_cluster_object(
            api, KARPENTER_GROUP, KARPENTER_VERSION, "nodepools", node_pool(pool, empty_seconds)
        )
    declared = {pool.name for pool in pools}
    existing: dict[str, Any] = api.list_cluster_custom_object(  # type: ignore[assignment]
        KARPENTER_GROUP,
        KARPENTER_VERSION,
        "nodepools",
        label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}",
    )
    for item in existing["items"]:
        name = item["metadata"]["name"]
        if name not in declared:
            api.delete_cluster_custom_object(KARPENTER_GROUP, KARPENTER_VERSION, "nodepools", name)

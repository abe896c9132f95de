"""Simulated GPU node pools (declared in nodepools.yaml) as KWOK-managed Node objects."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import config

POOL_LABEL = "inference.portal/pool"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB, as NVIDIA GPU feature discovery reports it
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
# kwok is started with --manage-nodes-with-annotation-selector on this annotation.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_ANNOTATION_VALUE = "fake"
# Nominal node addresses (never routed; pods get addresses from the node's podCIDR instead).
NODE_ADDRESS_NETWORK = "10.240.0.0/16"


@dataclass(frozen=True)
class GpuSpec:
    count: int
    product: str
    memory_mib: int


@dataclass(frozen=True)
class NodePool:
    name: str
    count: int
    instance_type: str
    cpu: str
    memory: str
    pods: int
    gpu: GpuSpec | None = None


def load_pools(path: Path = config.NODEPOOLS_FILE) -> list[NodePool]:
    """Pools in file order (the order also fixes each node's pod CIDR index)."""
    raw = yaml.safe_load(path.read_text())["pools"]
    return [parse_pool(name, spec, int(spec["count"])) for name, spec in raw.items()]


def parse_pool(name: str, spec: dict[str, Any], count: int) -> NodePool:
    """One pool's machine shape as nodepools.yaml declares it (static and autoscaled alike)."""
    gpu = spec.get("gpu")
    return NodePool(
        name=name,
        count=count,
        instance_type=str(spec["instance_type"]),
        cpu=str(spec["cpu"]),
        memory=str(spec["memory"]),
        pods=int(spec.get("pods", 110)),
        gpu=GpuSpec(int(gpu["count"]), str(gpu["product"]), int(gpu["memory_mib"]))
        if gpu
        else None,
    )


def gpu_labels(gpu: GpuSpec) -> dict[str, str]:
    """The labels NVIDIA GPU feature discovery puts on a node with these GPUs."""
    return {
        GPU_PRODUCT_LABEL: gpu.product,
        GPU_MEMORY_LABEL: str(gpu.memory_mib),
        GPU_COUNT_LABEL: str(gpu.count),
        "nvidia.com/gpu.present": "true",
    }


def pod_cidr(index: int, network: str = config.POD_NETWORK, prefix: int = 24) -> str:
    """The index-th /prefix subnet of the pod network (index 1 -> 10.244.1.0/24)."""
    subnets = ipaddress.ip_network(network).subnets(new_prefix=prefix)
    for position, subnet in enumerate(subnets):
        if position == index:
            return str(subnet)
    raise ValueError(f"pod network {network} has no /{prefix} number {index}")


def node_address(index: int, network: str = NODE_ADDRESS_NETWORK) -> str:
    return str(ipaddress.ip_network(network).network_address + index)


def node_manifest(
    name: str,
    pool: NodePool,
    cidr: str,
    address: str,
    extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Node as a real GPU node would register it; status is accepted on create."""
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        POOL_LABEL: pool.name,
        INSTANCE_TYPE_LABEL: pool.instance_type,
    }
    capacity = {"cpu": pool.cpu, "memory": pool.memory, "pods": str(pool.pods)}
    taints: list[dict[str, str]] = []
    if pool.gpu:
        labels |= gpu_labels(pool.gpu)
        capacity[GPU_RESOURCE] = str(pool.gpu.count)
        taints.append(dict(GPU_TAINT))
    labels |= extra_labels or {}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                KWOK_NODE_ANNOTATION: KWOK_NODE_ANNOTATION_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr], "taints": taints or None},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "addresses": node_addresses(name, address),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": config.KUBELET_PORT}},
        },
    }


def node_addresses(name: str, address: str) -> list[dict[str, str]]:
    """InternalIP (nominal), Hostname, and the address the apiserver reaches the kubelet at."""
    return [
        {"type": "InternalIP", "address": address},
        {"type": "Hostname", "address": name},
        {"type": config.KUBELET_ADDRESS_TYPE, "address": config.KUBELET_HOSTNAME},
    ]


def pool_node_manifests(pools: list[NodePool] | None = None) -> list[dict[str, Any]]:
    manifests = []
    index = 1
    for pool in pools if pools is not None else load_pools():
        for number in range(1, pool.count + 1):
            name = f"{pool.name}-{number}"
            manifests.append(node_manifest(name, pool, pod_cidr(index), node_address(index)))
            index += 1
    return manifests


def create_nodes(core: client.CoreV1Api, manifests: list[dict[str, Any]]) -> int:
    """Create nodes that do not exist yet (existing ones keep their immutable podCIDR)."""
    created = 0
    for manifest in manifests:
        try:
            # The client serialises plain dicts as well as V1Node models.
            core.create_node(cast(Any, manifest))
            created += 1
        except ApiException as exc:
            if exc.status != 409:
                raise
    return created


def ensure_pool_nodes(core: client.CoreV1Api) -> int:
    return create_nodes(core, pool_node_manifests())


def ensure_kubelet_endpoints(core: client.CoreV1Api) -> int:
    """Bring nodes created by an older checkout up to date: kubelet address and port.

    kwok's heartbeat keeps a node's addresses as they are and reports its --node-port, so one
    status patch is enough; nodes already right are left alone (a read, no write).
    """
    updated = 0
    for manifest in pool_node_manifests():
        name = manifest["metadata"]["name"]
        try:
            node = core.read_node_status(name)
        except ApiException as exc:
            if exc.status == 404:
                continue
            raise
        current = node.status or client.V1NodeStatus()
        addresses = [(a.type, a.address) for a in current.addresses or []]
        endpoint = current.daemon_endpoints
        port = endpoint.kubelet_endpoint.port if endpoint and endpoint.kubelet_endpoint else 0
        wanted = (config.KUBELET_ADDRESS_TYPE, config.KUBELET_HOSTNAME)
        if wanted in addresses and port == config.KUBELET_PORT:
            continue
        status = manifest["status"]
        core.patch_node_status(
            name,
            {
                "status": {
                    "addresses": status["addresses"],
                    "daemonEndpoints": status["daemonEndpoints"],
                }
            },
        )
        updated += 1
    return updated

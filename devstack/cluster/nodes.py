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

# The portal's own pool label; the portal still selects GPU pools by it.
POOL_LABEL = "inference.portal/pool"
# Kubernetes well-known labels (kubernetes.io/docs/reference/labels-annotations-taints/):
# the cloud node controller sets these from the instance's metadata.
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
GPU_RESOURCE = "nvidia.com/gpu"
# NVIDIA GPU feature discovery (github.com/NVIDIA/gpu-feature-discovery, "Generated Labels"):
# product name as nvidia-smi reports it with spaces as dashes, GPUs per node, memory in MiB.
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
# GKE (cloud.google.com/kubernetes-engine/docs/how-to/gpus, "node labels"): every node of a
# GPU node pool carries the accelerator type, every node its node pool's name.
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
GKE_NODEPOOL_LABEL = "cloud.google.com/gke-nodepool"
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
    gke_accelerator: str = ""  # e.g. nvidia-l4; empty: no GKE accelerator label


@dataclass(frozen=True)
class NodePool:
    name: str
    count: int
    instance_type: str
    cpu: str
    memory: str
    pods: int
    gpu: GpuSpec | None = None
    region: str = ""
    zones: tuple[str, ...] = ()

    def zone_of(self, number: int) -> str | None:
        """Zone of node <pool>-<number>: the pool's zones round-robin, as a regional node pool
        (or an autoscaler balancing zones) spreads its nodes."""
        return self.zones[(number - 1) % len(self.zones)] if self.zones else None


def load_pools(path: Path = config.NODEPOOLS_FILE) -> list[NodePool]:
    """Pools in file order (the order also fixes each node's pod CIDR index)."""
    doc = yaml.safe_load(path.read_text())
    region = str(doc.get("region") or "")
    return [
        parse_pool(name, spec, int(spec["count"]), region) for name, spec in doc["pools"].items()
    ]


def parse_pool(name: str, spec: dict[str, Any], count: int, region: str = "") -> NodePool:
    """One pool's machine shape as nodepools.yaml declares it (static and autoscaled alike)."""
    gpu = spec.get("gpu")
    return NodePool(
        name=name,
        count=count,
        instance_type=str(spec["instance_type"]),
        cpu=str(spec["cpu"]),
        memory=str(spec["memory"]),
        pods=int(spec.get("pods", 110)),
        gpu=GpuSpec(
            int(gpu["count"]),
            str(gpu["product"]),
            int(gpu["memory_mib"]),
            str(gpu.get("gke_accelerator") or ""),
        )
        if gpu
        else None,
        region=region,
        zones=tuple(str(zone) for zone in spec.get("zones") or ()),
    )


def gpu_labels(gpu: GpuSpec) -> dict[str, str]:
    """The labels NVIDIA GPU feature discovery (and GKE, for the accelerator) put on a node
    with these GPUs."""
    labels = {
        GPU_PRODUCT_LABEL: gpu.product,
        GPU_MEMORY_LABEL: str(gpu.memory_mib),
        GPU_COUNT_LABEL: str(gpu.count),
        "nvidia.com/gpu.present": "true",
    }
    if gpu.gke_accelerator:
        labels[GKE_ACCELERATOR_LABEL] = gpu.gke_accelerator
    return labels


def pod_cidr(index: int, network: str = config.POD_NETWORK, prefix: int = 24) -> str:
    """The index-th /prefix subnet of the pod network (index 1 -> 10.244.1.0/24), computed
    rather than enumerated: bench runs ask for thousands."""
    net = ipaddress.ip_network(network)
    blocks = 2 ** (prefix - net.prefixlen) if prefix >= net.prefixlen else 0
    if not 0 <= index < blocks:
        raise ValueError(
            f"pod network {network} has no /{prefix} number {index} (it holds {blocks})"
        )
    size = 2 ** (net.max_prefixlen - prefix)
    return str(ipaddress.ip_network((int(net.network_address) + index * size, prefix)))


def node_address(index: int, network: str = NODE_ADDRESS_NETWORK) -> str:
    return str(ipaddress.ip_network(network).network_address + index)


def node_manifest(
    name: str,
    pool: NodePool,
    cidr: str,
    address: str,
    extra_labels: dict[str, str] | None = None,
    zone: str | None = None,
) -> dict[str, Any]:
    """A Node as a real GPU node would register it; status is accepted on create."""
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        POOL_LABEL: pool.name,
        GKE_NODEPOOL_LABEL: pool.name,
        INSTANCE_TYPE_LABEL: pool.instance_type,
    }
    zone = zone or pool.zone_of(1)
    if zone:
        labels[ZONE_LABEL] = zone
    if pool.region:
        labels[REGION_LABEL] = pool.region
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
            manifests.append(
                node_manifest(
                    name, pool, pod_cidr(index), node_address(index), zone=pool.zone_of(number)
                )
            )
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


def ensure_node_labels(core: client.CoreV1Api) -> int:
    """Give nodes created by an older checkout the labels this one declares (labels, unlike
    the podCIDR, can change in place); nodes already labelled are left alone."""
    updated = 0
    for manifest in pool_node_manifests():
        name = manifest["metadata"]["name"]
        try:
            node = core.read_node(name)
        except ApiException as exc:
            if exc.status == 404:
                continue
            raise
        current = (node.metadata.labels if node.metadata else None) or {}
        wanted = manifest["metadata"]["labels"]
        missing = {k: v for k, v in wanted.items() if current.get(k) != v}
        if missing:
            core.patch_node(name, {"metadata": {"labels": missing}})
            updated += 1
    return updated


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

"""Karpenter adds a GPU node for a pending pod and removes it once it is empty.

The pod is one the simulated kubelet runs as a process (portal image), so the new node must
also be usable the way the static ones are: its own pod CIDR and network namespace, and a
kubelet endpoint the apiserver reaches for logs.

Runs against the local cluster like test_cluster.py. The whole cycle takes the configured boot
and Ready delays plus the empty-node delay (about a minute with the defaults); start the cluster
with PORTAL_AUTOSCALED_NODE_BOOT_SECONDS / _READY_SECONDS / _EMPTY_SECONDS set lower to make it
quicker. The timeouts below read the delays back from the cluster's own objects where they live.
"""

from __future__ import annotations

import ipaddress
import re
import time
from typing import Any

import pytest

from devstack.cluster import GPU_RESOURCE, GPU_TAINT, POOL_LABEL, autoscaler, config, nodes
from devstack.kubelet.runtime import NETWORK_ANNOTATION
from tests.fixtures.cluster import K8sClients, wait_for

pytestmark = pytest.mark.cluster

POOL = "l4-autoscaled"
# The simulated kubelet (not KWOK) runs portal-image pods as local processes: the pod then needs
# everything a node must offer it (pod CIDR, network namespace, kubelet endpoint for logs).
PORTAL_IMAGE = "localhost/inference-portal:dev"
GREETING = "serving from an autoscaled node"
# Karpenter batches pending pods for up to 1 s idle (its --batch-idle-duration) before it
# launches; the API round trips and the scheduler's retry after the node turns Ready add a few.
MARGIN_SECONDS = 20
# Removal after the empty delay (Karpenter v1.14.1 source): a node that has just taken a pod
# stays "nominated" for max(2 x --batch-max-duration, 10 s) = 20 s and is not disrupted
# meanwhile (state/statenode.go nominationWindow); the disruption controller looks every 10 s
# (disruption/controller.go pollingPeriod); then it taints, drains and deletes the node.
SCALE_DOWN_MARGIN_SECONDS = 45


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"unexpected duration {duration!r}"
    return int(match.group(1))


def _gpu_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        # In the node's network namespace, as an engine server would be.
        "metadata": {"name": name, "annotations": {NETWORK_ANNOTATION: "pod"}},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": PORTAL_IMAGE,
                    "command": [
                        "python",
                        "-c",
                        f"import time; print({GREETING!r}, flush=True); time.sleep(300)",
                    ],
                    "resources": {"limits": {GPU_RESOURCE: "1"}},
                }
            ],
            "nodeSelector": {POOL_LABEL: POOL},
            "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 0,
        },
    }


def _pool_nodes(k8s: K8sClients) -> list[Any]:
    selector = f"{autoscaler.NODEPOOL_LABEL}={POOL}"
    return k8s.core.list_node(label_selector=selector).items


def _is_ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def _describe(k8s: K8sClients, namespace: str) -> str:
    lines = [
        f"node {n.metadata.name} ready={_is_ready(n)} taints={n.spec.taints}"
        for n in _pool_nodes(k8s)
    ]
    for pod in k8s.core.list_namespaced_pod(namespace).items:
        lines.append(f"pod {pod.metadata.name} phase={pod.status.phase} node={pod.spec.node_name}")
    events = k8s.core.list_namespaced_event(namespace).items
    lines += [f"event {e.reason}: {e.message}" for e in events]
    return "\n".join(lines)


@pytest.fixture
def empty_pool(k8s: K8sClients) -> dict[str, Any]:
    """The pool's NodePool, once no node of an earlier run is left in it."""
    pool = k8s.custom.get_cluster_custom_object("karpenter.sh", "v1", "nodepools", POOL)
    empty_after = _seconds(pool["spec"]["disruption"]["consolidateAfter"])
    wait_for(
        lambda: not _pool_nodes(k8s),
        empty_after + 60,
        describe=f"no node left in {POOL} from an earlier run",
    )
    return pool


def test_pending_gpu_pod_gets_a_new_node_which_goes_away_when_idle(
    k8s: K8sClients, namespace: str, empty_pool: dict[str, Any]
) -> None:
    node_class = k8s.custom.get_cluster_custom_object(
        "karpenter.kwok.sh", "v1alpha1", "kwoknodeclasses", autoscaler.NODE_CLASS_NAME
    )
    boot = _seconds(node_class["spec"]["nodeRegistrationDelay"])
    ready = config.AUTOSCALED_NODE_READY_SECONDS  # a kwok Stage delay: not an API object
    empty_after = _seconds(empty_pool["spec"]["disruption"]["consolidateAfter"])

    started = time.monotonic()
    k8s.core.create_namespaced_pod(namespace, _gpu_pod("gpu"))

    def running_pod() -> Any:
        pod = k8s.core.read_namespaced_pod("gpu", namespace)
        return pod if pod.status.phase == "Running" else None

    pod = wait_for(
        running_pod, boot + ready + MARGIN_SECONDS, describe=lambda: _describe(k8s, namespace)
    )
    elapsed = time.monotonic() - started
    # The node only takes pods once booted and Ready, like a cloud VM.
    assert elapsed >= boot + ready - 1, f"pod ran after {elapsed:.1f}s"

    node = k8s.core.read_node(pod.spec.node_name)
    labels = node.metadata.labels
    assert labels[autoscaler.NODEPOOL_LABEL] == POOL
    assert labels[POOL_LABEL] == POOL
    assert labels[nodes.GPU_PRODUCT_LABEL] == "NVIDIA-L4"
    assert labels[nodes.GPU_COUNT_LABEL] == "1"
    assert labels[nodes.GPU_MEMORY_LABEL] == "23034"
    assert labels[nodes.INSTANCE_TYPE_LABEL] == "g2-standard-24"
    assert labels["nvidia.com/gpu.present"] == "true"
    (declared,) = [p for p in autoscaler.load_autoscaled_pools() if p.name == POOL]
    assert labels[autoscaler.ZONE_LABEL] in declared.zones
    assert labels[autoscaler.REGION_LABEL] == declared.region
    assert node.status.capacity[GPU_RESOURCE] == "1"
    assert node.status.allocatable[GPU_RESOURCE] == "1"
    assert node.status.capacity["cpu"] == "24"
    taints = [(t.key, t.value, t.effect) for t in node.spec.taints or []]
    assert (GPU_TAINT["key"], GPU_TAINT["value"], GPU_TAINT["effect"]) in taints
    # What the simulated kubelet and `kubectl logs` need, as on the static nodes.
    assert node.metadata.annotations[nodes.KWOK_NODE_ANNOTATION] == nodes.KWOK_NODE_ANNOTATION_VALUE
    assert ipaddress.IPv4Network(node.spec.pod_cidr).subnet_of(
        ipaddress.IPv4Network(config.POD_NETWORK)
    )
    static_cidrs = {m["spec"]["podCIDR"] for m in nodes.pool_node_manifests()}
    assert node.spec.pod_cidr not in static_cidrs
    assert node.status.daemon_endpoints.kubelet_endpoint.port == config.KUBELET_PORT
    addresses = {(a.type, a.address) for a in node.status.addresses}
    assert (config.KUBELET_ADDRESS_TYPE, config.KUBELET_HOSTNAME) in addresses
    assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(node.spec.pod_cidr)
    # The apiserver reaches the simulated kubelet through the node's advertised endpoint.
    wait_for(
        lambda: GREETING in k8s.core.read_namespaced_pod_log("gpu", namespace),
        15,
        describe="the pod's log through the apiserver",
    )

    # Karpenter said why the pod waited (Nominated: it will run on the node being launched).
    reasons = {
        e.reason
        for e in k8s.core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=gpu"
        ).items
    }
    assert "Nominated" in reasons, reasons

    k8s.core.delete_namespaced_pod("gpu", namespace, grace_period_seconds=0)
    name = node.metadata.name

    def node_gone() -> bool:
        return all(n.metadata.name != name for n in _pool_nodes(k8s))

    wait_for(
        node_gone,
        empty_after + SCALE_DOWN_MARGIN_SECONDS,
        describe=f"node {name} removed when empty",
    )

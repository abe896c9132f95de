"""The local control plane behaves like a real cluster (scheduler, controllers, quota, KWOK).

Pause-image pods are made Ready by KWOK alone, so these tests need no simulated kubelet.
"""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from devstack.cluster import (
    GPU_RESOURCE,
    POOL_LABEL,
    SIM_KUBELET_ANNOTATION,
    SIM_KUBELET_ANNOTATION_VALUE,
    ClusterInfo,
    config,
    nodes,
)
from tests.fixtures.cluster import K8sClients, wait_for

pytestmark = pytest.mark.cluster

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
# Outside config.POD_NETWORK (10.244.0.0/16): never routed, never served by the kubelet.
PROBE_POD_CIDR = "10.255.0.0/24"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def deployment(
    name: str,
    *,
    replicas: int = 1,
    gpus: int = 0,
    pool: str | None = None,
    image: str = PAUSE_IMAGE,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    selector = {"app": name}
    container: dict[str, Any] = {
        "name": "main",
        "image": image,
        "ports": [{"containerPort": 80, "name": "http"}],
    }
    if gpus:
        container["resources"] = {"limits": {GPU_RESOURCE: str(gpus)}}
    pod_spec: dict[str, Any] = {"containers": [container], "terminationGracePeriodSeconds": 1}
    if pool:
        pod_spec["nodeSelector"] = {POOL_LABEL: pool}
        pod_spec["tolerations"] = [GPU_TOLERATION]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {"metadata": {"labels": {**selector, **(labels or {})}}, "spec": pod_spec},
        },
    }


def pods_of(k8s: K8sClients, namespace: str, app: str) -> list[Any]:
    return k8s.core.list_namespaced_pod(namespace, label_selector=f"app={app}").items


def is_ready(pod: Any) -> bool:
    conditions = pod.status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def describe_pods(k8s: K8sClients, namespace: str) -> str:
    lines = []
    for pod in k8s.core.list_namespaced_pod(namespace).items:
        conditions = [
            f"{c.type}={c.status}({c.reason or ''}: {c.message or ''})"
            for c in pod.status.conditions or []
        ]
        lines.append(
            f"{pod.metadata.name} phase={pod.status.phase} node={pod.spec.node_name} "
            f"ip={pod.status.pod_ip} {' '.join(conditions)}"
        )
    return "\n".join(lines) or "(no pods)"


def gpu_occupancy(k8s: K8sClients, pool: str) -> str:
    """Which pods hold GPUs on the pool's nodes (for failure messages)."""
    pool_nodes = {
        n.metadata.name for n in k8s.core.list_node(label_selector=f"{POOL_LABEL}={pool}").items
    }
    lines = [f"GPU pods on pool {pool} ({len(pool_nodes)} nodes):"]
    for pod in k8s.core.list_pod_for_all_namespaces().items:
        if pod.spec.node_name not in pool_nodes:
            continue
        limits = [(c.resources.limits or {}).get(GPU_RESOURCE) for c in pod.spec.containers]
        if any(limits):
            deleting = " (terminating)" if pod.metadata.deletion_timestamp else ""
            lines.append(
                f"  {pod.metadata.namespace}/{pod.metadata.name} on {pod.spec.node_name} "
                f"phase={pod.status.phase}{deleting}"
            )
    return "\n".join(lines)


def test_pool_nodes_are_ready_gpu_nodes(k8s: K8sClients) -> None:
    expected = {m["metadata"]["name"]: m for m in nodes.pool_node_manifests()}
    by_name = {n.metadata.name: n for n in k8s.core.list_node().items}
    assert set(expected) <= set(by_name)
    l4 = by_name["l4-1"]
    assert l4.metadata.labels[POOL_LABEL] == "l4"
    assert l4.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert l4.status.allocatable[GPU_RESOURCE] == "1"
    assert by_name["h100-80g-1"].status.capacity[GPU_RESOURCE] == "8"
    assert [(t.key, t.value, t.effect) for t in l4.spec.taints] == [
        (GPU_RESOURCE, "present", "NoSchedule")
    ]
    assert not by_name["system-1"].spec.taints
    for name, manifest in expected.items():
        node = by_name[name]
        assert node.spec.pod_cidr == manifest["spec"]["podCIDR"]
        assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        # Where the apiserver sends pods/log: the simulated kubelet's HTTPS port, kept by
        # kwok's heartbeats.
        assert node.status.daemon_endpoints.kubelet_endpoint.port == config.KUBELET_PORT
        assert ("InternalDNS", "localhost") in [(a.type, a.address) for a in node.status.addresses]


def test_two_gpus_on_an_l4_node_are_unschedulable(k8s: K8sClients, namespace: str) -> None:
    k8s.apps.create_namespaced_deployment(namespace, deployment("big", gpus=2, pool="l4"))

    def unschedulable_condition() -> Any:
        for pod in pods_of(k8s, namespace, "big"):
            for condition in pod.status.conditions or []:
                if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                    return condition
        return None

    condition = wait_for(
        unschedulable_condition, 30, describe=lambda: describe_pods(k8s, namespace)
    )
    assert condition.status == "False"
    assert "Insufficient nvidia.com/gpu" in condition.message
    (pod,) = pods_of(k8s, namespace, "big")
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None


def test_one_gpu_pod_becomes_ready_on_an_l4_node(k8s: K8sClients, namespace: str) -> None:
    k8s.apps.create_namespaced_deployment(namespace, deployment("small", gpus=1, pool="l4"))

    def ready_pod() -> Any:
        return next((p for p in pods_of(k8s, namespace, "small") if is_ready(p)), None)

    # Only 4 L4 GPUs exist and other suites' pods may still be terminating on them, hence the
    # generous timeout and the occupancy report on failure.
    pod = wait_for(
        ready_pod,
        90,
        describe=lambda: f"{describe_pods(k8s, namespace)}\n{gpu_occupancy(k8s, 'l4')}",
    )
    node = k8s.core.read_node(pod.spec.node_name)
    assert node.metadata.labels[POOL_LABEL] == "l4"
    assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(node.spec.pod_cidr)
    wait_for(
        lambda: (
            k8s.apps.read_namespaced_deployment_status("small", namespace).status.ready_replicas
            == 1
        ),
        30,
        describe="deployment small readyReplicas == 1",
    )


def test_gpu_resource_quota_rejects_pods_over_quota(k8s: K8sClients, namespace: str) -> None:
    k8s.core.create_namespaced_resource_quota(
        namespace,
        {"metadata": {"name": "gpus"}, "spec": {"hard": {f"requests.{GPU_RESOURCE}": "1"}}},
    )
    # Quota admission only enforces once the quota controller has filled in status.hard.
    wait_for(
        lambda: k8s.core.read_namespaced_resource_quota("gpus", namespace).status.hard,
        30,
        describe="quota status populated",
    )
    pod: dict[str, Any] = {
        "metadata": {"name": "two-gpus"},
        "spec": {
            "containers": [
                {"name": "main", "image": PAUSE_IMAGE, "resources": {"limits": {GPU_RESOURCE: "2"}}}
            ],
            "tolerations": [GPU_TOLERATION],
        },
    }
    with pytest.raises(ApiException) as excinfo:
        k8s.core.create_namespaced_pod(namespace, pod)
    assert excinfo.value.status == 403
    assert "exceeded quota" in (excinfo.value.body or "")
    pod["metadata"]["name"] = "one-gpu"
    pod["spec"]["containers"][0]["resources"]["limits"][GPU_RESOURCE] = "1"
    pod["spec"]["nodeSelector"] = {POOL_LABEL: "h100-80g"}  # leave the 4 scarce L4s alone
    k8s.core.create_namespaced_pod(namespace, pod)  # within quota: admitted


def test_rolling_update_completes(k8s: K8sClients, namespace: str) -> None:
    k8s.apps.create_namespaced_deployment(namespace, deployment("web", replicas=3))

    def rolled_out(expected_generation: int) -> bool:
        d = k8s.apps.read_namespaced_deployment_status("web", namespace)
        s = d.status
        return (
            (s.observed_generation or 0) >= expected_generation
            and s.updated_replicas == 3
            and s.ready_replicas == 3
            and s.available_replicas == 3
            and (s.replicas or 0) == 3
        )

    wait_for(lambda: rolled_out(1), 60, describe=lambda: describe_pods(k8s, namespace))
    k8s.apps.patch_namespaced_deployment(
        "web",
        namespace,
        {"spec": {"template": {"metadata": {"annotations": {"rollout": "2"}}}}},
    )
    wait_for(lambda: rolled_out(2), 60, describe=lambda: describe_pods(k8s, namespace))
    replica_sets = k8s.apps.list_namespaced_replica_set(namespace, label_selector="app=web").items
    assert sorted(rs.status.replicas or 0 for rs in replica_sets) == [0, 3]


def test_endpointslice_lists_exactly_the_ready_pod_ips(k8s: K8sClients, namespace: str) -> None:
    k8s.apps.create_namespaced_deployment(namespace, deployment("api", replicas=2))
    k8s.core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "api"},
            "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    )

    def ready_ips() -> set[str]:
        return {p.status.pod_ip for p in pods_of(k8s, namespace, "api") if is_ready(p)}

    def slice_ips() -> set[str]:
        slices = k8s.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=api"
        ).items
        return {
            address
            for s in slices
            for endpoint in s.endpoints or []
            if endpoint.conditions and endpoint.conditions.ready
            for address in endpoint.addresses
        }

    def converged() -> set[str] | None:
        ips = ready_ips()
        return ips if len(ips) == 2 and slice_ips() == ips else None

    ips = wait_for(
        converged,
        45,
        describe=lambda: f"slice={slice_ips()}\n{describe_pods(k8s, namespace)}",
    )
    pod_network = ipaddress.ip_network("10.244.0.0/16")
    assert all(ipaddress.ip_address(ip) in pod_network for ip in ips)

    # Scaling down removes the endpoint again: the slice follows the pods.
    k8s.apps.patch_namespaced_deployment_scale("api", namespace, {"spec": {"replicas": 1}})
    wait_for(
        lambda: len(slice_ips()) == 1 and slice_ips() == ready_ips(),
        45,
        describe=lambda: f"slice={slice_ips()}\n{describe_pods(k8s, namespace)}",
    )


def test_job_pods_complete(k8s: K8sClients, namespace: str) -> None:
    k8s.batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "once"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "busybox:1.36"}],
                    }
                }
            },
        },
    )
    wait_for(
        lambda: k8s.batch.read_namespaced_job_status("once", namespace).status.succeeded == 1,
        45,
        describe=lambda: describe_pods(k8s, namespace),
    )


@pytest.fixture
def probe_node(k8s: K8sClients) -> Iterator[str]:
    """A KWOK node whose podCIDR lies outside the pod network, for pods only KWOK may touch.

    The simulated kubelet serves only KWOK nodes with a /24 of the pod network (it needs one
    for the node's network namespace), so the KWOK stage rule can be observed here while the
    kubelet runs. Set at creation, the CIDR is also one the controller-manager's node IPAM
    cannot replace (it only fills an empty spec.podCIDR).
    """
    name = f"kwok-rule-probe-{uuid.uuid4().hex[:6]}"
    k8s.core.create_node(
        {
            "metadata": {
                "name": name,
                "labels": {"devstack/test": "true"},
                "annotations": {nodes.KWOK_NODE_ANNOTATION: nodes.KWOK_NODE_ANNOTATION_VALUE},
            },
            # Keep every scheduled pod away; the test binds its pods with spec.nodeName.
            "spec": {
                "podCIDR": PROBE_POD_CIDR,
                "podCIDRs": [PROBE_POD_CIDR],
                "taints": [{"key": "devstack/probe", "effect": "NoSchedule"}],
            },
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "20"}},
        }
    )
    try:
        wait_for(
            lambda: is_ready(k8s.core.read_node(name)), 30, describe=f"probe node {name} Ready"
        )
        yield name
    finally:
        k8s.core.delete_node(name)


def status_writers(pod: Any) -> set[str]:
    return {m.manager for m in pod.metadata.managed_fields or [] if m.subresource == "status"}


@pytest.mark.parametrize(
    ("image", "annotations"),
    [
        ("ghcr.io/huggingface/text-generation-inference:3.3.6", {}),
        ("localhost/inference-portal:dev", {}),
        (PAUSE_IMAGE, {SIM_KUBELET_ANNOTATION: SIM_KUBELET_ANNOTATION_VALUE}),
    ],
    ids=["tgi-image", "portal-image", "opt-in-annotation"],
)
def test_kwok_leaves_sim_kubelet_pods_alone(
    k8s: K8sClients, namespace: str, probe_node: str, image: str, annotations: dict[str, str]
) -> None:
    def pod(name: str, image: str, annotations: dict[str, str]) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "annotations": annotations},
            "spec": {
                "nodeName": probe_node,
                "containers": [{"name": "main", "image": image}],
                "terminationGracePeriodSeconds": 2,
            },
        }

    k8s.core.create_namespaced_pod(namespace, pod("sim", image, annotations))
    # Control: an ordinary pod on the same node is made Ready by KWOK.
    k8s.core.create_namespaced_pod(namespace, pod("control", PAUSE_IMAGE, {}))
    wait_for(
        lambda: is_ready(k8s.core.read_namespaced_pod("control", namespace)),
        30,
        describe=lambda: describe_pods(k8s, namespace),
    )
    time.sleep(1.5)  # KWOK acts within milliseconds; give it ample opportunity to misbehave
    sim = k8s.core.read_namespaced_pod("sim", namespace)
    assert sim.status.phase == "Pending", status_writers(sim)
    assert not is_ready(sim)
    assert sim.status.pod_ip is None
    assert not any(w.startswith("kwok") for w in status_writers(sim))

    # Safety net: once the grace period is over, KWOK removes it even without a kubelet.
    k8s.core.delete_namespaced_pod("sim", namespace)

    def gone() -> bool:
        try:
            k8s.core.read_namespaced_pod("sim", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, 20, describe="sim-kubelet pod removed after its grace period")


def test_prometheus_discovers_tgi_pods(
    cluster: ClusterInfo, k8s: K8sClients, namespace: str
) -> None:
    labels = {"inference.backend": "tgi", "inference.portal/deployment": "demo"}
    k8s.apps.create_namespaced_deployment(namespace, deployment("tgi-demo", labels=labels))

    def discovered() -> dict[str, Any] | None:
        url = f"{cluster.prometheus_url}/api/v1/targets?state=active"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            targets = json.load(response)["data"]["activeTargets"]
        return next(
            (t for t in targets if t["labels"].get("namespace") == namespace),
            None,
        )

    target = wait_for(discovered, 45, describe="Prometheus target for the TGI pod")
    pod = next(p for p in pods_of(k8s, namespace, "tgi-demo") if is_ready(p))
    assert target["scrapeUrl"] == f"http://{pod.status.pod_ip}:80/metrics"
    assert target["labels"]["pod"] == pod.metadata.name
    assert target["labels"]["node"] == pod.spec.node_name
    assert target["labels"]["inference_portal_deployment"] == "demo"

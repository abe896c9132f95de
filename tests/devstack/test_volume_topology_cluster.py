"""Volume topology on the local cluster: the real kube-scheduler and PV controller with our
provisioner and the simulated kubelet's attach rules (see devstack/kubelet/provisioner.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack.cluster import ClusterInfo
from devstack.kubelet.kube import KubeClient
from tests.fixtures.cluster import wait_for

pytestmark = pytest.mark.cluster

ZONE = "topology.kubernetes.io/zone"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture(scope="module")
def kube(cluster: ClusterInfo) -> KubeClient:
    return KubeClient(cluster.kubeconfig)


def claims_path(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/persistentvolumeclaims" + (f"/{name}" if name else "")


def pods_path(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/pods" + (f"/{name}" if name else "")


def claim(name: str, mode: str = "ReadWriteOnce", storage_class: str | None = None) -> dict:
    spec: dict[str, Any] = {"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}


def pod(name: str, claim_name: str, node_selector: dict[str, str]) -> dict[str, Any]:
    """A pod the simulated kubelet runs (a plain process) on a GPU node, mounting the claim."""
    return {
        "metadata": {
            "name": name,
            "annotations": {"devstack.inference.portal/runtime": "sim-kubelet"},
        },
        "spec": {
            "nodeSelector": {"inference.portal/pool": "l4", **node_selector},
            "tolerations": [GPU_TOLERATION],
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": "busybox:1.36",
                    "command": ["sleep", "600"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }


def nodes_by_zone(kube: KubeClient) -> dict[str, list[str]]:
    zones: dict[str, list[str]] = {}
    for node in kube.request(
        "GET", "/api/v1/nodes", params={"labelSelector": "inference.portal/pool=l4"}
    )["items"]:
        zones.setdefault(node["metadata"]["labels"][ZONE], []).append(node["metadata"]["name"])
    return {zone: sorted(names) for zone, names in zones.items()}


def state(kube: KubeClient, namespace: str) -> Any:
    def describe() -> str:
        pods = kube.request("GET", pods_path(namespace))["items"]
        claims = kube.request("GET", claims_path(namespace))["items"]
        return json.dumps(
            {
                "pods": {p["metadata"]["name"]: p.get("status") for p in pods},
                "claims": {c["metadata"]["name"]: c.get("status") for c in claims},
            },
            indent=1,
        )

    return describe


def event_of(kube: KubeClient, namespace: str, name: str, reason: str) -> dict[str, Any] | None:
    events = kube.request(
        "GET",
        f"/api/v1/namespaces/{namespace}/events",
        params={"fieldSelector": f"involvedObject.name={name}"},
    )["items"]
    return next((e for e in events if e["reason"] == reason), None)


def running(kube: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    current = kube.get(pods_path(namespace, name))
    if current and (current.get("status") or {}).get("phase") == "Running":
        return current
    return None


def test_gpu_nodes_carry_zones_and_the_labels_gfd_and_gke_set(kube: KubeClient) -> None:
    zones = nodes_by_zone(kube)
    assert len(zones) >= 2, zones
    node = kube.get(f"/api/v1/nodes/{zones['local-1a'][0]}")
    assert node is not None
    labels = node["metadata"]["labels"]
    assert labels["topology.kubernetes.io/region"] == "local-1"
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert labels["nvidia.com/gpu.count"] == "1"
    assert labels["nvidia.com/gpu.memory"] == "23034"
    assert labels["node.kubernetes.io/instance-type"] == "g2-standard-24"
    assert labels["cloud.google.com/gke-accelerator"] == "nvidia-l4"
    assert labels["cloud.google.com/gke-nodepool"] == "l4"


def test_zonal_volume_follows_its_first_consumer_and_binds_other_zones_out(
    kube: KubeClient, namespace: str
) -> None:
    zones = nodes_by_zone(kube)
    kube.create(claims_path(namespace), claim("weights"))
    # WaitForFirstConsumer: the PV controller says so, and nothing is provisioned before a pod
    # uses the claim.
    waiting = wait_for(
        lambda: event_of(kube, namespace, "weights", "WaitForFirstConsumer"),
        30,
        describe=state(kube, namespace),
    )
    assert waiting["source"]["component"] == "persistentvolume-controller"
    pending = kube.get(claims_path(namespace, "weights"))
    assert pending is not None and not pending["spec"].get("volumeName")
    assert pending["status"]["phase"] == "Pending"

    first_node = zones["local-1b"][0]
    kube.create(
        pods_path(namespace), pod("first", "weights", {"kubernetes.io/hostname": first_node})
    )
    wait_for(lambda: running(kube, namespace, "first"), 60, describe=state(kube, namespace))
    bound = kube.get(claims_path(namespace, "weights"))
    assert bound is not None and bound["status"]["phase"] == "Bound"
    assert bound["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == first_node
    pv = kube.get(f"/api/v1/persistentvolumes/{bound['spec']['volumeName']}")
    assert pv is not None
    expression = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][
        0
    ]
    assert expression == {"key": ZONE, "operator": "In", "values": ["local-1b"]}

    # A consumer pinned to the other zone is refused by the scheduler's VolumeBinding plugin.
    kube.create(pods_path(namespace), pod("elsewhere", "weights", {ZONE: "local-1a"}))

    def unschedulable() -> str | None:
        current = kube.get(pods_path(namespace, "elsewhere")) or {}
        for cond in (current.get("status") or {}).get("conditions") or []:
            if cond["type"] == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return str(cond.get("message", ""))
        return None

    message = wait_for(unschedulable, 30, describe=state(kube, namespace))
    # The VolumeBinding plugin's reason in current releases, as the local 1.35 scheduler says it
    # (older releases said "node(s) had volume node affinity conflict").
    assert "node(s) didn't match PersistentVolume's node affinity" in message


def test_rwo_volume_in_use_on_one_node_holds_a_pod_on_another_in_container_creating(
    kube: KubeClient, namespace: str
) -> None:
    first_node, second_node = nodes_by_zone(kube)["local-1a"][:2]
    kube.create(claims_path(namespace), claim("weights"))
    kube.create(pods_path(namespace), pod("old", "weights", {"kubernetes.io/hostname": first_node}))
    wait_for(lambda: running(kube, namespace, "old"), 60, describe=state(kube, namespace))
    kube.create(
        pods_path(namespace), pod("new", "weights", {"kubernetes.io/hostname": second_node})
    )

    event = wait_for(
        lambda: event_of(kube, namespace, "new", "FailedAttachVolume"),
        30,
        describe=state(kube, namespace),
    )
    pvc = kube.get(claims_path(namespace, "weights"))
    assert pvc is not None
    assert event["type"] == "Warning"
    assert event["source"]["component"] == "attachdetach-controller"
    assert event["message"] == (
        f'Multi-Attach error for volume "{pvc["spec"]["volumeName"]}" '
        "Volume is already used by pod(s) old"
    )
    held = kube.get(pods_path(namespace, "new"))
    assert held is not None and held["status"]["phase"] == "Pending"
    waiting = held["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ContainerCreating"

    # Once the first pod is gone the volume is free for the second node.
    kube.delete(pods_path(namespace, "old"))
    wait_for(lambda: running(kube, namespace, "new"), 60, describe=state(kube, namespace))


def test_shared_files_volume_is_used_from_two_zones_at_once(
    kube: KubeClient, namespace: str
) -> None:
    zones = nodes_by_zone(kube)
    kube.create(claims_path(namespace), claim("shared", "ReadWriteMany", "shared-files"))
    # Immediate binding: no consumer needed.
    wait_for(
        lambda: (
            (kube.get(claims_path(namespace, "shared")) or {}).get("status", {}).get("phase")
            == "Bound"
        ),
        30,
        describe=state(kube, namespace),
    )
    pvc = kube.get(claims_path(namespace, "shared"))
    assert pvc is not None
    pv = kube.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
    assert pv is not None and "nodeAffinity" not in pv["spec"]
    kube.create(pods_path(namespace), pod("a", "shared", {ZONE: "local-1a"}))
    kube.create(pods_path(namespace), pod("b", "shared", {ZONE: "local-1b"}))
    nodes = []
    for name in ("a", "b"):

        def up(name: str = name) -> dict[str, Any] | None:
            return running(kube, namespace, name)

        nodes.append(wait_for(up, 60, describe=state(kube, namespace))["spec"]["nodeName"])
    assert nodes[0] in zones["local-1a"] and nodes[1] in zones["local-1b"]

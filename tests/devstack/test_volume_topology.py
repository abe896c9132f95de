"""Volume topology of the local cluster without a cluster: classes, PVs, Multi-Attach rules.

The cluster tests (tests/devstack/test_volume_topology_cluster.py) prove the same behaviour end to
end with the real scheduler and PV controller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devstack.kubelet import provisioner
from devstack.kubelet.pods import attach_holders, multi_attach_forbidden, multi_attach_message


def _claim(
    modes: list[str], storage_class: str | None = None, selected: str | None = None
) -> dict[str, Any]:
    annotations = {provisioner.SELECTED_NODE_ANNOTATION: selected} if selected else {}
    spec: dict[str, Any] = {"accessModes": modes, "resources": {"requests": {"storage": "2Gi"}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "metadata": {"namespace": "t", "name": "w", "uid": "u-1", "annotations": annotations},
        "spec": spec,
    }


def _node(name: str, zone: str | None) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name}
    if zone:
        labels[provisioner.ZONE_LABEL] = zone
    return {"metadata": {"name": name, "labels": labels}}


def test_default_class_waits_for_the_first_consumer_and_the_shared_one_binds_at_once() -> None:
    default = provisioner.storage_class_manifest(provisioner.ZONAL)
    shared = provisioner.storage_class_manifest(provisioner.SHARED)
    assert default["volumeBindingMode"] == "WaitForFirstConsumer"
    assert default["metadata"]["annotations"] == {provisioner.DEFAULT_CLASS_ANNOTATION: "true"}
    assert shared["volumeBindingMode"] == "Immediate"
    assert shared["metadata"]["name"] == "shared-files"
    assert provisioner.DEFAULT_CLASS_ANNOTATION not in shared["metadata"]["annotations"]


def test_zonal_volume_is_pinned_to_the_selected_nodes_zone(tmp_path: Path) -> None:
    claim = _claim(["ReadWriteOnce"], selected="l4-2")
    pv = provisioner.pv_manifest(tmp_path, claim, provisioner.ZONAL, _node("l4-2", "local-1b"))
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms == [
        {
            "matchExpressions": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["local-1b"]}
            ]
        }
    ]
    assert pv["spec"]["claimRef"]["uid"] == "u-1"
    assert pv["metadata"]["annotations"][provisioner.PROVISIONED_BY] == provisioner.PROVISIONER


def test_node_without_a_zone_pins_the_volume_to_the_node(tmp_path: Path) -> None:
    pv = provisioner.pv_manifest(
        tmp_path, _claim(["ReadWriteOnce"]), provisioner.ZONAL, _node("odd-1", None)
    )
    expression = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][
        0
    ]
    assert expression == {"key": "kubernetes.io/hostname", "operator": "In", "values": ["odd-1"]}


def test_shared_volume_has_no_node_affinity(tmp_path: Path) -> None:
    claim = _claim(["ReadWriteMany"], "shared-files")
    assert provisioner.class_of(claim) is provisioner.SHARED
    pv = provisioner.pv_manifest(tmp_path, claim, provisioner.SHARED, None)
    assert "nodeAffinity" not in pv["spec"]
    assert pv["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pv["metadata"]["annotations"][provisioner.PROVISIONED_BY] == (
        "devstack.inference.portal/shared-files"
    )


def test_zonal_class_refuses_many_node_access_modes() -> None:
    assert provisioner.unsupported_modes(provisioner.ZONAL, _claim(["ReadWriteMany"])) == [
        "ReadWriteMany"
    ]
    assert provisioner.unsupported_modes(provisioner.ZONAL, _claim(["ReadWriteOnce"])) == []
    shared = _claim(["ReadOnlyMany", "ReadWriteMany"], "shared-files")
    assert provisioner.unsupported_modes(provisioner.SHARED, shared) == []
    # A claim of a class we do not serve is left alone.
    assert provisioner.class_of(_claim(["ReadWriteOnce"], "premium-rwo")) is None


def test_only_single_node_volumes_refuse_a_second_node() -> None:
    assert multi_attach_forbidden(["ReadWriteOnce"])
    assert not multi_attach_forbidden(["ReadWriteMany"])
    assert not multi_attach_forbidden(["ReadOnlyMany"])
    assert not multi_attach_forbidden(["ReadWriteOnce", "ReadOnlyMany"])
    assert not multi_attach_forbidden([])  # unknown: upstream lets the attacher decide


def test_multi_attach_message_is_the_attach_detach_controllers() -> None:
    assert multi_attach_message("pvc-1", ["web-b", "web-a"]) == (
        'Multi-Attach error for volume "pvc-1" Volume is already used by pod(s) web-a, web-b'
    )


def _user(
    name: str, node: str, phase: str = "Pending", created: str = "2026-01-01T00:00:00Z"
) -> dict:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"nodeName": node},
        "status": {"phase": phase},
    }


def test_a_running_pod_on_another_node_holds_the_volume() -> None:
    users = [_user("old", "l4-1", "Running"), _user("new", "l4-3")]
    assert attach_holders("l4-3", users) == ["old"]
    # The same node shares the attachment.
    assert attach_holders("l4-1", [*users, _user("twin", "l4-1")]) == []


def test_two_new_pods_on_two_nodes_do_not_block_each_other() -> None:
    early = _user("a", "l4-3", created="2026-01-01T00:00:00Z")
    late = _user("b", "l4-1", created="2026-01-01T00:00:05Z")
    # The earlier pod's node gets the volume, the later one waits for it.
    assert attach_holders("l4-3", [early, late]) == []
    assert attach_holders("l4-1", [early, late]) == ["a"]


def test_once_the_other_nodes_pods_are_gone_the_volume_attaches() -> None:
    assert attach_holders("l4-3", [_user("new", "l4-3")]) == []

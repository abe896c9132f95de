"""Karpenter's configuration as rendered from nodepools.yaml (no running cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.cluster import autoscaler, config, control, nodes, stages


def _l4_pools() -> tuple[autoscaler.AutoscaledPool, nodes.NodePool]:
    autoscaled = {pool.name: pool for pool in autoscaler.load_autoscaled_pools()}
    static = {pool.name: pool for pool in nodes.load_pools()}
    return autoscaled["l4-autoscaled"], static["l4"]


def test_autoscaled_l4_nodes_get_the_static_l4_nodes_gpu_labels_and_capacity() -> None:
    pool, static = _l4_pools()
    static_node = nodes.node_manifest("l4-1", static, "10.244.1.0/24", "10.240.0.1")
    it = autoscaler.instance_type(pool)
    assert it["name"] == static.instance_type
    assert (
        it["resources"][nodes.GPU_RESOURCE] == static_node["status"]["capacity"][nodes.GPU_RESOURCE]
    )
    assert it["resources"]["cpu"] == static_node["status"]["capacity"]["cpu"]
    # The kwok provider copies every single-valued offering requirement onto the Node.
    for offering in it["offerings"]:
        labels = {r["key"]: r["values"][0] for r in offering["Requirements"]}
        for key in (
            nodes.GPU_PRODUCT_LABEL,
            nodes.GPU_COUNT_LABEL,
            nodes.GPU_MEMORY_LABEL,
            "nvidia.com/gpu.present",
        ):
            assert labels[key] == static_node["metadata"]["labels"][key]
        assert labels[autoscaler.REGION_LABEL] == pool.region
    zones = [
        r["values"][0]
        for offering in it["offerings"]
        for r in offering["Requirements"]
        if r["key"] == autoscaler.ZONE_LABEL
    ]
    assert zones == list(pool.zones)
    assert len(zones) >= 2


def test_autoscaled_gpu_pool_starts_empty_is_capped_tainted_and_shrinks_when_idle() -> None:
    pool, _ = _l4_pools()
    manifest = autoscaler.node_pool(pool, empty_seconds=7)
    spec = manifest["spec"]
    assert spec["limits"] == {nodes.GPU_RESOURCE: str(pool.max_nodes)}
    assert spec["disruption"] == {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "7s"}
    template = spec["template"]
    assert template["metadata"]["labels"] == {nodes.POOL_LABEL: "l4-autoscaled"}
    assert template["spec"]["taints"] == [nodes.GPU_TAINT]
    assert {
        "key": nodes.INSTANCE_TYPE_LABEL,
        "operator": "In",
        "values": [pool.shape.instance_type],
    } in template["spec"]["requirements"]
    # Which GPU the pool launches is readable while it has no node.
    assert {
        "key": nodes.GPU_PRODUCT_LABEL,
        "operator": "In",
        "values": ["NVIDIA-L4"],
    } in template["spec"]["requirements"]
    assert template["spec"]["nodeClassRef"]["name"] == autoscaler.NODE_CLASS_NAME
    assert autoscaler.node_class(boot_seconds=12)["spec"] == {"nodeRegistrationDelay": "12s"}


def test_nodepools_file_errors_name_the_pool_and_field(tmp_path: Path) -> None:
    path = tmp_path / "nodepools.yaml"
    shape = "instance_type: x\n    cpu: '1'\n    memory: 1Gi\n    region: r\n"
    path.write_text(
        f"pools: {{}}\nautoscaled:\n  small:\n    max_nodes: 0\n    zones: [a]\n    {shape}"
    )
    with pytest.raises(ValueError, match="small: max_nodes"):
        autoscaler.load_autoscaled_pools(path)
    path.write_text(
        f"pools: {{}}\nautoscaled:\n  small:\n    max_nodes: 1\n    zones: []\n    {shape}"
    )
    with pytest.raises(ValueError, match="small: zones"):
        autoscaler.load_autoscaled_pools(path)


def test_autoscaled_nodes_become_ready_only_after_the_ready_delay() -> None:
    register, ready = stages.autoscaled_node_stages(ready_seconds=9)
    assert "delay" not in register["spec"]
    assert "KubeletNotReady" in register["spec"]["next"]["statusTemplate"]
    assert ready["spec"]["delay"] == {"durationMilliseconds": 9000}
    for stage in (register, ready):
        assert {"key": stages.AUTOSCALED_NODE_JQ, "operator": "Exists"} in stage["spec"][
            "selector"
        ]["matchExpressions"]
    # Registered like a static node: the apiserver must reach the simulated kubelet there too.
    assert f"Port: {config.KUBELET_PORT}" in register["spec"]["next"]["statusTemplate"]
    assert "type: InternalDNS" in register["spec"]["next"]["statusTemplate"]


def test_karpenter_is_started_with_the_generated_instance_types(tmp_path: Path) -> None:
    specs = control.component_specs(config.Layout(tmp_path))
    argv = specs["karpenter"].argv
    assert f"--instance-types-file-path={tmp_path / 'karpenter' / 'instance-types.json'}" in argv
    assert specs["karpenter"].env is not None
    assert specs["karpenter"].env["KUBECONFIG"] == str(tmp_path / "kubeconfig")
    # Karpenter's nodes come without spec.podCIDR; the simulated kubelet needs one.
    assert "--allocate-node-cidrs=true" in specs["kube-controller-manager"].argv


@pytest.mark.parametrize("raw", ["soon", "-1", "1.5"])
def test_delay_settings_fail_loudly_on_a_bad_value(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("PORTAL_TEST_SECONDS", raw)
    with pytest.raises(SystemExit, match="PORTAL_TEST_SECONDS"):
        config.env_seconds("PORTAL_TEST_SECONDS", 5)


def test_delay_settings_default_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORTAL_TEST_SECONDS", raising=False)
    assert config.env_seconds("PORTAL_TEST_SECONDS", 5) == 5

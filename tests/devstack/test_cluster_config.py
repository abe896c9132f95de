"""Generated cluster configuration (no running cluster needed)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from devstack.cluster import (
    SIM_KUBELET_ANNOTATION,
    SIM_KUBELET_ANNOTATION_VALUE,
    SIM_KUBELET_POD_JQ,
    config,
    control,
    is_sim_kubelet_pod,
    nodes,
    processes,
    prometheus,
    stages,
)
from engines import ENGINES


def _pod(image: str, annotations: dict[str, str] | None = None) -> dict[str, object]:
    return {
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {"containers": [{"name": "main", "image": image}]},
    }


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (_pod("ghcr.io/huggingface/text-generation-inference:3.3.6"), True),
        (_pod("localhost:5000/inference-portal:dev"), True),
        (_pod("vllm/vllm-openai:v0.11.0"), True),
        (_pod("docker.io/lmsysorg/sglang:v0.5.5"), True),
        (_pod("registry.k8s.io/pause:3.10"), False),
        (_pod("busybox", {SIM_KUBELET_ANNOTATION: SIM_KUBELET_ANNOTATION_VALUE}), True),
        (_pod("busybox", {SIM_KUBELET_ANNOTATION: "kwok"}), False),
        ({"metadata": {}, "spec": {}}, False),
    ],
)
def test_sim_kubelet_rule_on_dicts(pod: dict[str, object], expected: bool) -> None:
    assert is_sim_kubelet_pod(pod) is expected


def test_sim_kubelet_rule_on_client_objects() -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="p"),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(name="sidecar", image="busybox"),
                client.V1Container(
                    name="tgi", image="ghcr.io/huggingface/text-generation-inference:3.3.6"
                ),
            ]
        ),
    )
    assert is_sim_kubelet_pod(pod)


def test_kwok_pod_stages_exclude_sim_kubelet_pods(tmp_path: Path) -> None:
    source = tmp_path / "stages"
    source.mkdir()
    for rel in stages.build.KWOK_STAGE_FILES:
        name = Path(rel).stem
        kind = "Node" if name.startswith("node") else "Pod"
        (source / Path(rel).name).write_text(
            yaml.safe_dump(
                {
                    "kind": "Stage",
                    "metadata": {"name": name},
                    "spec": {"resourceRef": {"kind": kind}, "selector": {"matchExpressions": []}},
                }
            )
        )
    rendered = {doc["metadata"]["name"]: doc for doc in stages.render_stages(source)}
    for name in ("pod-ready", "pod-complete", "pod-delete"):
        expressions = rendered[name]["spec"]["selector"]["matchExpressions"]
        assert {"key": SIM_KUBELET_POD_JQ, "operator": "NotIn", "values": ["true"]} in expressions
    # Nodes Karpenter adds go through the autoscaled-node stages instead (delayed Ready).
    assert rendered["node-initialize"]["spec"]["selector"]["matchExpressions"] == [
        {"key": stages.AUTOSCALED_NODE_JQ, "operator": "DoesNotExist"}
    ]
    fallback = rendered["sim-kubelet-pod-delete-fallback"]["spec"]
    assert fallback["next"] == {"delete": True}


def test_pool_nodes_get_distinct_pod_cidrs_in_the_pod_network() -> None:
    manifests = nodes.pool_node_manifests()
    cidrs = [m["spec"]["podCIDR"] for m in manifests]
    assert len(set(cidrs)) == len(cidrs)
    assert cidrs[0] == "10.244.1.0/24"
    by_pool: dict[str, list[dict]] = {}
    for manifest in manifests:
        by_pool.setdefault(manifest["metadata"]["labels"][nodes.POOL_LABEL], []).append(manifest)
    assert set(by_pool) == {"system", "l4", "a100-80g", "h100-80g"}
    l4 = by_pool["l4"][0]
    assert l4["status"]["capacity"][nodes.GPU_RESOURCE] == "1"
    assert l4["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert l4["metadata"]["annotations"][nodes.KWOK_NODE_ANNOTATION] == "fake"
    assert l4["spec"]["taints"] == [nodes.GPU_TAINT]
    assert by_pool["system"][0]["spec"]["taints"] is None
    assert by_pool["h100-80g"][0]["metadata"]["labels"]["nvidia.com/gpu.count"] == "8"


def test_prometheus_scrapes_every_engines_pods_through_the_local_apiserver(tmp_path: Path) -> None:
    rendered = prometheus.render_config(config.Layout(tmp_path))
    jobs = {job["job_name"]: job for job in rendered["scrape_configs"]}
    sd = jobs["tgi-pods"]["kubernetes_sd_configs"][0]
    assert sd["role"] == "pod"
    assert sd["api_server"] == f"https://127.0.0.1:{config.APISERVER_PORT}"
    keep = jobs["tgi-pods"]["relabel_configs"][0]
    assert keep["source_labels"] == ["__meta_kubernetes_pod_label_inference_backend"]
    # Prometheus anchors relabel regexes: every engine's pods are kept, unlabelled ones are not.
    assert all(re.fullmatch(keep["regex"], name) for name in ENGINES)
    assert not re.fullmatch(keep["regex"], "")
    assert jobs["portal-web"]["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
    assert jobs["gateway"]["static_configs"][0]["targets"] == ["127.0.0.1:8080"]


def test_nodes_advertise_the_simulated_kubelet_where_the_apiserver_looks(tmp_path: Path) -> None:
    manifest = nodes.pool_node_manifests()[0]
    status = manifest["status"]
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": config.KUBELET_PORT}}
    assert {"type": "InternalDNS", "address": "localhost"} in status["addresses"]
    specs = control.component_specs(config.Layout(tmp_path))
    apiserver = specs["kube-apiserver"].argv
    # The apiserver picks the first address of these types a node reports.
    preferred = next(a for a in apiserver if a.startswith("--kubelet-preferred-address-types="))
    assert preferred.split("=", 1)[1].split(",")[0] == "InternalDNS"
    assert any(a.startswith("--kubelet-client-certificate=") for a in apiserver)
    assert any(a.startswith("--kubelet-certificate-authority=") for a in apiserver)
    assert f"--node-port={config.KUBELET_PORT}" in specs["kwok"].argv
    if "kubelet" in specs:
        assert f"--port={config.KUBELET_PORT}" in specs["kubelet"].argv


def _sleeper(tmp_path: Path, argv: list[str], config_file: Path) -> processes.ProcessSpec:
    return processes.ProcessSpec(
        name="sleeper",
        argv=argv,
        log_file=tmp_path / "sleeper.log",
        pid_file=tmp_path / "sleeper.pid",
        identity="time.sleep",
        min_uptime=0.2,
        config_files=[config_file],
    )


def test_a_component_whose_flags_or_config_changed_is_restarted(tmp_path: Path) -> None:
    stages_file = tmp_path / "stages.yaml"
    stages_file.write_text("one")
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "--flag=1"]
    spec = _sleeper(tmp_path, argv, stages_file)
    first, fresh = processes.ensure_running(spec)
    try:
        assert fresh
        assert processes.ensure_running(spec) == (first, False)  # unchanged: left alone
        stages_file.write_text("two")
        assert processes.stale_reason(spec, first) == "configuration changed"
        second, fresh = processes.ensure_running(spec)
        assert fresh and second != first and not processes.is_alive(first)
        changed = _sleeper(tmp_path, [*argv[:-1], "--flag=2"], stages_file)
        assert processes.stale_reason(changed, second) == "command line changed"
        third, _ = processes.ensure_running(changed)
        assert third != second and not processes.is_alive(second)
    finally:
        processes.stop(spec, grace=2.0)

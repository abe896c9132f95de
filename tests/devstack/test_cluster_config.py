"""Generated cluster configuration (no running cluster needed)."""

from __future__ import annotations

import copy
import ipaddress
import re
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from bench.cluster.scale import bench_node_manifests
from deployments.rendering import monitoring
from devstack import run as devstack_run
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


def _jobs(rendered: dict) -> dict[str, dict]:
    return {job["job_name"]: job for job in rendered["scrape_configs"]}


def test_5000_bench_nodes_get_distinct_pod_cidrs_apart_from_every_other_network() -> None:
    manifests = bench_node_manifests(5000)
    cidrs = [ipaddress.ip_network(m["spec"]["podCIDR"]) for m in manifests]
    assert len(set(cidrs)) == 5000
    bench = ipaddress.ip_network(config.BENCH_POD_NETWORK)
    assert all(cidr.subnet_of(bench) for cidr in cidrs)  # type: ignore[arg-type]
    # Room for every pod a node may hold (network and broadcast addresses excluded).
    pods = int(manifests[0]["status"]["capacity"]["pods"])
    assert all(cidr.num_addresses - 2 >= pods for cidr in cidrs)
    addresses = [m["status"]["addresses"][0]["address"] for m in manifests]
    assert len(set(addresses)) == 5000
    others = [config.POD_NETWORK, config.SERVICE_CLUSTER_IP_RANGE, nodes.NODE_ADDRESS_NETWORK]
    assert not any(bench.overlaps(ipaddress.ip_network(other)) for other in others)


def test_a_pod_cidr_past_the_end_of_its_network_is_refused() -> None:
    assert nodes.pod_cidr(255) == "10.244.255.0/24"
    assert nodes.pod_cidr(8191, config.BENCH_POD_NETWORK, 25) == "10.143.255.128/25"
    with pytest.raises(ValueError, match="has no /24 number 256 \\(it holds 256\\)"):
        nodes.pod_cidr(256)


def test_prometheus_scrapes_every_engines_pods_through_the_local_apiserver(tmp_path: Path) -> None:
    jobs = _jobs(prometheus.render_config(config.Layout(tmp_path)))
    serving = jobs[monitoring.SERVING_JOB]
    sd = serving["kubernetes_sd_configs"][0]
    assert sd["role"] == "pod"
    assert sd["api_server"] == f"https://127.0.0.1:{config.APISERVER_PORT}"
    assert sd["tls_config"]["cert_file"] == str(tmp_path / "pki" / "admin.crt")
    assert "authorization" not in sd  # the shipped service-account token is not used here
    keep = serving["relabel_configs"][0]
    assert keep["source_labels"] == ["__meta_kubernetes_pod_label_inference_backend"]
    # Prometheus anchors relabel regexes: every engine's pods are kept, unlabelled ones are not.
    assert all(re.fullmatch(keep["regex"], name) for name in ENGINES)
    assert not re.fullmatch(keep["regex"], "")


def test_prometheus_scrapes_the_portal_processes_where_devstack_runs_them(tmp_path: Path) -> None:
    jobs = _jobs(prometheus.render_config(config.Layout(tmp_path)))
    web = jobs[monitoring.portal_job("web")]
    gateway = jobs[monitoring.portal_job("gateway")]
    assert web["static_configs"][0]["targets"] == [f"127.0.0.1:{config.PORTAL_WEB_PORT}"]
    assert gateway["static_configs"][0]["targets"] == [f"127.0.0.1:{config.GATEWAY_PORT}"]
    assert web["metrics_path"] == "/metrics"  # portal.metrics.METRICS_PATH, served by the web
    commands = devstack_run._commands()
    assert f"127.0.0.1:{config.PORTAL_WEB_PORT}" in commands["web"]


def _without_placeholders(job: dict) -> dict:
    """A job minus what a Prometheus outside the cluster must replace (cluster access) and,
    for the portal's own processes, their discovery (pods in a cluster, local ports here)."""
    job = copy.deepcopy(job)
    for key in ("kubernetes_sd_configs", "static_configs", "file_sd_configs"):
        for sd in job.get(key, []):
            for access in monitoring.ACCESS_KEYS:
                sd.pop(access, None)
    if job["job_name"] in prometheus.LOCAL_PROCESS_PORTS:
        for key in ("kubernetes_sd_configs", "static_configs", "file_sd_configs"):
            job.pop(key, None)
    return job


def test_devstack_prometheus_runs_the_shipped_scrape_config(tmp_path: Path) -> None:
    """Not a private copy: jobs, paths and relabelling are deploy/prometheus' own."""
    shipped = yaml.safe_load(prometheus.SHIPPED_SCRAPE_CONFIG.read_text())["scrape_configs"]
    rendered = prometheus.render_config(config.Layout(tmp_path))["scrape_configs"]
    assert [_without_placeholders(job) for job in rendered] == [
        _without_placeholders(job) for job in shipped
    ]
    # The placeholders really were there and really were replaced.
    for before, after in zip(shipped, rendered, strict=True):
        for sd in before.get("kubernetes_sd_configs", []):
            assert sd["api_server"] == "https://kubernetes.default.svc"
        for sd in after.get("kubernetes_sd_configs", []):
            assert sd["api_server"] == f"https://127.0.0.1:{config.APISERVER_PORT}"


def test_devstack_prometheus_loads_the_shipped_rule_files(tmp_path: Path) -> None:
    rule_files = prometheus.render_config(config.Layout(tmp_path))["rule_files"]
    assert [Path(f) for f in rule_files] == [
        prometheus.PROMETHEUS_DIR / name for name in monitoring.RULE_FILES
    ]
    assert all(Path(f).is_file() for f in rule_files)


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


def test_pool_nodes_carry_topology_and_the_labels_gfd_and_gke_set() -> None:
    by_name = {m["metadata"]["name"]: m["metadata"]["labels"] for m in nodes.pool_node_manifests()}
    l4 = [by_name[f"l4-{n}"] for n in (1, 2, 3, 4)]
    # Round-robin over the pool's zones: the pool's nodes alternate between both zones.
    l4_zones = [labels[nodes.ZONE_LABEL] for labels in l4]
    assert l4_zones == ["local-1a", "local-1b", "local-1a", "local-1b"]
    assert all(labels[nodes.REGION_LABEL] == "local-1" for labels in by_name.values())
    for pool in ("l4", "a100-80g", "h100-80g"):
        zones = {
            labels[nodes.ZONE_LABEL]
            for labels in by_name.values()
            if labels[nodes.POOL_LABEL] == pool
        }
        assert len(zones) >= 2, f"GPU pool {pool} sits in one zone: {zones}"
    assert l4[0]["cloud.google.com/gke-accelerator"] == "nvidia-l4"
    assert by_name["a100-80g-1"]["cloud.google.com/gke-accelerator"] == "nvidia-a100-80gb"
    assert by_name["h100-80g-2"]["cloud.google.com/gke-accelerator"] == "nvidia-h100-80gb"
    assert by_name["h100-80g-2"]["nvidia.com/gpu.memory"] == "81559"
    assert by_name["l4-2"]["node.kubernetes.io/instance-type"] == "g2-standard-24"
    # GKE's node pool label beside the portal's own (still used for selection).
    assert by_name["l4-2"]["cloud.google.com/gke-nodepool"] == "l4"
    assert by_name["l4-2"][nodes.POOL_LABEL] == "l4"
    system = by_name["system-1"]
    assert "cloud.google.com/gke-accelerator" not in system
    assert "nvidia.com/gpu.product" not in system
    assert system[nodes.ZONE_LABEL] == "local-1a"


def test_a_pool_without_zones_gets_no_topology_labels() -> None:
    pool = nodes.NodePool("bench", 1, "a3-highgpu-8g", "8", "8Gi", 110)
    labels = nodes.node_manifest("bench-1", pool, "10.245.0.0/26", "10.240.3.1")["metadata"][
        "labels"
    ]
    assert nodes.ZONE_LABEL not in labels and nodes.REGION_LABEL not in labels

"""Scale run: 500 extra GPU nodes and 2,000 pause pods made Ready by KWOK alone.

    python -m bench.cluster.scale [--nodes 500] [--pods 2000] [--keep]

The bench nodes form their own pool (label inference.portal/pool=bench-scale, names bench-gpu-N)
so the normal pools are untouched; their pod CIDRs are /25s of config.BENCH_POD_NETWORK (a /12:
room for 8,191 bench nodes) because thousands of /24s do not fit in the 10.244.0.0/16 pod
network (bench pods are never routed). Everything is deleted at the end unless --keep is given.
Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from devstack.cluster import config, control, ensure_up, nodes

BENCH_POOL = "bench-scale"
BENCH_LABEL = "devstack/bench"
BENCH_NAMESPACE = "bench-scale"
BENCH_NODE_POOL = nodes.NodePool(
    name=BENCH_POOL,
    count=0,
    instance_type="a3-highgpu-8g",
    cpu="208",
    memory="1872Gi",
    pods=110,
    gpu=nodes.GpuSpec(count=8, product="NVIDIA-H100-80GB-HBM3", memory_mib=81559),
)


def _log(message: str) -> None:
    print(f"[bench.cluster.scale] {message}", file=sys.stderr, flush=True)


def _poll(check: Callable[[], tuple[bool, str]], timeout: float, interval: float = 1.0) -> float:
    """Seconds until `check` reports done; raises with the last progress text on timeout."""
    started = time.monotonic()
    last_report = started
    progress = ""
    while time.monotonic() - started < timeout:
        done, progress = check()
        if done:
            return time.monotonic() - started
        if time.monotonic() - last_report > 10:
            _log(f"  {progress} ({time.monotonic() - started:.0f}s)")
            last_report = time.monotonic()
        time.sleep(interval)
    raise TimeoutError(f"not done after {timeout:.0f}s: {progress}")


def bench_node_manifests(count: int) -> list[dict[str, Any]]:
    return [
        nodes.node_manifest(
            f"bench-gpu-{i}",
            BENCH_NODE_POOL,
            nodes.pod_cidr(i, config.BENCH_POD_NETWORK, prefix=config.BENCH_NODE_CIDR_PREFIX),
            nodes.node_address(1000 + i),
            extra_labels={BENCH_LABEL: "scale"},
        )
        for i in range(1, count + 1)
    ]


def pause_deployment(replicas: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "pause"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bench-pause"}},
            "template": {
                "metadata": {"labels": {"app": "bench-pause"}},
                "spec": {
                    "nodeSelector": {nodes.POOL_LABEL: BENCH_POOL},
                    "tolerations": [
                        {"key": nodes.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "pause",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {"limits": {nodes.GPU_RESOURCE: "1"}},
                        }
                    ],
                },
            },
        },
    }


def _is_ready(obj: Any) -> bool:
    conditions = (obj.status.conditions if obj.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _ready_nodes(core: client.CoreV1Api) -> int:
    items = core.list_node(label_selector=f"{BENCH_LABEL}=scale").items
    return len([n for n in items if _is_ready(n)])


def _ready_pods(core: client.CoreV1Api) -> int:
    pods = core.list_namespaced_pod(BENCH_NAMESPACE, label_selector="app=bench-pause").items
    return len([p for p in pods if _is_ready(p)])


def cleanup(core: client.CoreV1Api) -> float:
    started = time.monotonic()
    try:
        core.delete_namespace(BENCH_NAMESPACE)
    except ApiException as exc:
        if exc.status != 404:
            raise

    def namespace_gone() -> tuple[bool, str]:
        try:
            core.read_namespace(BENCH_NAMESPACE)
        except ApiException as exc:
            if exc.status == 404:
                return True, "namespace deleted"
            raise
        return False, "namespace terminating"

    _poll(namespace_gone, 600, interval=2)
    core.delete_collection_node(label_selector=f"{BENCH_LABEL}=scale")
    _poll(
        lambda: (
            not core.list_node(label_selector=f"{BENCH_LABEL}=scale").items,
            "nodes deleting",
        ),
        120,
    )
    return time.monotonic() - started


def run(node_count: int, pod_count: int, keep: bool) -> dict[str, Any]:
    info = ensure_up()
    api_client = kube_config.new_client_from_config(config_file=str(info.kubeconfig))
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    cleanup(core)  # leftovers of an interrupted run
    rss_before = sum(control.resident_memory().values())

    _log(f"creating {node_count} nodes")
    started = time.monotonic()
    manifests = bench_node_manifests(node_count)
    with ThreadPoolExecutor(max_workers=8) as pool:
        # Parallel creates: a single client serialises on round trips otherwise.
        list(pool.map(lambda m: nodes.create_nodes(core, [m]), manifests))
    nodes_created = time.monotonic() - started
    nodes_ready = _poll(
        lambda: (
            (ready := _ready_nodes(core)) >= node_count,
            f"{ready}/{node_count} nodes Ready",
        ),
        300,
    )
    _log(f"nodes Ready after {nodes_ready + nodes_created:.1f}s")

    # Plain dict bodies are serialised as-is by the client (cast: its stubs want models).
    namespace = {"metadata": {"name": BENCH_NAMESPACE, "labels": {BENCH_LABEL: "scale"}}}
    core.create_namespace(cast(Any, namespace))
    _poll(
        lambda: (bool(core.list_namespaced_service_account(BENCH_NAMESPACE).items), "default SA"),
        60,
        interval=0.2,
    )
    _log(f"creating a Deployment of {pod_count} pause pods (1 GPU each)")
    started = time.monotonic()
    apps.create_namespaced_deployment(BENCH_NAMESPACE, cast(Any, pause_deployment(pod_count)))

    def deployment_ready() -> tuple[bool, str]:
        status = apps.read_namespaced_deployment_status("pause", BENCH_NAMESPACE).status
        ready = (status.ready_replicas if status else None) or 0
        return ready >= pod_count, f"{ready}/{pod_count} pods Ready"

    pods_ready = _poll(deployment_ready, 900)
    ready_pods = _ready_pods(core)  # cross-check with the pods themselves
    _log(f"{ready_pods} pods Ready after {pods_ready:.1f}s")
    rss_after = control.resident_memory()

    result: dict[str, Any] = {
        "nodes": node_count,
        "pods": pod_count,
        "node_create_seconds": round(nodes_created, 1),
        "nodes_ready_seconds": round(nodes_created + nodes_ready, 1),
        "pods_ready_seconds": round(pods_ready, 1),
        "pods_per_second": round(pod_count / pods_ready, 1),
        "ready_pods_listed": ready_pods,
        "control_plane_rss_mib_before": round(rss_before / 2**20),
        "control_plane_rss_mib_at_scale": round(sum(rss_after.values()) / 2**20),
        "rss_mib_by_component_at_scale": {k: round(v / 2**20) for k, v in rss_after.items()},
    }
    if not keep:
        _log("cleaning up")
        result["cleanup_seconds"] = round(cleanup(core), 1)
    api_client.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster.scale", description=__doc__)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--keep", action="store_true", help="leave nodes and pods in place")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.nodes, args.pods, args.keep), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

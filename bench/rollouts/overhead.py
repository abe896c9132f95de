"""Benchmark (a): the control-plane overhead of a blue/green rollout.

Portal: a new revision is requested (the service the API calls) and timed until traffic is
switched to the new side. Bare: the same Kubernetes operations issued by a plain script — apply
the colour Deployment, poll until every replica is available, patch a Service selector — on
the same cluster, with the same pod manifests, interleaved with the portal's runs.

Per engine (``--engine``, repeatable; default every engine of ``engines.ENGINES``): each engine
gets its own tenant and deployment, and the runs are interleaved across engines too (run i goes
through every engine before run i + 1), so a drift of the machine hits all engines alike.
Results: one section per engine under ``engines``, each with its own verdict (``targets``).

Run: .venv/bin/python -m bench.rollouts.overhead --runs 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.rollouts.common import ROOT, bench_environment, bench_tenant, percentile, worker
from engines import ENGINES

RESULTS = ROOT / "bench" / "results" / "rollout_overhead.json"
RATIO_TARGET = 1.5  # portal p50 / bare p50
PORTAL_P50_TARGET_SECONDS = 3.0


@dataclass
class EngineBench:
    """One engine's deployment and the times measured against it."""

    deployment: Any
    spec: Any
    namespace: str
    portal: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        portal, bare = self.portal, self.bare
        ratio = statistics.median(portal) / statistics.median(bare)
        return {
            "portal_seconds": portal,
            "bare_seconds": bare,
            "portal_p50": statistics.median(portal),
            "portal_p95": percentile(portal, 0.95),
            "bare_p50": statistics.median(bare),
            "ratio_p50": ratio,
            "overhead_p50_seconds": statistics.median(
                p - b for p, b in zip(portal, bare, strict=True)
            ),
            "targets": {
                "ratio_p50_at_most_1_5_met": ratio <= RATIO_TARGET,
                "portal_p50_under_3s_met": statistics.median(portal) < PORTAL_P50_TARGET_SECONDS,
            },
        }


def portal_run(deployment: Any, actor: Any, request: Any, tokens: int) -> float:
    from deployments import services
    from deployments.models import Rollout

    started = time.perf_counter()
    _, rollout, _ = services.change_deployment(
        actor,
        deployment,
        replace(request, max_total_tokens=tokens),
        promotion=services.Promotion(scale_down_delay_seconds=0),
    )
    while not Rollout.objects.filter(pk=rollout.pk, traffic_switched=True).exists():
        state = Rollout.objects.values_list("state", "failure_reason").get(pk=rollout.pk)
        if state[0] in ("failed", "aborted"):
            raise SystemExit(f"rollout failed: {state}")
        time.sleep(0.02)
    promoted = time.perf_counter() - started
    while Rollout.objects.filter(pk=rollout.pk).exclude(state="completed").exists():
        time.sleep(0.05)
    return promoted


def bare_run(spec: Any, namespace: str, index: int) -> float:
    from kubernetes import client

    from deployments.rendering import render_colour_deployment
    from portal import kube

    apps = client.AppsV1Api(kube.api_client())
    core = kube.core()
    bare = replace(spec, deployment_name=f"bare{index}")
    manifest = render_colour_deployment(bare, "blue")
    manifest["metadata"].pop("ownerReferences", None)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"bare{index}", "namespace": namespace},
        "spec": {"selector": {"bench": "none"}, "ports": [{"port": 80, "targetPort": 80}]},
    }
    kube.apply(service)
    name = manifest["metadata"]["name"]
    started = time.perf_counter()
    kube.apply(manifest)
    while True:
        status = apps.read_namespaced_deployment_status(name, namespace).status
        assert status is not None
        if (status.available_replicas or 0) >= bare.replicas and (
            status.updated_replicas or 0
        ) >= bare.replicas:
            break
        time.sleep(0.02)
    core.patch_namespaced_service(
        f"bare{index}",
        namespace,
        {"spec": {"selector": manifest["spec"]["selector"]["matchLabels"]}},
    )
    elapsed = time.perf_counter() - started
    apps.delete_namespaced_deployment(name, namespace)
    core.delete_namespaced_service(f"bare{index}", namespace)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--engine",
        action="append",
        choices=list(ENGINES),
        help="engine to measure (repeatable); default: every engine, interleaved",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    engines = list(dict.fromkeys(args.engine or ENGINES))
    with bench_environment() as env:
        from deployments.admission import ServingRequest
        from deployments.models import Rollout, Tier
        from deployments.rollout import build_context
        from deployments.services import Promotion, create_deployment
        from devstack.hub import fixtures as hub
        from models_registry import services as registry
        from portal import kube

        suffix = uuid.uuid4().hex[:6]
        benches: dict[str, EngineBench] = {}
        requests: dict[str, Any] = {}
        actors: dict[str, Any] = {}
        try:
            with worker(env, ROOT / "var" / "log" / "bench-overhead-worker.log"):
                for name in engines:
                    namespace = f"bench-{suffix}-{name}"
                    tenant, actor = bench_tenant(f"bench-{name}", namespace)
                    model = registry.register_model(  # apache-2.0
                        actor, tenant, repo_id=hub.MISTRAL_7B_ID
                    )
                    request = ServingRequest(
                        model=model,
                        tier=Tier.objects.get(slug="a100-80g"),
                        engine=name,
                        max_total_tokens=2048,
                        max_input_tokens=1024,
                    )
                    deployment, first, _ = create_deployment(
                        actor,
                        tenant,
                        name="bench",
                        request=request,
                        promotion=Promotion(scale_down_delay_seconds=0),
                    )
                    while Rollout.objects.filter(pk=first.pk).exclude(state="completed").exists():
                        if Rollout.objects.filter(pk=first.pk, state="failed").exists():
                            raise SystemExit(f"{name}: warm-up rollout failed")
                        time.sleep(0.2)
                    spec = build_context(Rollout.objects.get(pk=first.pk)).spec
                    benches[name] = EngineBench(deployment, spec, namespace)
                    requests[name], actors[name] = request, actor
                for index in range(args.runs):
                    for name, bench in benches.items():
                        bench.deployment.refresh_from_db()
                        tokens = 2048 + 128 * (index + 1)
                        bench.portal.append(
                            portal_run(bench.deployment, actors[name], requests[name], tokens)
                        )
                        bench.bare.append(bare_run(bench.spec, bench.namespace, index))
                        print(
                            f"run {index + 1}, {name}: portal {bench.portal[-1]:.2f} s, "
                            f"bare {bench.bare[-1]:.2f} s",
                            flush=True,
                        )
        finally:
            for bench in benches.values():
                kube.delete("v1", "Namespace", bench.namespace)
    result = {
        "runs": args.runs,
        "order": "interleaved: run i goes through every engine (portal, then bare) before i + 1",
        "engines": {name: bench.summary() for name, bench in benches.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

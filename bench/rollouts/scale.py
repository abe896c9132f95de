"""Benchmark (b): by default 200 tenants, 1,000 deployments, 500 GPU nodes.

Measures a full reconciler pass (stalled rollouts + drift of every settled deployment against
the cluster) and the deployment list API's latency and query count. Every tenant but the first
holds 4 deployments; the first holds the rest (204 of 1,000 by default).

Run: .venv/bin/python -m bench.rollouts.scale [--deployments 1000] [--nodes 500]
     [--tenants DEPLOYMENTS/5] [--engine tgi]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from bench.rollouts.common import ROOT, bench_environment, bench_tenant, percentile
from deployments.rendering import OwnerRef, render_namespace
from engines import DEFAULT_ENGINE, ENGINES

RESULTS = ROOT / "bench" / "results" / "rollout_scale.json"
SMALL_TENANT_DEPLOYMENTS = 4  # every tenant but the first; the first holds the rest
PLACEHOLDER_OWNER = OwnerRef("v1", "ConfigMap", "bench", "00000000-0000-0000-0000-000000000000")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.rollouts.scale", description=__doc__)
    parser.add_argument("--deployments", type=int, default=1000, help="settled deployments")
    parser.add_argument("--nodes", type=int, default=500, help="extra KWOK GPU nodes")
    parser.add_argument(
        "--tenants", type=int, default=None, help="tenants (default: one per 5 deployments)"
    )
    parser.add_argument("--engine", choices=sorted(ENGINES), default=DEFAULT_ENGINE)
    args = parser.parse_args(argv)
    if args.deployments < 1:
        parser.error("--deployments must be at least 1")
    if args.nodes < 0:
        parser.error("--nodes must not be negative")
    if args.tenants is None:
        args.tenants = max(1, args.deployments // 5)
    if args.tenants < 1:
        parser.error("--tenants must be at least 1")
    if args.deployments - SMALL_TENANT_DEPLOYMENTS * (args.tenants - 1) < 1:
        parser.error(
            f"--tenants {args.tenants} leaves the first tenant no deployment: at most "
            f"{(args.deployments - 1) // SMALL_TENANT_DEPLOYMENTS + 1} for "
            f"--deployments {args.deployments}"
        )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tenant_count, deployment_count, node_count = args.tenants, args.deployments, args.nodes
    big_tenant_deployments = deployment_count - SMALL_TENANT_DEPLOYMENTS * (tenant_count - 1)
    with bench_environment():
        from django.contrib.auth import get_user_model
        from django.db import connection, reset_queries
        from django.test import Client
        from django.test.utils import CaptureQueriesContext
        from kubernetes.client.exceptions import ApiException

        from bench.cluster.scale import bench_node_manifests, cleanup
        from deployments.models import Deployment, DeploymentRevision, Tier
        from deployments.reconcile import reconcile_pass
        from deployments.rendering import render_colour_deployment, render_services
        from deployments.specs import serving_spec
        from models_registry.models import ModelRevision, RegisteredModel
        from portal import kube

        started = time.perf_counter()
        core = kube.core()
        for node in bench_node_manifests(node_count):
            try:  # created, not applied: a node's status (GPU capacity) is only taken on create
                core.create_node(node)  # type: ignore[arg-type]
            except ApiException as error:
                if error.status != 409:
                    raise
        print(f"{node_count} nodes applied in {time.perf_counter() - started:.1f} s", flush=True)
        from deployments.services import ensure_default_tiers

        ensure_default_tiers()
        tier = Tier.objects.get(slug="a100-80g")
        suffix = uuid.uuid4().hex[:4]
        manifests: list[dict[str, Any]] = []
        tenants = []
        for index in range(tenant_count):
            count = big_tenant_deployments if index == 0 else SMALL_TENANT_DEPLOYMENTS
            tenant, _ = bench_tenant(f"t{index}-{suffix}", f"bench-{suffix}-{index}")
            tenants.append((tenant, count))
            model = RegisteredModel.objects.create(tenant=tenant, repo_id="org/model")
            model.current_revision = ModelRevision.objects.create(
                model=model,
                commit_sha="a" * 40,
                requested_revision="main",
                pipeline_tag="text-generation",
                parameters_by_dtype={"BF16": 7_000_000_000},
                num_hidden_layers=32,
                num_key_value_heads=8,
                head_dim=128,
                context_length=8192,
            )
            model.save()
            kube.apply(render_namespace(tenant.slug, tenant.namespace))
            for number in range(count):
                deployment = Deployment.objects.create(
                    tenant=tenant,
                    name=f"d{number}",
                    tier=tier,
                    model=model,
                    active_colour="blue",
                    replicas=0,
                )
                revision = DeploymentRevision.objects.create(
                    deployment=deployment,
                    number=1,
                    model_revision=model.current_revision,
                    tier=tier,
                    max_input_tokens=1024,
                    max_total_tokens=2048,
                    max_batch_prefill_tokens=1074,
                    replicas=1,
                    engine=args.engine,
                )
                Deployment.objects.filter(pk=deployment.pk).update(active_revision=revision)
                # Owner references are dropped below: these objects stand alone.
                spec = replace(serving_spec(revision), owner=PLACEHOLDER_OWNER)
                workload = render_colour_deployment(spec, "blue", include_replicas=False)
                workload["spec"]["replicas"] = 0  # the objects, without 1,000 TGI processes
                workload["metadata"].pop("ownerReferences", None)
                active, _ = render_services(spec, "blue")
                active["metadata"].pop("ownerReferences", None)
                manifests += [workload, active]
        assert Deployment.objects.count() == deployment_count, Deployment.objects.count()
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(kube.apply, manifests))
        print(
            f"{len(manifests)} objects applied in {time.perf_counter() - started:.1f} s", flush=True
        )

        passes = []
        for _ in range(3):
            report = reconcile_pass(repair=False)
            passes.append(report.seconds)
            assert report.checked == deployment_count and not report.repaired, report
        print(f"reconciler passes: {passes}", flush=True)

        user = get_user_model().objects.get(username="bench")
        client = Client()
        client.force_login(user)
        big, small = tenants[0][0], tenants[1][0]
        queries = {}
        for tenant, label in ((small, "4 rows"), (big, "50 rows")):
            reset_queries()  # the capture diffs a log capped at 9,000 entries
            with CaptureQueriesContext(connection) as captured:
                response = client.get(
                    f"/api/v1/tenants/{tenant.slug}/deployments/", {"page_size": 50}
                )
            assert response.status_code == 200, response.content[:300]
            queries[label] = len(captured.captured_queries)
        latencies = []
        for _ in range(100):
            begin = time.perf_counter()
            client.get(f"/api/v1/tenants/{big.slug}/deployments/", {"page_size": 50})
            latencies.append((time.perf_counter() - begin) * 1000)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda t: kube.delete("v1", "Namespace", t[0].namespace), tenants))
        cleanup(kube.core())
    result = {
        "tenants": tenant_count,
        "deployments": deployment_count,
        "gpu_nodes": node_count,
        "reconciler_pass_seconds": passes,
        "reconciler_pass_max_seconds": max(passes),
        "list_api_ms_p50": statistics.median(latencies),
        "list_api_ms_p95": percentile(latencies, 0.95),
        "list_api_queries": queries,
    }
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

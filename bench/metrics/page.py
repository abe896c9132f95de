"""Benchmark: server time and PromQL queries of a tenant's metrics page with 50 deployments.

The database holds the tenants and their deployments (rows only, no pods). Prometheus is the
real devstack one: this script serves a TGI exposition per deployment (the simulator's own
metrics code, fed with synthetic traffic) and registers the targets through the file_sd
directory Prometheus watches, labelled like the inference-serving-pods job labels real pods.
So every panel query has series for all deployments to aggregate, and the page renders real
numbers.

The page is rendered through Django's test client in this process, so the time measured is
server time: view, PromQL round trips, template. PromQL calls are counted by wrapping the
client's two query methods.

The panels read the series recorded by deploy/prometheus/inference-recording-rules.yml, which
the devstack Prometheus loads (``rule_files``); the run refuses to start without them, and
records what the rule group costs Prometheus per evaluation (paid whether a page is open or
not).

Run: .venv/bin/python -m bench.metrics.page --deployments 50 --runs 30
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.rollouts.common import ROOT, percentile

RESULTS = ROOT / "bench" / "results" / "metrics-page.json"
BENCH_DB = "portal_bench_metrics"
TARGET_FILE = "bench-metrics.json"


def environment() -> None:
    from devstack import localservices
    from devstack.cluster import ensure_up

    localservices.up()
    localservices._psql(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    localservices._psql(f"CREATE DATABASE {BENCH_DB} OWNER {localservices.DB_USER}")
    info = ensure_up()
    os.environ.update(
        {
            "DATABASE_URL": f"postgres://portal:portal@127.0.0.1:55432/{BENCH_DB}",
            "KUBECONFIG": str(info.kubeconfig),
            "PROMETHEUS_URL": info.prometheus_url,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


class FakeTgi:
    """TGI expositions of many deployments, with synthetic traffic fed twice a second."""

    def __init__(self, names: list[str]) -> None:
        from devstack.tgi_simulator.metrics import TgiMetrics

        self.metrics = {
            name: TgiMetrics(max_input_tokens=1024, max_total_tokens=2048) for name in names
        }
        self.stop = threading.Event()
        self.random = random.Random(7)

    def feed(self) -> None:
        while not self.stop.wait(0.5):
            for index, m in enumerate(self.metrics.values()):
                busy = 1 + index % 5
                for _ in range(busy):
                    m.request_count.inc()
                    if self.random.random() < 0.02:
                        m.request_failure.inc(err="overloaded")
                        continue
                    m.request_success.inc()
                    m.request_duration.observe(self.random.uniform(0.2, 3.0))
                    m.request_queue_duration.observe(self.random.uniform(0.0, 0.4))
                    m.batch_inference_duration.observe(
                        self.random.uniform(0.01, 0.2), method="prefill"
                    )
                    m.request_input_length.observe(self.random.randint(20, 900))
                    m.request_generated_tokens.observe(self.random.randint(10, 400))
                m.queue_size.set(float(self.random.randint(0, 2 * busy)))
                m.batch_current_size.set(float(busy))

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                m = fake.metrics.get(name)
                if m is None:
                    self.send_error(404)
                    return
                body = m.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@contextlib.contextmanager
def scraped_targets(tenant: Any, names: list[str]) -> Iterator[None]:
    """Serve the expositions and register them with Prometheus until the block ends."""
    from devstack.cluster import config, prometheus

    # In another process, so scrapes and synthetic traffic do not compete with the page for
    # this interpreter's GIL (that would inflate the server time measured).
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    process = multiprocessing.Process(target=_serve, args=(names, ports), daemon=True)
    process.start()
    port = ports.get(timeout=30)
    target_file = prometheus.gateway_targets_dir(config.default_layout()) / TARGET_FILE
    groups = [
        {
            "targets": [f"127.0.0.1:{port}"],
            "labels": {
                "__metrics_path__": f"/metrics/{name}",
                "namespace": tenant.namespace,
                "pod": f"tgi-{name}-blue-0",
                "inference_backend": "tgi",
                "inference_portal_tenant": tenant.slug,
                "inference_portal_deployment": name,
                "inference_portal_colour": "blue",
                "inference_portal_tier": "l4",
            },
        }
        for name in names
    ]
    target_file.write_text(json.dumps(groups))
    try:
        yield
    finally:
        target_file.unlink(missing_ok=True)
        process.terminate()
        process.join(timeout=10)


def _serve(names: list[str], ports: multiprocessing.Queue[int]) -> None:
    fake = FakeTgi(names)
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    threading.Thread(target=fake.feed, daemon=True).start()
    ports.put(server.server_address[1])
    server.serve_forever()


def seed(name: str, count: int) -> tuple[Any, Any, list[str]]:
    from bench.rollouts.common import bench_tenant
    from deployments.models import Deployment, Tier
    from models_registry.models import ModelRevision, RegisteredModel

    tenant, actor = bench_tenant(name, f"bench-{name}", max_deployments=1000)
    model = RegisteredModel.objects.create(
        tenant=tenant, repo_id="mistralai/Mistral-7B-Instruct-v0.3", requested_revision="main"
    )
    model.current_revision = ModelRevision.objects.create(
        model=model, commit_sha="a" * 40, requested_revision="main"
    )
    model.save()
    tier = Tier.objects.get(slug="l4")
    names = [f"model-{i:02d}" for i in range(count)]
    Deployment.objects.bulk_create(
        Deployment(tenant=tenant, name=n, model=model, tier=tier, active_colour="blue", replicas=1)
        for n in names
    )
    return tenant, actor.user, names


class Counted:
    """Counts (and times) the PromQL calls the page makes.

    With a ``replay`` dict, answers recorded by an earlier run are served from memory instead
    (keyed by query text and arguments minus times): the page's own server time without
    Prometheus, to tell the two apart on a busy machine.
    """

    def __init__(self, replay: dict[str, Any] | None = None, record: bool = False) -> None:
        self.calls = 0
        self.seconds = 0.0
        self.replay = replay
        self.record = record
        self.answers: dict[str, Any] = {}

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from prometheus_api_client import PrometheusConnect

        originals = {
            name: getattr(PrometheusConnect, name)
            for name in ("custom_query", "custom_query_range")
        }

        def wrap(original: Any) -> Any:
            def counted(*args: Any, **kwargs: Any) -> Any:
                key = f"{original.__name__}:{args[1]}"
                started = time.perf_counter()
                try:
                    if self.replay is not None:
                        return self.replay[key]
                    answer = original(*args, **kwargs)
                    if self.record:
                        self.answers[key] = answer
                    return answer
                finally:
                    self.calls += 1
                    self.seconds += time.perf_counter() - started

            return counted

        for name, original in originals.items():
            setattr(PrometheusConnect, name, wrap(original))
        try:
            yield
        finally:
            for name, original in originals.items():
                setattr(PrometheusConnect, name, original)


def recording_group(prometheus_url: str) -> dict[str, Any]:
    """The portal's recording rule group as the devstack Prometheus evaluates it."""
    import requests

    from deployments import metrics

    groups = requests.get(f"{prometheus_url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    for group in groups:
        if group["name"] == metrics.RECORDING_GROUP:
            return {
                "rules": len(group["rules"]),
                "interval_seconds": group["interval"],
                "evaluation_ms": round(group["evaluationTime"] * 1000, 1),
            }
    raise SystemExit(
        "the devstack Prometheus has not loaded deploy/prometheus/inference-recording-rules.yml:"
        " rewrite its config (devstack.cluster.prometheus.write_config) and POST /-/reload"
    )


def measure(client: Any, url: str, runs: int, htmx: bool, replay: bool = False) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    recorder = Counted(record=True)
    with recorder.installed():
        client.get(url, **headers)  # warm-up: templates compiled, connections open
    times, promql, promql_seconds, sql = [], [], [], []
    for _ in range(runs):
        counter = Counted(replay=recorder.answers if replay else None)
        with counter.installed(), CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url, **headers)
            times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
        page = response.content.decode()
        assert "Prometheus unreachable" not in page, "Prometheus did not answer"
        promql.append(counter.calls)
        promql_seconds.append(counter.seconds)
        sql.append(len(queries))
    return {
        "runs": runs,
        "server_ms_p50": round(statistics.median(times) * 1000, 1),
        "server_ms_p95": round(percentile(times, 0.95) * 1000, 1),
        "server_ms_max": round(max(times) * 1000, 1),
        "promql_queries": sorted(set(promql)),
        "promql_ms_p50": round(statistics.median(promql_seconds) * 1000, 1),
        "sql_queries": sorted(set(sql)),
        "rows_with_data": page.count('data-testid="row"') - page.count('data-testid="no-data"'),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deployments", type=int, default=50)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    environment()
    from django.conf import settings
    from django.test import Client
    from django.urls import reverse

    from deployments import metrics

    recording_group(settings.PROMETHEUS_URL)  # fail early without the rules
    large, user, names = seed("metrics-large", args.deployments)
    small, _, _ = seed("metrics-small", 5)
    client = Client()
    client.force_login(user)
    with scraped_targets(large, names):
        # Rates need two scrapes inside the 1-minute window, and quantiles are recorded from the
        # recorded rates: wait for every deployment's rate and TTFT.
        deadline = time.monotonic() + 60
        while True:
            ready = metrics.tenant_panels(large.namespace, panels=["request_rate", "ttft_p95"])
            rates = ready["request_rate"]
            if len(rates) == len(ready["ttft_p95"]) == len(names) or time.monotonic() > deadline:
                break
            time.sleep(1)
        results: dict[str, Any] = {
            "deployments": args.deployments,
            "series_ready": len(rates),
            "page": measure(client, reverse("tenant-metrics", args=[large.slug]), args.runs, False),
            "htmx_refresh": measure(
                client, reverse("tenant-metrics", args=[large.slug]), args.runs, True
            ),
            "page_without_prometheus_time": measure(
                client, reverse("tenant-metrics", args=[large.slug]), args.runs, False, replay=True
            ),
            "page_5_deployments": measure(
                client, reverse("tenant-metrics", args=[small.slug]), args.runs, False
            ),
        }
        results["recording_rule_group"] = recording_group(settings.PROMETHEUS_URL)
    results["load_average_1m"] = os.getloadavg()[0]
    results["cpus"] = os.cpu_count()
    results["target_ms"] = 300
    results["met"] = results["page"]["server_ms_p95"] < 300 and (
        results["page"]["promql_queries"] == results["page_5_deployments"]["promql_queries"]
    )
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

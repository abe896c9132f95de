"""Soft guardrails: the exported rule file, evaluation for the pages, alerts firing and clearing."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from django.core.management import call_command
from django.urls import reverse
from prometheus_api_client import PrometheusConnect

from deployments import alerts, metrics
from deployments.choices import RolloutState as S
from deployments.models import Deployment, Tier
from deployments.rendering import active_service_name
from deployments.rollout import ready_endpoint_ips
from deployments.services import DEFAULT_TIERS, ensure_default_tiers
from deployments.specs import serving_spec
from engines import ENGINES
from tests.fixtures.cluster import wait_for
from tests.fixtures.fleet import Fleet

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "inference-rules.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
FAULTS = "sim.inference.portal/faults"


@pytest.fixture
def tiers(db: None) -> list[Tier]:
    return ensure_default_tiers()


def _promtool(path: Path) -> subprocess.CompletedProcess[str]:
    if not Path(PROMTOOL).exists():
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    return subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )


def test_checked_in_rule_file_is_the_export_for_the_default_tiers() -> None:
    tiers = [Tier(**spec) for spec in DEFAULT_TIERS]
    assert RULES.read_text() == alerts.rules_yaml(tiers), (
        "regenerate: manage.py export_guardrail_rules --default-tiers "
        "-o deploy/prometheus/inference-rules.yml"
    )


def test_checked_in_rule_file_passes_promtool() -> None:
    checked = _promtool(RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts.GUARDRAILS) * len(DEFAULT_TIERS)} rules found" in checked.stdout


def test_exported_rules_follow_the_tiers_thresholds(tiers: list[Tier], tmp_path: Path) -> None:
    Tier.objects.filter(slug="l4").update(queue_depth_alert=5, ttft_p95_alert_seconds="0.75")
    target = tmp_path / "rules.yml"
    call_command("export_guardrail_rules", output=str(target))
    checked = _promtool(target)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    rules = yaml.safe_load(target.read_text())["groups"][0]["rules"]
    l4 = {rule["alert"]: rule for rule in rules if rule["labels"]["tier"] == "l4"}
    assert l4["QueueDepthHigh"]["expr"].endswith("> 5")
    assert 'inference_portal_tier="l4"' in l4["QueueDepthHigh"]["expr"]
    assert l4["TimeToFirstTokenHigh"]["expr"].endswith("> 0.75")
    assert (l4["QueueDepthHigh"]["for"], l4["TimeToFirstTokenHigh"]["for"]) == ("2m", "5m")
    for rule in rules:
        assert "$labels.inference_portal_deployment" in rule["annotations"]["summary"]
    remedies = l4["TimeToFirstTokenHigh"]["annotations"]["remedy"]
    for remedy in ("Add replicas", "max input tokens", "dedicated GPU pool", "quantized"):
        assert remedy in remedies


@pytest.mark.cluster
def test_devstack_prometheus_loads_the_rule_file(cluster: Any) -> None:
    prometheus = PrometheusConnect(url=cluster.prometheus_url)
    groups = prometheus._session.get(f"{cluster.prometheus_url}/api/v1/rules", timeout=5).json()
    loaded = {g["name"]: len(g["rules"]) for g in groups["data"]["groups"]}
    assert loaded.get(alerts.GROUP_NAME) == len(alerts.GUARDRAILS) * len(DEFAULT_TIERS), (
        "rewrite the devstack Prometheus config and POST /-/reload"
    )


@pytest.mark.cluster
def test_guardrail_expressions_run_on_live_prometheus(cluster: Any, settings: Any) -> None:
    settings.PROMETHEUS_URL = cluster.prometheus_url
    prometheus = metrics.client()
    for rule in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]:
        assert isinstance(prometheus.custom_query(rule["expr"]), list), rule["alert"]


def _series(values: list[float], tier: str = "l4") -> dict[str, Any]:
    metric = {
        "inference_portal_deployment": "chat",
        "inference_portal_colour": "blue",
        "inference_portal_tier": tier,
    }
    return {"metric": metric, "values": [[i * 10, str(v)] for i, v in enumerate(values)]}


@pytest.mark.usefixtures("tiers")
@pytest.mark.parametrize(
    ("values", "state"),
    [
        ([20.0] * 13, "firing"),  # above the L4 threshold (16) for the whole hold
        ([1.0] * 12 + [20.0], "pending"),  # above only now
        ([20.0] * 12 + [3.0], None),  # back below: cleared
        ([20.0] * 4, "pending"),  # the series started recently: not held yet
    ],
)
def test_queue_guardrail_fires_only_when_held(
    monkeypatch: pytest.MonkeyPatch, values: list[float], state: str | None
) -> None:
    queries: list[str] = []

    def query_range(self: Any, query: str, *args: Any) -> list[dict[str, Any]]:
        queries.append(query)
        # The queue guardrail: one query over every engine's queue gauge.
        queue = all(e.metrics.queue_size_metric in query for e in ENGINES.values())
        return [_series(values)] if queue else []

    monkeypatch.setattr(PrometheusConnect, "custom_query_range", query_range)
    found = alerts.evaluate("tenant-acme")
    assert len(queries) == len(alerts.GUARDRAILS)
    assert [a.state for a in found] == ([state] if state else [])
    if state:
        assert found[0].threshold == 16 and found[0].value == values[-1]


@pytest.mark.usefixtures("tiers")
def test_series_of_an_unknown_tier_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        PrometheusConnect,
        "custom_query_range",
        lambda self, q, *a: [_series([99.0] * 13, tier="gone")],
    )
    assert alerts.evaluate("tenant-acme") == []


def _active_service(deployment: Deployment) -> str:
    """The Service selecting the deployment's serving colour, as the renderer names it."""
    deployment.refresh_from_db()
    assert deployment.active_revision is not None
    return active_service_name(serving_spec(deployment.active_revision))


class Load:
    """`clients` threads sending chat completions back to back until stopped."""

    def __init__(self, url: str, model: str, clients: int, max_tokens: int) -> None:
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(url, model, max_tokens), daemon=True)
            for _ in range(clients)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, url: str, model: str, max_tokens: int) -> None:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": max_tokens,
        }
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    client.post(f"{url}/v1/chat/completions", json=body)

    def end(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


@pytest.mark.cluster
@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.parametrize("engine", list(ENGINES))
def test_queue_and_ttft_alerts_fire_under_load_and_clear(
    fleet: Fleet, cluster: Any, settings: Any, engine: str
) -> None:
    settings.PROMETHEUS_URL = cluster.prometheus_url
    settings.GUARDRAIL_HOLD_SECONDS = 6
    Tier.objects.filter(slug="a100-80g").update(queue_depth_alert=3, ttft_p95_alert_seconds="0.5")
    namespace = fleet.tenant.namespace
    # 40 clients sending 400 new tokens at 20 ms each, and every engine runs fewer at once, so
    # the rest wait in its queue for 8 s and more. TGI: its simulated KV cache holds 16 × 512
    # tokens (~19 such requests) and it admits 32 (more get 429); vLLM (--max-num-seqs) and
    # SGLang (--max-running-requests) run 32 and queue the other 8.
    deployment, rollout = fleet.deploy(
        max_total_tokens=512,
        max_input_tokens=256,
        max_concurrent_requests=32,
        pod_annotations={FAULTS: "token_latency_ms=20"},
    )
    fleet.wait_state(rollout, S.COMPLETED)
    [ip] = ready_endpoint_ips(namespace, _active_service(deployment))
    url = f"http://{ip}:{ENGINES[engine].port}"
    wait_for(
        lambda: metrics.tenant_panels(namespace)["ready_replicas"].get(("chat", "blue")),
        30,
        describe="Prometheus to scrape the chat pod",
    )
    client = fleet.world.client_for("viewer_a")
    page_url = reverse("tenant-metrics", args=[fleet.tenant.slug])
    deployment_url = reverse("deployment-metrics", args=[fleet.tenant.slug, deployment.pk])

    load = Load(url, fleet.world.objects["model_a"].repo_id, clients=40, max_tokens=400)
    try:

        def queue_firing() -> list[alerts.Alert] | None:
            found = [
                a
                for a in alerts.evaluate(namespace)
                if a.guardrail.alert == "QueueDepthHigh" and a.firing
            ]
            return found or None

        [queue_alert] = wait_for(queue_firing, 40, describe=lambda: alerts.evaluate(namespace))
        where = (queue_alert.deployment, queue_alert.colour, queue_alert.tier)
        assert where == ("chat", "blue", "a100-80g")
        assert queue_alert.value > 3 and queue_alert.threshold == 3

        page = client.get(page_url).content.decode()
        assert 'data-alert="QueueDepthHigh" data-state="firing" data-deployment="chat"' in page
        assert "Add replicas" in page and "dedicated GPU pool" in page
        detail = client.get(deployment_url, HTTP_HX_REQUEST="true").content.decode()
        assert 'data-alert="QueueDepthHigh" data-state="firing"' in detail

        # Queued requests waited seconds before prefill: p95 TTFT passes the 0.5 s threshold.
        def ttft_alert() -> list[alerts.Alert] | None:
            found = [
                a for a in alerts.evaluate(namespace) if a.guardrail.alert == "TimeToFirstTokenHigh"
            ]
            return found or None

        [ttft] = wait_for(ttft_alert, 60, describe=lambda: alerts.evaluate(namespace))
        assert ttft.value > 0.5
        detail = client.get(deployment_url, HTTP_HX_REQUEST="true").content.decode()
        assert 'data-alert="TimeToFirstTokenHigh"' in detail
        assert "Lower max input tokens" in detail and "quantized model" in detail

    finally:
        load.end()

    # The queue drained: the queue alert clears (TTFT keeps its 5-minute rate window).
    def queue_cleared() -> bool:
        return not any(a.guardrail.alert == "QueueDepthHigh" for a in alerts.evaluate(namespace))

    wait_for(queue_cleared, 30, describe=lambda: alerts.evaluate(namespace))
    page = client.get(page_url).content.decode()
    assert 'data-alert="QueueDepthHigh"' not in page

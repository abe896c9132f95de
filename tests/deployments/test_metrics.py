"""Tenant metrics panels from Prometheus, and the soft-guardrail alerting rules."""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_api_client import PrometheusConnect

from deployments import metrics
from deployments.choices import RolloutState as S
from deployments.metrics import PANELS, MetricsUnavailable, tenant_panels, tenant_panels_range
from deployments.rollout import ready_endpoint_ips
from tests.deployments.conftest import Fleet
from tests.fixtures.cluster import wait_for

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "inference-rules.yml"
PROMTOOL = "/usr/bin/promtool"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _vector(deployments: list[str], value: str = "1") -> list[dict[str, Any]]:
    return [
        {
            "metric": {
                "inference_portal_deployment": name,
                "inference_portal_colour": colour,
                "err": "overloaded",
            },
            "value": [1.0, value],
        }
        for name in deployments
        for colour in ("blue", "green")
    ]


def test_each_panel_is_one_query_whatever_the_number_of_deployments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = [f"model-{i}" for i in range(7)]
    queries: list[str] = []

    def custom_query(self: PrometheusConnect, query: str) -> list[dict[str, Any]]:
        queries.append(query)
        return _vector(names)

    monkeypatch.setattr(PrometheusConnect, "custom_query", custom_query)
    panels = tenant_panels("tenant-acme")

    assert len(queries) == len(PANELS) == len(set(queries))
    assert all('namespace="tenant-acme"' in q for q in queries)
    assert not any(name in q for q in queries for name in names)
    assert set(panels) == {panel.name for panel in PANELS}
    assert set(panels["request_rate"]) == {(n, c) for n in names for c in ("blue", "green")}
    assert panels["error_rate"][("model-3", "green", "overloaded")] == 1.0


def test_range_variant_is_one_query_per_panel_and_drops_nan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps: list[str] = []

    def custom_query_range(
        self: PrometheusConnect, query: str, start: Any, end: Any, step: str
    ) -> list[dict[str, Any]]:
        steps.append(step)
        metric = {"inference_portal_deployment": "chat", "inference_portal_colour": "blue"}
        return [{"metric": metric, "values": [[10, "NaN"], [40, "2.5"]]}]

    monkeypatch.setattr(PrometheusConnect, "custom_query_range", custom_query_range)
    series = tenant_panels_range("tenant-acme", step="15s")

    assert steps == ["15s"] * len(PANELS)
    assert series["queue_size"] == {("chat", "blue"): [(40.0, 2.5)]}


def test_no_traffic_gives_empty_panels(monkeypatch: pytest.MonkeyPatch) -> None:
    nan = [
        {
            "metric": {"inference_portal_deployment": "chat", "inference_portal_colour": "blue"},
            "value": [1.0, "NaN"],
        }
    ]
    monkeypatch.setattr(
        PrometheusConnect, "custom_query", lambda self, q: [] if "up{" in q else nan
    )
    panels = tenant_panels("tenant-acme")
    assert all(values == {} for values in panels.values())


def test_unreachable_prometheus_raises_metrics_unavailable_quickly(settings: Any) -> None:
    settings.PROMETHEUS_URL = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(MetricsUnavailable, match="unreachable"):
        tenant_panels("tenant-acme")
    with pytest.raises(MetricsUnavailable, match="unreachable"):
        tenant_panels_range("tenant-acme")
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("namespace", "window"), [('x"} or up{', "1m"), ("tenant-acme", "1m])"), ("Tenant", "1m")]
)
def test_rejects_what_would_change_the_query(namespace: str, window: str) -> None:
    with pytest.raises(ValueError, match="not a"):
        tenant_panels(namespace, window)


def test_alerting_rules_pass_promtool() -> None:
    if not Path(PROMTOOL).exists() and not shutil.which("promtool"):
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout


def test_alerting_rules_cover_the_guardrails_with_a_remedy() -> None:
    rules = [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]
    assert {rule["alert"] for rule in rules} == {
        "TGIQueueDepthHigh",
        "TGITimeToFirstTokenHigh",
        "TGIErrorRatioHigh",
    }
    for rule in rules:
        assert "inference_portal_deployment" in rule["expr"]
        assert "$labels.inference_portal_deployment" in rule["annotations"]["summary"]
        assert rule["annotations"]["remedy"]
    durations = {rule["alert"]: rule["for"] for rule in rules}
    assert durations["TGIQueueDepthHigh"] == "2m" and durations["TGITimeToFirstTokenHigh"] == "5m"


@pytest.mark.cluster
def test_alerting_rule_expressions_run_on_live_prometheus(cluster: Any, settings: Any) -> None:
    settings.PROMETHEUS_URL = cluster.prometheus_url
    prometheus = metrics.client()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert isinstance(prometheus.custom_query(rule["expr"]), list), rule["alert"]


def _chat(ip: str) -> None:
    response = httpx.post(
        f"http://{ip}:80/v1/chat/completions",
        json={"model": "tgi", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
        timeout=10,
    )
    response.raise_for_status()


@pytest.mark.cluster
@pytest.mark.worker
@pytest.mark.slow
def test_chat_traffic_shows_in_tenant_panels(fleet: Fleet, cluster: Any, settings: Any) -> None:
    settings.PROMETHEUS_URL = cluster.prometheus_url
    namespace = fleet.tenant.namespace
    _, rollout = fleet.deploy()
    fleet.wait_state(rollout, S.COMPLETED)
    [ip] = ready_endpoint_ips(namespace, "tgi-chat")
    # Rates need the traffic between two scrapes: wait until Prometheus scrapes the new pod.
    wait_for(
        lambda: tenant_panels(namespace)["ready_replicas"].get(("chat", "blue")),
        30,
        describe="Prometheus to scrape the chat pod",
    )
    for _ in range(6):
        _chat(ip)

    def busy() -> dict[str, dict[tuple[str, ...], float]] | None:
        _chat(ip)  # keep traffic flowing so a scrape window always sees the counters rise
        panels = tenant_panels(namespace)
        return panels if panels["request_rate"].get(("chat", "blue"), 0) > 0 else None

    panels = wait_for(busy, 30, describe=lambda: tenant_panels(namespace))

    assert panels["ready_replicas"] == {("chat", "blue"): 1.0}
    assert panels["queue_size"][("chat", "blue")] >= 0
    assert panels["batch_size"][("chat", "blue")] >= 0
    assert panels["generated_tokens_rate"][("chat", "blue")] > 0
    assert panels["success_ratio"][("chat", "blue")] == 1.0
    assert panels["error_rate"] == {}
    for name in ("request_p50", "request_p95", "request_p99", "ttft_p95"):
        assert math.isfinite(panels[name][("chat", "blue")]), name
    assert panels["request_p50"][("chat", "blue")] <= panels["request_p99"][("chat", "blue")]

    # A range's last step can fall just before the scrape that saw the traffic: poll it too.
    def ranged() -> Any:
        series = tenant_panels_range(namespace, step="5s")
        return series if series["request_rate"].get(("chat", "blue")) else None

    series = wait_for(ranged, 30, describe=lambda: tenant_panels_range(namespace, step="5s"))
    assert series["request_rate"][("chat", "blue")]

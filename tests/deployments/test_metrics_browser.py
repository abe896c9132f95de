"""The metrics and cost pages in a real browser: live panels refresh in place (HTMX polling).

Prometheus is replaced by canned answers here (the cluster tests in test_metrics.py and
test_alerts.py check the numbers against real traffic); this is about the page in a browser.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from prometheus_api_client import PrometheusConnect

from deployments import alerts, cost, metrics
from deployments.models import Deployment
from tests.browser.conftest import keep
from tests.deployments.test_cost import scripted  # noqa: F401 - fixture
from tests.deployments.test_deployments_browser import log_in
from tests.fixtures.personas import World

pytestmark = pytest.mark.browser
TICKS = itertools.count(1)


def _kinds(namespace: str) -> dict[str, str]:
    """Each query the pages ask -> the panel or guardrail it serves (whatever the engines'
    series are called: the queries are built from the engines' own declarations)."""
    kinds = {panel.query(namespace, "1m"): panel.name for panel in metrics.PANELS}
    kinds |= {g.query(f'namespace="{namespace}"'): g.alert for g in alerts.GUARDRAILS}
    return kinds


KINDS: dict[str, str] = {}


def _value(query: str, deployment: str, tick: int) -> float:
    busy = 3.0 if deployment == "busy" else 0.4
    kind = KINDS.get(query, "")
    if kind in ("queue_size", "QueueDepthHigh"):
        return 21.0 if deployment == "busy" else 0.0
    if "_p" in kind or kind == "TimeToFirstTokenHigh":  # quantiles
        return (0.9 if deployment == "busy" else 0.12) * (1 + 0.05 * (tick % 3))
    if kind == "success_ratio":
        return 0.98
    if kind == "generated_tokens_rate":
        return busy * 180
    if kind == "ready_replicas":
        return 2.0 if deployment == "busy" else 1.0
    if kind == "batch_size":
        return busy * 4
    if kind in ("error_rate", "ErrorRatioHigh"):
        return 0.06 if deployment == "busy" else 0.0
    return busy + 0.1 * (tick % 5)


def _metric(deployment: str, query: str) -> dict[str, str]:
    metric = {
        "inference_portal_deployment": deployment,
        "inference_portal_colour": "blue",
        "inference_portal_tier": "a100-80g" if deployment == "busy" else "l4",
        "deployment": deployment,
    }
    if KINDS.get(query) == "error_rate":
        metric["err"] = "overloaded"
    return metric


@pytest.fixture
def canned_prometheus(
    monkeypatch: pytest.MonkeyPatch,
    world: World,
    scripted: dict[str, Any],  # noqa: F811 - fixture: it makes the "busy" deployment
) -> None:
    names = ["busy", world.objects["deployment_a"].name]
    KINDS.clear()
    KINDS.update(_kinds(world.tenant_a.namespace))
    # The page shows deployments that exist, in the colours that are live: both serve blue.
    Deployment.objects.filter(tenant=world.tenant_a, name__in=names).update(active_colour="blue")

    def instant(self: Any, query: str, params: Any = None) -> list[dict[str, Any]]:
        if "gateway" in query or "DCGM" in query:
            return []
        tick = next(TICKS)
        return [
            {"metric": _metric(n, query), "value": [0, str(_value(query, n, tick))]} for n in names
        ]

    def ranged(self: Any, query: str, start: Any, end: Any, step: str) -> list[dict[str, Any]]:
        t0 = start.timestamp()
        seconds = int(step.rstrip("s"))
        points = int((end.timestamp() - t0) // seconds) + 1
        return [
            {
                "metric": _metric(n, query),
                "values": [
                    [t0 + i * seconds, str(_value(query, n, i) * (1 + 0.3 * ((i * 7) % 5) / 5))]
                    for i in range(points)
                ],
            }
            for n in names
        ]

    monkeypatch.setattr(PrometheusConnect, "custom_query", instant)
    monkeypatch.setattr(PrometheusConnect, "custom_query_range", ranged)


def test_metrics_page_refreshes_in_place_and_shows_alerts(
    live_server: Any,
    world: World,
    page: Any,
    screenshot: Any,
    canned_prometheus: None,
    scripted: dict[str, Any],  # noqa: F811 - fixture
) -> None:
    base = live_server.url
    log_in(page, base, "viewer_a")
    page.goto(f"{base}/t/alpha/metrics/")
    page.wait_for_selector("[data-testid=row][data-deployment=busy]")
    page.evaluate("window.__marker = 'same page'")
    first = page.inner_text("[data-deployment=busy] [data-panel=request_rate]")
    # The live partial is polled every 5 s and swapped in place.
    page.wait_for_function(
        "(first) => document.querySelector("
        "'[data-deployment=busy] [data-panel=request_rate]').innerText !== first",
        arg=first,
        timeout=15_000,
    )
    assert page.evaluate("window.__marker") == "same page"
    alert = page.locator("[data-alert=QueueDepthHigh][data-deployment=busy]")
    assert alert.get_attribute("data-state") == "firing"
    assert "Add replicas" in alert.inner_text()
    assert page.locator("svg.sparkline").count() >= 4
    keep(screenshot("metrics-page"), "metrics-page.png")

    page.click("[data-deployment=busy] a")
    page.wait_for_selector("[data-testid=deployment-live] svg.chart")
    assert "Queue depth high" in page.inner_text("[data-testid=deployment-live]")
    screenshot("deployment-metrics")


def test_cost_page_in_the_browser(
    live_server: Any,
    world: World,
    page: Any,
    screenshot: Any,
    monkeypatch: pytest.MonkeyPatch,
    scripted: dict[str, Any],  # noqa: F811 - fixture
) -> None:
    monkeypatch.setattr(cost, "_tokens", lambda namespace, start, end: scripted["tokens"])
    base = live_server.url
    log_in(page, base, "viewer_a")
    page.goto(f"{base}/t/alpha/cost/?days=1&api_input=3&api_output=15")
    page.wait_for_selector("[data-testid=cost-table]")
    assert page.inner_text("[data-testid=total-cost]") == "$100.10"
    assert "API cheaper" in page.inner_text(
        f"[data-deployment={scripted['sporadic'].name}] [data-col=verdict]"
    )
    keep(screenshot("cost-page"), "cost-page.png")
    page.goto(f"{base}/t/alpha/cost/?days=0")  # past the browser's own min= check
    page.wait_for_selector("[data-testid=error-days]")

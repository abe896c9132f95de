"""The gateway page and the dashboard read the gateway's traffic through the one query layer
(deployments.metrics): named panels, sent together, QUERY_CONCURRENCY at a time."""

from __future__ import annotations

import html
import math
import threading
from typing import Any

import pytest
from django.urls import reverse
from prometheus_api_client import PrometheusConnect

from deployments import gateway_series, metrics
from tests.fixtures.personas import World

# Canned answers per window: (key prefix, deployment) -> value per counter. Traffic refused
# before a key is known carries key="" and is nobody's.
LAST_DAY = {gateway_series.REQUESTS: 30, gateway_series.ERRORS: 2}
LAST_DAY_TOKENS = {gateway_series.PROMPT_TOKENS: 200.4, gateway_series.COMPLETION_TOKENS: 50}
LAST_MINUTE = {gateway_series.REQUESTS: 3, gateway_series.ERRORS: 0}
LAST_MINUTE_TOKENS = {gateway_series.PROMPT_TOKENS: 20, gateway_series.COMPLETION_TOKENS: 5.2}


class CannedPrometheus:
    """Answers the gateway's traffic queries; every call waits at a barrier of
    QUERY_CONCURRENCY parties, so calls sent one after the other would break it."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queries: list[str] = []
        self.rounds = 0
        self._lock = threading.Lock()
        self._barrier = threading.Barrier(metrics.QUERY_CONCURRENCY, action=self._round, timeout=5)

    def _round(self) -> None:
        self.rounds += 1

    def custom_query(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        with self._lock:
            self.queries.append(query)
        self._barrier.wait()
        window = "24h" if "[24h]" in query else "1m"
        figures = {
            **(LAST_DAY if window == "24h" else LAST_MINUTE),
            **(LAST_DAY_TOKENS if window == "24h" else LAST_MINUTE_TOKENS),
        }
        [counter] = [c for c in figures if f"({gateway_series.total(c)}{{" in query]
        return [
            {
                "metric": {"key": self.prefix, "deployment": "chat"},
                "value": [1.0, str(figures[counter])],
            },
            {"metric": {"key": "", "deployment": ""}, "value": [1.0, "99"]},
        ]


@pytest.fixture
def prometheus(world: World, monkeypatch: pytest.MonkeyPatch) -> CannedPrometheus:
    canned = CannedPrometheus(world.objects["gateway_key_a"].prefix)
    monkeypatch.setattr(
        PrometheusConnect, "custom_query", lambda self, q, params=None: canned.custom_query(q)
    )
    return canned


def test_gateway_page_sends_its_traffic_queries_together_through_the_layer(
    world: World, prometheus: CannedPrometheus
) -> None:
    page = world.client_for("viewer_a").get(reverse("tenant-gateway", args=["alpha"]))
    body = html.unescape(page.content.decode())

    assert page.status_code == 200
    # Four figures over two windows (24 h, 1 min), one query each, in full rounds.
    assert len(prometheus.queries) == 2 * len(metrics.GATEWAY_TRAFFIC_PANELS) == 8
    expected = {
        panel.query("alpha", window)
        for panel in metrics.GATEWAY_TRAFFIC_PANELS
        for window in ("24h", "1m")
    }
    assert set(prometheus.queries) == expected
    assert prometheus.rounds == math.ceil(8 / metrics.QUERY_CONCURRENCY) == 2
    # The figures: the key's last day (rounded per counter), the tenant's last minute.
    row = body.split('data-testid="gateway-key-alpha-app"')[1].split("</tr>")[0]
    assert "30 req · 250 tok · 2 err" in row
    requests = body.split('data-testid="tenant-rpm"')[1].split("</div>")[0]
    tokens = body.split('data-testid="tenant-tpm"')[1].split("</div>")[0]
    assert '"mono">3 / ' in requests
    assert '"mono">25 / ' in tokens


def test_dashboard_reads_the_last_minute_in_one_round(
    world: World, prometheus: CannedPrometheus
) -> None:
    page = world.client_for("viewer_a").get(reverse("tenant-dashboard", args=["alpha"]))

    assert page.status_code == 200
    assert len(prometheus.queries) == len(metrics.GATEWAY_TRAFFIC_PANELS)
    assert all("[1m]" in query for query in prometheus.queries)
    assert prometheus.rounds == 1
    rows = {row.label: row for row in page.context["usage"]}
    assert rows["Requests per minute"].used == 3
    assert rows["Tokens per minute"].used == 25

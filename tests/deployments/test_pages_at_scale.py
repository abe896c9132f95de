"""The pages and the API that list a tenant's deployments cost the same number of database
queries (and, for the metrics page, PromQL queries) for 5 deployments as for 40: nothing is read
per row."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from prometheus_api_client import PrometheusConnect

from tenants.audit import Actor, Channel
from tests.deployments.fleet_rows import settled_deployments, tenant_with_model
from tests.fixtures.personas import World


class PromQLLog:
    """Every PromQL query the page sends (from the metrics layer's threads); no series."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self._lock = threading.Lock()

    def answer(self, query: str) -> list[dict[str, Any]]:
        with self._lock:
            self.sent.append(query)
        return []


@pytest.fixture(autouse=True)
def promql(monkeypatch: pytest.MonkeyPatch) -> PromQLLog:
    log = PromQLLog()
    monkeypatch.setattr(
        PrometheusConnect, "custom_query", lambda self, q, params=None: log.answer(q)
    )
    monkeypatch.setattr(PrometheusConnect, "custom_query_range", lambda self, q, *a: log.answer(q))
    return log


def _queries(client: Client, url: str, **params: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params)
    assert response.status_code == 200, response.content[:300]
    return len(captured.captured_queries)


def _at_5_and_40(world: World, measure: Callable[[], int]) -> tuple[int, int]:
    """Queries of `measure` with 5 settled deployments in tenant Alpha, then with 40; Beta and a
    third tenant grow alongside, so a query per tenant would show too."""
    admin = Actor(user=world.users["admin"], channel=Channel.CLI)
    settled_deployments(world.objects["model_a"], 5, prefix="early")
    settled_deployments(world.objects["model_b"], 2, prefix="early")
    small = measure()
    settled_deployments(world.objects["model_a"], 35, prefix="late")
    settled_deployments(world.objects["model_b"], 10, prefix="late")
    settled_deployments(tenant_with_model(admin, "gamma", hub_token=True), 10)
    return small, measure()


def test_the_deployment_list_api_reads_no_more_for_40_deployments_than_for_5(
    world: World,
) -> None:
    client = world.client_for("viewer_a")
    url = reverse("api-deployment-list", args=["alpha"])
    small, large = _at_5_and_40(world, lambda: _queries(client, url, page_size="50"))
    assert small == large


def test_the_tenant_dashboard_reads_no_more_for_40_deployments_than_for_5(world: World) -> None:
    client = world.client_for("viewer_a")
    url = reverse("tenant-dashboard", args=["alpha"])
    small, large = _at_5_and_40(world, lambda: _queries(client, url))
    assert small == large


def test_the_deployment_list_page_reads_no_more_for_40_deployments_than_for_5(
    world: World,
) -> None:
    client = world.client_for("viewer_a")
    url = reverse("deployment-list", args=["alpha"])
    small, large = _at_5_and_40(world, lambda: _queries(client, url))
    assert small == large


def test_the_metrics_page_sends_the_same_queries_for_40_deployments_as_for_5(
    world: World, promql: PromQLLog
) -> None:
    client = world.client_for("viewer_a")
    url = reverse("tenant-metrics", args=["alpha"])
    sent: list[list[str]] = []

    def measure() -> int:
        promql.sent.clear()
        queries = _queries(client, url)
        sent.append(sorted(promql.sent))
        return queries

    small, large = _at_5_and_40(world, measure)
    assert small == large
    assert sent[0] == sent[1] and sent[0]
    assert all('namespace="tenant-alpha"' in q or 'tenant="alpha"' in q for q in sent[1]), sent[1]


def test_the_admin_tenant_list_reads_no_more_for_more_tenants_and_deployments(
    world: World,
) -> None:
    client = world.client_for("admin")
    url = reverse("admin:tenants_tenant_changelist")
    small, large = _at_5_and_40(world, lambda: _queries(client, url))
    assert small == large

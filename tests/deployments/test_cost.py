"""Cost per tenant: GPU-hours from the replica history × tier price, tokens, the API comparison."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from deployments import cost
from deployments.models import Deployment, ReplicaChange, Tier
from tests.fixtures.personas import World

D = Decimal


def _change(deployment: Deployment, colour: str, at: datetime, replicas: int, price: str) -> None:
    ReplicaChange.objects.create(
        deployment=deployment,
        colour=colour,
        at=at,
        replicas=replicas,
        gpus_per_replica=deployment.tier.gpus_per_replica,
        price_per_gpu_hour=D(price),
    )


@pytest.fixture
def scripted(world: World) -> dict[str, Any]:
    """Two deployments of tenant A with a replica history that ended an hour ago.

    busy (A100, $3.40 then $4.00 per GPU-hour), blue: 2 replicas for 4 h, 3 for 4 h at $3.40,
    3 for 2 h at $4.00; green (a rollout's new side) 1 replica for 30 min.
      GPU-hours 8 + 12 + 6 + 0.5 = 26.5; cost 27.20 + 40.80 + 24.00 + 1.70 = $93.70.
    sporadic (the world's L4 deployment, $0.80): 1 replica for 8 h: 8 GPU-hours, $6.40.
    """
    now = timezone.now()
    busy = Deployment.objects.create(
        tenant=world.tenant_a,
        name="busy",
        model=world.objects["model_a"],
        tier=Tier.objects.get(slug="a100-80g"),
    )
    sporadic = world.objects["deployment_a"]
    hours = lambda n: now - timedelta(hours=n)  # noqa: E731
    _change(busy, "blue", hours(11), 2, "3.40")
    _change(busy, "blue", hours(7), 3, "3.40")
    _change(busy, "blue", hours(3), 3, "4.00")
    _change(busy, "blue", hours(1), 0, "4.00")
    _change(busy, "green", hours(5), 1, "3.40")
    _change(busy, "green", hours(4.5), 0, "3.40")
    _change(sporadic, "blue", hours(9), 1, "0.80")
    _change(sporadic, "blue", hours(1), 0, "0.80")
    # Another tenant's spending never shows in tenant A's figures.
    _change(world.objects["deployment_b"], "blue", hours(9), 4, "0.80")
    tokens = {
        busy.name: {"input": D(40_000_000), "output": D(10_000_000), "active_steps": D(480)},
        sporadic.name: {"input": D(20_000), "output": D(10_000), "active_steps": D(2)},
    }
    return {"now": now, "busy": busy, "sporadic": sporadic, "tokens": tokens}


def test_gpu_hours_integrate_the_history_and_cut_at_the_window(scripted: dict[str, Any]) -> None:
    busy, now = scripted["busy"], scripted["now"]
    start, end = now - timedelta(hours=9), now - timedelta(hours=2)
    changes = cost.history([busy], start, end)
    priced = cost.gpu_hours_and_cost(changes, start, end)
    # blue: 2 replicas 9h..7h ago (4 GPU-h), 3 replicas 7h..3h ago (12), 3 at $4 3h..2h ago (3);
    # green: 0.5. The 2 hours of the first row before the window do not count.
    gpu_hours, spent, replica_hours = priced[busy.pk]
    assert gpu_hours == D("19.5")
    assert spent == D("4") * D("3.40") + D("12") * D("3.40") + D("3") * D("4.00") + D("1.70")
    assert replica_hours == D("19.5")


def test_tenant_cost_matches_the_hand_computation(
    scripted: dict[str, Any], monkeypatch: pytest.MonkeyPatch, world: World
) -> None:
    monkeypatch.setattr(cost, "_tokens", lambda namespace, start, end: scripted["tokens"])
    price = cost.ApiPrice(D("3"), D("15"))
    report = cost.tenant_cost(world.tenant_a, *cost.window_days(1), price)
    rows = {row.deployment.name: row for row in report.rows}

    busy = rows["busy"]
    assert (busy.gpu_hours, busy.cost) == (D("26.5"), D("93.70"))
    assert busy.api_cost == D(40) * 3 + D(10) * 15 == D(270)
    assert busy.cost_per_million == D("93.70") / 50
    assert busy.savings is not None and round(busy.savings, 4) == D("0.6530")

    sporadic = rows[scripted["sporadic"].name]
    assert (sporadic.gpu_hours, sporadic.cost) == (D(8), D("6.40"))
    assert sporadic.api_cost == D("0.06") + D("0.15")
    # Honest about idle time: a sporadically used deployment is dearer than the API.
    assert sporadic.savings is not None and sporadic.savings < 0
    assert sporadic.idle_share is not None and sporadic.idle_share > D("0.9")

    assert report.totals is not None
    assert (report.totals.gpu_hours, report.totals.cost) == (D("34.5"), D("100.10"))
    assert "deployment_b" not in rows and world.objects["deployment_b"].name not in rows


def test_cost_page_shows_the_hand_computed_figures(
    scripted: dict[str, Any], monkeypatch: pytest.MonkeyPatch, world: World
) -> None:
    monkeypatch.setattr(cost, "_tokens", lambda namespace, start, end: scripted["tokens"])
    client = world.client_for("viewer_a")
    response = client.get(
        reverse("tenant-cost", args=[world.tenant_a.slug]),
        {"days": "1", "api_input": "3", "api_output": "15"},
    )
    assert response.status_code == 200
    page = response.content.decode()
    import re

    def cell(deployment: str, column: str) -> str:
        row = re.search(rf'data-deployment="{deployment}">(.*?)</tr>', page, re.S)
        assert row, deployment
        found = re.search(rf'data-col="{column}">(.*?)</td>', row.group(1), re.S)
        assert found, column
        return re.sub(r"<[^>]+>", "", found.group(1)).strip()

    assert cell("busy", "gpu-hours") == "26.50"
    assert cell("busy", "cost") == "$93.70"
    assert cell("busy", "input") == "40,000,000"
    assert cell("busy", "output") == "10,000,000"
    assert cell("busy", "per-million") == "$1.87"
    assert cell("busy", "api-cost") == "$270.00"
    assert "65% cheaper than the API" in cell("busy", "verdict")
    sporadic = scripted["sporadic"].name
    assert cell(sporadic, "gpu-hours") == "8.00"
    assert cell(sporadic, "cost") == "$6.40"
    assert cell(sporadic, "per-million") == "$213.33"
    assert cell(sporadic, "api-cost") == "$0.21"
    assert "API cheaper" in cell(sporadic, "verdict")
    assert 'data-testid="total-cost">$100.10<' in page
    assert 'data-testid="total-gpu-hours">34.50<' in page


def test_cost_page_with_prometheus_down_still_prices_gpu_hours(
    scripted: dict[str, Any], world: World, settings: Any
) -> None:
    settings.PROMETHEUS_URL = "http://127.0.0.1:9"
    response = world.client_for("viewer_a").get(
        reverse("tenant-cost", args=[world.tenant_a.slug]), {"days": 1}
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="tokens-unavailable"' in page and "Prometheus unreachable" in page
    assert 'data-testid="total-cost">$100.10<' in page


@pytest.mark.parametrize(
    ("params", "field"),
    [({"days": "0"}, "days"), ({"days": "x"}, "days"), ({"api_output": "-1"}, "api_output")],
)
def test_cost_page_names_the_bad_field(world: World, params: dict[str, str], field: str) -> None:
    response = world.client_for("viewer_a").get(
        reverse("tenant-cost", args=[world.tenant_a.slug]), params
    )
    assert response.status_code == 422
    assert f'data-testid="error-{field}"' in response.content.decode()


def test_record_replicas_writes_only_changes_and_closes_vanished_sides(world: World) -> None:
    deployment = world.objects["deployment_a"]
    side = (deployment.pk, "blue")
    seen = cost.Observed(2, 1, D("0.80"))
    t0 = timezone.now()
    assert cost.record_replicas({side: seen}, t0) == 1
    assert cost.record_replicas({side: seen}, t0 + timedelta(minutes=1)) == 0
    assert cost.record_replicas({side: cost.Observed(3, 1, D("0.80"))}, t0 + timedelta(2)) == 1
    assert cost.record_replicas({}, t0 + timedelta(3)) == 1  # the side is gone: 0 replicas
    assert cost.record_replicas({}, t0 + timedelta(4)) == 0
    history = list(ReplicaChange.objects.filter(deployment=deployment).values_list("replicas"))
    assert history == [(2,), (3,), (0,)]


def test_money_keeps_sub_cent_amounts_readable() -> None:
    assert cost.money(D("0.0042")) == "$0.0042"
    assert cost.money(D("1234.567")) == "$1,234.57"
    assert cost.money(None) == "—"

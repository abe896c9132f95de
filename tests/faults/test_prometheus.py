"""Prometheus unreachable: the portal's pages degrade, nothing else notices."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from deployments import services
from deployments.choices import RolloutState as S
from tests.faults.conftest import (
    Fleet,
    assert_events_consistent,
    assert_nothing_left,
    free_port,
    restart_worker,
)

pytestmark = [pytest.mark.cluster, pytest.mark.worker, pytest.mark.slow]


def test_prometheus_down_degrades_only_the_metrics(fleet: Fleet, settings: Any) -> None:
    """Expected: metrics, cost and gateway pages answer 200 and say Prometheus is unreachable;
    the API (no endpoint reads Prometheus) and rollouts work as usual."""
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings.PROMETHEUS_URL = dead
    restart_worker(fleet, PROMETHEUS_URL=dead)
    deployment, rollout = fleet.deploy(promotion=services.Promotion(scale_down_delay_seconds=1))
    rollout = fleet.wait_state(rollout, S.COMPLETED, timeout=180)
    assert_events_consistent(rollout)

    viewer = fleet.world.client_for("viewer_a")
    slug = fleet.tenant.slug
    pages = {
        reverse("tenant-metrics", args=[slug]): 'data-testid="prometheus-unreachable"',
        reverse("deployment-metrics", args=[slug, deployment.pk]): (
            'data-testid="prometheus-unreachable"'
        ),
        reverse("tenant-cost", args=[slug]): 'data-testid="tokens-unavailable"',
        reverse("tenant-alerts", args=[slug]): 'data-testid="alerts-unavailable"',
    }
    for url, marker in pages.items():
        response = viewer.get(url)
        page = response.content.decode()
        assert response.status_code == 200, url
        assert marker in page, url
        if "alerts" not in url:
            assert "Prometheus unreachable" in page, url
    gateway_page = viewer.get(reverse("tenant-gateway", args=[slug]))
    assert gateway_page.status_code == 200
    assert "Prometheus is unreachable" in gateway_page.content.decode()
    assert deployment.name in viewer.get(reverse("tenant-metrics", args=[slug])).content.decode()

    detail = viewer.get(reverse("api-deployment-detail", args=[slug, deployment.pk]))
    assert detail.status_code == 200, detail.content
    assert detail.json()["active_colour"] == rollout.colour
    assert viewer.get(reverse("api-deployment-list", args=[slug])).status_code == 200

    fleet.delete(deployment)
    assert_nothing_left(fleet)

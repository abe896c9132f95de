"""The shared cluster's kube-apiserver stopped for a few seconds during a rollout and under
gateway traffic, then restarted in place with the same flags."""

from __future__ import annotations

import os
import time

import pytest
from django.urls import reverse

from deployments import services
from deployments.choices import RolloutState as S
from tenants import services as tenant_services
from tenants.audit import Actor
from tests.faults.conftest import (
    Fleet,
    apiserver_stopped,
    assert_events_consistent,
    assert_nothing_left,
    chat,
    second_rollout_in_progress,
)
from tests.fixtures.cluster import wait_for
from tests.gateway.conftest import Gateways

# Every test run on this machine shares the cluster, and while the apiserver is down theirs
# fail too (namespace creation, watches): opt in where nothing else is running.
OPT_IN = "PORTAL_FAULTS_RESTART_APISERVER"
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.worker,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get(OPT_IN) != "1",
        reason=f"restarts the shared kube-apiserver; set {OPT_IN}=1 when no other run uses it",
    ),
]

# Other test runs share this cluster: keep the outage short.
OUTAGE_SECONDS = 3


def test_apiserver_restarted_mid_rollout_under_traffic(fleet: Fleet, gateways: Gateways) -> None:
    """Expected: the API says cluster_unavailable (503, error envelope) while the apiserver is
    down, the gateway keeps routing to the endpoints it knows, the rollout resumes and
    completes afterwards, and the gateway follows the promotion through its re-established
    EndpointSlice watch."""
    promotion = services.Promotion(scale_down_delay_seconds=1)
    deployment, first = fleet.deploy(promotion=promotion)
    fleet.wait_state(first, S.COMPLETED, timeout=180)
    owner = Actor(fleet.world.users["owner_a"], "api")
    key = tenant_services.create_gateway_key(owner, fleet.tenant, name="faults").plaintext
    gateway = gateways.start()
    assert chat(gateway.url, key).status_code == 200
    viewer = fleet.world.client_for("viewer_a")
    assert viewer.get(reverse("api-node-pool-list")).status_code == 200

    rollout = second_rollout_in_progress(fleet, deployment, promotion)
    stopped_at = time.monotonic()
    with apiserver_stopped():
        response = viewer.get(reverse("api-node-pool-list"))
        assert response.status_code == 503, response.content
        error = response.json()["error"]
        assert error["status"] == 503 and error["code"] == "cluster_unavailable", error
        during = [chat(gateway.url, key) for _ in range(5)]
        assert [r.status_code for r in during] == [200] * 5, [r.text for r in during]
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))

    rollout = fleet.wait_state(rollout, S.COMPLETED, timeout=180)
    assert_events_consistent(rollout)
    deployment.refresh_from_db()
    assert deployment.active_colour == rollout.colour
    assert viewer.get(reverse("api-node-pool-list")).status_code == 200

    # The promotion happened after the restart: only a re-established watch knows the new
    # side. Once the old side's pods are gone, every request must still be answered.
    old = rollout.previous_colour

    def old_pods_gone() -> bool:
        pods = fleet.k8s.core.list_namespaced_pod(
            fleet.tenant.namespace, label_selector=f"inference.portal/colour={old}"
        ).items
        return not pods

    wait_for(old_pods_gone, 60, describe=f"pods of the {old} side to go")
    after = [chat(gateway.url, key) for _ in range(10)]
    assert [r.status_code for r in after] == [200] * 10, [r.text for r in after]

    fleet.delete(deployment)
    assert_nothing_left(fleet)

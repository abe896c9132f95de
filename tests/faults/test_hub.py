"""The Hugging Face Hub unreachable: registry calls fail clearly and save nothing; weight
downloads retry, and a deployment deleted meanwhile leaves no Job or volume behind."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.urls import reverse

from deployments import services
from deployments.choices import RolloutState as S
from deployments.models import Deployment
from devstack.hub import fixtures as hub
from devstack.hub.server import HubControl
from models_registry.models import ModelRevision, RegisteredModel
from tenants.models import AuditEvent
from tests.faults.conftest import (
    Fleet,
    assert_events_consistent,
    assert_nothing_left,
    free_port,
    restart_worker,
)
from tests.fixtures.cluster import wait_for
from tests.fixtures.personas import World


def _download_statuses(pods: list[Any]) -> list[Any]:
    """Every download step's container status: TGI's image downloads in two steps,
    download-weights first (an init container), then the tokenizer files."""
    return [
        status
        for pod in pods
        for status in [
            *(pod.status.init_container_statuses or []),
            *(pod.status.container_statuses or []),
        ]
    ]


def _saved() -> tuple[int, int, int]:
    return (
        RegisteredModel.objects.count(),
        ModelRevision.objects.count(),
        AuditEvent.objects.count(),
    )


def test_registry_calls_answer_hub_unavailable_and_save_nothing(
    world: World, settings: Any
) -> None:
    """Expected: 503 with the error envelope, code hub_unavailable, a message naming the Hub
    (the lookup preview: 200 with the same message as its refusal); no model, revision or audit
    event is written."""
    settings.HF_ENDPOINT = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    model = world.objects["model_a"]
    current = model.current_revision.commit_sha
    before = _saved()
    maintainer = world.client_for("maintainer_a")
    calls = {
        "register": maintainer.post(
            reverse("api-model-list", args=["alpha"]),
            data=json.dumps({"repo_id": hub.LLAMA_8B_AWQ_ID}),
            content_type="application/json",
        ),
        "update preview": maintainer.get(reverse("api-model-update", args=["alpha", model.pk])),
        "update": maintainer.post(
            reverse("api-model-update", args=["alpha", model.pk]),
            data=json.dumps({"revision": "main", "expected_sha": current}),
            content_type="application/json",
        ),
    }
    for name, response in calls.items():
        assert response.status_code == 503, (name, response.content)
        error = response.json()["error"]
        assert error["status"] == 503 and error["code"] == "hub_unavailable", (name, error)
        assert "cannot reach the Hub" in error["message"], (name, error)
    # The as-you-type lookup reports every refusal as data (200), this one included.
    lookup = maintainer.get(
        reverse("api-hub-lookup", args=["alpha"]), {"repo_id": hub.LLAMA_8B_AWQ_ID}
    )
    assert lookup.status_code == 200
    assert lookup.json()["registrable"] is False
    assert "cannot reach the Hub" in lookup.json()["refusal"]
    assert _saved() == before
    model.refresh_from_db()
    assert model.current_revision.commit_sha == current


@pytest.mark.cluster
@pytest.mark.worker
@pytest.mark.slow
def test_weights_download_retries_while_the_hub_is_unreachable(fleet: Fleet) -> None:
    """Expected: the download Job's pod fails and is restarted with back-off (the Job's
    backoffLimit of 3 bounds it; then the rollout fails with a remedy naming the Hub); the
    rollout waits in `weights` meanwhile, never creating serving pods. Deleting the deployment
    then removes the Job and the volume."""
    restart_worker(fleet, WEIGHTS_HF_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    deployment, rollout = fleet.deploy()
    namespace = fleet.tenant.namespace

    def download_failed_once() -> bool:
        pods = fleet.k8s.core.list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/component=weights-download"
        ).items
        return any(
            (s.last_state and s.last_state.terminated and s.last_state.terminated.exit_code)
            or (s.state and s.state.terminated and s.state.terminated.exit_code)
            for p in pods
            # TGI's image downloads in two steps, download-weights first (an init container)
            for s in [
                *(p.status.init_container_statuses or []),
                *(p.status.container_statuses or []),
            ]
        )

    # huggingface_hub itself retries a refused connection for about 23 s before giving up.
    wait_for(download_failed_once, 90, describe="the download pod to fail against the Hub")
    rollout.refresh_from_db()
    assert rollout.state == S.WEIGHTS, rollout.state
    assert fleet.k8s.apps.list_namespaced_deployment(namespace).items == []
    assert fleet.k8s.batch.list_namespaced_job(namespace).items[0].status.succeeded is None

    fleet.delete(deployment)
    assert not Deployment.objects.filter(pk=deployment.pk).exists()
    assert_nothing_left(fleet)


@pytest.mark.cluster
@pytest.mark.worker
@pytest.mark.slow
def test_a_hub_failure_during_the_download_only_delays_the_rollout(
    fleet: Fleet, hub_control: HubControl
) -> None:
    """Expected: the failed download attempt is retried by the Job and the rollout completes."""
    hub_control.set_faults(status=501, path_regex="/tree/", times=1)
    deployment, rollout = fleet.deploy(promotion=services.Promotion(scale_down_delay_seconds=1))
    rollout = fleet.wait_state(rollout, S.COMPLETED, timeout=180)
    assert_events_consistent(rollout)
    tree = [r["status"] for r in hub_control.requests() if "/tree/" in r["path"]]
    assert tree[0] == 501 and 200 in tree, tree
    pods = fleet.k8s.core.list_namespaced_pod(
        fleet.tenant.namespace, label_selector="app.kubernetes.io/component=weights-download"
    ).items
    assert sum(s.restart_count for s in _download_statuses(pods)) >= 1

    fleet.delete(deployment)
    assert_nothing_left(fleet)

"""Autoscaling on queue depth: HPA bounds from the spec capped by the quota, and its live state."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from deployments.autoscaling import hpa_name, hpa_state, replica_bounds
from deployments.choices import RolloutState as S
from deployments.models import DeploymentRevision
from deployments.rendering import OwnerRef, render_hpa
from deployments.specs import serving_spec
from engines import ENGINES
from tenants.models import TenantQuota
from tests.fixtures.cluster import wait_for
from tests.fixtures.fleet import Fleet
from tests.fixtures.personas import World


def _revision(world: World, **values: Any) -> DeploymentRevision:
    deployment = world.objects["deployment_a"]
    fields: dict[str, Any] = {
        "number": 1,
        "model_revision": deployment.model.current_revision,
        "tier": deployment.tier,
        "max_input_tokens": 1024,
        "max_total_tokens": 2048,
        "max_batch_prefill_tokens": 2048,
        "autoscaling": True,
        "min_replicas": 1,
        "replicas": 2,
        "max_replicas": 4,
        "queue_size_target": 6,
    } | values
    return DeploymentRevision.objects.create(deployment=deployment, **fields)


def _hpa(revision: DeploymentRevision) -> dict[str, Any]:
    owner = OwnerRef(api_version="v1", kind="ConfigMap", name="tgi-x", uid="uid-1")
    hpa = render_hpa(serving_spec(revision, owner), "blue")
    assert hpa is not None
    return hpa


@pytest.mark.parametrize("engine", list(ENGINES))
def test_hpa_scales_on_queue_depth_within_the_spec(world: World, engine: str) -> None:
    hpa = _hpa(_revision(world, engine=engine))
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    [metric] = hpa["spec"]["metrics"]
    # The engine's per-pod queue gauge, the same series the queue guardrail reads.
    own = ENGINES[engine].metrics
    assert metric["pods"]["metric"]["name"] == own.queue_size_metric
    assert own.queue_size_metric in str(own.alerts["QueueDepthHigh"])
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "6"}


@pytest.mark.parametrize(
    ("quota", "expected", "why"),
    [
        ({"max_replicas_per_deployment": 2}, (1, 2, 2), "max_replicas_per_deployment"),
        ({"max_gpus": 3}, (1, 2, 3), "max_gpus"),
        ({"max_gpus": 1}, (1, 1, 1), "max_gpus"),
        ({}, (1, 2, 4), ""),
    ],
)
def test_hpa_maximum_is_capped_by_the_tenants_quota(
    world: World, quota: dict[str, int], expected: tuple[int, int, int], why: str
) -> None:
    TenantQuota.objects.filter(tenant=world.tenant_a).update(
        **({"max_replicas_per_deployment": 8, "max_gpus": 16} | quota)
    )
    revision = _revision(world)
    bounds = replica_bounds(revision, TenantQuota.objects.get(tenant=world.tenant_a))
    assert (bounds.min_replicas, bounds.replicas, bounds.max_replicas) == expected
    assert why in bounds.capped_by
    hpa = _hpa(revision)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (expected[0], expected[2])


def test_fixed_replicas_render_no_hpa_and_no_state(world: World) -> None:
    revision = _revision(world, autoscaling=False, replicas=1, max_replicas=1)
    owner = OwnerRef(api_version="v1", kind="ConfigMap", name="tgi-x", uid="uid-1")
    assert render_hpa(serving_spec(revision, owner), "blue") is None
    deployment = world.objects["deployment_a"]
    deployment.active_revision, deployment.active_colour = revision, "blue"
    assert hpa_state(deployment) is None


@pytest.mark.cluster
@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.parametrize("engine", list(ENGINES))
def test_autoscaled_deployment_shows_its_hpa_and_why_it_cannot_scale(
    fleet: Fleet, engine: str
) -> None:
    deployment, rollout = fleet.deploy(autoscaling=True, replicas=1, min_replicas=1, max_replicas=3)
    fleet.wait_state(rollout, S.COMPLETED)
    deployment.refresh_from_db()

    name = hpa_name(deployment, "blue")
    hpa = fleet.k8s.autoscaling.read_namespaced_horizontal_pod_autoscaler(
        name, fleet.tenant.namespace
    )
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (1, 3)
    queue_metric = ENGINES[engine].queue_size_metric
    assert hpa.spec.metrics[0].pods.metric.name == queue_metric

    # The local cluster has no custom-metrics adapter: the HPA controller says so.
    def inactive() -> Any:
        state = hpa_state(deployment)
        return state if state is not None and state.scaling_active is False else None

    state = wait_for(inactive, 60, describe=lambda: hpa_state(deployment))
    assert state.min_replicas == 1 and state.max_replicas == 3
    [condition] = [c for c in state.conditions if c.type == "ScalingActive"]
    assert condition.status == "False" and condition.message

    page = (
        fleet.world.client_for("viewer_a")
        .get(
            reverse("deployment-metrics", args=[fleet.tenant.slug, deployment.pk]),
            HTTP_HX_REQUEST="true",
        )
        .content.decode()
    )
    assert 'data-testid="hpa-state"' in page
    assert f"HorizontalPodAutoscaler/{name}" in page
    assert f"{queue_metric} averaging" in page  # the autoscaling signal, by its engine's name
    assert 'data-testid="hpa-inactive"' in page
    assert 'data-type="ScalingActive"' in page and condition.reason in page

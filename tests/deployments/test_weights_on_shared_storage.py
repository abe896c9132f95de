"""Weights on shared storage, on the local cluster: replicas of both colours land on different
GPU nodes (and zones) and every rollout promotes, with one download per model commit.

Needs the local cluster's `shared-files` StorageClass (ReadWriteMany, no zone affinity) and
1-GPU nodes in the l4 pool."""

from __future__ import annotations

from typing import Any

import pytest

from deployments import services
from deployments.choices import RolloutState as S
from deployments.models import Tier
from deployments.rendering.constants import (
    COMPONENT_INFERENCE_SERVER,
    COMPONENT_WEIGHTS,
    COMPONENT_WEIGHTS_DOWNLOAD,
)
from deployments.rendering.constants import LABEL_COMPONENT as COMPONENT
from deployments.rendering.meta import label_selector, selector_labels
from deployments.specs import serving_spec
from tests.fixtures.cluster import wait_for
from tests.fixtures.fleet import Fleet

pytestmark = [pytest.mark.cluster, pytest.mark.worker, pytest.mark.slow]

SHARED_CLASS = "shared-files"


def _listed(fleet: Fleet, kind: str, component: str) -> list[Any]:
    selector = label_selector({COMPONENT: component})
    namespace = fleet.tenant.namespace
    if kind == "Job":
        return list(fleet.k8s.batch.list_namespaced_job(namespace, label_selector=selector).items)
    return list(
        fleet.k8s.core.list_namespaced_persistent_volume_claim(
            namespace, label_selector=selector
        ).items
    )


def _only_the_live_side_holds_gpus(fleet: Fleet) -> None:
    """The old side's pods hold their GPUs until they have terminated (the scheduler counts
    them, and so does admission): the next rollout needs those GPUs back."""

    def old_side_gone() -> bool:
        pods = fleet.k8s.core.list_namespaced_pod(
            fleet.tenant.namespace,
            label_selector=label_selector({COMPONENT: COMPONENT_INFERENCE_SERVER}),
        ).items
        return len(pods) <= 2

    wait_for(old_side_gone, 180, describe="the old side's pods to terminate")


def test_three_rollouts_of_two_replicas_on_shared_weights_promote_on_different_nodes(
    fleet: Fleet,
) -> None:
    Tier.objects.filter(slug="l4").update(
        weights_strategy="shared-volume", weights_storage_class=SHARED_CLASS
    )
    promotion = services.Promotion(scale_down_delay_seconds=2)
    deployment, rollout = fleet.deploy(tier="l4", replicas=2, promotion=promotion)
    fleet.wait_state(rollout, S.COMPLETED, timeout=300)
    for total in (3072, 2560):
        _only_the_live_side_holds_gpus(fleet)
        deployment.refresh_from_db()
        _, rollout, _ = services.change_deployment(
            fleet.actor,
            deployment,
            fleet.request(tier="l4", replicas=2, max_total_tokens=total),
            promotion=promotion,
        )
        # Both colours ran at once, each replica on its own 1-GPU node, from one volume.
        fleet.wait_state(rollout, S.COMPLETED, timeout=300)
        spec = serving_spec(rollout.revision)
        pods = fleet.k8s.core.list_namespaced_pod(
            fleet.tenant.namespace,
            label_selector=label_selector(selector_labels(spec, rollout.colour)),  # type: ignore[arg-type]
        ).items
        nodes = {p.spec.node_name for p in pods if p.status.phase == "Running"}
        assert len(nodes) == 2, nodes

    # One model commit: one volume, shared (ReadWriteMany on the shared class), one download.
    (volume,) = _listed(fleet, "PersistentVolumeClaim", COMPONENT_WEIGHTS)
    assert volume.spec.access_modes == ["ReadWriteMany"]
    assert volume.spec.storage_class_name == SHARED_CLASS
    assert len(_listed(fleet, "Job", COMPONENT_WEIGHTS_DOWNLOAD)) == 1

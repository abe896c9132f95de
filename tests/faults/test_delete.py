"""Deleting a deployment while a worker is inside a rollout step."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection

from deployments import deletion, services
from deployments import rollout as engine
from deployments.admission import ServingRequest
from deployments.models import Deployment, Tier
from models_registry import services as registry
from tenants import services as tenant_services
from tenants.audit import Actor
from tenants.models import Tenant
from tests.faults.conftest import portal_objects
from tests.fixtures.cluster import wait_for
from tests.fixtures.personas import World

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


def test_delete_during_a_step_leaves_no_object_behind(
    world: World, cluster_tenant: Tenant, k8s: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step holds the rollout's lease and has not applied its objects yet when the delete
    arrives. Expected: the delete waits for the step, the step's objects go with the rest, and
    the stopped rollout is not taken up again."""
    admin = Actor(world.users["admin"], "cli")
    tenant_services.update_quota(admin, cluster_tenant, {"allowed_tiers": ["a100-80g"]})
    registry.acknowledge_license(Actor(world.users["owner_a"], "cli"), world.objects["model_a"])
    # This test is the worker, of the rollout and of the deletion.
    monkeypatch.setattr(services, "_kick", lambda rollout_id: None)
    monkeypatch.setattr(services, "_kick_deletion", lambda deployment_id: None)
    actor = Actor(world.users["maintainer_a"], "api")
    deployment, rollout, _ = services.create_deployment(
        actor,
        cluster_tenant,
        name="chat",
        request=ServingRequest(
            model=world.objects["model_a"],
            tier=Tier.objects.get(slug="a100-80g"),
            max_total_tokens=2048,
            max_input_tokens=1024,
        ),
    )
    assert engine.advance(rollout.pk) == 0.0  # pending -> weights
    real_apply_all = engine._apply_all
    deleter: list[threading.Thread] = []

    def delete() -> None:
        try:
            services.delete_deployment(actor, Deployment.objects.get(pk=deployment.pk))
            delay = deletion.advance(deployment.pk)
            while delay is not None:
                time.sleep(delay)
                delay = deletion.advance(deployment.pk)
        finally:
            connection.close()

    def apply_all_after_the_delete_started(objects: list[Any]) -> Any:
        if not deleter:
            deleter.append(threading.Thread(target=delete))
            deleter[0].start()
            deleter[0].join(timeout=3)  # a delete that does not wait for the step is done by now
        return real_apply_all(objects)

    monkeypatch.setattr(engine, "_apply_all", apply_all_after_the_delete_started)
    engine.advance(rollout.pk)  # the weights step: namespace, root, volume, download Job
    # Without waiting for the step, the delete removed the root first and the step then
    # re-created root, volume and Job, owned by nothing the portal knows.
    deleter[0].join(timeout=30)
    assert not deleter[0].is_alive()
    assert not Deployment.objects.filter(pk=deployment.pk).exists()
    assert engine.advance(rollout.pk) is None  # nothing left to drive
    wait_for(
        lambda: portal_objects(k8s, cluster_tenant.namespace) == {},
        60,
        describe=lambda: f"portal objects left: {portal_objects(k8s, cluster_tenant.namespace)}",
    )

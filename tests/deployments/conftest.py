"""Fixtures for rollouts on the local cluster with real workers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from django.utils import timezone

from deployments.admission import ServingRequest
from deployments.choices import TERMINAL_STATES
from deployments.models import Deployment, Rollout, Tier
from deployments.services import Promotion, create_deployment
from engines import DEFAULT_ENGINE
from tenants import services as tenant_services
from tenants.audit import Actor
from tenants.models import Tenant
from tests.fixtures.personas import World
from tests.fixtures.worker import WorkerPool


@dataclass
class Fleet:
    """A tenant on the cluster, a deployable model and running workers."""

    world: World
    tenant: Tenant
    pool: WorkerPool
    k8s: Any
    # The engine new deployments run (override per call with deploy(engine=...)).
    engine: str = DEFAULT_ENGINE

    @property
    def actor(self) -> Actor:
        return Actor(self.world.users["maintainer_a"], "api")

    def request(self, tier: str = "a100-80g", **overrides: Any) -> ServingRequest:
        values: dict[str, Any] = {
            "engine": self.engine,
            "max_total_tokens": 2048,
            "max_input_tokens": 1024,
        } | overrides
        return ServingRequest(
            model=self.world.objects["model_a"], tier=Tier.objects.get(slug=tier), **values
        )

    def deploy(
        self, name: str = "chat", promotion: Promotion | None = None, **overrides: Any
    ) -> tuple[Deployment, Rollout]:
        annotations = overrides.pop("pod_annotations", None)
        deployment, rollout, _ = create_deployment(
            self.actor,
            self.tenant,
            name=name,
            request=self.request(**overrides),
            promotion=promotion or Promotion(scale_down_delay_seconds=2),
            pod_annotations=annotations,
        )
        return deployment, rollout

    def wait_state(self, rollout: Rollout, states: set[str] | str, timeout: float = 120) -> Rollout:
        wanted = {states} if isinstance(states, str) else states
        deadline = timezone.now().timestamp() + timeout
        while timezone.now().timestamp() < deadline:
            rollout.refresh_from_db()
            if rollout.state in wanted:
                return rollout
            if rollout.state in TERMINAL_STATES and not wanted & TERMINAL_STATES:
                break
            time.sleep(0.3)
        events = "\n".join(str(e) for e in rollout.events.all())
        raise AssertionError(
            f"rollout is {rollout.state} ({rollout.failure_reason}), wanted {wanted}\n"
            f"events:\n{events}\nworkers:\n{self.pool.logs()[-6000:]}"
        )


@pytest.fixture
def engine() -> str:
    """The engine of the fleet's deployments; parametrize ``engine`` to run a test per engine
    (``@pytest.mark.parametrize("engine", list(ENGINES))`` overrides this fixture)."""
    return DEFAULT_ENGINE


@pytest.fixture
def fleet(
    world: World, cluster_tenant: Tenant, worker_pool: WorkerPool, k8s: Any, engine: str
) -> Fleet:
    admin = Actor(world.users["admin"], "cli")
    tenant_services.update_quota(
        admin, cluster_tenant, {"allowed_tiers": ["l4", "a100-80g", "a100-80g-x2"], "max_gpus": 16}
    )
    model = world.objects["model_a"]
    from models_registry import services as registry

    registry.acknowledge_license(Actor(world.users["owner_a"], "cli"), model)
    worker_pool.env.update({"ROLLOUT_RECONCILE_SECONDS": "1", "ROLLOUT_CLAIM_SECONDS": "4"})
    worker_pool.start(beat=True)
    return Fleet(world=world, tenant=cluster_tenant, pool=worker_pool, k8s=k8s, engine=engine)

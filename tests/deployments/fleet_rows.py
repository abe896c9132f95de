"""Many settled deployments written straight to the database (no cluster, no worker), for the
tests that count queries at two fleet sizes."""

from __future__ import annotations

from django.utils import timezone

from deployments.choices import RolloutState
from deployments.models import Deployment, DeploymentRevision, Rollout, Tier
from models_registry.models import HubCredential, ModelRevision, RegisteredModel
from tenants import services
from tenants.audit import Actor
from tenants.models import Tenant


def tenant_with_model(admin: Actor, slug: str, *, hub_token: bool = False) -> RegisteredModel:
    """A tenant holding one registered model with a current revision (and a Hub token)."""
    tenant = services.create_tenant(admin, name=slug, slug=slug, namespace=f"tenant-{slug}")
    model = RegisteredModel.objects.create(tenant=tenant, repo_id="org/model")
    model.current_revision = ModelRevision.objects.create(
        model=model,
        commit_sha="a" * 40,
        requested_revision="main",
        pipeline_tag="text-generation",
        parameters_by_dtype={"BF16": 7_000_000_000},
        num_hidden_layers=32,
        num_key_value_heads=8,
        head_dim=128,
        context_length=8192,
    )
    model.save()
    if hub_token:
        HubCredential.objects.create(
            tenant=tenant, secret_name="hf-token", fingerprint="f" * 12, set_at=timezone.now()
        )
    return model


def settled_deployments(model: RegisteredModel, count: int, *, prefix: str = "d") -> None:
    """`count` deployments of the model's tenant serving blue, each from a completed rollout;
    every other one autoscales, so both replica paths of the spec are taken."""
    tenant: Tenant = model.tenant
    tier = Tier.objects.get(slug="l4")
    assert model.current_revision is not None
    for number in range(count):
        deployment = Deployment.objects.create(
            tenant=tenant, name=f"{prefix}{number}", tier=tier, model=model, active_colour="blue"
        )
        revision = DeploymentRevision.objects.create(
            deployment=deployment,
            number=1,
            model_revision=model.current_revision,
            tier=tier,
            max_input_tokens=1024,
            max_total_tokens=2048,
            max_batch_prefill_tokens=1074,
            autoscaling=number % 2 == 0,
            max_replicas=3,
        )
        Rollout.objects.create(
            deployment=deployment,
            revision=revision,
            colour="blue",
            state=RolloutState.COMPLETED,
            traffic_switched=True,
            finished_at=timezone.now(),
        )
        Deployment.objects.filter(pk=deployment.pk).update(active_revision=revision)

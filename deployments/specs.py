"""Building the renderers' specs from the database (the only place the two meet).

One spec at a time (admission, a rollout step) reads its tenant's quota and Hub credential
fresh; `serving_specs` builds many with a fixed number of queries whatever their count, for
the reconciler's pass over the whole fleet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from deployments.autoscaling import replica_bounds
from deployments.models import Deployment, DeploymentRevision, Rollout, Tier
from deployments.rendering import ModelRevisionSpec, OwnerRef, ServingSpec, TenantSpec, TierSpec
from deployments.rendering.constants import (
    HUB_TOKEN_SECRET_NAME,
    PROGRESS_DEADLINE_SECONDS,
    WEIGHTS_SHARED_VOLUME,
)
from deployments.rendering.meta import weights_pvc_name
from engines import get_engine
from models_registry import services as registry
from models_registry.models import HubCredential, ModelRevision
from tenants.models import Tenant, TenantQuota

# Download Jobs and spare room for a rollout's second colour on top of the replica ceiling.
EXTRA_PODS = 10


@dataclass(frozen=True)
class TenantFacts:
    """What a spec needs of its tenant beyond the row: the quota and whether a Hub token is set."""

    quota: TenantQuota
    has_hub_token: bool


def tenant_facts(tenant: Tenant) -> TenantFacts:
    return TenantFacts(
        quota=TenantQuota.objects.get(tenant=tenant),
        has_hub_token=HubCredential.objects.for_tenant(tenant).exists(),
    )


def tenants_facts(tenant_ids: Iterable[int]) -> dict[int, TenantFacts]:
    """The facts of many tenants in two queries."""
    ids = set(tenant_ids)
    quotas = {quota.tenant_id: quota for quota in TenantQuota.objects.filter(tenant_id__in=ids)}
    with_token = set(
        HubCredential.objects.filter(tenant_id__in=ids).values_list("tenant_id", flat=True)
    )
    missing = ids - quotas.keys()
    if missing:
        raise TenantQuota.DoesNotExist(f"tenants {sorted(missing)} have no quota")
    return {pk: TenantFacts(quota=quotas[pk], has_hub_token=pk in with_token) for pk in ids}


def tenant_spec(tenant: Tenant, facts: TenantFacts | None = None) -> TenantSpec:
    quota = (facts or tenant_facts(tenant)).quota
    # Both colours may run at once during a rollout, hence × 2.
    max_pods = quota.max_deployments * quota.max_replicas_per_deployment * 2 + EXTRA_PODS
    return TenantSpec(
        slug=tenant.slug, namespace=tenant.namespace, max_gpus=quota.max_gpus, max_pods=max_pods
    )


@dataclass(frozen=True)
class WeightsStorage:
    """A tier's weights strategy and shared storage class, its own fields overriding the
    cluster's settings (the class is None unless the strategy is shared-volume)."""

    strategy: str
    storage_class: str | None


def weights_storage(tier: Tier) -> WeightsStorage:
    """The only place a tier's blank weights fields fall back to the cluster's settings."""
    strategy = tier.weights_strategy or settings.WEIGHTS_STRATEGY
    storage_class = tier.weights_storage_class or settings.WEIGHTS_STORAGE_CLASS
    return WeightsStorage(
        strategy=strategy,
        storage_class=(storage_class or None) if strategy == WEIGHTS_SHARED_VOLUME else None,
    )


def tier_spec(tier: Tier, image: str) -> TierSpec:
    """The tier as the renderers see it, running `image` (the revision's engine image)."""
    weights = weights_storage(tier)
    return TierSpec(
        name=tier.slug,
        node_selector=dict(tier.node_selector),
        tolerations=list(tier.tolerations),
        gpu_product=tier.gpu_product,
        gpu_memory_gib=float(tier.gpu_memory_gb) * 1e9 / 2**30,
        gpus_per_replica=tier.gpus_per_replica,
        cpu_request=tier.cpu_request,
        memory_request=tier.memory_request,
        image=image,
        weights_strategy=weights.strategy,
        weights_storage_class=weights.storage_class,
    )


def model_spec(model_revision: ModelRevision) -> ModelRevisionSpec:
    registered = model_revision.model
    return ModelRevisionSpec(
        repo_id=registered.repo_id,
        commit_sha=model_revision.commit_sha,
        weights_pvc_name=weights_pvc_name(registered.repo_id, model_revision.commit_sha),
        weights_size_bytes=max(1, model_revision.weights_bytes),
        # Approved for this very commit: another commit's approval never carries over.
        trust_remote_code=registry.trusts_remote_code(model_revision),
        # Unknown (registered before the portal recorded it) keeps the chat check.
        has_chat_template=model_revision.has_chat_template is not False,
    )


def serving_spec(
    revision: DeploymentRevision,
    owner: OwnerRef | None = None,
    *,
    progress_deadline_seconds: int = PROGRESS_DEADLINE_SECONDS,
    facts: TenantFacts | None = None,
) -> ServingSpec:
    """The complete spec of a revision; admission builds it from the unsaved row, the rollout
    and the reconciler from the stored one, so all three render the same objects. `facts` are
    the tenant's, read once for many specs (`serving_specs`); without them they are read now."""
    deployment = revision.deployment
    facts = facts or tenant_facts(deployment.tenant)
    # The HPA never scales beyond what the tenant's quota allows now (it may have been lowered).
    bounds = replica_bounds(revision, facts.quota)
    replicas = (
        (bounds.min_replicas, bounds.replicas, bounds.max_replicas)
        if revision.autoscaling
        else (revision.min_replicas, revision.replicas, revision.max_replicas)
    )
    return ServingSpec(
        tenant=tenant_spec(deployment.tenant, facts),
        deployment_name=deployment.name,
        revision_number=revision.number,
        # Revisions admitted by admit() pin their image; a row written directly (tests, benches)
        # runs what its tier offers for its engine now.
        tier=tier_spec(
            revision.tier, revision.image or revision.tier.image_for(revision.engine) or ""
        ),
        model=model_spec(revision.model_revision),
        max_input_tokens=revision.max_input_tokens,
        max_total_tokens=revision.max_total_tokens,
        max_batch_prefill_tokens=revision.max_batch_prefill_tokens,
        max_concurrent_requests=revision.max_concurrent_requests,
        quantize=revision.quantize or None,
        dtype=revision.dtype or None,  # type: ignore[arg-type]
        kv_cache_dtype=revision.kv_cache_dtype or None,
        min_replicas=replicas[0],
        replicas=replicas[1],
        max_replicas=replicas[2],
        autoscaling=revision.autoscaling,
        queue_size_target=revision.queue_size_target,
        hf_token_secret_name=HUB_TOKEN_SECRET_NAME if facts.has_hub_token else None,
        owner=owner,
        engine=get_engine(revision.engine),
        pod_annotations=revision.pod_annotations or {},
        progress_deadline_seconds=progress_deadline_seconds,
    )


def active_serving_spec(deployment: Deployment) -> ServingSpec | None:
    """The spec the serving colour was rolled out with (None before any side serves).

    The progress deadline is the one of the rollout that brought that revision to that colour,
    so re-rendering gives the Deployment that rollout applied."""
    revision = deployment.active_revision
    if revision is None or not deployment.active_colour:
        return None
    deadline = (
        Rollout.objects.filter(
            deployment=deployment,
            revision=revision,
            colour=deployment.active_colour,
            traffic_switched=True,
        )
        .order_by("-started_at", "-id")
        .values_list("progress_deadline_seconds", flat=True)
        .first()
    )
    return serving_spec(revision, progress_deadline_seconds=deadline or PROGRESS_DEADLINE_SECONDS)


# What a spec reads of a deployment's active revision, joined in the deployments' query.
SPEC_RELATED = (
    "tenant",
    "active_revision__tier",
    "active_revision__model_revision__model",
)


def serving_specs(deployments: Iterable[Deployment]) -> dict[int, ServingSpec]:
    """The spec of each deployment's active revision by deployment id (those without one are
    left out), with two queries whatever their number; select `SPEC_RELATED` on the
    deployments so that reading the revisions costs none."""
    rows = [d for d in deployments if d.active_revision is not None]
    facts = tenants_facts(d.tenant_id for d in rows)
    specs = {}
    for deployment in rows:
        revision = deployment.active_revision
        assert revision is not None
        # The revision's deployment is this row: sharing it spares a query per revision.
        revision.deployment = deployment
        specs[deployment.pk] = serving_spec(revision, facts=facts[deployment.tenant_id])
    return specs

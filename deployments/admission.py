"""Admission of a deployment revision: every check runs before any row or Kubernetes object.

Refusals name the field and give the numbers; warnings are returned for the user to see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from deployments.capacity import ClusterCapacity, PoolCapacity, pool_capacity
from deployments.choices import ACTIVE_STATES
from deployments.models import Deployment, DeploymentRevision, Rollout, Tier
from deployments.rendering import ServingSpec
from deployments.rendering.meta import selector_text
from deployments.rendering.specs import check_pod_annotations
from deployments.serving_fields import SERVING_DEFAULTS
from deployments.specs import serving_spec
from engines.errors import SpecError
from models_registry import fit
from models_registry import services as registry
from models_registry.models import ModelRevision, RegisteredModel
from portal.errors import DomainError
from tenants.models import Tenant, TenantQuota


class AdmissionRefused(DomainError):
    code = "admission_refused"


@dataclass
class ServingRequest:
    """What a user asks to serve; unset token limits take TGI's defaults."""

    model: RegisteredModel
    tier: Tier
    # The commit to serve; None: the one the model is pinned to now. Re-deploying an older
    # revision pins that revision's commit, and admission checks that commit.
    pinned_revision: ModelRevision | None = None
    # Defaults are the serving schema's (deployments.serving_fields).
    engine: str = SERVING_DEFAULTS["engine"]
    quantize: str = SERVING_DEFAULTS["quantize"]
    dtype: str = SERVING_DEFAULTS["dtype"]
    kv_cache_dtype: str = SERVING_DEFAULTS["kv_cache_dtype"]
    max_input_tokens: int | None = SERVING_DEFAULTS["max_input_tokens"]
    max_total_tokens: int | None = SERVING_DEFAULTS["max_total_tokens"]
    max_batch_prefill_tokens: int | None = SERVING_DEFAULTS["max_batch_prefill_tokens"]
    max_concurrent_requests: int = SERVING_DEFAULTS["max_concurrent_requests"]
    replicas: int = SERVING_DEFAULTS["replicas"]
    min_replicas: int | None = SERVING_DEFAULTS["min_replicas"]
    max_replicas: int | None = SERVING_DEFAULTS["max_replicas"]
    autoscaling: bool = SERVING_DEFAULTS["autoscaling"]
    queue_size_target: int = SERVING_DEFAULTS["queue_size_target"]
    pod_annotations: dict[str, str] = field(default_factory=dict)

    @property
    def model_revision(self) -> ModelRevision | None:
        return self.pinned_revision or self.model.current_revision

    def resolved(self) -> dict[str, Any]:
        """The concrete revision fields, defaults filled in the way TGI's launcher does."""
        revision = self.model_revision
        context = revision.context_length if revision else None
        total = self.max_total_tokens or min(
            self.tier.default_max_total_tokens, context or self.tier.default_max_total_tokens
        )
        max_input = self.max_input_tokens or total - 1
        prefill = self.max_batch_prefill_tokens or max_input + 50
        minimum = self.min_replicas or self.replicas
        maximum = self.max_replicas or max(self.replicas, minimum)
        return {
            "engine": self.engine,
            "image": self.tier.image_for(self.engine) or "",
            "quantize": self.quantize,
            "dtype": self.dtype,
            "kv_cache_dtype": self.kv_cache_dtype,
            "max_input_tokens": max_input,
            "max_total_tokens": total,
            "max_batch_prefill_tokens": prefill,
            "max_concurrent_requests": self.max_concurrent_requests,
            "replicas": self.replicas,
            "min_replicas": minimum,
            "max_replicas": maximum,
            "autoscaling": self.autoscaling,
            "queue_size_target": self.queue_size_target,
            "pod_annotations": self.pod_annotations,
        }


@dataclass
class Admission:
    values: dict[str, Any]
    spec: ServingSpec | None = None
    warnings: list[str] = field(default_factory=list)
    gpus_needed: int = 0
    pool_free_gpus: int = 0
    tenant_gpus_in_use: int = 0


def _refuse(field_name: str, message: str) -> AdmissionRefused:
    return AdmissionRefused(message, field=field_name)


def live_side_gpus(deployment: Deployment | None) -> int:
    """GPUs of the side that serves now; it keeps them until a new side is promoted."""
    if deployment is None or not (deployment.active_revision_id and deployment.active_colour):
        return 0
    active = deployment.active_revision
    assert active is not None
    return active.replicas * active.tier.gpus_per_replica


def deployments_gpus(deployments: Iterable[Deployment]) -> dict[int, int]:
    """GPUs each deployment holds now, by id: its active side plus the new side of a running
    rollout (at most one per deployment), the rollouts read in one query for all of them.
    Select ``active_revision__tier`` on the deployments."""
    rows = list(deployments)
    rollouts = Rollout.objects.filter(deployment__in=rows, state__in=ACTIVE_STATES).select_related(
        "revision__tier"
    )
    new_sides = {
        r.deployment_id: r.revision.replicas * r.revision.tier.gpus_per_replica for r in rollouts
    }
    return {d.pk: live_side_gpus(d) + new_sides.get(d.pk, 0) for d in rows}


def deployment_gpus(deployment: Deployment) -> int:
    """GPUs a deployment holds now: its active side plus the new side of a running rollout."""
    return deployments_gpus([deployment])[deployment.pk]


def tenant_gpus_in_use(tenant: Tenant, exclude: Deployment | None = None) -> int:
    deployments = Deployment.objects.for_tenant(tenant).select_related("active_revision__tier")
    if exclude is not None:
        deployments = deployments.exclude(pk=exclude.pk)
    return sum(deployments_gpus(deployments).values())


@dataclass(frozen=True)
class GpuBudget:
    """The tenant's GPU quota against a new side: what admission checks and the deploy
    wizard's review shows, computed once (gpu_budget)."""

    elsewhere: int  # held by the tenant's other deployments
    live_side: int  # held by this deployment's serving side
    needed: int | None  # the new side; None until a tier is chosen
    max_gpus: int

    @property
    def in_use(self) -> int:
        return self.elsewhere + self.live_side

    @property
    def after(self) -> int:
        return self.in_use + (self.needed or 0)

    @property
    def over_quota(self) -> bool:
        return self.after > self.max_gpus

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.after / max(1, self.max_gpus)))


def gpu_budget(
    tenant: Tenant,
    quota: TenantQuota,
    deployment: Deployment | None,
    tier: Tier | None,
    replicas: int,
) -> GpuBudget:
    """`replicas` of `tier` as a new side of `deployment` (None: a new deployment)."""
    return GpuBudget(
        elsewhere=tenant_gpus_in_use(tenant, exclude=deployment),
        live_side=live_side_gpus(deployment),
        needed=replicas * tier.gpus_per_replica if tier is not None else None,
        max_gpus=quota.max_gpus,
    )


@dataclass(frozen=True)
class PoolRoom:
    """Room on the tier's nodes (those its node selector matches) for the new side's replicas."""

    pool: PoolCapacity | None  # None: no GPU node matches the tier's selector
    replicas_that_fit: int
    replicas: int

    @property
    def short(self) -> bool:
        return self.replicas_that_fit < self.replicas


def pool_room(tier: Tier, replicas: int, capacity: ClusterCapacity) -> PoolRoom:
    pool = capacity.matching(tier.node_selector)
    fitting = pool.replicas_that_fit(tier.gpus_per_replica) if pool is not None else 0
    return PoolRoom(pool=pool, replicas_that_fit=fitting, replicas=replicas)


# Where a renderer's or engine's refusal points in the request (the spec's own name otherwise).
_SPEC_FIELDS = {"tier.image": "engine", "extra_pod_annotations": "pod_annotations"}


def complete_spec(
    tenant: Tenant,
    request: ServingRequest,
    values: dict[str, Any],
    deployment: Deployment | None,
    name: str,
) -> ServingSpec:
    """The ServingSpec the revision will render to, built from the row that is not saved yet,
    so the engine's and the renderers' refusals become field errors before anything is stored."""
    revision = DeploymentRevision(
        deployment=deployment or Deployment(tenant=tenant, name=name),
        number=1 + (deployment.revisions.count() if deployment is not None else 0),
        model_revision=request.model_revision,
        tier=request.tier,
        **values,
    )
    try:
        return serving_spec(revision)
    except SpecError as error:
        raise _spec_refusal(error) from None


def _spec_refusal(error: SpecError) -> AdmissionRefused:
    field_name = _SPEC_FIELDS.get(error.field, error.field)
    return _refuse(field_name, str(error).removeprefix(f"{error.field}: "))


def admit(
    tenant: Tenant,
    request: ServingRequest,
    deployment: Deployment | None,
    *,
    name: str | None = None,
) -> Admission:
    """Check a revision for `deployment` (None: a new deployment called `name`) and return
    what to create, with the complete spec it renders to."""
    values = request.resolved()
    warnings: list[str] = []
    try:
        # The request's own shape first, before anything about the tenant's world.
        check_pod_annotations(request.pod_annotations)
    except SpecError as error:
        raise _spec_refusal(error) from None
    model, tier = request.model, request.tier
    revision = request.model_revision
    if model.tenant_id != tenant.pk:
        raise _refuse("model", "the model is not registered in this tenant")
    blockers = registry.deployment_blockers(model, revision)
    if blockers:
        raise _refuse("model", "the model cannot be deployed yet: " + "; ".join(blockers))
    assert revision is not None
    quota = TenantQuota.objects.get(tenant=tenant)
    if not tier.is_active:
        raise _refuse("tier", f"tier '{tier.slug}' is retired")
    if tier.slug not in quota.allowed_tiers:
        allowed = ", ".join(quota.allowed_tiers) or "none"
        raise _refuse(
            "tier", f"tier '{tier.slug}' is not allowed for this tenant (allowed: {allowed})"
        )
    if not values["image"]:
        offered = ", ".join(tier.offered_engines()) or "none"
        raise _refuse(
            "engine",
            f"tier '{tier.slug}' does not offer the engine '{request.engine}' (offered: {offered})",
        )

    max_input, total = values["max_input_tokens"], values["max_total_tokens"]
    prefill = values["max_batch_prefill_tokens"]
    if max_input >= total:
        raise _refuse(
            "max_input_tokens",
            f"max_input_tokens ({max_input}) must be less than max_total_tokens ({total})",
        )
    if prefill < max_input:
        raise _refuse(
            "max_batch_prefill_tokens",
            f"max_batch_prefill_tokens ({prefill}) must be at least max_input_tokens ({max_input})",
        )
    if total > tier.max_total_tokens_limit:
        raise _refuse(
            "max_total_tokens",
            f"max_total_tokens ({total}) is above tier '{tier.slug}''s limit of "
            f"{tier.max_total_tokens_limit}",
        )
    if revision.context_length and total > revision.context_length:
        raise _refuse(
            "max_total_tokens",
            f"max_total_tokens ({total}) exceeds the model's context length "
            f"({revision.context_length})",
        )
    if revision.context_length and max_input >= revision.context_length - 1:
        warnings.append(
            f"max_input_tokens ({max_input}) is at the model's maximum context "
            f"({revision.context_length}): long prompts leave no room to generate and use "
            "the most KV cache"
        )
    if not 1 <= values["min_replicas"] <= values["replicas"] <= values["max_replicas"]:
        raise _refuse(
            "replicas",
            f"replicas must satisfy 1 ≤ min_replicas ({values['min_replicas']}) ≤ replicas "
            f"({values['replicas']}) ≤ max_replicas ({values['max_replicas']})",
        )
    if values["max_replicas"] > quota.max_replicas_per_deployment:
        raise _refuse(
            "max_replicas" if values["autoscaling"] else "replicas",
            f"{values['max_replicas']} replicas exceed the tenant's limit of "
            f"{quota.max_replicas_per_deployment} per deployment",
        )

    choice = fit.ServingChoice(
        engine=values["engine"],
        quantize=values["quantize"] or None,
        dtype=values["dtype"] or None,
        kv_cache_dtype=values["kv_cache_dtype"] or None,
        num_shard=tier.gpus_per_replica,
        max_total_tokens=total,
        concurrent_sequences=1,
    )
    try:
        shape = fit.ModelShape.of(revision)
    except ValueError as error:
        raise _refuse("model", str(error)) from None
    problem = fit.quantization_problem(shape, choice)
    if problem:
        raise _refuse("quantize", problem)
    tier_fit = fit.fit_tier(shape, choice, tier_capacities_for([tier])[0])
    if not tier_fit.fits:
        raise _refuse("tier", f"the model does not fit tier '{tier.slug}': {tier_fit.reason}")

    if deployment is None:
        count = Deployment.objects.for_tenant(tenant).count()
        if count >= quota.max_deployments:
            raise _refuse(
                "name",
                f"the tenant already has {count} of its {quota.max_deployments} deployments",
            )
    budget = gpu_budget(tenant, quota, deployment, tier, values["replicas"])
    new_side, old_side, elsewhere = budget.needed or 0, budget.live_side, budget.elsewhere
    if budget.over_quota:
        sides = f"{old_side} old side + {new_side} new side" if old_side else f"{new_side}"
        raise _refuse(
            "replicas",
            f"needs {old_side + new_side} GPUs ({sides}) while {elsewhere} are in use by other "
            f"deployments; the tenant's quota is {budget.max_gpus} GPUs",
        )
    room = pool_room(tier, values["replicas"], pool_capacity())
    pool = room.pool
    if pool is None:
        raise _refuse(
            "tier",
            f"no GPU node in the cluster matches the tier's node selector "
            f"{selector_text(tier.node_selector)}",
        )
    if room.short:
        raise _refuse(
            "replicas",
            f"the tier's {pool.nodes} nodes ({selector_text(tier.node_selector)}) have "
            f"{pool.free} free GPUs (room for "
            f"{room.replicas_that_fit} replicas of {tier.gpus_per_replica} GPUs) but the new "
            f"side needs {values['replicas']} replicas",
        )
    spec = complete_spec(
        tenant, request, values, deployment, name or (deployment.name if deployment else "new")
    )
    return Admission(
        values=values,
        spec=spec,
        warnings=warnings,
        gpus_needed=new_side,
        pool_free_gpus=pool.free,
        tenant_gpus_in_use=budget.in_use,
    )


def tier_capacities_for(tiers: Iterable[Tier]) -> list[fit.TierCapacity]:
    """What the registry's fit arithmetic needs to know of each tier."""
    return [
        fit.TierCapacity(
            slug=tier.slug,
            name=tier.name,
            gpu_memory_gb=tier.gpu_memory_gb,
            gpus_per_replica=tier.gpus_per_replica,
            price_per_gpu_hour=tier.price_per_gpu_hour,
        )
        for tier in tiers
    ]


def active_tier_capacities() -> list[fit.TierCapacity]:
    """The tiers on offer, for the registry's fit table (see DeploymentsConfig.ready)."""
    return tier_capacities_for(Tier.objects.filter(is_active=True))

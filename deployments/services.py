"""Domain operations of deployments: tiers, deployments, revisions and their rollouts.

Views, API viewsets and Celery tasks all call these; the rollout steps live in rollout.py."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from deployments import policy
from deployments import rollout as engine
from deployments.admission import Admission, ServingRequest, admit
from deployments.choices import ACTIVE_STATES, DeletionStep, RolloutState
from deployments.models import (
    Deployment,
    DeploymentRevision,
    Rollout,
    Tier,
    default_engine_images,
)
from deployments.rendering import other_colour
from deployments.rendering.constants import (
    DEPLOYMENT_NAME_MAX,
    LABEL_GKE_NODEPOOL,
    LABEL_GPU_PRODUCT,
    PREVIEW_SUFFIX,
)
from deployments.serving_fields import PROMOTION_DEFAULTS, PROMOTION_SCHEMA, out_of_range
from deployments.tasks import advance_rollout
from deployments.tasks import delete_deployment as delete_deployment_task
from portal.errors import Conflict, DomainError
from tenants import audit, gateway_sync
from tenants.audit import Actor
from tenants.models import Tenant
from tenants.validators import validate_dns1123_label

# The demo tiers, on the local cluster's node pools (devstack/cluster/nodepools.yaml), found
# by the label NVIDIA's GPU feature discovery sets; the renderer adds the GPU taint's toleration.
DEFAULT_TIERS: list[dict[str, Any]] = [
    {
        "slug": "l4",
        "name": "L4 24 GB",
        # The static L4 pool only: the local cluster's autoscaled L4 pool has the same cards.
        "node_selector": {LABEL_GPU_PRODUCT: "NVIDIA-L4", LABEL_GKE_NODEPOOL: "l4"},
        "gpu_product": "NVIDIA-L4",
        "gpu_memory_gb": Decimal("24"),
        "gpus_per_replica": 1,
        "cpu_request": "4",
        "memory_request": "16Gi",
        "default_max_total_tokens": 4096,
        "max_total_tokens_limit": 16384,
        "price_per_gpu_hour": Decimal("0.80"),
    },
    {
        "slug": "a100-80g",
        "name": "A100 80 GB",
        "node_selector": {LABEL_GPU_PRODUCT: "NVIDIA-A100-SXM4-80GB"},
        "gpu_product": "NVIDIA-A100-SXM4-80GB",
        "gpu_memory_gb": Decimal("80"),
        "gpus_per_replica": 1,
        "cpu_request": "8",
        "memory_request": "64Gi",
        "default_max_total_tokens": 8192,
        "max_total_tokens_limit": 131072,
        "price_per_gpu_hour": Decimal("3.40"),
    },
    {
        "slug": "a100-80g-x2",
        "name": "2 × A100 80 GB",
        "node_selector": {LABEL_GPU_PRODUCT: "NVIDIA-A100-SXM4-80GB"},
        "gpu_product": "NVIDIA-A100-SXM4-80GB",
        "gpu_memory_gb": Decimal("80"),
        "gpus_per_replica": 2,
        "cpu_request": "16",
        "memory_request": "128Gi",
        "default_max_total_tokens": 8192,
        "max_total_tokens_limit": 131072,
        "price_per_gpu_hour": Decimal("3.40"),
    },
    {
        "slug": "h100-80g-x4",
        "name": "4 × H100 80 GB",
        "node_selector": {LABEL_GPU_PRODUCT: "NVIDIA-H100-80GB-HBM3"},
        "gpu_product": "NVIDIA-H100-80GB-HBM3",
        "gpu_memory_gb": Decimal("80"),
        "gpus_per_replica": 4,
        "cpu_request": "32",
        "memory_request": "256Gi",
        "default_max_total_tokens": 16384,
        "max_total_tokens_limit": 131072,
        "price_per_gpu_hour": Decimal("6.50"),
    },
]


@transaction.atomic
def ensure_default_tiers() -> list[Tier]:
    """Create the demo tiers that do not exist yet (existing ones are left as admins set them)."""
    tiers = []
    for spec in DEFAULT_TIERS:
        defaults = {**spec, "engine_images": default_engine_images()}
        tier, _ = Tier.objects.get_or_create(slug=spec["slug"], defaults=defaults)
        tiers.append(tier)
    return tiers


# --- deployments and rollouts --------------------------------------------------------------


@dataclass
class Promotion:
    mode: str = PROMOTION_DEFAULTS["mode"]
    after_seconds: int = PROMOTION_DEFAULTS["after_seconds"]
    scale_down_delay_seconds: int | None = PROMOTION_DEFAULTS["scale_down_delay_seconds"]
    progress_deadline_seconds: int | None = PROMOTION_DEFAULTS["progress_deadline_seconds"]


def _validate_name(name: str) -> None:
    try:
        validate_dns1123_label(name)
    except ValidationError as error:
        raise DomainError(error.messages[0], field="name") from None
    if len(name) > DEPLOYMENT_NAME_MAX:
        raise DomainError(
            f"must be at most {DEPLOYMENT_NAME_MAX} characters (the Services add {PREVIEW_SUFFIX})",
            field="name",
        )


def _validate_promotion(promotion: Promotion) -> None:
    """The promotion schema's bounds, for callers that bypass the API's and the form's fields."""
    for field in PROMOTION_SCHEMA:
        problem = out_of_range(field, getattr(promotion, field.name))
        if problem:
            raise DomainError(problem, field=f"promotion.{field.name}")


def _new_revision(
    actor: Actor,
    deployment: Deployment,
    request: ServingRequest,
    admission: Admission,
) -> DeploymentRevision:
    number = (deployment.revisions.aggregate(n=Max("number"))["n"] or 0) + 1
    assert request.model_revision is not None
    return DeploymentRevision.objects.create(
        deployment=deployment,
        number=number,
        model_revision=request.model_revision,
        tier=request.tier,
        created_by=actor.user_or_none,
        **admission.values,
    )


def _start(
    actor: Actor,
    deployment: Deployment,
    revision: DeploymentRevision,
    promotion: Promotion,
    idempotency_key: str = "",
) -> Rollout:
    previous_colour = deployment.active_colour
    new = Rollout(
        deployment=deployment,
        revision=revision,
        previous_revision=deployment.active_revision if previous_colour else None,
        colour=other_colour(previous_colour) if previous_colour else "blue",  # type: ignore[arg-type]
        previous_colour=previous_colour,
        promotion_mode=promotion.mode,
        promote_after_seconds=promotion.after_seconds,
        scale_down_delay_seconds=(
            settings.ROLLOUT_SCALE_DOWN_DELAY_SECONDS
            if promotion.scale_down_delay_seconds is None
            else promotion.scale_down_delay_seconds
        ),
        progress_deadline_seconds=(
            promotion.progress_deadline_seconds or settings.ROLLOUT_PROGRESS_DEADLINE_SECONDS
        ),
        idempotency_key=idempotency_key,
        requested_by=actor.user_or_none,
    )
    try:
        with transaction.atomic():
            new.save()
    except IntegrityError:
        # The same idempotency key sent twice at once: the second caller gets the first rollout.
        same_request = _by_idempotency_key(deployment, idempotency_key)
        if same_request is not None:
            return same_request
        running = Rollout.objects.filter(deployment=deployment, state__in=ACTIVE_STATES).first()
        state = running.get_state_display().lower() if running else "in progress"
        raise Conflict(
            f"a rollout of '{deployment.name}' is already running ({state}); wait for it, or "
            "abort it first",
            field="deployment",
            code="rollout_in_progress",
        ) from None
    engine.record(
        new, actor.name, f"rollout of revision {revision.number} requested ({new.colour} side)"
    )
    audit.record(
        actor,
        "rollout.start",
        deployment,
        tenant=deployment.tenant,
        changes={"revision": revision.number, "colour": new.colour},
    )
    transaction.on_commit(lambda: _kick(new.pk))
    return new


def _kick(rollout_id: int) -> None:
    advance_rollout.delay(rollout_id)


@transaction.atomic
def create_deployment(
    actor: Actor,
    tenant: Tenant,
    *,
    name: str,
    request: ServingRequest,
    promotion: Promotion | None = None,
    pod_annotations: dict[str, str] | None = None,
) -> tuple[Deployment, Rollout, list[str]]:
    """Admit, then create the deployment, its first revision and its first rollout."""
    _validate_name(name)
    promotion = promotion or Promotion()
    _validate_promotion(promotion)
    if pod_annotations is not None:
        request = replace(request, pod_annotations=pod_annotations)
    if Deployment.objects.for_tenant(tenant).filter(name=name).exists():
        raise Conflict(f"a deployment named '{name}' already exists", field="name")
    admission = admit(tenant, request, None, name=name)
    try:
        with transaction.atomic():
            deployment = Deployment.objects.create(
                tenant=tenant,
                name=name,
                tier=request.tier,
                model=request.model,
                created_by=actor.user_or_none,
            )
    except IntegrityError:
        raise Conflict(f"a deployment named '{name}' already exists", field="name") from None
    revision = _new_revision(actor, deployment, request, admission)
    audit.record(
        actor,
        "deployment.create",
        deployment,
        tenant=tenant,
        changes={"tier": request.tier.slug, "model": request.model.repo_id, **admission.values},
    )
    new = _start(actor, deployment, revision, promotion)
    return deployment, new, admission.warnings


@transaction.atomic
def change_deployment(
    actor: Actor,
    deployment: Deployment,
    request: ServingRequest,
    promotion: Promotion | None = None,
    pod_annotations: dict[str, str] | None = None,
    idempotency_key: str = "",
) -> tuple[DeploymentRevision, Rollout, list[str]]:
    """A changed spec is a new immutable revision, rolled out blue/green."""
    promotion = promotion or Promotion()
    _validate_promotion(promotion)
    _lock_live(deployment)
    existing = _by_idempotency_key(deployment, idempotency_key)
    if existing is not None:
        return existing.revision, existing, []
    if policy.rollout_running(deployment):
        raise Conflict(
            f"a rollout of '{deployment.name}' is already running; wait for it, or abort it first",
            field="deployment",
            code="rollout_in_progress",
        )
    if pod_annotations is not None:
        request = replace(request, pod_annotations=pod_annotations)
    admission = admit(deployment.tenant, request, deployment)
    revision = _new_revision(actor, deployment, request, admission)
    Deployment.objects.filter(pk=deployment.pk).update(tier=request.tier, model=request.model)
    return (
        revision,
        _start(actor, deployment, revision, promotion, idempotency_key),
        admission.warnings,
    )


def _lock(deployment: Deployment) -> None:
    """Serialise changes of one deployment: a concurrent request waits here, then sees the
    rollout the first one started (409) instead of racing it for the next revision number."""
    Deployment.objects.select_for_update().filter(pk=deployment.pk).first()


def _lock_live(deployment: Deployment) -> None:
    """_lock, and refuse a deployment being deleted: a new rollout would outlive its objects."""
    locked = Deployment.objects.select_for_update().filter(pk=deployment.pk).first()
    if locked is None or locked.deleting:
        raise Conflict(
            f"'{deployment.name}' is being deleted", field="deployment", code="deployment_deleting"
        )


def _by_idempotency_key(deployment: Deployment, key: str) -> Rollout | None:
    if not key:
        return None
    return Rollout.objects.filter(deployment=deployment, idempotency_key=key).first()


@transaction.atomic
def deploy_revision(
    actor: Actor,
    deployment: Deployment,
    number: int,
    promotion: Promotion | None = None,
    idempotency_key: str = "",
) -> tuple[Rollout, bool]:
    """Roll out an existing revision (e.g. an older one); returns (rollout, created)."""
    promotion = promotion or Promotion()
    _validate_promotion(promotion)
    _lock_live(deployment)
    existing = _by_idempotency_key(deployment, idempotency_key)
    if existing is not None:
        return existing, False
    revision = (
        deployment.revisions.filter(number=number).select_related("tier", "model_revision").first()
    )
    if revision is None:
        raise DomainError(f"'{deployment.name}' has no revision {number}", field="revision")
    model = revision.model_revision.model
    request = ServingRequest(
        model=model,
        pinned_revision=revision.model_revision,
        tier=revision.tier,
        engine=revision.engine,
        quantize=revision.quantize,
        dtype=revision.dtype,
        kv_cache_dtype=revision.kv_cache_dtype,
        max_input_tokens=revision.max_input_tokens,
        max_total_tokens=revision.max_total_tokens,
        max_batch_prefill_tokens=revision.max_batch_prefill_tokens,
        max_concurrent_requests=revision.max_concurrent_requests,
        replicas=revision.replicas,
        min_replicas=revision.min_replicas,
        max_replicas=revision.max_replicas,
        autoscaling=revision.autoscaling,
        queue_size_target=revision.queue_size_target,
        pod_annotations=revision.pod_annotations or {},
    )
    # The revision pins its own model commit; admission checks that commit (its remote-code
    # approval) and the model's access and licence.
    admit(deployment.tenant, request, deployment)
    return _start(actor, deployment, revision, promotion, idempotency_key), True


def _active_rollout(deployment: Deployment) -> Rollout:
    rollout = Rollout.objects.filter(deployment=deployment, state__in=ACTIVE_STATES).first()
    if rollout is None:
        raise Conflict(f"'{deployment.name}' has no rollout in progress", field="rollout")
    return rollout


@transaction.atomic
def promote(actor: Actor, deployment: Deployment) -> Rollout:
    rollout = _active_rollout(deployment)
    if not policy.can_promote(rollout):
        raise Conflict("the rollout is already promoted", field="rollout")
    Rollout.objects.filter(pk=rollout.pk).update(promotion_requested=True)
    engine.record(rollout, actor.name, "promotion requested")
    audit.record(actor, "rollout.promote", deployment, tenant=deployment.tenant)
    transaction.on_commit(lambda: _kick(rollout.pk))
    return rollout


@transaction.atomic
def abort(actor: Actor, deployment: Deployment) -> Rollout:
    rollout = _active_rollout(deployment)
    if not policy.can_abort(rollout):
        raise Conflict(
            "the old side is already being removed; deploy the old revision again", field="rollout"
        )
    Rollout.objects.filter(pk=rollout.pk).update(abort_requested=True)
    engine.record(rollout, actor.name, "abort requested")
    audit.record(actor, "rollout.abort", deployment, tenant=deployment.tenant)
    transaction.on_commit(lambda: _kick(rollout.pk))
    return rollout


@transaction.atomic
def rollback(actor: Actor, deployment: Deployment) -> Rollout:
    """Within the scale-down window the old side is still up: flip traffic back at once."""
    rollout = Rollout.objects.filter(deployment=deployment).order_by("-started_at", "-id").first()
    if rollout is None or not policy.old_side_on_standby(rollout):
        previous = deployment.revisions.exclude(id=deployment.active_revision_id or 0).first()
        hint = f" deploy revision {previous.number} again instead" if previous else ""
        raise Conflict(
            "an instant rollback is only possible while the previous side is on standby;" + hint,
            field="rollout",
        )
    if not rollout.previous_colour:
        raise Conflict("a first deployment has no previous side to roll back to", field="rollout")
    Rollout.objects.filter(pk=rollout.pk).update(rollback_requested=True)
    engine.record(rollout, actor.name, "rollback requested")
    audit.record(actor, "rollout.rollback", deployment, tenant=deployment.tenant)
    transaction.on_commit(lambda: _kick(rollout.pk))
    return rollout


@transaction.atomic
def delete_deployment(actor: Actor, deployment: Deployment) -> Deployment:
    """Request the deletion: routing and rollouts stop now, a task removes the Kubernetes
    objects and then the rows (deployments/deletion.py). Asking again only re-sends the task."""
    _lock(deployment)
    requested = Deployment.objects.filter(pk=deployment.pk, deleting=False).update(
        deleting=True,
        deletion_step=DeletionStep.WAITING,
        deletion_requested_at=timezone.now(),
        deletion_progress_at=timezone.now(),
    )
    if requested:
        gateway_sync.config_changed()  # stop routing to it before its objects go
        Rollout.objects.filter(deployment=deployment, state__in=ACTIVE_STATES).update(
            state=RolloutState.ABORTED,
            failure_reason="the deployment was deleted",
            finished_at=timezone.now(),
        )
        audit.record(actor, "deployment.delete", deployment, tenant=deployment.tenant)
    transaction.on_commit(lambda: _kick_deletion(deployment.pk))
    deployment.refresh_from_db()
    return deployment


def _kick_deletion(deployment_id: int) -> None:
    delete_deployment_task.delay(deployment_id)

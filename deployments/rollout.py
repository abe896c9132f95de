"""The blue/green rollout state machine: states and transitions as data, one function a step.

Every step is idempotent (server-side apply, conditional state updates) and may be killed at
any line: a worker claims the rollout for a short lease before a step; if it dies, the lease
expires and the reconciler re-drives the rollout from PostgreSQL and the cluster's state.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from deployments.choices import ACTIVE_STATES, TERMINAL_STATES, PromotionMode, RolloutState
from deployments.models import Deployment, Rollout, RolloutEvent
from deployments.rendering import (
    OwnerRef,
    ServingSpec,
    active_service_name,
    colour_name,
    other_colour,
    owner_ref_from,
    preview_service_name,
    render_colour_deployment,
    render_deployment_root,
    render_hpa,
    render_network_policy,
    render_services,
    render_tenant_namespace,
    render_weights,
    selector_labels,
)
from deployments.rendering.endpointslices import ready_ips, slice_selector
from deployments.rendering.meta import label_selector, root_name
from deployments.serving_checks import (  # noqa: F401 - re-exported for callers and tests
    FAILED_ATTACH_VOLUME,
    MULTI_ATTACH_GRACE_SECONDS,
    UNSCHEDULABLE_GRACE_SECONDS,
    ServerPod,
    _last_log_line,
    check_server,
    diagnose,
    diagnose_download,
    init_progress,
)
from deployments.specs import serving_spec
from portal import kube
from tenants import gateway_sync

log = logging.getLogger(__name__)
S = RolloutState

# The machine as data: which state may follow which (abort/fail/rollback are always allowed).
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.WEIGHTS}),
    S.WEIGHTS: frozenset({S.CREATING}),
    S.CREATING: frozenset({S.WAITING_READY}),
    S.WAITING_READY: frozenset({S.PRE_PROMOTION}),
    S.PRE_PROMOTION: frozenset({S.AWAITING_PROMOTION}),
    S.AWAITING_PROMOTION: frozenset({S.PROMOTING}),
    S.PROMOTING: frozenset({S.POST_PROMOTION}),
    S.POST_PROMOTION: frozenset({S.SCALE_DOWN_DELAY, S.COMPLETED}),
    S.SCALE_DOWN_DELAY: frozenset({S.SCALING_DOWN}),
    S.SCALING_DOWN: frozenset({S.COMPLETED}),
}


@dataclass
class StepResult:
    """What a step decided: move on, poll again later, or fail with a reason and a remedy."""

    next_state: str | None = None
    wait: float | None = None
    message: str = ""
    objects: list[str] = field(default_factory=list)
    fail: str = ""
    remedy: str = ""
    updates: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    rollout: Rollout
    deployment: Deployment
    spec: ServingSpec  # the new revision, owned by the deployment's root object

    @property
    def namespace(self) -> str:
        return self.spec.namespace


def _apps() -> client.AppsV1Api:
    return client.AppsV1Api(kube.api_client())


def _key(manifest: dict[str, Any]) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


def _apply_all(manifests: list[dict[str, Any]]) -> list[str]:
    for manifest in manifests:
        kube.apply(manifest)
    return [_key(m) for m in manifests]


def _owner(deployment: Deployment, spec: ServingSpec) -> OwnerRef | None:
    if not deployment.root_uid:
        return None
    return OwnerRef(
        api_version="v1", kind="ConfigMap", name=root_name(spec), uid=deployment.root_uid
    )


def build_context(rollout: Rollout) -> Context:
    deployment = rollout.deployment
    spec = serving_spec(
        rollout.revision, progress_deadline_seconds=rollout.progress_deadline_seconds
    )
    return Context(rollout, deployment, replace(spec, owner=_owner(deployment, spec)))


def desired_colour_deployment(
    spec: ServingSpec, colour: str, *, hpa_owns_replicas: bool = False
) -> dict[str, Any]:
    """The Deployment of one colour as the spec wants it: the only way the rollout and the
    reconciler render it, so a repair re-applies the very pod template the rollout created.

    While an HorizontalPodAutoscaler scales the colour, ``replicas`` is left out so applying
    does not take the field back from it."""
    return render_colour_deployment(
        spec,
        colour,  # type: ignore[arg-type]
        progress_deadline_seconds=spec.progress_deadline_seconds,
        extra_pod_annotations=spec.pod_annotations,
        include_replicas=not (hpa_owns_replicas and spec.autoscaling),
        hf_endpoint=_hf_endpoint(),
    )


def _hf_endpoint() -> str | None:
    return settings.WEIGHTS_HF_ENDPOINT or None


def _ensure_root(ctx: Context) -> list[str]:
    """The root object owns everything of the deployment, so deleting it removes it all."""
    applied = kube.apply(render_deployment_root(ctx.spec))
    owner = owner_ref_from(applied)
    if ctx.deployment.root_uid != owner.uid:
        Deployment.objects.filter(pk=ctx.deployment.pk).update(root_uid=owner.uid)
        ctx.deployment.root_uid = owner.uid
    ctx.spec = replace(ctx.spec, owner=owner)
    return [f"ConfigMap/{applied['metadata']['name']}"]


# --- steps ---------------------------------------------------------------------------------


def step_pending(ctx: Context) -> StepResult:
    return StepResult(next_state=S.WEIGHTS, message="rollout accepted")


def step_weights(ctx: Context) -> StepResult:
    """Fill the model revision's volume once, before any serving pod starts (node-local
    weights have no volume: each serving pod downloads its own copy when it starts)."""
    objects = _apply_all(render_tenant_namespace(ctx.spec.tenant))
    objects += _ensure_root(ctx)
    manifests = render_weights(ctx.spec, hf_endpoint=_hf_endpoint())
    if not manifests:
        return StepResult(
            next_state=S.CREATING,
            message="node-local weights: each serving pod downloads them in its init "
            "container, nothing to wait for here",
            objects=objects,
        )
    pvc, job = manifests
    name = job["metadata"]["name"]
    existing = kube.get("batch/v1", "Job", name, ctx.namespace)
    objects += _apply_all([pvc] if existing else [pvc, job])
    if existing is None:
        objects.append(_key(job))
        return StepResult(wait=1, message="weights download started", objects=objects)
    status = existing.get("status") or {}
    if status.get("succeeded"):
        return StepResult(
            next_state=S.CREATING,
            message="weights cached in the volume",
            objects=objects,
            updates={"weights_progress": "complete"},
        )
    failed = next(
        (
            c
            for c in status.get("conditions") or []
            if c.get("type") == "Failed" and c.get("status") == "True"
        ),
        None,
    )
    if failed is not None:
        # (creationTimestamp has whole seconds: a margin keeps this rollout's own Job.)
        if _created_before(existing, ctx.rollout.started_at - timedelta(seconds=2)):
            # An earlier rollout's failed attempt (kept 24 h for its logs): the user has
            # "deployed again" as its remedy said, perhaps with a fixed Hub token. Start over.
            kube.delete("batch/v1", "Job", name, ctx.namespace)
            return StepResult(
                wait=2, message="retrying the weight download (an earlier attempt had failed)"
            )
        last_line = _last_log_line(ctx.namespace, {"job-name": name})
        if failed.get("reason") == "DeadlineExceeded":
            # The Job controller stops a Job active longer than activeDeadlineSeconds.
            deadline = (existing.get("spec") or {}).get("activeDeadlineSeconds")
            return StepResult(
                fail=f"the weight download Job {name} did not finish within its deadline "
                f"({deadline} s); last log line: {last_line}",
                remedy="check the download's speed from the cluster to the Hub (or its mirror) "
                "and the volume's size, then deploy again",
            )
        return StepResult(
            fail=f"the weight download Job {name} failed: {last_line}",
            remedy="check that the tenant's Hub token can read the model and that the Hub is "
            "reachable, then deploy again",
        )
    selector = label_selector({"job-name": name})
    pods = list(kube.core().list_namespaced_pod(ctx.namespace, label_selector=selector).items)
    problem = diagnose_download(pods)
    if problem is not None:
        # Its pod would wait for that image until the Job's deadline (hours). Remove the Job
        # so that deploying again, with the image fixed, starts a new one.
        kube.delete("batch/v1", "Job", name, ctx.namespace)
        reason, remedy = problem
        return StepResult(
            fail=f"the weight download Job {name} cannot run: {reason}", remedy=remedy
        )
    progress = _last_log_line(ctx.namespace, {"job-name": name})
    return StepResult(wait=1, updates={"weights_progress": progress[:300]})


def _created_before(manifest: dict[str, Any], moment: Any) -> bool:
    created = (manifest.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return False
    return bool(datetime.fromisoformat(str(created).replace("Z", "+00:00")) < moment)


def step_creating(ctx: Context) -> StepResult:
    """The new colour at full size behind the preview Service; traffic stays where it is."""
    objects = _ensure_root(ctx)
    # The preview Service always selects the new side; the active one the serving side.
    serving_colour: Any = ctx.rollout.previous_colour or other_colour(ctx.rollout.colour)  # type: ignore[arg-type]
    active, preview = render_services(ctx.spec, serving_colour)
    manifests = [
        render_network_policy(ctx.spec),
        # The new side starts at full size; its autoscaler is created only on promotion.
        desired_colour_deployment(ctx.spec, ctx.rollout.colour),
        preview,
    ]
    # The active Service exists only once a side has served; a first rollout creates it on
    # promotion, so it never points at a side with no ready replica.
    if ctx.rollout.previous_colour:
        manifests.append(active)
    objects += _apply_all(manifests)
    return StepResult(
        next_state=S.WAITING_READY, message=f"{ctx.rollout.colour} side created", objects=objects
    )


def _pods(ctx: Context, colour: str) -> list[Any]:
    selector = label_selector(selector_labels(ctx.spec, colour))  # type: ignore[arg-type]
    return list(kube.core().list_namespaced_pod(ctx.namespace, label_selector=selector).items)


def step_waiting_ready(ctx: Context) -> StepResult:
    name = colour_name(ctx.spec, ctx.rollout.colour)  # type: ignore[arg-type]
    now = timezone.now()
    try:
        status = _apps().read_namespaced_deployment_status(name, ctx.namespace)
    except ApiException as error:
        if error.status == 404:  # deleted behind our back: create it again
            return StepResult(next_state=None, wait=0.5, updates={"state": S.CREATING})
        raise
    wanted = ctx.spec.replicas
    current = status.status
    assert current is not None and status.metadata is not None
    available = current.available_replicas or 0
    updated = current.updated_replicas or 0
    observed = (current.observed_generation or 0) >= (status.metadata.generation or 0)
    updates: dict[str, Any] = {"ready_replicas": available}
    if observed and available >= wanted and updated >= wanted:
        return StepResult(
            next_state=S.PRE_PROMOTION,
            message=f"all {wanted} replicas of the {ctx.rollout.colour} side are available",
            updates=updates,
        )
    pods = _pods(ctx, ctx.rollout.colour)
    problem = diagnose(
        pods, now, ctx.rollout.state_entered_at, events=_volume_events(ctx, pods, now)
    )
    if problem:
        return StepResult(fail=problem[0], remedy=problem[1], updates=updates)
    if not ctx.spec.tier.weights_on_volume:
        updates["weights_progress"] = init_progress(pods)[:300]
    elapsed = (now - ctx.rollout.state_entered_at).total_seconds()
    if elapsed > ctx.rollout.progress_deadline_seconds:
        return StepResult(
            fail=f"progress deadline exceeded: {available} of {wanted} replicas available after "
            f"{ctx.rollout.progress_deadline_seconds} s",
            remedy="large models load slowly: raise the progress deadline, or check the pods' "
            "events and logs",
            updates=updates,
        )
    return StepResult(wait=0.5, updates=updates)


def _volume_events(ctx: Context, pods: list[Any], now: datetime) -> list[Any]:
    """The namespace's FailedAttachVolume events (the Multi-Attach error is said only in an
    event), read only once a pod has waited to start longer than that diagnosis's grace, so
    a rollout whose pods start normally never lists them."""
    waited = (now - ctx.rollout.state_entered_at).total_seconds()
    pending = any((p.status.phase if p.status else None) == "Pending" for p in pods)
    if waited <= MULTI_ATTACH_GRACE_SECONDS or not pending:
        return []
    try:
        listing = kube.core().list_namespaced_event(
            ctx.namespace, field_selector=f"reason={FAILED_ATTACH_VOLUME}"
        )
    except ApiException as error:
        # E.g. an installation whose Role predates `events: list`: the progress deadline
        # still ends the rollout, only without this diagnosis.
        log.warning("cannot list events in %s: %s", ctx.namespace, error.reason)
        return []
    return list(listing.items)


def ready_endpoint_ips(namespace: str, service: str) -> list[str]:
    api = kube.api_client()
    listing = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=slice_selector(service)
    )
    slices = api.sanitize_for_serialization(listing).get("items") or []
    return sorted(address for endpoint_slice in slices for address in ready_ips(endpoint_slice))


def _check_service(ctx: Context, service: str) -> StepResult | None:
    ips = ready_endpoint_ips(ctx.namespace, service)
    side = {p.status.pod_ip: p for p in _pods(ctx, ctx.rollout.colour) if p.status.pod_ip}
    stale = [ip for ip in ips if ip not in side]
    if stale:
        # EndpointSlices follow a selector switch eventually (slowly after a control-plane
        # restart): checking now would test the other side's pods. Wait for them to converge.
        return StepResult(
            wait=0.5, message=f"{service} still lists {len(stale)} endpoint(s) of the other side"
        )
    if len(ips) < ctx.spec.replicas:
        return StepResult(wait=0.5, message=f"{service} lists {len(ips)} ready endpoints")
    pods = [ServerPod(ctx.namespace, side[ip].metadata.name, ip) for ip in ips]
    problems = [problem for problem in (check_server(pod, ctx.spec) for pod in pods) if problem]
    if problems:
        return StepResult(
            fail="checks failed: " + "; ".join(problems),
            remedy="the new side is not serving the spec; it gets no traffic. Fix and deploy again",
        )
    return None


def step_pre_promotion(ctx: Context) -> StepResult:
    outcome = _check_service(ctx, preview_service_name(ctx.spec))
    if outcome is not None:
        return outcome
    route = "" if kube.pods_reachable() else ", through the API server's pod proxy"
    return StepResult(
        next_state=S.AWAITING_PROMOTION,
        message=f"pre-promotion checks passed on the {ctx.rollout.colour} side "
        f"(/info and a chat completion{route})",
    )


def step_awaiting_promotion(ctx: Context) -> StepResult:
    rollout = ctx.rollout
    if rollout.promotion_mode == PromotionMode.AUTOMATIC or rollout.promotion_requested:
        return StepResult(next_state=S.PROMOTING, message="promotion started")
    if rollout.promotion_mode == PromotionMode.AFTER_DELAY:
        waited = (timezone.now() - rollout.state_entered_at).total_seconds()
        if waited >= rollout.promote_after_seconds:
            return StepResult(
                next_state=S.PROMOTING, message=f"promoting after {rollout.promote_after_seconds} s"
            )
        return StepResult(wait=min(5.0, rollout.promote_after_seconds - waited))
    return StepResult(wait=5)  # manual: a promote request wakes the rollout at once


def _switch_active(ctx: Context, colour: str) -> list[str]:
    active, _ = render_services(ctx.spec, colour)  # type: ignore[arg-type]
    if colour != ctx.rollout.colour:
        # Flipping back to the old side: its selector, not the new revision's labels.
        active["spec"]["selector"] = dict(selector_labels(ctx.spec, colour))  # type: ignore[arg-type]
    kube.apply(active)
    return [_key(active)]


def step_promoting(ctx: Context) -> StepResult:
    objects = _ensure_root(ctx)
    objects += _switch_active(ctx, ctx.rollout.colour)
    hpa = render_hpa(ctx.spec, ctx.rollout.colour)  # type: ignore[arg-type]
    if hpa is not None:
        kube.apply(hpa)
        objects.append(_key(hpa))
    if ctx.rollout.previous_colour:
        old_hpa = f"{colour_name(ctx.spec, ctx.rollout.previous_colour)}"  # type: ignore[arg-type]
        if kube.delete("autoscaling/v2", "HorizontalPodAutoscaler", old_hpa, ctx.namespace):
            objects.append(f"HorizontalPodAutoscaler/{old_hpa} (deleted)")
    revision = ctx.rollout.revision
    Deployment.objects.filter(pk=ctx.deployment.pk).update(
        active_colour=ctx.rollout.colour,
        active_revision=revision,
        replicas=revision.replicas,
        gpus_per_replica=revision.tier.gpus_per_replica,
    )
    gateway_sync.config_changed()  # the active revision's token limits now apply
    return StepResult(
        next_state=S.POST_PROMOTION,
        message=f"traffic switched to the {ctx.rollout.colour} side",
        objects=objects,
        updates={"traffic_switched": True},
    )


def step_post_promotion(ctx: Context) -> StepResult:
    outcome = _check_service(ctx, active_service_name(ctx.spec))
    if outcome is not None:
        return outcome
    if ctx.rollout.previous_colour:
        return StepResult(
            next_state=S.SCALE_DOWN_DELAY,
            message=f"post-promotion checks passed; the {ctx.rollout.previous_colour} side stays "
            f"up {ctx.rollout.scale_down_delay_seconds} s for an instant rollback",
        )
    return StepResult(next_state=S.COMPLETED, message="post-promotion checks passed")


def step_scale_down_delay(ctx: Context) -> StepResult:
    waited = (timezone.now() - ctx.rollout.state_entered_at).total_seconds()
    left = ctx.rollout.scale_down_delay_seconds - waited
    if left > 0:
        return StepResult(wait=min(5.0, left))
    return StepResult(next_state=S.SCALING_DOWN, message="scale-down delay over")


def _remove_colour(ctx: Context, colour: str) -> list[str]:
    name = colour_name(ctx.spec, colour)  # type: ignore[arg-type]
    removed = []
    if kube.delete("apps/v1", "Deployment", name, ctx.namespace):
        removed.append(f"Deployment/{name} (deleted)")
    if kube.delete("autoscaling/v2", "HorizontalPodAutoscaler", name, ctx.namespace):
        removed.append(f"HorizontalPodAutoscaler/{name} (deleted)")
    return removed


def step_scaling_down(ctx: Context) -> StepResult:
    objects = _remove_colour(ctx, ctx.rollout.previous_colour)
    return StepResult(
        next_state=S.COMPLETED,
        message=f"the {ctx.rollout.previous_colour} side is scaled down",
        objects=objects,
    )


STEPS: dict[str, Callable[[Context], StepResult]] = {
    S.PENDING: step_pending,
    S.WEIGHTS: step_weights,
    S.CREATING: step_creating,
    S.WAITING_READY: step_waiting_ready,
    S.PRE_PROMOTION: step_pre_promotion,
    S.AWAITING_PROMOTION: step_awaiting_promotion,
    S.PROMOTING: step_promoting,
    S.POST_PROMOTION: step_post_promotion,
    S.SCALE_DOWN_DELAY: step_scale_down_delay,
    S.SCALING_DOWN: step_scaling_down,
}


# --- leaving the happy path ----------------------------------------------------------------


def _back_to_old_side(ctx: Context) -> list[str]:
    """Traffic back on the old side (if it ever moved), the new side removed."""
    objects: list[str] = []
    rollout = ctx.rollout
    if rollout.traffic_switched and rollout.previous_colour:
        objects += _switch_active(ctx, rollout.previous_colour)
        previous = rollout.previous_revision
        Deployment.objects.filter(pk=ctx.deployment.pk).update(
            active_colour=rollout.previous_colour,
            active_revision=previous,
            replicas=previous.replicas if previous else 0,
        )
        gateway_sync.config_changed()
    elif rollout.traffic_switched:
        # A first deployment has no old side: nothing may keep pointing at the removed pods.
        name = active_service_name(ctx.spec)
        if kube.delete("v1", "Service", name, ctx.namespace):
            objects.append(f"Service/{name} (deleted)")
        Deployment.objects.filter(pk=ctx.deployment.pk).update(
            active_colour="", active_revision=None, replicas=0
        )
        gateway_sync.config_changed()
    return objects + _remove_colour(ctx, rollout.colour)


def abort(ctx: Context) -> StepResult:
    objects = _back_to_old_side(ctx)
    side = ctx.rollout.previous_colour
    return StepResult(
        next_state=S.ABORTED,
        message=f"aborted; the {side} side keeps serving" if side else "aborted",
        objects=objects,
    )


def rollback(ctx: Context) -> StepResult:
    objects = _back_to_old_side(ctx)
    return StepResult(
        next_state=S.ROLLED_BACK,
        message=f"rolled back: traffic is on the {ctx.rollout.previous_colour} side again",
        objects=objects,
    )


def fail(ctx: Context, result: StepResult) -> StepResult:
    objects = _back_to_old_side(ctx)
    return StepResult(
        next_state=S.FAILED,
        message=result.fail,
        remedy=result.remedy,
        fail=result.fail,
        objects=objects,
        updates=result.updates,
    )


# --- running a step ------------------------------------------------------------------------


def _claim(rollout_id: int) -> str | None:
    token = uuid.uuid4().hex
    now = timezone.now()
    claimed = (
        Rollout.objects.filter(pk=rollout_id, state__in=ACTIVE_STATES)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(
            claimed_until=now + timedelta(seconds=settings.ROLLOUT_CLAIM_SECONDS), claim_token=token
        )
    )
    return token if claimed else None


def record(
    rollout: Rollout,
    actor: str,
    message: str,
    *,
    level: str = "info",
    objects: list[str] | None = None,
) -> None:
    RolloutEvent.objects.create(
        rollout=rollout,
        actor_name=actor,
        state=rollout.state,
        message=message[:500],
        level=level,
        k8s_objects=objects or [],
    )


def _finish_step(rollout: Rollout, token: str, result: StepResult, actor: str) -> float | None:
    now = timezone.now()
    fields: dict[str, Any] = {
        "claimed_until": None,
        "claim_token": "",
        "last_step_at": now,
        "steps_run": F("steps_run") + 1,
        **result.updates,
    }
    with transaction.atomic():
        if result.next_state:
            fields.update(state=result.next_state, state_entered_at=now)
            if result.next_state in TERMINAL_STATES:
                fields["finished_at"] = now
            if result.fail:
                fields.update(failure_reason=result.fail[:500], remedy=result.remedy[:500])
        # Only over the state this step ran in: a deletion may have stopped the rollout meanwhile.
        changed = Rollout.objects.filter(
            pk=rollout.pk, claim_token=token, state=rollout.state
        ).update(**fields)
        if not changed:
            # Our claim expired and another worker took over (its result counts), or the
            # rollout was stopped under us: give the lease back, which a deletion waits for.
            Rollout.objects.filter(pk=rollout.pk, claim_token=token).update(
                claimed_until=None, claim_token=""
            )
            return None
        if result.next_state:
            rollout.refresh_from_db()
            level = "error" if result.next_state == S.FAILED else "info"
            record(
                rollout,
                actor,
                result.message or rollout.get_state_display(),
                level=level,
                objects=result.objects,
            )
        elif result.objects or (result.message and result.wait is None):
            record(rollout, actor, result.message, objects=result.objects)
    if result.next_state in TERMINAL_STATES:
        return None
    return 0.0 if result.next_state else result.wait


def advance(rollout_id: int, actor: str = "rollout-worker") -> float | None:
    """Run the rollout's current step once; returns seconds until it should run again."""
    token = _claim(rollout_id)
    if token is None:
        return None  # finished, gone, or another worker holds it
    rollout = Rollout.objects.select_related(
        "deployment__tenant",
        "revision__tier",
        "revision__model_revision__model",
        "previous_revision",
    ).get(pk=rollout_id)
    try:
        ctx = build_context(rollout)
        if rollout.abort_requested:
            result = abort(ctx)
        elif rollout.rollback_requested:
            result = rollback(ctx)
        else:
            result = STEPS[rollout.state](ctx)
            if "state" in result.updates:  # a step asking to go back (e.g. object deleted)
                result.next_state = result.updates.pop("state")
            elif result.fail:
                result = fail(ctx, result)
            elif result.next_state and result.next_state not in TRANSITIONS[rollout.state]:
                raise RuntimeError(f"{rollout.state} cannot go to {result.next_state}")
    except kube.ClusterUnavailable as error:
        # Transient: keep the state, note it, try again shortly.
        result = StepResult(wait=3, message=f"cluster unavailable: {error.message}")
        log.warning("rollout %s: %s", rollout_id, error.message)
    if result.next_state and rollout.state in settings.ROLLOUT_CHAOS_PAUSE_STATES:
        time.sleep(settings.ROLLOUT_CHAOS_PAUSE_SECONDS)  # a window to kill the worker in
    return _finish_step(rollout, token, result, actor)


def needs_driving(
    now: Any | None = None, *, tenant_ids: Collection[int] | None = None
) -> list[int]:
    """Unfinished rollouts nobody is working on: no live claim and no recent step; only those
    of `tenant_ids` when given (a reconciler shard)."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.ROLLOUT_CLAIM_SECONDS)
    rollouts = (
        Rollout.objects.filter(state__in=ACTIVE_STATES)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .filter(Q(last_step_at__isnull=True) | Q(last_step_at__lt=stale))
    )
    if tenant_ids is not None:
        rollouts = rollouts.filter(deployment__tenant_id__in=tenant_ids)
    return list(rollouts.values_list("pk", flat=True))

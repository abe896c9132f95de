"""Deleting a deployment, run by a Celery task after services.delete_deployment requested it.

The request stops routing and every rollout, marks the row ``deleting`` and enqueues the task.
The task then walks DELETION_ORDER: wait until a step that was running gives its lease back,
remove the Kubernetes objects, remove the rows. The step is stored on the row before it runs
and every step can run again, so a worker killed at any line is replaced by the redelivered
message or by the reconciler (``stalled``), which resumes where the row says.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from deployments.choices import DELETION_ORDER, DeletionStep
from deployments.models import Deployment, DeploymentRevision, Rollout
from deployments.rendering import download_job_name
from deployments.rendering.meta import root_name, weights_pvc_name
from deployments.specs import serving_spec
from portal import kube

log = logging.getLogger(__name__)

# How often the wait for a running step looks again, and how long a cluster that does not
# answer is left alone before the next try.
POLL_SECONDS = 1.0
CLUSTER_RETRY_SECONDS = 5.0


def advance(deployment_id: int) -> float | None:
    """Run the deletion's current step: the seconds until the next call, or None when done
    (also when the row is gone already, or was never asked to go)."""
    deployment = (
        Deployment.objects.select_related("tenant").filter(pk=deployment_id, deleting=True).first()
    )
    if deployment is None:
        return None
    step = deployment.deletion_step or DeletionStep.WAITING
    if step == DeletionStep.WAITING:
        wait = _running_step_wait(deployment)
        if wait > 0:
            _touch(deployment, step)
            return min(wait, POLL_SECONDS)
        _touch(deployment, DeletionStep.KUBERNETES)
        return 0.0
    if step == DeletionStep.KUBERNETES:
        _touch(deployment, step)
        try:
            _delete_objects(deployment)
        except kube.ClusterUnavailable as error:
            log.warning("deleting %s waits for the cluster: %s", deployment, error.message)
            return CLUSTER_RETRY_SECONDS
        _touch(deployment, DeletionStep.RECORDS)
        return 0.0
    _delete_records(deployment)
    return None


def stalled(
    now: Any | None = None, *, claim: bool = True, tenant_ids: Collection[int] | None = None
) -> list[int]:
    """Deletions no worker has moved for a lease's length: their task was lost. With `claim`
    each is stamped as it is handed out, so the next reconciler pass does not hand it out
    again while the new task waits in the queue. Only those of `tenant_ids` when given (a
    reconciler shard)."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.ROLLOUT_CLAIM_SECONDS)
    deleting = Deployment.objects.filter(deleting=True).filter(
        Q(deletion_progress_at__isnull=True) | Q(deletion_progress_at__lt=stale)
    )
    if tenant_ids is not None:
        deleting = deleting.filter(tenant_id__in=tenant_ids)
    ids = list(deleting.values_list("pk", flat=True))
    if claim:
        Deployment.objects.filter(pk__in=ids).update(deletion_progress_at=now)
    return ids


def progress(deployment: Deployment) -> list[dict[str, str]]:
    """DELETION_ORDER with each step marked done, current or to do (for the UI)."""
    current = DELETION_ORDER.index(DeletionStep(deployment.deletion_step or DeletionStep.WAITING))
    return [
        {
            "step": step.value,
            "label": step.label,
            "status": "done" if index < current else "current" if index == current else "todo",
        }
        for index, step in enumerate(DELETION_ORDER)
    ]


def _touch(deployment: Deployment, step: DeletionStep) -> None:
    Deployment.objects.filter(pk=deployment.pk, deleting=True).update(
        deletion_step=step, deletion_progress_at=timezone.now()
    )


def _running_step_wait(deployment: Deployment) -> float:
    """Seconds to wait for a worker still inside a rollout step: it may still apply objects
    (the root among them), which deleting before it is done would leave orphaned. The
    rollouts are stopped already, so no new step starts; the wait ends when the running one
    gives its lease back, and at the latest a lease's length after the deletion was asked."""
    now = timezone.now()
    requested = deployment.deletion_requested_at or now
    deadline = requested + timedelta(seconds=settings.ROLLOUT_CLAIM_SECONDS)
    lease = Rollout.objects.filter(deployment=deployment, claimed_until__gt=now).aggregate(
        until=Max("claimed_until")
    )["until"]
    if lease is None or now >= deadline:
        return 0.0
    return (min(lease, deadline) - now).total_seconds()


def _delete_objects(deployment: Deployment) -> None:
    """The root ConfigMap (Kubernetes' garbage collector removes what it owns), and the weights
    volumes and download Jobs of model commits no other deployment of the tenant uses."""
    namespace = deployment.tenant.namespace
    revision = deployment.revisions.first()
    if revision is not None:
        kube.delete("v1", "ConfigMap", root_name(serving_spec(revision)), namespace)
    commit = ("model_revision__model__repo_id", "model_revision__commit_sha")
    still_used = set(
        DeploymentRevision.objects.filter(deployment__tenant=deployment.tenant)
        .exclude(deployment=deployment)
        .values_list(*commit)
    )
    unused: dict[tuple[str, str], DeploymentRevision] = {}
    for revision in deployment.revisions.select_related("model_revision__model"):
        key = (revision.model_revision.model.repo_id, revision.model_revision.commit_sha)
        if key not in still_used:
            unused.setdefault(key, revision)
    for key, revision in unused.items():
        with contextlib.suppress(kube.ClusterUnavailable):
            kube.delete("batch/v1", "Job", download_job_name(serving_spec(revision)), namespace)
        kube.delete("v1", "PersistentVolumeClaim", weights_pvc_name(*key), namespace)


@transaction.atomic
def _delete_records(deployment: Deployment) -> None:
    if Deployment.objects.select_for_update().filter(pk=deployment.pk).first() is None:
        return
    Rollout.objects.filter(deployment=deployment).delete()
    Deployment.objects.filter(pk=deployment.pk).update(active_revision=None)
    deployment.delete()

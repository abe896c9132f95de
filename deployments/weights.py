"""Collecting weights volumes no deployment needs any more (run by the reconciler's pass).

A weights PVC belongs to a model commit of a tenant, not to a deployment (rendering/weights.py),
so nothing owns it in Kubernetes' sense. One is needed while a deployment of its tenant serves
that commit (its active revision), while a rollout runs with it (its new revision) and while a
rollout keeps the old side up for an instant rollback (its previous revision, until the
scale-down step ends the rollout). Any other is deleted, with its download Job, once no pod
mounts it: the old side's pods terminate for a while after their Deployment is gone.

Why the reconciler and not the end of a rollout's scale-down step: at that moment the old
side's pods are still terminating and mount the volume, and failed or aborted rollouts leave
volumes too; a periodic, level-triggered pass catches all of them once they are free.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from django.db.models import Q

from deployments.choices import ACTIVE_STATES
from deployments.models import Deployment, DeploymentRevision, Rollout
from deployments.rendering.meta import weights_pvc_name

VolumeKey = tuple[str, str]
"""(namespace, PVC name)."""


def needed_volumes(tenant_ids: Collection[int] | None = None) -> set[VolumeKey]:
    """The weights volumes some deployment needs now, of `tenant_ids` (all when None), in one
    query: active revisions, and the new and previous revisions of unfinished rollouts."""
    running = Rollout.objects.filter(state__in=ACTIVE_STATES)
    revisions = DeploymentRevision.objects.filter(
        Q(pk__in=Deployment.objects.exclude(active_revision=None).values("active_revision"))
        | Q(pk__in=running.values("revision"))
        | Q(pk__in=running.exclude(previous_revision=None).values("previous_revision"))
    )
    if tenant_ids is not None:
        revisions = revisions.filter(deployment__tenant_id__in=tenant_ids)
    rows = revisions.values_list(
        "deployment__tenant__namespace",
        "model_revision__model__repo_id",
        "model_revision__commit_sha",
    ).distinct()
    return {(namespace, weights_pvc_name(repo, sha)) for namespace, repo, sha in rows}


def mounted_volumes(pods: Iterable[Any]) -> set[VolumeKey]:
    """The PVCs the given pods (V1Pod) mount, terminating pods included. A pod that has
    finished (a completed download Job's, kept until the Job's TTL) mounts nothing any more, as
    Kubernetes' own PVC protection judges it."""
    mounted = set()
    for pod in pods:
        if (pod.status.phase if pod.status else None) in ("Succeeded", "Failed"):
            continue
        namespace = pod.metadata.namespace if pod.metadata else ""
        for volume in (pod.spec.volumes if pod.spec else None) or []:
            claim = volume.persistent_volume_claim
            if claim is not None:
                mounted.add((namespace, claim.claim_name))
    return mounted


def unused_volumes(
    volumes: Iterable[VolumeKey], needed: Collection[VolumeKey], mounted: Collection[VolumeKey]
) -> list[VolumeKey]:
    """The volumes to delete: neither needed by a deployment nor mounted by any pod."""
    return sorted(key for key in set(volumes) if key not in needed and key not in mounted)

"""The level-triggered reconciler: converge PostgreSQL's intent and the cluster's state.

One pass (a) re-drives every unfinished rollout and every deletion that no worker is driving
(deletion.stalled) and (b) checks every
settled deployment against the cluster — its serving colour's Deployment exists and its active
Service selects that colour — with one LIST per kind whatever the number of deployments, and
re-applies what drifted; and (c) deletes weights volumes no deployment needs any more
(deployments/weights.py).

A pass costs the same few queries and paged LISTs whatever the fleet size: every spec is built
in one go (`specs.serving_specs`), and only a repair reads or writes per deployment. When one
pass is not enough, passes split the tenants into shards (`Shard`), each run by its own task.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any

from kubernetes import client

from deployments import deletion, weights
from deployments import rollout as engine
from deployments.choices import ACTIVE_STATES
from deployments.models import Deployment, Rollout
from deployments.rendering import (
    OwnerRef,
    active_service_name,
    colour_name,
    download_job_name_of,
    render_services,
)
from deployments.rendering.constants import LABEL_COLOUR, MANAGED_BY_SELECTOR, WEIGHTS_SELECTOR
from deployments.rendering.meta import root_name
from deployments.specs import SPEC_RELATED, active_serving_spec, serving_specs
from portal import kube
from tenants import audit
from tenants.audit import Actor
from tenants.models import Tenant

log = logging.getLogger(__name__)
PAGE = 500


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: the tenants whose stable hash falls in it. Every tenant is in
    exactly one shard, and stays in it from pass to pass and from worker to worker (Python's
    own hash() is salted per process, so it would not do)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"shard count must be at least 1, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be in 0..{self.count - 1}, not {self.index}")

    def holds(self, tenant_id: int) -> bool:
        digest = hashlib.blake2b(str(tenant_id).encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index

    def tenant_ids(self) -> Collection[int] | None:
        """The ids of the shard's tenants (one query); None for the single shard: all."""
        if self.count == 1:
            return None
        return [pk for pk in Tenant.objects.values_list("pk", flat=True) if self.holds(pk)]


ALL = Shard()


@dataclass
class ReconcileReport:
    stalled_rollouts: list[int] = field(default_factory=list)
    stalled_deletions: list[int] = field(default_factory=list)
    checked: int = 0
    repaired: list[str] = field(default_factory=list)
    # Weights volumes no deployment needs any more ("namespace/name"), deleted when repairing.
    unused_weights: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _list_all(list_call: Any, selector: str = MANAGED_BY_SELECTOR) -> list[Any]:
    items: list[Any] = []
    token = None
    while True:
        page = list_call(label_selector=selector, limit=PAGE, _continue=token)
        items.extend(page.items)
        token = page.metadata._continue
        if not token:
            return items


def reconcile_pass(repair: bool = True, shard: Shard = ALL) -> ReconcileReport:
    started = time.perf_counter()
    tenant_ids = shard.tenant_ids()
    report = ReconcileReport(
        stalled_rollouts=engine.needs_driving(tenant_ids=tenant_ids),
        stalled_deletions=deletion.stalled(claim=repair, tenant_ids=tenant_ids),
    )
    apps = client.AppsV1Api(kube.api_client())
    existing = {
        (d.metadata.namespace, d.metadata.name)
        for d in _list_all(apps.list_deployment_for_all_namespaces)
    }
    selectors = {
        (s.metadata.namespace, s.metadata.name): (s.spec.selector or {})
        for s in _list_all(kube.core().list_service_for_all_namespaces)
    }
    volumes = {
        (v.metadata.namespace, v.metadata.name)
        for v in _list_all(
            kube.core().list_persistent_volume_claim_for_all_namespaces, WEIGHTS_SELECTOR
        )
    }
    # Read after the LISTs, in one query with the rollouts it excludes: a rollout that starts
    # and switches traffic meanwhile is then excluded, never taken for drift and reverted.
    settled = (
        Deployment.objects.filter(active_colour__in=["blue", "green"], deleting=False)
        .exclude(pk__in=Rollout.objects.filter(state__in=ACTIVE_STATES).values("deployment_id"))
        .select_related(*SPEC_RELATED)
        .order_by("pk")
    )
    if tenant_ids is not None:
        settled = settled.filter(tenant_id__in=tenant_ids)
    deployments = list(settled)
    # Also after the LISTs: a volume is created only by a rollout already in the database.
    report.unused_weights = _unused_weights(volumes, tenant_ids)
    if repair:
        _collect_weights(report.unused_weights)
    specs = serving_specs(deployments)
    actor = Actor.system("deployments.reconcile")
    for deployment in deployments:
        report.checked += 1
        spec = specs.get(deployment.pk)
        if spec is None:  # no active revision
            continue
        namespace, colour = deployment.tenant.namespace, deployment.active_colour
        workload = colour_name(spec, colour)  # type: ignore[arg-type,unused-ignore]
        service = active_service_name(spec)
        drift = []
        workload_missing = (namespace, workload) not in existing
        if workload_missing:
            drift.append(f"Deployment/{workload} is missing")
        if selectors.get((namespace, service), {}).get(LABEL_COLOUR) != colour:
            drift.append(f"Service/{service} does not select the {colour} side")
        if not drift or not repair:
            report.repaired.extend(f"{namespace}/{d}" for d in drift)
            continue
        _repair(deployment, colour, recreate=workload_missing)
        report.repaired.extend(f"{namespace}/{d}" for d in drift)
        audit.record(
            actor,
            "deployment.repair",
            deployment,
            tenant=deployment.tenant,
            changes={"drift": drift},
        )
    report.seconds = time.perf_counter() - started
    return report


def _unused_weights(
    volumes: set[weights.VolumeKey], tenant_ids: Collection[int] | None
) -> list[str]:
    """The listed weights volumes of the shard's tenants that nothing needs or mounts. One
    query (two in a shard); pods are listed only in namespaces holding a candidate."""
    if tenant_ids is not None:
        namespaces = set(
            Tenant.objects.filter(pk__in=tenant_ids).values_list("namespace", flat=True)
        )
        volumes = {key for key in volumes if key[0] in namespaces}
    needed = weights.needed_volumes(tenant_ids)
    candidates = weights.unused_volumes(volumes, needed, ())
    mounted: set[weights.VolumeKey] = set()
    for namespace in sorted({namespace for namespace, _ in candidates}):
        # Every pod of the namespace, not only the portal's: any pod mounting it keeps it.
        mounted |= weights.mounted_volumes(kube.core().list_namespaced_pod(namespace).items)
    return [f"{ns}/{name}" for ns, name in weights.unused_volumes(candidates, needed, mounted)]


def _collect_weights(unused: list[str]) -> None:
    for key in unused:
        namespace, name = key.split("/", 1)
        kube.delete("batch/v1", "Job", download_job_name_of(name), namespace)
        kube.delete("v1", "PersistentVolumeClaim", name, namespace)
        log.info("deleted the unused weights volume %s", key)


def _repair(deployment: Deployment, colour: str, *, recreate: bool) -> None:
    """Re-apply the serving side and its Service from the spec the rollout rendered them from.

    The Deployment is rendered exactly as the rollout did (same pod template: no pod restarts);
    an existing one under an autoscaler is applied without ``replicas`` so the HPA keeps the
    count it chose."""
    spec = active_serving_spec(deployment)
    if spec is None:
        return
    if deployment.root_uid:
        spec = replace(
            spec,
            owner=OwnerRef(
                api_version="v1", kind="ConfigMap", name=root_name(spec), uid=deployment.root_uid
            ),
        )
    kube.apply(engine.desired_colour_deployment(spec, colour, hpa_owns_replicas=not recreate))
    active, _ = render_services(spec, colour)  # type: ignore[arg-type]
    kube.apply(active)

"""The level-triggered reconciler: converge PostgreSQL's intent and the cluster's state.

One pass (a) re-drives every unfinished rollout and every deletion that no worker is driving
(deletion.stalled) and (b) checks every
settled deployment against the cluster — its serving colour's Deployment exists and its active
Service selects that colour — with one LIST per kind whatever the number of deployments, and
re-applies what drifted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from kubernetes import client

from deployments import deletion
from deployments import rollout as engine
from deployments.choices import ACTIVE_STATES
from deployments.models import Deployment, Rollout
from deployments.rendering import OwnerRef, active_service_name, colour_name, render_services
from deployments.rendering.constants import LABEL_COLOUR, MANAGED_BY_SELECTOR
from deployments.rendering.meta import root_name
from deployments.specs import active_serving_spec, serving_spec
from portal import kube
from tenants import audit
from tenants.audit import Actor

log = logging.getLogger(__name__)
PAGE = 500


@dataclass
class ReconcileReport:
    stalled_rollouts: list[int] = field(default_factory=list)
    stalled_deletions: list[int] = field(default_factory=list)
    checked: int = 0
    repaired: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _list_all(list_call: Any) -> list[Any]:
    items: list[Any] = []
    token = None
    while True:
        page = list_call(label_selector=MANAGED_BY_SELECTOR, limit=PAGE, _continue=token)
        items.extend(page.items)
        token = page.metadata._continue
        if not token:
            return items


def reconcile_pass(repair: bool = True) -> ReconcileReport:
    started = time.perf_counter()
    report = ReconcileReport(
        stalled_rollouts=engine.needs_driving(),
        stalled_deletions=deletion.stalled(claim=repair),
    )
    rolling = set(
        Rollout.objects.filter(state__in=ACTIVE_STATES).values_list("deployment_id", flat=True)
    )
    settled = (
        Deployment.objects.filter(active_colour__in=["blue", "green"], deleting=False)
        .exclude(pk__in=rolling)
        .select_related(
            "tenant__quota", "active_revision__tier", "active_revision__model_revision__model"
        )
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
    actor = Actor.system("deployments.reconcile")
    for deployment in settled:
        report.checked += 1
        revision = deployment.active_revision
        if revision is None:
            continue
        namespace, colour = deployment.tenant.namespace, deployment.active_colour
        spec = serving_spec(revision)
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

"""Autoscaling on queue depth: the HPA's bounds (capped by the tenant's quota) and its live state.

``deployments.rendering.render_hpa`` renders the autoscaling/v2 HPA on the engine's per-pod
queue size; this module decides its min/max from the revision and the quota, and reads the HPA
back from the cluster for the deployment page. The Pods metric needs a custom-metrics adapter
(prometheus-adapter); without one the HPA's ScalingActive condition says it cannot get the
metric, and the page shows exactly that rather than pretending it scales.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deployments.models import Deployment, DeploymentRevision
from deployments.rendering.meta import workload_name
from portal import kube
from tenants.models import TenantQuota


@dataclass(frozen=True)
class ReplicaBounds:
    """The replicas an autoscaled revision may run, after the tenant's quota."""

    min_replicas: int
    replicas: int
    max_replicas: int
    capped_by: str = ""
    """Why max is below the revision's max_replicas ("" when it is not)."""


def replica_bounds(revision: DeploymentRevision, quota: TenantQuota) -> ReplicaBounds:
    """min/max from the revision, max capped by max_replicas_per_deployment and by how many
    replicas of the tier fit in the tenant's GPU quota (never below 1)."""
    gpus = revision.tier.gpus_per_replica
    caps = {
        "max_replicas_per_deployment": quota.max_replicas_per_deployment,
        "max_gpus": max(1, quota.max_gpus // gpus),
    }
    maximum = revision.max_replicas
    capped_by = ""
    for name, cap in caps.items():
        if cap < maximum:
            maximum, capped_by = cap, f"the tenant quota's {name} ({cap} replicas)"
    minimum = min(revision.min_replicas, maximum)
    replicas = min(max(revision.replicas, minimum), maximum)
    return ReplicaBounds(minimum, replicas, maximum, capped_by)


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str


@dataclass
class HpaState:
    """An HPA as the cluster reports it, or why it could not be read."""

    name: str
    min_replicas: int | None = None
    max_replicas: int | None = None
    current_replicas: int | None = None
    desired_replicas: int | None = None
    target: str = ""
    current_metric: str = ""
    conditions: list[Condition] = field(default_factory=list)
    found: bool = True
    error: str = ""

    @property
    def scaling_active(self) -> bool | None:
        for condition in self.conditions:
            if condition.type == "ScalingActive":
                return condition.status == "True"
        return None


def hpa_name(deployment: Deployment, colour: str) -> str:
    return workload_name(deployment.name, colour)


def _metric_value(metrics: list[dict[str, Any]] | None) -> str:
    for metric in metrics or []:
        pods = metric.get("pods") or {}
        current = pods.get("current") or {}
        if current.get("averageValue") is not None:
            return str(current["averageValue"])
    return ""


def hpa_state(deployment: Deployment) -> HpaState | None:
    """The live HPA of the deployment's active colour; None when it does not autoscale."""
    revision = deployment.active_revision
    if revision is None or not revision.autoscaling or not deployment.active_colour:
        return None
    name = hpa_name(deployment, deployment.active_colour)
    try:
        hpa = kube.get(
            "autoscaling/v2", "HorizontalPodAutoscaler", name, deployment.tenant.namespace
        )
    except kube.ClusterUnavailable as error:
        return HpaState(name=name, error=error.message)
    if hpa is None:
        return HpaState(name=name, found=False)
    spec = hpa.get("spec") or {}
    status = hpa.get("status") or {}
    target = ""
    for metric in spec.get("metrics") or []:
        pods = metric.get("pods") or {}
        if pods:
            metric_name = (pods.get("metric") or {}).get("name", "")
            target = f"{metric_name} averaging {(pods.get('target') or {}).get('averageValue')}"
    return HpaState(
        name=name,
        min_replicas=spec.get("minReplicas"),
        max_replicas=spec.get("maxReplicas"),
        current_replicas=status.get("currentReplicas"),
        desired_replicas=status.get("desiredReplicas"),
        target=target,
        current_metric=_metric_value(status.get("currentMetrics")),
        conditions=[
            Condition(
                type=str(item.get("type", "")),
                status=str(item.get("status", "")),
                reason=str(item.get("reason", "")),
                message=str(item.get("message", "")),
            )
            for item in status.get("conditions") or []
        ],
    )

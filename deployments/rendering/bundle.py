"""Everything a rollout applies, in order, and the key the portal records each object under."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from deployments.rendering import constants as c
from deployments.rendering.serving import (
    render_colour_deployment,
    render_deployment_root,
    render_hpa,
    render_network_policy,
    render_services,
)
from deployments.rendering.specs import Colour, ServingSpec, check_colour
from deployments.rendering.weights import render_weights


class ObjectKey(NamedTuple):
    """Identity of a manifest; namespace is "" for cluster-scoped objects."""

    api_version: str
    kind: str
    namespace: str
    name: str


def object_key(manifest: Mapping[str, Any]) -> ObjectKey:
    metadata = manifest.get("metadata") or {}
    return ObjectKey(
        str(manifest["apiVersion"]),
        str(manifest["kind"]),
        str(metadata.get("namespace") or ""),
        str(metadata["name"]),
    )


def render_all(
    spec: ServingSpec,
    active_colour: Colour,
    new_colour: Colour,
    *,
    hf_endpoint: str | None,
    gateway_namespace: str | None = None,
    monitoring_namespace: str = c.DEFAULT_MONITORING_NAMESPACE,
    progress_deadline_seconds: int = c.PROGRESS_DEADLINE_SECONDS,
    startup_timeout_seconds: int = c.STARTUP_TIMEOUT_SECONDS,
    extra_pod_annotations: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The objects serving `spec` on `new_colour` while `active_colour` takes the traffic.

    Order: root ConfigMap (apply it first and put its uid in ``spec.owner`` — it is rendered
    from the same spec, so re-rendering after that changes nothing), weights PVC, download Job,
    NetworkPolicy (before any serving pod exists), the new colour's Deployment, the active and
    preview Services, and — only when ``new_colour == active_colour`` (a first deployment, or
    re-rendering after promotion) and the spec autoscales — the new colour's HPA. During
    a preview an HPA would shrink the idle side to minReplicas (it sees no queue) before the
    pre-promotion checks; the rollout applies ``render_hpa(spec, new_colour)`` on promotion
    and deletes the old colour's HPA.

    The tenant's Namespace, quota and LimitRange are not included (``render_tenant_namespace``
    at tenant creation); neither is the other colour's Deployment, which keeps its revision.
    """
    check_colour(active_colour, "active_colour")
    check_colour(new_colour, "new_colour")
    manifests: list[dict[str, Any]] = [
        render_deployment_root(spec),
        *render_weights(spec, hf_endpoint=hf_endpoint),
        render_network_policy(
            spec, gateway_namespace=gateway_namespace, monitoring_namespace=monitoring_namespace
        ),
        render_colour_deployment(
            spec,
            new_colour,
            progress_deadline_seconds=progress_deadline_seconds,
            startup_timeout_seconds=startup_timeout_seconds,
            extra_pod_annotations=extra_pod_annotations,
            hf_endpoint=hf_endpoint,
        ),
        *render_services(spec, active_colour),
    ]
    if new_colour == active_colour:
        hpa = render_hpa(spec, new_colour)
        if hpa is not None:
            manifests.append(hpa)
    return manifests

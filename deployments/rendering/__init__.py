"""Kubernetes manifests for the portal's tenants and TGI deployments: pure functions.

Spec in (frozen dataclasses from ``specs``), plain JSON-serialisable dicts out, ready for
server-side apply. No Kubernetes API calls and no ORM here: the services layer builds the specs
and a separate module applies the manifests. Same input, byte-identical output.
"""

from deployments.rendering.bundle import ObjectKey, object_key, render_all
from deployments.rendering.errors import SpecError
from deployments.rendering.meta import (
    colour_labels,
    colour_name,
    deployment_labels,
    image_version,
    object_name,
    resource_name,
    sanitize_label_value,
    selector_labels,
    service_host,
    service_name,
    workload_name,
)
from deployments.rendering.serving import (
    active_service_name,
    preview_service_name,
    render_colour_deployment,
    render_deployment_root,
    render_hpa,
    render_network_policy,
    render_services,
    switch_selector_patch,
)
from deployments.rendering.specs import (
    COLOURS,
    Colour,
    ModelRevisionSpec,
    OwnerRef,
    ServingSpec,
    TenantSpec,
    TierSpec,
    other_colour,
    owner_ref_from,
)
from deployments.rendering.tenant import (
    render_hub_token_secret,
    render_namespace,
    render_tenant_namespace,
)
from deployments.rendering.weights import (
    download_job_name,
    download_job_name_of,
    render_weights,
    render_weights_download_job,
    render_weights_pvc,
    weights_request_gib,
)

__all__ = [
    "COLOURS",
    "Colour",
    "ModelRevisionSpec",
    "ObjectKey",
    "OwnerRef",
    "ServingSpec",
    "SpecError",
    "TenantSpec",
    "TierSpec",
    "active_service_name",
    "colour_labels",
    "colour_name",
    "deployment_labels",
    "download_job_name",
    "download_job_name_of",
    "image_version",
    "object_key",
    "object_name",
    "other_colour",
    "owner_ref_from",
    "preview_service_name",
    "render_all",
    "render_colour_deployment",
    "render_deployment_root",
    "render_hpa",
    "render_hub_token_secret",
    "render_namespace",
    "render_network_policy",
    "render_services",
    "render_tenant_namespace",
    "render_weights",
    "render_weights_download_job",
    "render_weights_pvc",
    "resource_name",
    "sanitize_label_value",
    "selector_labels",
    "service_host",
    "service_name",
    "switch_selector_patch",
    "weights_request_gib",
    "workload_name",
]

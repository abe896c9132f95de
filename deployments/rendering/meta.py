"""Object names, label sets, label values and ownerReferences shared by every renderer."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from deployments.rendering import constants as c
from deployments.rendering.errors import SpecError
from deployments.rendering.specs import Colour, ModelRevisionSpec, ServingSpec, TenantSpec

_LABEL_VALUE_FORBIDDEN = re.compile(r"[^A-Za-z0-9_.-]")
_LABEL_VALUE_EDGE = "-_."
_HASH_LENGTH = 8
_PVC_READABLE_FORBIDDEN = re.compile(r"[^a-z0-9-]+")


_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def selector_text(selector: Mapping[str, str]) -> str:
    """A node selector as kubectl's -l takes it."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector.items())) or "(any node)"


def label_selector_problem(selector: Any) -> str:
    """Why ``selector`` is not a nodeSelector the API server accepts ("" when it is one):
    keys ``[prefix/]name`` and values as apimachinery's IsQualifiedName/IsValidLabelValue."""
    if not isinstance(selector, dict):
        return 'a JSON object of node labels, e.g. {"nvidia.com/gpu.product": "NVIDIA-L4"}'
    for key, value in selector.items():
        prefix, _, name = key.rpartition("/")
        if (
            not name
            or len(name) > c.LABEL_VALUE_MAX
            or not _LABEL_NAME.match(name)
            or (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)))
            or ("/" in key and not prefix)
        ):
            return f"{key!r} is not a label key ([prefix/]name, name at most 63 characters)"
        if (
            not isinstance(value, str)
            or len(value) > c.LABEL_VALUE_MAX
            or not (_LABEL_NAME.match(value) or value == "")
        ):
            return f"the value of {key!r} is not a label value (at most 63 characters)"
    return ""


def _digest(value: str, length: int = _HASH_LENGTH) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:length]


def sanitize_label_value(value: str) -> str:
    """`value` as a valid label value: '/' becomes '.', other forbidden characters '-', the
    edges are trimmed to alphanumerics, and anything over 63 characters keeps a prefix plus a
    hash of the original so that distinct long values stay distinct.

    >>> sanitize_label_value("meta-llama/Llama-3.1-8B-Instruct")
    'meta-llama.Llama-3.1-8B-Instruct'
    """
    cleaned = _LABEL_VALUE_FORBIDDEN.sub("-", value.replace("/", ".")).strip(_LABEL_VALUE_EDGE)
    if len(cleaned) <= c.LABEL_VALUE_MAX:
        return cleaned
    head = cleaned[: c.LABEL_VALUE_MAX - _HASH_LENGTH - 1].rstrip(_LABEL_VALUE_EDGE)
    return f"{head}-{_digest(value)}"


def bounded_name(base: str, suffix: str = "", max_length: int = c.DNS1123_LABEL_MAX) -> str:
    """`base + suffix`, or a shortened base plus a hash when that exceeds `max_length` (Service
    names must be DNS-1035 labels of at most 63 characters)."""
    name = f"{base}{suffix}"
    if len(name) <= max_length:
        return name
    keep = max_length - len(suffix) - _HASH_LENGTH - 1
    if keep < 1:
        raise SpecError("name", f"suffix {suffix!r} leaves no room for a name")
    return f"{base[:keep].rstrip('-')}-{_digest(base)}{suffix}"


# --- object names: the only derivation of a deployment's object names ----------------------


def object_name(deployment_name: str, suffix: str = "") -> str:
    """Name of a per-deployment object: ``tgi-<deployment>[suffix]``, at most 63 characters.

    Callers that hold only a deployment's name (views, the gateway, autoscaling) use this and
    the helpers below; renderers use the ``ServingSpec`` forms further down.
    """
    return bounded_name(f"{c.NAME_PREFIX}{deployment_name}", suffix)


def service_name(deployment_name: str, *, preview: bool = False) -> str:
    """The Service selecting the active colour (``tgi-<deployment>``) or, with `preview`, the
    other one (``tgi-<deployment>-preview``)."""
    return object_name(deployment_name, c.PREVIEW_SUFFIX if preview else "")


def service_host(deployment_name: str, namespace: str, *, preview: bool = False) -> str:
    """The cluster-internal DNS name of a deployment's active (or preview) Service."""
    return f"{service_name(deployment_name, preview=preview)}.{namespace}.svc"


def workload_name(deployment_name: str, colour: str) -> str:
    """The Deployment (and HPA) of one colour: ``tgi-<deployment>-<colour>``."""
    return object_name(deployment_name, f"-{colour}")


def weights_pvc_name(repo_id: str, commit_sha: str) -> str:
    """One volume per model commit: weights-<readable repo>-<digest>-<sha prefix>."""
    readable = _PVC_READABLE_FORBIDDEN.sub("-", repo_id.lower()).strip("-")[:30].strip("-")
    return f"weights-{readable}-{_digest(repo_id, 6)}-{commit_sha[:12]}"


def resource_name(spec: ServingSpec, suffix: str = "") -> str:
    return object_name(spec.deployment_name, suffix)


def root_name(spec: ServingSpec) -> str:
    return object_name(spec.deployment_name)


def colour_name(spec: ServingSpec, colour: Colour) -> str:
    return workload_name(spec.deployment_name, colour)


def image_version(image: str) -> str:
    """The tag of an image reference as a label value ('3.3.6' for '...inference:3.3.6'); the
    first 12 digest characters for digest-only references; 'latest' when neither is given."""
    reference, _, digest = image.partition("@")
    last_segment = reference.rsplit("/", 1)[-1]
    if ":" in last_segment:
        return sanitize_label_value(last_segment.rsplit(":", 1)[1])
    if digest:
        return sanitize_label_value(digest.rsplit(":", 1)[-1][:12])
    return "latest"


# --- label sets ----------------------------------------------------------------------------


def tenant_labels(slug: str) -> dict[str, str]:
    """Labels of a tenant's namespace, its quota objects and its Hub token Secret."""
    return {
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_PART_OF: c.PART_OF,
        c.LABEL_TENANT: slug,
    }


def model_labels(tenant: TenantSpec, model: ModelRevisionSpec) -> dict[str, str]:
    """Labels identifying a model revision (its weights PVC and download Job)."""
    return {
        **tenant_labels(tenant.slug),
        c.LABEL_MODEL: sanitize_label_value(model.repo_id),
        c.LABEL_MODEL_SHA: model.commit_sha,
    }


def model_annotations(model: ModelRevisionSpec) -> dict[str, str]:
    """The exact model id and sha (label values may be shortened; annotations never are)."""
    return {c.ANNOTATION_MODEL_ID: model.repo_id, c.ANNOTATION_MODEL_SHA: model.commit_sha}


def selector_labels(spec: ServingSpec, colour: Colour | None = None) -> dict[str, str]:
    """The labels selecting a deployment's serving pods (one colour, or both when None).

    Deliberately without the revision: a colour's Deployment keeps its selector (immutable in
    apps/v1) when its idle side is re-applied with a new revision.
    """
    labels = {
        c.LABEL_NAME: c.SERVING_APP_NAME,
        c.LABEL_DEPLOYMENT: spec.deployment_name,
    }
    if colour is not None:
        labels[c.LABEL_COLOUR] = colour
    return labels


def deployment_labels(spec: ServingSpec) -> dict[str, str]:
    """Labels stable over a portal deployment's life: on the root, Services, NetworkPolicy.

    Objects shared by both colours carry no revision/model/version labels, which would
    describe the newest spec rather than what the object currently routes to.
    """
    return {
        c.LABEL_NAME: c.SERVING_APP_NAME,
        c.LABEL_INSTANCE: spec.deployment_name,
        c.LABEL_COMPONENT: c.COMPONENT_INFERENCE_SERVER,
        c.LABEL_PART_OF: c.PART_OF,
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_TENANT: spec.tenant.slug,
        c.LABEL_DEPLOYMENT: spec.deployment_name,
        c.LABEL_BACKEND: spec.engine.name,
    }


def colour_labels(spec: ServingSpec, colour: Colour) -> dict[str, str]:
    """Labels of one colour's Deployment, its pods and its HPA: one revision of the model."""
    return {
        **deployment_labels(spec),
        c.LABEL_VERSION: image_version(spec.tier.image),
        c.LABEL_COLOUR: colour,
        c.LABEL_REVISION: str(spec.revision_number),
        c.LABEL_MODEL: sanitize_label_value(spec.model.repo_id),
        c.LABEL_TIER: spec.tier.name,
    }


def label_selector(labels: dict[str, str]) -> str:
    """`labels` as an equality-based label selector (``key=value,...``) for LIST calls."""
    return ",".join(f"{key}={value}" for key, value in labels.items())


# --- metadata ------------------------------------------------------------------------------


def owner_references(spec: ServingSpec) -> list[dict[str, Any]]:
    """ownerReferences to the deployment root (garbage collection deletes dependents once the
    root is gone; not a controller reference, and deleting the root does not wait for them)."""
    owner = spec.owner
    if owner is None:
        raise SpecError(
            "owner",
            "apply render_deployment_root() first and pass its uid as ServingSpec.owner",
        )
    return [
        {
            "apiVersion": owner.api_version,
            "kind": owner.kind,
            "name": owner.name,
            "uid": owner.uid,
            "controller": False,
            "blockOwnerDeletion": False,
        }
    ]


def metadata(
    name: str,
    namespace: str | None,
    labels: dict[str, str],
    *,
    annotations: dict[str, str] | None = None,
    owned_by: ServingSpec | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    if owned_by is not None:
        meta["ownerReferences"] = owner_references(owned_by)
    return meta

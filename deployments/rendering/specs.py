"""Inputs of the renderers: frozen, validated descriptions of what should run.

The services layer builds these from the database (tiers, tenants, registered models and
deployment revisions); the renderers never touch the ORM. Each dataclass checks on construction
what would otherwise produce a manifest the API server refuses or a pod that crash-loops, and
raises ``SpecError`` (a ``ValueError``) naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, get_args

from deployments.rendering.constants import (
    DNS1123_LABEL_MAX,
    LABEL_VALUE_MAX,
    PROGRESS_DEADLINE_SECONDS,
    WEIGHTS_NODE_LOCAL,
    WEIGHTS_SHARED_VOLUME,
    WEIGHTS_SINGLE_NODE_VOLUME,
    WEIGHTS_STRATEGIES,
)
from deployments.rendering.errors import SpecError
from engines.registry import DEFAULT_ENGINE, ENGINES

if TYPE_CHECKING:
    from engines.base import InferenceEngine

Colour = Literal["blue", "green"]
COLOURS: tuple[Colour, ...] = get_args(Colour)

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
# A Kubernetes resource.Quantity (decimal or binary suffix, optional exponent).
_QUANTITY = re.compile(
    r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$"
)
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Annotation keys the portal writes itself (scrape config, model provenance) or Kubernetes
# reserves; a tenant's pod annotations may not set them. The only copy of this rule.
RESERVED_ANNOTATION_PREFIXES = ("inference.portal/", "prometheus.io/", "kubernetes.io/")
# A qualified name with an optional DNS-subdomain prefix (apimachinery validation.IsQualifiedName).
_ANNOTATION_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def other_colour(colour: Colour) -> Colour:
    """The idle side when `colour` serves (and vice versa)."""
    check_colour(colour)
    return "green" if colour == "blue" else "blue"


def check_colour(colour: str, field: str = "colour") -> None:
    if colour not in COLOURS:
        raise SpecError(field, f"must be one of {', '.join(COLOURS)} (got {colour!r})")


def _dns_label(field: str, value: str, max_length: int = DNS1123_LABEL_MAX) -> None:
    if len(value) > max_length or not _DNS1123_LABEL.match(value):
        raise SpecError(field, f"must be a DNS-1123 label of at most {max_length} characters")


def _positive(field: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(field, f"must be an integer >= {minimum} (got {value!r})")


def _quantity(field: str, value: str) -> None:
    if not isinstance(value, str) or not _QUANTITY.match(value):
        raise SpecError(field, "must be a Kubernetes quantity string such as '8' or '64Gi'")


def _freeze_mapping(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise SpecError(name, "must map strings to strings")
    object.__setattr__(obj, name, dict(value))


def check_pod_annotations(annotations: Any) -> None:
    if not isinstance(annotations, Mapping):
        raise SpecError("pod_annotations", "must be an object of annotation: value")
    for key, value in annotations.items():
        if not isinstance(key, str) or len(key) > 253 or not _ANNOTATION_KEY.match(key):
            raise SpecError("pod_annotations", f"'{key}' is not a valid annotation key")
        if key.startswith(RESERVED_ANNOTATION_PREFIXES):
            raise SpecError("pod_annotations", f"'{key}' is set by the portal")
        if not isinstance(value, str):
            raise SpecError("pod_annotations", f"the value of '{key}' must be a string")


@dataclass(frozen=True)
class OwnerRef:
    """The object every per-deployment manifest is owned by (the applied root ConfigMap).

    Kubernetes garbage-collects dependents once their owner is gone, so deleting the root
    removes a portal deployment's Deployments, Services, HPAs and NetworkPolicy. The uid exists
    only once the root is stored: render and apply the root first, then ``owner_ref_from``.
    """

    api_version: str
    kind: str
    name: str
    uid: str

    def __post_init__(self) -> None:
        for name in ("api_version", "kind", "name", "uid"):
            if not getattr(self, name):
                raise SpecError(f"owner.{name}", "must not be empty")


def owner_ref_from(applied: Mapping[str, Any]) -> OwnerRef:
    """The OwnerRef of an object as the API server returned it (needs metadata.uid)."""
    metadata = applied.get("metadata") or {}
    return OwnerRef(
        api_version=str(applied.get("apiVersion", "")),
        kind=str(applied.get("kind", "")),
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
    )


@dataclass(frozen=True)
class TierSpec:
    """A GPU node pool offering: where the pods run and what each replica gets.

    ``node_selector`` is complete as given (``Tier.node_selector``: standard node labels such
    as ``nvidia.com/gpu.product``). ``tolerations`` may omit the standard
    ``nvidia.com/gpu=present:NoSchedule`` one; the renderer adds it.

    ``weights_strategy`` (one of ``WEIGHTS_STRATEGIES``) says where the weights live for pods
    on this tier, ``weights_storage_class`` the ReadWriteMany class of the shared volume
    (required by, and only used for, ``shared-volume``).
    """

    name: str
    node_selector: Mapping[str, str]
    tolerations: Sequence[Mapping[str, Any]]
    gpu_product: str
    gpu_memory_gib: int | float | Decimal  # informational; placement is by node_selector
    gpus_per_replica: int
    cpu_request: str
    memory_request: str
    image: str
    weights_strategy: str = WEIGHTS_SINGLE_NODE_VOLUME
    weights_storage_class: str | None = None

    def __post_init__(self) -> None:
        # The tier's slug (Tier.slug, a SlugField); used as a label value.
        if len(self.name) > LABEL_VALUE_MAX or not _LABEL_VALUE.match(self.name) or not self.name:
            raise SpecError("tier.name", "must be a slug of at most 63 characters")
        _freeze_mapping(self, "node_selector")
        if isinstance(self.tolerations, (str, bytes)) or not all(
            isinstance(t, Mapping) for t in self.tolerations
        ):
            raise SpecError("tier.tolerations", "must be a list of toleration objects")
        object.__setattr__(self, "tolerations", tuple(dict(t) for t in self.tolerations))
        if isinstance(self.gpu_memory_gib, bool) or not (
            isinstance(self.gpu_memory_gib, (int, float, Decimal)) and self.gpu_memory_gib > 0
        ):
            raise SpecError("tier.gpu_memory_gib", "must be a positive number")
        _positive("tier.gpus_per_replica", self.gpus_per_replica)
        _quantity("tier.cpu_request", self.cpu_request)
        _quantity("tier.memory_request", self.memory_request)
        if not self.image or any(ch.isspace() for ch in self.image):
            raise SpecError("tier.image", "must be an image reference")
        if self.weights_strategy not in WEIGHTS_STRATEGIES:
            raise SpecError(
                "tier.weights_strategy", f"must be one of {', '.join(WEIGHTS_STRATEGIES)}"
            )
        storage_class = self.weights_storage_class
        if storage_class is not None and (
            len(storage_class) > 253 or not DNS1123_SUBDOMAIN.match(storage_class)
        ):
            raise SpecError("tier.weights_storage_class", "must be a StorageClass name")
        if self.weights_strategy == WEIGHTS_SHARED_VOLUME and not storage_class:
            raise SpecError(
                "tier.weights_storage_class",
                "shared-volume needs a ReadWriteMany storage class",
            )

    @property
    def weights_on_volume(self) -> bool:
        """Whether the weights live in a PersistentVolumeClaim filled by a download Job
        (else each pod downloads them into its own emptyDir)."""
        return self.weights_strategy != WEIGHTS_NODE_LOCAL


@dataclass(frozen=True)
class TenantSpec:
    """A tenant's namespace and the limits the portal enforces in it."""

    slug: str
    namespace: str
    max_gpus: int
    max_pods: int
    default_cpu_request: str = "100m"
    default_memory_request: str = "128Mi"
    default_cpu_limit: str = "1"
    default_memory_limit: str = "512Mi"

    def __post_init__(self) -> None:
        _dns_label("tenant.slug", self.slug)
        _dns_label("tenant.namespace", self.namespace)
        _positive("tenant.max_gpus", self.max_gpus, minimum=0)
        _positive("tenant.max_pods", self.max_pods, minimum=0)
        for name in (
            "default_cpu_request",
            "default_memory_request",
            "default_cpu_limit",
            "default_memory_limit",
        ):
            _quantity(f"tenant.{name}", getattr(self, name))


@dataclass(frozen=True)
class ModelRevisionSpec:
    """One pinned revision of a Hub model and the PVC caching its weights."""

    repo_id: str
    commit_sha: str
    weights_pvc_name: str
    weights_size_bytes: int
    trust_remote_code: bool = False
    # False for base models: the pre-promotion check then uses the engine's completion route.
    has_chat_template: bool = True

    def __post_init__(self) -> None:
        if not _REPO_ID.match(self.repo_id) or len(self.repo_id) > 200:
            raise SpecError("model.repo_id", "must be a Hub repo id such as 'org/name'")
        if not _COMMIT_SHA.match(self.commit_sha):
            raise SpecError("model.commit_sha", "must be a full 40-character lowercase hex sha")
        # The download Job is named after the PVC with a suffix; keep both within 63.
        _dns_label("model.weights_pvc_name", self.weights_pvc_name)
        _positive("model.weights_size_bytes", self.weights_size_bytes)


@dataclass(frozen=True)
class ServingSpec:
    """One immutable revision of a portal deployment: everything needed to render it.

    ``owner`` may be None only for ``render_deployment_root``; every other per-deployment
    renderer needs the root's uid. ``engine`` decides the container (TGI unless told).
    """

    tenant: TenantSpec
    deployment_name: str
    revision_number: int
    tier: TierSpec
    model: ModelRevisionSpec
    max_input_tokens: int
    max_total_tokens: int
    max_batch_prefill_tokens: int
    max_concurrent_requests: int = 128
    quantize: str | None = None
    dtype: Literal["float16", "bfloat16"] | None = None
    kv_cache_dtype: str | None = None
    replicas: int = 1
    min_replicas: int = 1
    max_replicas: int = 1
    autoscaling: bool = False
    queue_size_target: int | float = 4
    hf_token_secret_name: str | None = None
    owner: OwnerRef | None = None
    engine: InferenceEngine = field(default=ENGINES[DEFAULT_ENGINE])
    # The tenant's own annotations on the serving pods (e.g. a service mesh's).
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    # Seconds the Deployment controller allows before reporting ProgressDeadlineExceeded.
    progress_deadline_seconds: int = PROGRESS_DEADLINE_SECONDS

    def __post_init__(self) -> None:
        _dns_label("deployment_name", self.deployment_name)
        _positive("revision_number", self.revision_number)
        _positive("max_input_tokens", self.max_input_tokens)
        _positive("max_total_tokens", self.max_total_tokens)
        _positive("max_batch_prefill_tokens", self.max_batch_prefill_tokens)
        _positive("max_concurrent_requests", self.max_concurrent_requests)
        if self.max_input_tokens >= self.max_total_tokens:
            raise SpecError("max_input_tokens", "must be smaller than max_total_tokens")
        _positive("replicas", self.replicas)
        _positive("min_replicas", self.min_replicas)
        _positive("max_replicas", self.max_replicas)
        if self.autoscaling and not (self.min_replicas <= self.replicas <= self.max_replicas):
            raise SpecError("replicas", "must lie within min_replicas..max_replicas")
        if isinstance(self.queue_size_target, bool) or not (
            isinstance(self.queue_size_target, (int, float)) and self.queue_size_target > 0
        ):
            raise SpecError("queue_size_target", "must be a positive number")
        if self.hf_token_secret_name is not None:
            name = self.hf_token_secret_name
            if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
                raise SpecError(
                    "hf_token_secret_name", "must be a Secret name (DNS-1123 subdomain)"
                )
        check_pod_annotations(self.pod_annotations)
        object.__setattr__(self, "pod_annotations", dict(self.pod_annotations))
        _positive("progress_deadline_seconds", self.progress_deadline_seconds)
        self.engine.validate(self)

    @property
    def namespace(self) -> str:
        return self.tenant.namespace

    @property
    def gpus_per_replica(self) -> int:
        return self.tier.gpus_per_replica

"""Admin console for platform admins: GPU tiers, with their node pool's live capacity.

Tiers have no service module; AuditedAdmin records each create, update and delete.
"""

from __future__ import annotations

import threading
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from deployments.capacity import ClusterCapacity, pool_capacity
from deployments.choices import WeightsStrategy
from deployments.models import Tier
from deployments.rendering.meta import label_selector_problem, selector_text
from deployments.rendering.specs import DNS1123_SUBDOMAIN
from deployments.specs import weights_storage
from engines import ENGINES
from portal import kube
from tenants.admin import AuditedAdmin

_request_pools = threading.local()


def _pools() -> ClusterCapacity | None:
    """The cluster's GPU nodes, read once per admin request (None when it is unreachable)."""
    if not hasattr(_request_pools, "value"):
        try:
            _request_pools.value = pool_capacity()
        except kube.ClusterUnavailable:
            _request_pools.value = None
    pools: ClusterCapacity | None = _request_pools.value
    return pools


def _forget_pools() -> None:
    if hasattr(_request_pools, "value"):
        del _request_pools.value


class TierForm(forms.ModelForm):
    class Meta:
        model = Tier
        fields = "__all__"  # noqa: DJ007 - the fieldsets below choose what is shown

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # "{}" counts as empty for the form field; clean_node_selector says what to write.
        self.fields["node_selector"].required = False

    def clean_node_selector(self) -> dict[str, str]:
        selector = self.cleaned_data.get("node_selector")
        if not selector:
            raise forms.ValidationError(
                "name at least one label of the tier's GPU nodes, e.g. "
                '{"nvidia.com/gpu.product": "NVIDIA-L4"}'
            )
        problem = label_selector_problem(selector)
        if problem:
            raise forms.ValidationError(problem)
        return dict(selector)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # What the tier would get once its blank fields take the cluster's settings.
        probe = Tier(
            weights_strategy=data.get("weights_strategy") or "",
            weights_storage_class=data.get("weights_storage_class") or "",
        )
        weights = weights_storage(probe)
        if weights.strategy == WeightsStrategy.SHARED_VOLUME and not weights.storage_class:
            self.add_error(
                "weights_storage_class",
                "the shared-volume strategy needs a ReadWriteMany storage class (such as a "
                "Filestore, EFS or Azure Files class); name it here or set "
                "WEIGHTS_STORAGE_CLASS, or choose node-local",
            )
        return data

    def clean_weights_storage_class(self) -> str:
        name: str = self.cleaned_data.get("weights_storage_class") or ""
        if name and (len(name) > 253 or not DNS1123_SUBDOMAIN.match(name)):
            raise forms.ValidationError("must be a StorageClass name (a DNS-1123 subdomain)")
        return name

    def clean_engine_images(self) -> dict[str, str]:
        """Only engines of the registry, each with an image reference (``name:tag``)."""
        images = self.cleaned_data.get("engine_images")
        if not isinstance(images, dict) or not images:
            raise forms.ValidationError(
                'name at least one engine and its image, e.g. {"vllm": "vllm/vllm-openai:v0.11.0"}'
            )
        known = ", ".join(ENGINES)
        for name, image in images.items():
            if name not in ENGINES:
                raise forms.ValidationError(f"unknown engine '{name}' (known: {known})")
            if not isinstance(image, str) or not image or any(c.isspace() for c in image):
                raise forms.ValidationError(f"the image of '{name}' must be an image reference")
        return images


@admin.register(Tier)
class TierAdmin(AuditedAdmin):
    form = TierForm
    list_display = (
        "slug",
        "name",
        "nodes",
        "gpu_product",
        "gpu_memory_gb",
        "gpus_per_replica",
        "price_per_gpu_hour",
        "is_active",
        "pool_free_gpus",
    )
    list_filter = ("is_active", "gpu_product", "gpus_per_replica")
    search_fields = ("slug", "name", "gpu_product", "description")
    ordering = ("gpu_memory_gb", "gpus_per_replica", "slug")
    readonly_fields = ("node_pool_capacity",)
    fieldsets = (
        (None, {"fields": ("slug", "name", "description", "is_active")}),
        (
            "Hardware",
            {
                "fields": (
                    "node_selector",
                    "node_pool_capacity",
                    "tolerations",
                    "gpu_product",
                    "gpu_memory_gb",
                    "gpus_per_replica",
                    "cpu_request",
                    "memory_request",
                )
            },
        ),
        (
            "Serving",
            {"fields": ("engine_images", "default_max_total_tokens", "max_total_tokens_limit")},
        ),
        ("Weights", {"fields": ("weights_strategy", "weights_storage_class")}),
        ("Price", {"fields": ("price_per_gpu_hour",)}),
    )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        _forget_pools()
        try:
            return super().changelist_view(request, extra_context)
        finally:
            _forget_pools()

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> Any:
        _forget_pools()
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        finally:
            _forget_pools()

    @admin.display(description="Node selector")
    def nodes(self, tier: Tier) -> str:
        return selector_text(tier.node_selector)

    @admin.display(description="Free GPUs on its nodes")
    def pool_free_gpus(self, tier: Tier) -> str:
        capacity = _pools()
        if capacity is None:
            return "cluster unreachable"
        pool = capacity.matching(tier.node_selector)
        return f"{pool.free} / {pool.allocatable}" if pool else "no matching GPU node"

    @admin.display(description="Capacity of its nodes (live)")
    def node_pool_capacity(self, tier: Tier) -> str:
        if tier.pk is None:
            return "—"
        capacity = _pools()
        if capacity is None:
            return "the cluster is unreachable; capacity unknown"
        pool = capacity.matching(tier.node_selector)
        if pool is None:
            return f"no GPU node matches {selector_text(tier.node_selector)}"
        fits = pool.replicas_that_fit(tier.gpus_per_replica)
        return (
            f"{pool.nodes} nodes ({pool.gpu_product or 'no GPU label'}): {pool.allocatable} GPUs "
            f"allocatable, {pool.requested} requested, {pool.free} free — room for {fits} "
            f"replicas of {tier.gpus_per_replica} GPUs"
        )

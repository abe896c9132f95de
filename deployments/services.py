"""Domain operations of deployments (tiers now; rollouts arrive with the rollouts capability)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction

from deployments.models import Tier

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

# The demo tiers, on the local cluster's node pools (devstack/cluster/nodepools.yaml).
DEFAULT_TIERS: list[dict[str, Any]] = [
    {
        "slug": "l4",
        "name": "L4 24 GB",
        "node_pool": "l4",
        "gpu_product": "NVIDIA-L4",
        "gpu_memory_gb": Decimal("24"),
        "gpus_per_replica": 1,
        "cpu_request": "4",
        "memory_request": "16Gi",
        "default_max_total_tokens": 4096,
        "max_total_tokens_limit": 16384,
        "price_per_gpu_hour": Decimal("0.80"),
    },
    {
        "slug": "a100-80g",
        "name": "A100 80 GB",
        "node_pool": "a100-80g",
        "gpu_product": "NVIDIA-A100-SXM4-80GB",
        "gpu_memory_gb": Decimal("80"),
        "gpus_per_replica": 1,
        "cpu_request": "8",
        "memory_request": "64Gi",
        "default_max_total_tokens": 8192,
        "max_total_tokens_limit": 131072,
        "price_per_gpu_hour": Decimal("3.40"),
    },
    {
        "slug": "a100-80g-x2",
        "name": "2 × A100 80 GB",
        "node_pool": "a100-80g",
        "gpu_product": "NVIDIA-A100-SXM4-80GB",
        "gpu_memory_gb": Decimal("80"),
        "gpus_per_replica": 2,
        "cpu_request": "16",
        "memory_request": "128Gi",
        "default_max_total_tokens": 8192,
        "max_total_tokens_limit": 131072,
        "price_per_gpu_hour": Decimal("3.40"),
    },
    {
        "slug": "h100-80g-x4",
        "name": "4 × H100 80 GB",
        "node_pool": "h100-80g",
        "gpu_product": "NVIDIA-H100-80GB-HBM3",
        "gpu_memory_gb": Decimal("80"),
        "gpus_per_replica": 4,
        "cpu_request": "32",
        "memory_request": "256Gi",
        "default_max_total_tokens": 16384,
        "max_total_tokens_limit": 131072,
        "price_per_gpu_hour": Decimal("6.50"),
    },
]


@transaction.atomic
def ensure_default_tiers() -> list[Tier]:
    """Create the demo tiers that do not exist yet (existing ones are left as admins set them)."""
    tiers = []
    for spec in DEFAULT_TIERS:
        defaults = {
            **spec,
            "node_selector": {"inference.portal/pool": spec["node_pool"]},
            "tolerations": [GPU_TOLERATION],
        }
        tier, _ = Tier.objects.get_or_create(slug=spec["slug"], defaults=defaults)
        tiers.append(tier)
    return tiers

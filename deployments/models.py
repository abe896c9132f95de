"""GPU tiers and TGI deployments (the rollouts capability adds revisions and the state machine)."""

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from portal.tenancy import TenantOwnedModel
from tenants.validators import validate_dns1123_label


class Tier(models.Model):
    """A GPU offering platform admins define: which node pool, how many GPUs a replica gets."""

    slug = models.SlugField(max_length=50, unique=True, help_text="e.g. a100-80g-x2")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    node_pool = models.CharField(
        max_length=63, help_text="Value of the node label inference.portal/pool."
    )
    node_selector = models.JSONField(default=dict, blank=True)
    tolerations = models.JSONField(default=list, blank=True)
    gpu_product = models.CharField(max_length=100, help_text="e.g. NVIDIA-A100-SXM4-80GB")
    gpu_memory_gb = models.DecimalField(
        max_digits=6,
        decimal_places=1,
        validators=[MinValueValidator(Decimal("1"))],
        help_text="Memory of one GPU in GB (10^9 bytes).",
    )
    gpus_per_replica = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(16)],
        help_text="GPUs per TGI replica; becomes --num-shard.",
    )
    cpu_request = models.CharField(max_length=16, default="4")
    memory_request = models.CharField(max_length=16, default="32Gi")
    default_max_total_tokens = models.PositiveIntegerField(default=4096)
    max_total_tokens_limit = models.PositiveIntegerField(default=32768)
    price_per_gpu_hour = models.DecimalField(max_digits=8, decimal_places=4, default=Decimal("1"))
    tgi_image = models.CharField(
        max_length=200, default="ghcr.io/huggingface/text-generation-inference:3.3.6"
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ("gpu_memory_gb", "gpus_per_replica", "slug")

    def __str__(self) -> str:
        return self.name

    @property
    def total_gpu_memory_gb(self) -> Decimal:
        return self.gpu_memory_gb * self.gpus_per_replica


class Deployment(TenantOwnedModel):
    """A named TGI service of one tenant, serving one registered model on one tier."""

    name = models.CharField(max_length=63, validators=[validate_dns1123_label])
    model = models.ForeignKey(
        "models_registry.RegisteredModel", on_delete=models.PROTECT, related_name="deployments"
    )
    replicas = models.PositiveIntegerField(default=1)
    gpus_per_replica = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(
                fields=("tenant", "name"), name="one_deployment_name_per_tenant"
            )
        ]

    def __str__(self) -> str:
        return self.name

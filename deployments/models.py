"""GPU tiers, TGI deployments, their immutable revisions, and blue/green rollouts."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from deployments.choices import (
    ACTIVE_STATES,
    Colour,
    DeletionStep,
    PromotionMode,
    RolloutState,
    WeightsStrategy,
)
from deployments.rendering.constants import DEPLOYMENT_NAME_MAX
from deployments.rendering.meta import selector_text
from engines import DEFAULT_ENGINE, ENGINES, engine_choices
from tenants.tenancy import TenantOwnedModel
from tenants.validators import validate_dns1123_label


def default_engine_images() -> dict[str, str]:
    """A new tier offers every engine the portal knows, each at its own default image."""
    return {name: engine.default_image for name, engine in ENGINES.items()}


class Tier(models.Model):
    """A GPU offering platform admins define: which nodes (by label), how many GPUs a replica
    gets."""

    slug = models.SlugField(max_length=50, unique=True, help_text="e.g. a100-80g-x2")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    node_selector = models.JSONField(
        default=dict,
        help_text="Node labels the tier's GPU nodes carry, as GPU feature discovery and the "
        'cloud set them, e.g. {"nvidia.com/gpu.product": "NVIDIA-L4"} or '
        '{"cloud.google.com/gke-nodepool": "l4-pool"}. Capacity counts the nodes it matches.',
    )
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
    # Soft guardrails (deployments/alerts.py): alert thresholds for deployments on this tier.
    queue_depth_alert = models.PositiveIntegerField(
        default=16,
        validators=[MinValueValidator(1)],
        help_text="Alert when the average TGI queue per replica stays above this.",
    )
    ttft_p95_alert_seconds = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=Decimal("2.00"),
        validators=[MinValueValidator(Decimal("0.01"))],
        help_text="Alert when p95 time to first token (queue + prefill) stays above this.",
    )
    engine_images = models.JSONField(
        default=default_engine_images,
        blank=True,
        help_text='The engines this tier offers and the image of each, e.g. {"vllm": '
        '"vllm/vllm-openai:v0.11.0"}.',
    )
    # Blank: the cluster's setting (WEIGHTS_STRATEGY, WEIGHTS_STORAGE_CLASS); specs.tier_spec
    # resolves them, the tier admin refuses a shared volume without a storage class.
    weights_strategy = models.CharField(
        max_length=24,
        choices=WeightsStrategy.choices,
        blank=True,
        help_text="Where this tier's pods find their weights; blank: the cluster's "
        "WEIGHTS_STRATEGY.",
    )
    weights_storage_class = models.CharField(
        max_length=253,
        blank=True,
        help_text="The ReadWriteMany StorageClass of the shared-volume strategy; blank: the "
        "cluster's WEIGHTS_STORAGE_CLASS.",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ("gpu_memory_gb", "gpus_per_replica", "slug")

    def __str__(self) -> str:
        return self.name

    @property
    def node_selector_text(self) -> str:
        return selector_text(self.node_selector or {})

    @property
    def total_gpu_memory_gb(self) -> Decimal:
        return self.gpu_memory_gb * self.gpus_per_replica

    def offered_engines(self) -> list[str]:
        """Engine names this tier offers, in the registry's order (unknown names are skipped)."""
        images = self.engine_images or {}
        return [name for name in ENGINES if images.get(name)]

    def image_for(self, engine: str) -> str | None:
        """The image this tier runs `engine` with, or None when it does not offer it."""
        image = (self.engine_images or {}).get(engine)
        return image if isinstance(image, str) and image else None


class Deployment(TenantOwnedModel):
    """A named TGI service of one tenant on one tier; what it serves is its active revision."""

    # Short enough that its preview Service's name stays readable (no hash) in 63 characters.
    name = models.CharField(max_length=DEPLOYMENT_NAME_MAX, validators=[validate_dns1123_label])
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="deployments")
    model = models.ForeignKey(
        "models_registry.RegisteredModel", on_delete=models.PROTECT, related_name="deployments"
    )
    active_revision = models.ForeignKey(
        "DeploymentRevision", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    active_colour = models.CharField(max_length=5, choices=Colour.choices, blank=True)
    # Replicas currently running, per colour, for quota accounting and cost.
    replicas = models.PositiveIntegerField(default=0)
    gpus_per_replica = models.PositiveIntegerField(default=1)
    root_uid = models.CharField(max_length=64, blank=True, help_text="uid of the owner object")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    deleting = models.BooleanField(default=False)
    # The deletion's progress (deployments/deletion.py): its step, and when a worker last worked
    # on it, so the reconciler can tell a lost deletion task from a running one.
    deletion_step = models.CharField(max_length=16, choices=DeletionStep.choices, blank=True)
    deletion_requested_at = models.DateTimeField(null=True, blank=True)
    deletion_progress_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(
                fields=("tenant", "name"), name="one_deployment_name_per_tenant"
            )
        ]

    def __str__(self) -> str:
        return self.name


class DeploymentRevision(models.Model):
    """One immutable serving spec of a deployment; deploying it is a rollout."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    model_revision = models.ForeignKey(
        "models_registry.ModelRevision", on_delete=models.PROTECT, related_name="+"
    )
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="+")
    # The registry is the only list of engines: choices are read from it, so adding an engine
    # needs no migration.
    engine = models.CharField(max_length=32, choices=engine_choices, default=DEFAULT_ENGINE)
    image = models.CharField(
        max_length=200, help_text="The engine image, resolved from the tier when admitted."
    )
    quantize = models.CharField(max_length=32, blank=True, default="")
    dtype = models.CharField(max_length=16, blank=True, default="")
    kv_cache_dtype = models.CharField(max_length=16, blank=True, default="")
    max_input_tokens = models.PositiveIntegerField()
    max_total_tokens = models.PositiveIntegerField()
    max_batch_prefill_tokens = models.PositiveIntegerField()
    max_concurrent_requests = models.PositiveIntegerField(default=128)
    replicas = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    min_replicas = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    max_replicas = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    autoscaling = models.BooleanField(default=False)
    queue_size_target = models.PositiveIntegerField(default=4)
    pod_annotations = models.JSONField(
        default=dict, blank=True, help_text="Extra annotations on the TGI pods (e.g. a mesh's)."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-number",)
        constraints = [
            models.UniqueConstraint(fields=("deployment", "number"), name="revision_numbers_unique")
        ]

    def __str__(self) -> str:
        return f"{self.deployment.name} r{self.number}"

    @property
    def gpus(self) -> int:
        return self.replicas * self.tier.gpus_per_replica


class Rollout(models.Model):
    """Deploying one revision blue/green; its state lives here, the reconciler converges it."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="rollouts")
    revision = models.ForeignKey(DeploymentRevision, on_delete=models.PROTECT, related_name="+")
    previous_revision = models.ForeignKey(
        DeploymentRevision, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    colour = models.CharField(max_length=5, choices=Colour.choices, help_text="the new side")
    previous_colour = models.CharField(max_length=5, choices=Colour.choices, blank=True)
    state = models.CharField(
        max_length=24, choices=RolloutState.choices, default=RolloutState.PENDING
    )
    traffic_switched = models.BooleanField(default=False)
    promotion_mode = models.CharField(
        max_length=16, choices=PromotionMode.choices, default=PromotionMode.AUTOMATIC
    )
    promote_after_seconds = models.PositiveIntegerField(default=0)
    promotion_requested = models.BooleanField(default=False)
    abort_requested = models.BooleanField(default=False)
    rollback_requested = models.BooleanField(default=False)
    scale_down_delay_seconds = models.PositiveIntegerField(default=30)
    progress_deadline_seconds = models.PositiveIntegerField(default=600)
    state_entered_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    remedy = models.CharField(max_length=500, blank=True)
    ready_replicas = models.PositiveIntegerField(default=0)
    old_ready_replicas = models.PositiveIntegerField(default=0)
    weights_progress = models.CharField(max_length=300, blank=True)
    idempotency_key = models.CharField(max_length=100, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A worker claims a rollout before running a step; an expired claim means the worker died.
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    last_step_at = models.DateTimeField(null=True, blank=True)
    steps_run = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("-started_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=("deployment",),
                condition=models.Q(state__in=sorted(s.value for s in ACTIVE_STATES)),
                name="one_active_rollout_per_deployment",
            ),
            models.UniqueConstraint(
                fields=("deployment", "idempotency_key"),
                condition=~models.Q(idempotency_key=""),
                name="rollout_idempotency_key_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"rollout of {self.deployment.name} r{self.revision.number} ({self.state})"

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES


class RolloutEvent(models.Model):
    """One step of a rollout: who, what, when, which Kubernetes objects."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    actor_name = models.CharField(max_length=150)
    state = models.CharField(max_length=24, choices=RolloutState.choices)
    message = models.CharField(max_length=500)
    level = models.CharField(max_length=8, default="info")
    k8s_objects = models.JSONField(default=list, blank=True, help_text="kind/name touched")

    class Meta:
        ordering = ("at", "id")

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.state}: {self.message}"


class ReplicaChange(models.Model):
    """A change of the replicas one colour of a deployment runs: the history cost is priced from.

    A row holds from ``at`` until the next row of the same deployment and colour; the GPU count
    and price are copied so a later tier edit does not rewrite what was already spent.
    """

    deployment = models.ForeignKey(
        Deployment, on_delete=models.CASCADE, related_name="replica_changes"
    )
    colour = models.CharField(max_length=5, choices=Colour.choices)
    at = models.DateTimeField(db_index=True)
    replicas = models.PositiveIntegerField()
    gpus_per_replica = models.PositiveIntegerField()
    price_per_gpu_hour = models.DecimalField(max_digits=8, decimal_places=4)

    class Meta:
        ordering = ("at", "id")
        indexes = [models.Index(fields=("deployment", "colour", "at"), name="replica_change_seq")]

    def __str__(self) -> str:
        return f"{self.deployment.name} {self.colour}: {self.replicas} replicas from {self.at}"

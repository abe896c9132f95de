"""Tenants, memberships, quotas, API tokens and the audit log."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from tenants.choices import ROLE_RANK, Channel, Role
from tenants.constants import (
    DNS1123_LABEL_MAX_LENGTH,
    GATEWAY_MAX_REQUEST_BYTES_CEILING,
    GATEWAY_MAX_REQUEST_BYTES_FLOOR,
    QUOTA_MAX_DEPLOYMENTS,
    QUOTA_MAX_GPUS,
    QUOTA_MAX_REPLICAS,
    QUOTA_MAX_REQUESTS_PER_MINUTE,
    QUOTA_MAX_TOKENS_PER_MINUTE,
)
from tenants.tenancy import TenantOwnedModel, TenantScopedQuerySet
from tenants.validators import validate_dns1123_label, validate_tier_slugs


class TenantQuerySet(models.QuerySet["Tenant"]):
    def visible_to(self, user: Any) -> TenantQuerySet:
        """Tenants the user belongs to; every tenant for platform admins."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        if getattr(user, "is_staff", False):
            return self.all()
        return self.filter(memberships__user=user).distinct()


class Tenant(models.Model):
    """A platform team: owns models and deployments and runs them in its own namespace."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50, unique=True)
    namespace = models.CharField(
        max_length=DNS1123_LABEL_MAX_LENGTH,
        unique=True,
        validators=[validate_dns1123_label],
        help_text="Kubernetes namespace the tenant's workloads run in (a DNS-1123 label).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in one tenant."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ("tenant__name", "user__username")
        constraints = [
            models.UniqueConstraint(fields=("tenant", "user"), name="one_membership_per_user"),
            models.CheckConstraint(
                condition=models.Q(role__in=[choice.value for choice in Role]),
                name="membership_role_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"

    @property
    def rank(self) -> int:
        return ROLE_RANK[self.role]


class TenantQuota(models.Model):
    """Limits a platform admin sets for a tenant; rollouts and the gateway enforce them."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="quota")
    max_gpus = models.PositiveIntegerField(
        default=8, validators=[MaxValueValidator(QUOTA_MAX_GPUS)]
    )
    max_deployments = models.PositiveIntegerField(
        default=5, validators=[MaxValueValidator(QUOTA_MAX_DEPLOYMENTS)]
    )
    max_replicas_per_deployment = models.PositiveIntegerField(
        default=4, validators=[MinValueValidator(1), MaxValueValidator(QUOTA_MAX_REPLICAS)]
    )
    allowed_tiers = ArrayField(
        models.CharField(max_length=50),
        default=list,
        blank=True,
        validators=[validate_tier_slugs],
        help_text="Tier names the tenant may deploy to; empty means none.",
    )
    monthly_gpu_hour_budget = models.DecimalField(
        max_digits=10,
        decimal_places=1,
        default=Decimal("500.0"),
        validators=[MinValueValidator(Decimal("0"))],
    )
    requests_per_minute = models.PositiveIntegerField(
        default=600, validators=[MaxValueValidator(QUOTA_MAX_REQUESTS_PER_MINUTE)]
    )
    requests_burst = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=(
            "Most requests admitted at once, refilling at requests_per_minute/60 per second; "
            "empty: none, the whole minute's requests may arrive at once."
        ),
    )
    tokens_per_minute = models.PositiveIntegerField(
        default=200_000, validators=[MaxValueValidator(QUOTA_MAX_TOKENS_PER_MINUTE)]
    )
    require_max_tokens = models.BooleanField(
        default=False,
        help_text="The gateway refuses requests that do not set max_tokens.",
    )
    max_output_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(QUOTA_MAX_TOKENS_PER_MINUTE)],
        help_text="Ceiling on max_tokens per request (the gateway clamps to it); empty: none.",
    )
    max_request_bytes = models.PositiveIntegerField(
        default=1024 * 1024,
        validators=[
            MinValueValidator(GATEWAY_MAX_REQUEST_BYTES_FLOOR),
            MaxValueValidator(GATEWAY_MAX_REQUEST_BYTES_CEILING),
        ],
        help_text="Largest request body the gateway accepts.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "tenant quota"

    def __str__(self) -> str:
        return f"Quota of {self.tenant}"

    def clean(self) -> None:
        error = requests_burst_error(self.requests_burst, self.requests_per_minute)
        if error:
            raise ValidationError({"requests_burst": error})


def requests_burst_error(burst: int | None, limit: int | None, whose: str = "") -> str | None:
    """Why a burst does not fit its per-minute limit (None when it does). A burst only smooths
    traffic within the limit (which already admits at most N in any 60-second window), so one
    above the limit would promise what the window refuses."""
    if not burst:
        return None
    if not limit:
        return "needs a requests_per_minute limit to smooth (requests are unlimited)"
    if burst > limit:
        return f"cannot exceed {whose}requests_per_minute ({limit})"
    return None


class QuotaChange(models.Model):
    """One edit of a tenant's quota: which fields moved from what to what, by whom."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="quota_changes")
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(default=timezone.now)
    changes = models.JSONField(help_text="{field: [old, new]}")

    class Meta:
        ordering = ("-changed_at", "-id")

    def __str__(self) -> str:
        return f"Quota change of {self.tenant} at {self.changed_at:%Y-%m-%d %H:%M}"


class ApiTokenQuerySet(TenantScopedQuerySet):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True, expires_at__gt=timezone.now())


class ApiToken(TenantOwnedModel):
    """A REST API credential scoped to one tenant; only a hash of its secret is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expiry_recorded = models.BooleanField(
        default=False, help_text="Set once the expiry has been written to the audit log."
    )

    objects = ApiTokenQuerySet.as_manager()  # type: ignore[misc]  # a narrower scoped manager

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def status(self) -> str:
        if self.is_revoked:
            return "revoked"
        return "expired" if self.is_expired else "active"


class AuditEvent(models.Model):
    """Who did what to which object, when and through which channel."""

    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    # Kept apart from the FK so the trail still names the tenant after it is deleted.
    tenant_slug = models.CharField(max_length=50, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, help_text="Username, or the task's name.")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    action = models.CharField(max_length=64, help_text="e.g. membership.create")
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200)
    changes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=("tenant", "-created_at"))]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} {self.target_repr}"


class GatewayKeyQuerySet(TenantScopedQuerySet):
    def active(self) -> GatewayKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class GatewayKey(TenantOwnedModel):
    """An OpenAI-compatible gateway credential of one tenant; only a hash of it is stored.

    Limits are per key and must stay within the tenant's quota; empty means the tenant's.
    With no deployments listed the key reaches every deployment of the tenant.
    """

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    deployments = models.ManyToManyField(
        "deployments.Deployment", blank=True, related_name="gateway_keys"
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)]
    )
    requests_burst = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Most requests admitted at once; empty: none.",
    )
    tokens_per_minute = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)]
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = GatewayKeyQuerySet.as_manager()  # type: ignore[misc]  # a narrower scoped manager

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(
                fields=("tenant", "name"),
                condition=models.Q(revoked_at__isnull=True),
                name="gateway_key_active_name_unique",
                violation_error_message="an active key of this tenant already has this name",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def status(self) -> str:
        return "revoked" if self.is_revoked else "active"

"""REST representations of tenants, memberships, quotas, API tokens and audit events."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from tenants.choices import ApiTokenStatus, GatewayKeyStatus, Role
from tenants.models import ApiToken, AuditEvent, GatewayKey, Membership, Tenant, TenantQuota
from tenants.services import QUOTA_FIELDS


@extend_schema_serializer(many=False)  # GET /quota/ is a viewset "list" answering one object
class QuotaSerializer(serializers.ModelSerializer):
    class Meta:
        model = TenantQuota
        fields = (*QUOTA_FIELDS, "updated_at")
        read_only_fields = ("updated_at",)


class TenantSerializer(serializers.ModelSerializer):
    quota = QuotaSerializer(required=False)

    class Meta:
        model = Tenant
        fields = ("slug", "name", "namespace", "created_at", "quota")
        read_only_fields = ("created_at",)
        # Uniqueness is checked by the service (with the same messages) so a race gives 409.
        extra_kwargs: dict[str, Any] = {"slug": {"validators": []}, "namespace": {"validators": []}}


class TenantRenameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ("id", "username", "role", "created_at")
        read_only_fields = fields


class MembershipCreateSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.CharField(max_length=16)


class MembershipUpdateSerializer(serializers.Serializer):
    role = serializers.CharField(max_length=16)


class ApiTokenSerializer(serializers.ModelSerializer):
    """A token as listed (never its secret); a revoked one answers status `revoked` and its
    revoked_at until it is deleted by a platform admin."""

    username = serializers.CharField(source="user.username", read_only=True)
    status = serializers.ChoiceField(
        choices=ApiTokenStatus.choices,
        read_only=True,
        help_text="`revoked` once DELETEd (revoked_at is then set); `expired` after expires_at",
    )

    class Meta:
        model = ApiToken
        fields: tuple[str, ...] = (
            "id",
            "name",
            "prefix",
            "username",
            "role",
            "status",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        )
        read_only_fields: tuple[str, ...] = fields


class ApiTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.VIEWER)
    expires_in_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)


class IssuedApiTokenSerializer(ApiTokenSerializer):
    """The creation answer: the only response that ever carries the secret."""

    token = serializers.SerializerMethodField()

    class Meta(ApiTokenSerializer.Meta):
        fields: tuple[str, ...] = (*ApiTokenSerializer.Meta.fields, "token")
        read_only_fields: tuple[str, ...] = fields

    def get_token(self, obj: Any) -> str:
        return str(self.context["plaintext"])


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = (
            "id",
            "created_at",
            "actor_name",
            "channel",
            "action",
            "target_type",
            "target_id",
            "target_repr",
            "changes",
        )
        read_only_fields = fields


class TenantRoleSerializer(serializers.Serializer):
    tenant = serializers.CharField(help_text="the tenant's slug")
    role = serializers.ChoiceField(choices=Role.choices)


@extend_schema_serializer(many=False)
class MeSerializer(serializers.Serializer):
    """Who the caller is (the answer of GET /me/; documents the view's dict)."""

    username = serializers.CharField()
    is_platform_admin = serializers.BooleanField()
    token = TenantRoleSerializer(
        allow_null=True, help_text="the API token in use; null for a signed-in session"
    )
    memberships = TenantRoleSerializer(many=True)


class GatewayKeySerializer(serializers.ModelSerializer):
    """A gateway key as listed: never its secret; a revoked one answers status `revoked`."""

    status = serializers.ChoiceField(
        choices=GatewayKeyStatus.choices,
        read_only=True,
        help_text="`revoked` once DELETEd (revoked_at is then set); gateways refuse it",
    )
    deployments = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)

    class Meta:
        model = GatewayKey
        fields: tuple[str, ...] = (
            "id",
            "name",
            "prefix",
            "deployments",
            "requests_per_minute",
            "requests_burst",
            "tokens_per_minute",
            "status",
            "created_by",
            "created_at",
            "revoked_at",
        )
        read_only_fields: tuple[str, ...] = fields

    def get_deployments(self, obj: GatewayKey) -> list[str]:
        """Deployment names the key may call; empty means all of the tenant's."""
        return sorted(d.name for d in obj.deployments.all())


class GatewayKeyWriteSerializer(serializers.Serializer):
    """Fields a tenant owner sets; limits empty (null) mean the tenant's."""

    name = serializers.CharField(max_length=100)
    deployments = serializers.ListField(
        child=serializers.CharField(max_length=63), required=False, default=list
    )
    requests_per_minute = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    requests_burst = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        help_text="Most requests admitted at once, at most the per-minute limit; null: none",
    )
    tokens_per_minute = serializers.IntegerField(min_value=1, required=False, allow_null=True)


class IssuedGatewayKeySerializer(GatewayKeySerializer):
    """The creation answer: the only response that ever carries the key."""

    key = serializers.SerializerMethodField()

    class Meta(GatewayKeySerializer.Meta):
        fields: tuple[str, ...] = (*GatewayKeySerializer.Meta.fields, "key")
        read_only_fields: tuple[str, ...] = fields

    def get_key(self, obj: Any) -> str:
        return str(self.context["plaintext"])

"""REST representations of tenants, memberships, quotas, API tokens and audit events."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from tenants.choices import Role
from tenants.models import ApiToken, AuditEvent, Membership, Tenant, TenantQuota
from tenants.services import QUOTA_FIELDS


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
    username = serializers.CharField(source="user.username", read_only=True)
    status = serializers.CharField(read_only=True)

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
    role = serializers.CharField(max_length=16, default=Role.VIEWER)
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

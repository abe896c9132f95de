"""REST representations of registered models, revisions, fit results and Hub credentials."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from models_registry import services
from models_registry.constants import QUANTIZE_CHOICES
from models_registry.models import (
    HubCredential,
    ModelRevision,
    RegisteredModel,
    RemoteCodeApproval,
)


@extend_schema_serializer(component_name="ModelRevision")
class RevisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelRevision
        fields = (
            "commit_sha",
            "requested_revision",
            "pipeline_tag",
            "library_name",
            "architectures",
            "model_type",
            "license",
            "license_family",
            "gated",
            "private",
            "parameters_by_dtype",
            "total_parameters",
            "weights_bytes",
            "context_length",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "hidden_size",
            "torch_dtype",
            "quantization_method",
            "quantization_bits",
            "requires_custom_code",
            "custom_code_reason",
            "has_chat_template",
            "created_at",
        )
        read_only_fields = fields


class RemoteCodeApprovalSerializer(serializers.ModelSerializer):
    """Who approved the remote code of which commit, and when."""

    commit_sha = serializers.CharField(source="revision.commit_sha", read_only=True)
    approved_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = RemoteCodeApproval
        fields = ("commit_sha", "approved_by", "approved_at")
        read_only_fields = fields


class RegisteredModelSerializer(serializers.ModelSerializer):
    current = RevisionSerializer(source="current_revision", read_only=True)
    blockers = serializers.SerializerMethodField()
    license_acknowledged_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    # The approval of the CURRENT commit only: null after an update to a commit not reviewed.
    remote_code_approval = RemoteCodeApprovalSerializer(
        source="current_revision.remote_code_approval", read_only=True, allow_null=True
    )

    class Meta:
        model = RegisteredModel
        fields = (
            "id",
            "repo_id",
            "requested_revision",
            "current",
            "access_status",
            "access_checked_at",
            "license_acknowledged_by",
            "license_acknowledged_at",
            "remote_code_approval",
            "blockers",
            "created_at",
        )
        read_only_fields = fields

    def get_blockers(self, model: RegisteredModel) -> list[str]:
        return services.deployment_blockers(model)


class RegisterSerializer(serializers.Serializer):
    repo_id = serializers.CharField(max_length=200)
    revision = serializers.CharField(max_length=200, required=False, default="main")


class UpdateSerializer(serializers.Serializer):
    revision = serializers.CharField(max_length=200, required=False)
    expected_sha = serializers.RegexField(
        r"^[0-9a-f]{40}$", help_text="commit shown by the preview"
    )


class LookupQuerySerializer(serializers.Serializer):
    repo_id = serializers.CharField(max_length=200)
    revision = serializers.CharField(max_length=200, required=False, default="main")


class FitQuerySerializer(serializers.Serializer):
    quantize = serializers.ChoiceField(choices=QUANTIZE_CHOICES, required=False, allow_blank=True)
    dtype = serializers.ChoiceField(
        choices=["float16", "bfloat16"], required=False, allow_blank=True
    )
    kv_cache_dtype = serializers.ChoiceField(
        choices=["fp8_e4m3fn", "fp8_e5m2"], required=False, allow_blank=True
    )
    max_total_tokens = serializers.IntegerField(min_value=2, max_value=1_048_576, default=4096)
    concurrent_sequences = serializers.IntegerField(min_value=1, max_value=4096, default=8)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {
            key: (value or None) if key in ("quantize", "dtype", "kv_cache_dtype") else value
            for key, value in attrs.items()
        }


class HubCredentialSerializer(serializers.ModelSerializer):
    set_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = HubCredential
        fields = (
            "fingerprint",
            "hub_username",
            "token_name",
            "token_role",
            "status",
            "validated_at",
            "set_by",
            "set_at",
            "secret_name",
        )
        read_only_fields = fields


class HubTokenInputSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=200, trim_whitespace=True, write_only=True)


# --- answers built as dicts by the views, described for the OpenAPI schema ---------------------


class ModelFactsSerializer(serializers.Serializer):
    """What the Hub says about one commit of a repository (see api.facts_summary)."""

    repo_id = serializers.CharField()
    commit_sha = serializers.CharField()
    pipeline_tag = serializers.CharField()
    architectures = serializers.ListField(child=serializers.CharField())
    model_type = serializers.CharField()
    license = serializers.CharField()
    license_family = serializers.CharField()
    gated = serializers.CharField()
    parameters_by_dtype = serializers.DictField(child=serializers.IntegerField())
    total_parameters = serializers.IntegerField()
    context_length = serializers.IntegerField(allow_null=True)
    quantization_method = serializers.CharField()
    requires_custom_code = serializers.BooleanField()
    custom_code_reason = serializers.CharField()
    has_chat_template = serializers.BooleanField(
        help_text="False for a base model: chat requests are refused, completions work"
    )


class ModelChangesSerializer(serializers.Serializer):
    commit = serializers.ListField(
        child=serializers.CharField(allow_null=True), help_text="[current, target]"
    )
    files_added = serializers.ListField(child=serializers.CharField())
    files_removed = serializers.ListField(child=serializers.CharField())
    files_changed = serializers.ListField(child=serializers.CharField())
    config_changed = serializers.DictField(
        child=serializers.ListField(child=serializers.JSONField()), help_text="key: [old, new]"
    )
    license = serializers.ListField(
        child=serializers.CharField(allow_null=True),
        allow_null=True,
        help_text="[old, new] when the licence changes, else null",
    )
    chat_template = serializers.ListField(
        child=serializers.BooleanField(),
        allow_null=True,
        help_text="[old, new] when the commit gains or loses its chat template, else null",
    )


class UpdatePreviewSerializer(serializers.Serializer):
    is_newer = serializers.BooleanField()
    changes = ModelChangesSerializer()
    target = ModelFactsSerializer()


class TierFitSerializer(serializers.Serializer):
    tier = serializers.CharField()
    tier_name = serializers.CharField()
    gpu_memory_gb = serializers.FloatField()
    gpus_per_replica = serializers.IntegerField()
    fits = serializers.BooleanField()
    reason = serializers.CharField()
    max_concurrent_sequences = serializers.IntegerField()
    headroom_gb = serializers.FloatField()
    weights_gb = serializers.FloatField(allow_null=True)
    weights_per_gpu_gb = serializers.FloatField(allow_null=True)
    kv_cache_per_token_kib = serializers.FloatField(allow_null=True)
    kv_cache_per_gpu_gb = serializers.FloatField(allow_null=True)
    required_per_gpu_gb = serializers.FloatField(allow_null=True)
    explanation = serializers.ListField(child=serializers.CharField())


class FitResultSerializer(serializers.Serializer):
    tiers = TierFitSerializer(many=True)
    recommended_tier = serializers.CharField(allow_null=True)


@extend_schema_serializer(many=False)
class HubLookupResultSerializer(serializers.Serializer):
    registrable = serializers.BooleanField()
    refusal = serializers.CharField(allow_null=True)
    warnings = serializers.ListField(child=serializers.CharField())
    model = ModelFactsSerializer(allow_null=True)


class HubTokenStatusSerializer(serializers.Serializer):
    token = HubCredentialSerializer(allow_null=True, help_text="null when no token is set")


def fit_result(rows: list[Any], best: Any) -> dict[str, Any]:
    def row_data(row: Any) -> dict[str, Any]:
        estimate = row.estimate
        return {
            "tier": row.tier.slug,
            "tier_name": row.tier.name,
            "gpu_memory_gb": float(row.tier.gpu_memory_gb),
            "gpus_per_replica": row.tier.gpus_per_replica,
            "fits": row.fits,
            "reason": row.reason,
            "max_concurrent_sequences": row.max_concurrent_sequences,
            "headroom_gb": round(row.headroom_bytes / 1e9, 2),
            "weights_gb": round(estimate.weights_bytes_total / 1e9, 2) if estimate else None,
            "weights_per_gpu_gb": round(estimate.weights_bytes_per_gpu / 1e9, 2)
            if estimate
            else None,
            "kv_cache_per_token_kib": estimate.kv_bytes_per_token_total / 1024
            if estimate
            else None,
            "kv_cache_per_gpu_gb": round(estimate.kv_bytes_per_gpu / 1e9, 2) if estimate else None,
            "required_per_gpu_gb": round(estimate.required_bytes_per_gpu / 1e9, 2)
            if estimate
            else None,
            "explanation": estimate.explanation if estimate else [],
        }

    return {
        "tiers": [row_data(row) for row in rows],
        "recommended_tier": best.tier.slug if best else None,
    }

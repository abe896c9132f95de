"""REST representations of tiers, node pools, deployments, revisions and rollouts.

Input serializers only shape and type-check; every rule of the domain (names, token limits,
quotas, capacity) is decided by deployments.services, whose DomainErrors name the field.
endpoint() is shared with the web UI; so are the reads in deployments.reads.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from deployments.admission import ServingRequest
from deployments.capacity import PoolCapacity
from deployments.choices import RolloutState
from deployments.models import Deployment, DeploymentRevision, Rollout, RolloutEvent, Tier
from deployments.reads import rollout_progress
from deployments.rendering.meta import service_host
from deployments.services import Promotion
from deployments.serving_fields import (
    PROMOTION_SCHEMA,
    SERVING_FIELDS,
    SERVING_SCHEMA,
    ServingField,
)
from models_registry.models import RegisteredModel
from portal.fields import SlugRelatedField

# --- read: tiers and node pools ------------------------------------------------------------


class TierSerializer(serializers.ModelSerializer):
    engine_images = serializers.DictField(
        child=serializers.CharField(),
        read_only=True,
        help_text="The engines this tier offers, each with the image it runs.",
    )
    node_selector = serializers.DictField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Node labels the tier's GPU nodes carry; its pods' nodeSelector.",
    )
    gpu_memory_gb = serializers.FloatField(read_only=True)
    price_per_gpu_hour = serializers.DecimalField(max_digits=8, decimal_places=4, read_only=True)

    class Meta:
        model = Tier
        fields = (
            "slug",
            "name",
            "description",
            "node_selector",
            "gpu_product",
            "gpu_memory_gb",
            "gpus_per_replica",
            "cpu_request",
            "memory_request",
            "default_max_total_tokens",
            "max_total_tokens_limit",
            "price_per_gpu_hour",
            "engine_images",
        )
        read_only_fields = fields


class NodePoolSerializer(serializers.Serializer):
    """GPU capacity of one node pool (documents node_pool_data)."""

    pool = serializers.CharField(
        help_text="The pool as the cloud or autoscaler labels its nodes "
        "(cloud.google.com/gke-nodepool, eks.amazonaws.com/nodegroup, karpenter.sh/nodepool, "
        "kubernetes.azure.com/agentpool), else the instance type."
    )
    gpu_product = serializers.CharField()
    nodes = serializers.IntegerField()
    allocatable_gpus = serializers.IntegerField()
    requested_gpus = serializers.IntegerField()
    free_gpus = serializers.IntegerField()
    free_gpus_per_node = serializers.DictField(
        child=serializers.IntegerField(), help_text="node name: free GPUs"
    )


@extend_schema_serializer(many=False)
class NodePoolsSerializer(serializers.Serializer):
    pools = NodePoolSerializer(many=True)


def node_pool_data(pool: PoolCapacity) -> dict[str, Any]:
    return {
        "pool": pool.pool,
        "gpu_product": pool.gpu_product,
        "nodes": pool.nodes,
        "allocatable_gpus": pool.allocatable,
        "requested_gpus": pool.requested,
        "free_gpus": pool.free,
        "free_gpus_per_node": pool.free_per_node,
    }


# --- read: deployments, revisions, rollouts ------------------------------------------------


@extend_schema_serializer(component_name="DeploymentRevision")
class RevisionSerializer(serializers.ModelSerializer):
    tier: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    model = serializers.CharField(source="model_revision.model.repo_id", read_only=True)
    model_commit = serializers.CharField(source="model_revision.commit_sha", read_only=True)
    gpus = serializers.IntegerField(read_only=True)
    image = serializers.CharField(
        read_only=True, help_text="The engine's container image, fixed when the revision was made."
    )
    pod_annotations = serializers.DictField(
        child=serializers.CharField(), read_only=True, help_text="annotation key: value"
    )
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = DeploymentRevision
        fields = (
            "number",
            "model",
            "model_commit",
            "tier",
            *SERVING_FIELDS,
            "image",
            "pod_annotations",
            "gpus",
            "created_by",
            "created_at",
        )
        read_only_fields = fields


class RolloutEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name", read_only=True)

    class Meta:
        model = RolloutEvent
        fields = ("at", "actor", "state", "message", "level", "k8s_objects")
        read_only_fields = fields


def endpoint(deployment: Deployment) -> str:
    """The cluster-internal address of the active side."""
    return service_host(deployment.name, deployment.tenant.namespace)


class ProgressSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="the current step's position in the steps")
    total = serializers.IntegerField()
    percent = serializers.IntegerField()


class RolloutSerializer(serializers.ModelSerializer):
    revision = serializers.IntegerField(source="revision.number", read_only=True)
    previous_revision = serializers.IntegerField(
        source="previous_revision.number", read_only=True, default=None, allow_null=True
    )
    requested_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    is_active = serializers.BooleanField(read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Rollout
        fields: tuple[str, ...] = (
            "id",
            "revision",
            "previous_revision",
            "colour",
            "previous_colour",
            "state",
            "is_active",
            "traffic_switched",
            "promotion_mode",
            "promote_after_seconds",
            "scale_down_delay_seconds",
            "progress_deadline_seconds",
            "progress",
            "ready_replicas",
            "old_ready_replicas",
            "weights_progress",
            "failure_reason",
            "remedy",
            "idempotency_key",
            "requested_by",
            "started_at",
            "state_entered_at",
            "finished_at",
        )
        read_only_fields: tuple[str, ...] = fields

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, rollout: Rollout) -> dict[str, Any]:
        return rollout_progress(rollout).as_dict()


class RolloutDetailSerializer(RolloutSerializer):
    events = RolloutEventSerializer(many=True, read_only=True)
    ready = serializers.SerializerMethodField()

    class Meta(RolloutSerializer.Meta):
        fields = (*RolloutSerializer.Meta.fields, "ready", "events")
        read_only_fields = fields

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField()))
    def get_ready(self, rollout: Rollout) -> dict[str, Any]:
        """Ready replicas of each colour, keyed by colour."""
        ready: dict[str, Any] = {rollout.colour: rollout.ready_replicas}
        if rollout.previous_colour:
            ready[rollout.previous_colour] = rollout.old_ready_replicas
        return ready


class CurrentRolloutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    revision = serializers.IntegerField()
    colour = serializers.CharField()
    state = serializers.ChoiceField(choices=RolloutState.choices)
    is_active = serializers.BooleanField()


class DeploymentSerializer(serializers.ModelSerializer):
    tier: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    model = serializers.IntegerField(source="model_id", read_only=True)
    model_repo_id = serializers.CharField(source="model.repo_id", read_only=True)
    active_revision = RevisionSerializer(read_only=True)
    current_rollout = serializers.SerializerMethodField()
    endpoint = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = (
            "id",
            "name",
            "model",
            "model_repo_id",
            "tier",
            "active_colour",
            "active_revision",
            "current_rollout",
            "endpoint",
            "deleting",
            "deletion_step",
            "created_at",
        )
        read_only_fields = fields

    @extend_schema_field(CurrentRolloutSerializer(allow_null=True))
    def get_current_rollout(self, deployment: Deployment) -> dict[str, Any] | None:
        rollouts = self.context.get("latest_rollouts")
        if rollouts is not None:
            rollout = rollouts.get(deployment.pk)
        else:
            rollout = deployment.rollouts.select_related("revision").first()
        if rollout is None:
            return None
        return {
            "id": rollout.pk,
            "revision": rollout.revision.number,
            "colour": rollout.colour,
            "state": rollout.state,
            "is_active": rollout.is_active,
        }

    def get_endpoint(self, deployment: Deployment) -> str:
        return endpoint(deployment)


# --- write ---------------------------------------------------------------------------------


class PromotionSerializer(serializers.Serializer):
    """How the rollout goes live; its fields are the promotion schema's."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {f.name: api_field(f) for f in PROMOTION_SCHEMA}

    @staticmethod
    def build(data: dict[str, Any] | None) -> Promotion:
        return Promotion(**(data or {}))


def api_field(field: ServingField) -> serializers.Field:
    """The API's field for a serving field: optional ones accept null and stay unset."""
    presence: dict[str, Any] = (
        {"required": False, "allow_null": True} if field.optional else {"default": field.default}
    )
    if field.help_text:
        presence["help_text"] = field.help_text
    if field.kind == "choice":
        assert field.choices is not None
        return serializers.ChoiceField(
            choices=list(field.choices()), allow_blank=field.allows_blank, **presence
        )
    if field.kind == "boolean":
        return serializers.BooleanField(**presence)
    if field.min_value is not None:
        presence["min_value"] = field.min_value
    if field.max_value is not None:
        presence["max_value"] = field.max_value
    return serializers.IntegerField(**presence)


class ServingSerializer(serializers.Serializer):
    """The serving fields of a revision; the tenant's models only (context['tenant'])."""

    model = serializers.PrimaryKeyRelatedField(queryset=RegisteredModel.objects.none())
    tier: serializers.SlugRelatedField[Any] = SlugRelatedField(
        slug_field="slug", queryset=Tier.objects.all()
    )
    pod_annotations = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        allow_null=True,
        default=dict,
        help_text="annotation key: value, added to the serving pods; null or {} means none "
        "(on PATCH: removes the previous revision's)",
    )
    promotion = PromotionSerializer(required=False)

    def get_fields(self) -> dict[str, serializers.Field]:
        """The declared fields with the serving schema's after the model and the tier."""
        declared = super().get_fields()
        head = {name: declared.pop(name) for name in ("model", "tier")}
        return {**head, **{f.name: api_field(f) for f in SERVING_SCHEMA}, **declared}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tenant = self.context.get("tenant")  # absent only while the OpenAPI schema is built
        if tenant is not None:
            self.fields["model"].queryset = RegisteredModel.objects.for_tenant(  # type: ignore[attr-defined]
                tenant
            ).select_related("current_revision")

    def values(self) -> dict[str, Any]:
        return dict(self.validated_data)

    def serving_request(self) -> ServingRequest:
        return serving_request(self.values())


class DeploymentCreateSerializer(ServingSerializer):
    name = serializers.CharField(max_length=100)


class DeploymentChangeSerializer(ServingSerializer):
    """PATCH: every field optional, the rest taken from the latest revision."""

    def __init__(self, *args: Any, base: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.base = base
        for field in self.fields.values():
            field.required = False
            if not isinstance(field, serializers.Serializer):
                field.default = serializers.empty

    def values(self) -> dict[str, Any]:
        return {**self.base, **self.validated_data}


def serving_request(data: dict[str, Any]) -> ServingRequest:
    """A ServingRequest from validated values; unset (None) fields keep TGI's defaults."""
    serving = {k: data[k] for k in SERVING_FIELDS if data.get(k) is not None}
    return ServingRequest(model=data["model"], tier=data["tier"], **serving)


def revision_base(deployment: Deployment) -> dict[str, Any]:
    """What a PATCH starts from: the newest revision's values (or the deployment's model/tier)."""
    base: dict[str, Any] = {"model": deployment.model, "tier": deployment.tier}
    latest = deployment.revisions.first()
    if latest is not None:
        base.update({name: getattr(latest, name) for name in SERVING_FIELDS})
        base["tier"] = latest.tier
        base["pod_annotations"] = dict(latest.pod_annotations)
    return base


class DeploymentCreatedSerializer(serializers.Serializer):
    """The answer of POST /deployments/: the deployment and its first rollout."""

    deployment = DeploymentSerializer()
    rollout = RolloutSerializer()
    warnings = serializers.ListField(child=serializers.CharField())


class DeploymentChangedSerializer(serializers.Serializer):
    """The answer of PATCH /deployments/<id>/: the new revision and its rollout."""

    revision = RevisionSerializer()
    rollout = RolloutSerializer()
    warnings = serializers.ListField(child=serializers.CharField())


class DeployRevisionSerializer(serializers.Serializer):
    revision = serializers.IntegerField(min_value=1)
    promotion = PromotionSerializer(required=False)

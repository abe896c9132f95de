"""REST API of deployments: tiers, node pools, deployments, revisions and rollouts.

Viewsets type-check input, check the role (TenantScopedViewSet) and call deployments.services;
refusals are DomainErrors that portal.api.error_handler turns into the standard error body.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from deployments import services
from deployments.capacity import pool_capacity
from deployments.models import Deployment, DeploymentRevision, Rollout, Tier
from deployments.reads import latest_rollouts
from deployments.serializers import (
    DeploymentChangedSerializer,
    DeploymentChangeSerializer,
    DeploymentCreatedSerializer,
    DeploymentCreateSerializer,
    DeploymentSerializer,
    DeployRevisionSerializer,
    NodePoolsSerializer,
    PromotionSerializer,
    RevisionSerializer,
    RolloutDetailSerializer,
    RolloutSerializer,
    TierSerializer,
    node_pool_data,
    revision_base,
    serving_request,
)
from portal.api import ApiContract
from portal.errors import DomainError
from portal.schema import errors
from tenants.api import api_actor
from tenants.scoping import TenantScopedViewSet

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 100


def idempotency_key(request: Request) -> str:
    key = (request.headers.get(IDEMPOTENCY_HEADER) or "").strip()
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise DomainError(
            f"must be at most {MAX_IDEMPOTENCY_KEY} characters", field="idempotency_key"
        )
    return key


IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    str,
    OpenApiParameter.HEADER,
    description="repeat a request safely: the same key answers the rollout it created "
    f"(at most {MAX_IDEMPOTENCY_KEY} characters)",
)
STEER = extend_schema(request=None, responses={202: RolloutDetailSerializer})


class TierViewSet(ApiContract, viewsets.GenericViewSet):
    """The GPU tiers on offer (any signed-in user; platform admins edit them in the admin)."""

    queryset = Tier.objects.filter(is_active=True)
    serializer_class = TierSerializer

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(TierSerializer(page, many=True).data)


class NodePoolViewSet(ApiContract, viewsets.ViewSet):
    """Live GPU capacity per node pool; 503 (cluster_unavailable) when the cluster is not."""

    @extend_schema(responses={200: NodePoolsSerializer, **errors(503)})
    def list(self, request: Request) -> Response:
        pools = pool_capacity().pools()
        return Response({"pools": [node_pool_data(pools[name]) for name in sorted(pools)]})


@extend_schema_view(
    create=extend_schema(
        request=DeploymentCreateSerializer,
        responses={201: DeploymentCreatedSerializer, **errors(503)},
    ),
    partial_update=extend_schema(
        request=DeploymentChangeSerializer(base={}),
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            201: DeploymentChangedSerializer,
            200: DeploymentChangedSerializer,
            **errors(503),
        },
    ),
    destroy=extend_schema(responses={202: DeploymentSerializer}),
)
class DeploymentViewSet(TenantScopedViewSet):
    """Deployments of a tenant: viewers read; maintainers create, change, delete, steer rollouts."""

    queryset = Deployment.objects.select_related(
        "tenant",
        "model",
        "tier",
        "active_revision__tier",
        "active_revision__model_revision__model",
        "active_revision__created_by",
    )
    serializer_class = DeploymentSerializer
    action_operations = {
        "create": "deployment.create",
        "partial_update": "deployment.change",
        "destroy": "deployment.delete",
        "promote": "rollout.promote",
        "abort": "rollout.abort",
        "rollback": "rollout.rollback",
    }

    def list(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        context = {"latest_rollouts": latest_rollouts(page or [])}
        data = DeploymentSerializer(page, many=True, context=context).data
        return self.get_paginated_response(data)

    def retrieve(self, request: Request, tenant_slug: str, pk: str) -> Response:
        return Response(DeploymentSerializer(self.get_object()).data)

    def create(self, request: Request, tenant_slug: str) -> Response:
        serializer = DeploymentCreateSerializer(data=request.data, context={"tenant": self.tenant})
        serializer.is_valid(raise_exception=True)
        data = serializer.values()
        deployment, rollout, warnings = services.create_deployment(
            api_actor(request),
            self.tenant,
            name=data["name"],
            request=serializer.serving_request(),
            promotion=PromotionSerializer.build(data.get("promotion")),
            pod_annotations=data.get("pod_annotations"),
        )
        deployment = self.get_queryset().get(pk=deployment.pk)
        return Response(
            {
                "deployment": DeploymentSerializer(deployment).data,
                "rollout": RolloutSerializer(rollout).data,
                "warnings": warnings,
            },
            status=status.HTTP_201_CREATED,
        )

    def partial_update(self, request: Request, tenant_slug: str, pk: str) -> Response:
        """A changed spec is a new revision and a rollout (Idempotency-Key honoured)."""
        deployment = self.get_object()
        key = idempotency_key(request)
        replay = bool(key) and deployment.rollouts.filter(idempotency_key=key).exists()
        serializer = DeploymentChangeSerializer(
            data=request.data, context={"tenant": self.tenant}, base=revision_base(deployment)
        )
        serializer.is_valid(raise_exception=True)
        data = serializer.values()
        revision, rollout, warnings = services.change_deployment(
            api_actor(request),
            deployment,
            serving_request(data),
            promotion=PromotionSerializer.build(data.get("promotion")),
            pod_annotations=data.get("pod_annotations"),
            idempotency_key=key,
        )
        return Response(
            {
                "revision": RevisionSerializer(revision).data,
                "rollout": RolloutSerializer(rollout).data,
                "warnings": warnings,
            },
            status=status.HTTP_200_OK if replay else status.HTTP_201_CREATED,
        )

    def destroy(self, request: Request, tenant_slug: str, pk: str) -> Response:
        """Accepted: the deployment stops serving now and goes once a worker removed its
        Kubernetes objects (``deleting`` and ``deletion_step`` show where that is)."""
        deployment = services.delete_deployment(api_actor(request), self.get_object())
        deployment = self.get_queryset().get(pk=deployment.pk)
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_202_ACCEPTED)

    def _steer(self, request: Request, operation: Any) -> Response:
        rollout = operation(api_actor(request), self.get_object())
        rollout = Rollout.objects.select_related("revision", "previous_revision").get(pk=rollout.pk)
        return Response(RolloutDetailSerializer(rollout).data, status=status.HTTP_202_ACCEPTED)

    @STEER
    def promote(self, request: Request, tenant_slug: str, pk: str) -> Response:
        return self._steer(request, services.promote)

    @STEER
    def abort(self, request: Request, tenant_slug: str, pk: str) -> Response:
        return self._steer(request, services.abort)

    @STEER
    def rollback(self, request: Request, tenant_slug: str, pk: str) -> Response:
        return self._steer(request, services.rollback)


class DeploymentChildViewSet(TenantScopedViewSet):
    """Base of the viewsets under /deployments/<deployment_pk>/: the deployment is scoped first."""

    queryset = Deployment.objects.all()
    _deployment: Deployment | None = None

    @property
    def deployment(self) -> Deployment:
        if self._deployment is None:
            deployments = super().get_queryset().select_related("tenant")
            self._deployment = get_object_or_404(deployments, pk=self.kwargs["deployment_pk"])
        return self._deployment


class RevisionViewSet(DeploymentChildViewSet):
    """The immutable revisions of a deployment, newest first."""

    serializer_class = RevisionSerializer

    def get_queryset(self) -> QuerySet[DeploymentRevision]:
        return self.deployment.revisions.select_related(
            "tier", "model_revision__model", "created_by"
        ).order_by("-number")

    def list(self, request: Request, tenant_slug: str, deployment_pk: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(RevisionSerializer(page, many=True).data)


@extend_schema_view(
    retrieve=extend_schema(responses=RolloutDetailSerializer),
    create=extend_schema(
        request=DeployRevisionSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            201: RolloutDetailSerializer,
            200: RolloutDetailSerializer,
            **errors(503),
        },
    ),
)
class RolloutViewSet(DeploymentChildViewSet):
    """Rollouts of a deployment; POST deploys an existing revision (Idempotency-Key honoured)."""

    serializer_class = RolloutSerializer
    action_operations = {"create": "rollout.start"}

    def get_queryset(self) -> QuerySet[Rollout]:
        return self.deployment.rollouts.select_related(
            "revision", "previous_revision", "requested_by"
        )

    def list(self, request: Request, tenant_slug: str, deployment_pk: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(RolloutSerializer(page, many=True).data)

    def retrieve(self, request: Request, tenant_slug: str, deployment_pk: str, pk: str) -> Response:
        rollout = get_object_or_404(self.get_queryset(), pk=pk)
        return Response(RolloutDetailSerializer(rollout).data)

    def create(self, request: Request, tenant_slug: str, deployment_pk: str) -> Response:
        serializer = DeployRevisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        rollout, created = services.deploy_revision(
            api_actor(request),
            self.deployment,
            data["revision"],
            promotion=PromotionSerializer.build(data.get("promotion")),
            idempotency_key=idempotency_key(request),
        )
        rollout = self.get_queryset().get(pk=rollout.pk)
        return Response(
            RolloutDetailSerializer(rollout).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

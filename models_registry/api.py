"""REST API of the model registry; viewsets validate, check roles and call services."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from models_registry import fit, services
from models_registry.metadata import ModelFacts
from models_registry.models import HubCredential, RegisteredModel
from models_registry.serializers import (
    FitQuerySerializer,
    FitResultSerializer,
    HubCredentialSerializer,
    HubLookupResultSerializer,
    HubTokenInputSerializer,
    HubTokenStatusSerializer,
    LookupQuerySerializer,
    RegisteredModelSerializer,
    RegisterSerializer,
    UpdatePreviewSerializer,
    UpdateSerializer,
    fit_result,
)
from portal.schema import errors
from tenants.api import api_actor
from tenants.scoping import TenantScopedViewSet


def facts_summary(facts: ModelFacts) -> dict[str, Any]:
    return {
        "repo_id": facts.repo_id,
        "commit_sha": facts.commit_sha,
        "pipeline_tag": facts.pipeline_tag,
        "architectures": facts.architectures,
        "model_type": facts.model_type,
        "license": facts.license,
        "license_family": facts.license_family,
        "gated": facts.gated,
        "parameters_by_dtype": facts.parameters_by_dtype,
        "total_parameters": facts.total_parameters,
        "context_length": facts.context_length,
        "quantization_method": facts.quantization_method,
        "requires_custom_code": facts.requires_custom_code,
        "custom_code_reason": facts.custom_code_reason,
        "has_chat_template": facts.has_chat_template,
    }


@extend_schema_view(
    create=extend_schema(
        request=RegisterSerializer, responses={201: RegisteredModelSerializer, **errors(503)}
    ),
    destroy=extend_schema(responses={204: None, **errors(503)}),
)
class RegisteredModelViewSet(TenantScopedViewSet):
    """Models of the tenant: maintainers register, update and delete; owners acknowledge
    licences; platform admins approve remote code."""

    queryset = RegisteredModel.objects.select_related(
        "current_revision__remote_code_approval__approved_by", "license_acknowledged_by"
    )
    serializer_class = RegisteredModelSerializer
    action_operations = {
        "create": "model.register",
        "apply_update": "model.update",
        "destroy": "model.delete",
        "acknowledge_license": "model.acknowledge_license",
        "approve_remote_code": "model.approve_remote_code",
    }

    def get_queryset(self) -> QuerySet[RegisteredModel]:
        return super().get_queryset()

    def list(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(RegisteredModelSerializer(page, many=True).data)

    def retrieve(self, request: Request, tenant_slug: str, pk: str) -> Response:
        return Response(RegisteredModelSerializer(self.get_object()).data)

    def create(self, request: Request, tenant_slug: str) -> Response:
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model = services.register_model(
            api_actor(request), self.tenant, **serializer.validated_data
        )
        return Response(RegisteredModelSerializer(model).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, tenant_slug: str, pk: str) -> Response:
        services.delete_model(api_actor(request), self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[
            OpenApiParameter("revision", str, description="branch, tag or commit (default: main)")
        ],
        responses={200: UpdatePreviewSerializer, **errors(400, 503)},
    )
    def update_preview(self, request: Request, tenant_slug: str, pk: str) -> Response:
        model = self.get_object()
        preview = services.preview_update(model, request.query_params.get("revision"))
        return Response(
            {
                "is_newer": preview.is_newer,
                "changes": preview.changes,
                "target": facts_summary(preview.facts),
            }
        )

    @extend_schema(
        request=UpdateSerializer, responses={200: RegisteredModelSerializer, **errors(503)}
    )
    def apply_update(self, request: Request, tenant_slug: str, pk: str) -> Response:
        model = self.get_object()
        serializer = UpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.apply_update(
            api_actor(request),
            model,
            revision=serializer.validated_data.get("revision"),
            expected_sha=serializer.validated_data["expected_sha"],
        )
        model.refresh_from_db()
        return Response(RegisteredModelSerializer(model).data)

    @extend_schema(parameters=[FitQuerySerializer], responses=FitResultSerializer)
    def fit(self, request: Request, tenant_slug: str, pk: str) -> Response:
        model = self.get_object()
        query = FitQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows, best = services.fit_check(
            model.current_revision, fit.ServingChoice(**query.validated_data)
        )
        return Response(fit_result(rows, best))

    @extend_schema(request=None, responses=RegisteredModelSerializer)
    def acknowledge_license(self, request: Request, tenant_slug: str, pk: str) -> Response:
        model = services.acknowledge_license(api_actor(request), self.get_object())
        return Response(RegisteredModelSerializer(model).data)

    @extend_schema(request=None, responses=RegisteredModelSerializer)
    def approve_remote_code(self, request: Request, tenant_slug: str, pk: str) -> Response:
        model = services.approve_remote_code(api_actor(request), self.get_object())
        return Response(RegisteredModelSerializer(model).data)


@extend_schema_view(
    list=extend_schema(
        parameters=[LookupQuerySerializer],
        responses={200: HubLookupResultSerializer, **errors(503)},
    )
)
class HubLookupViewSet(TenantScopedViewSet):
    """Preview what registering a repository would record, without saving anything."""

    def list(self, request: Request, tenant_slug: str) -> Response:
        query = LookupQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        result = services.lookup(self.tenant, **query.validated_data)
        return Response(
            {
                "registrable": result.facts is not None,
                "refusal": result.refusal or None,
                "warnings": result.warnings,
                "model": facts_summary(result.facts) if result.facts else None,
            }
        )


@extend_schema_view(
    retrieve=extend_schema(responses=HubTokenStatusSerializer),
    update=extend_schema(
        request=HubTokenInputSerializer, responses={200: HubTokenStatusSerializer, **errors(503)}
    ),
    destroy=extend_schema(responses={204: None, **errors(503)}),
)
class HubTokenViewSet(TenantScopedViewSet):
    """The tenant's Hugging Face token: members see its status, owners set, rotate, remove it."""

    queryset = HubCredential.objects.select_related("set_by")
    write_operation = "hub_token.manage"

    def retrieve(self, request: Request, tenant_slug: str) -> Response:
        credential = self.get_queryset().first()
        return Response({"token": HubCredentialSerializer(credential).data if credential else None})

    def update(self, request: Request, tenant_slug: str) -> Response:
        serializer = HubTokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        credential = services.set_hub_token(
            api_actor(request), self.tenant, serializer.validated_data["token"]
        )
        return Response({"token": HubCredentialSerializer(credential).data})

    def destroy(self, request: Request, tenant_slug: str) -> Response:
        services.remove_hub_token(api_actor(request), self.tenant)
        return Response(status=status.HTTP_204_NO_CONTENT)

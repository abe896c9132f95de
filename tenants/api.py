"""REST API of the tenants app. Viewsets validate, check access and call tenants.services."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from portal.api import ApiContract
from portal.errors import DomainError, Forbidden
from tenants import services
from tenants.access import resolve_access
from tenants.audit import Actor
from tenants.choices import ROLE_RANK, Channel, Role
from tenants.models import ApiToken, AuditEvent, GatewayKey, Membership, Tenant, TenantQuota
from tenants.scoping import TenantScopedViewSet
from tenants.serializers import (
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    AuditEventSerializer,
    GatewayKeySerializer,
    GatewayKeyWriteSerializer,
    IssuedApiTokenSerializer,
    IssuedGatewayKeySerializer,
    MembershipCreateSerializer,
    MembershipSerializer,
    MembershipUpdateSerializer,
    MeSerializer,
    QuotaSerializer,
    TenantRenameSerializer,
    TenantSerializer,
)


class GatewayKeyChangeSerializer(GatewayKeyWriteSerializer):
    """What PATCH may change: a key's name is fixed at creation (not in the PATCH schema)."""

    name = None  # type: ignore[assignment]


def api_actor(request: Request) -> Actor:
    return Actor(user=request.user, channel=Channel.API)  # type: ignore[arg-type]


def _require_platform_admin(request: Request) -> None:
    # Platform powers come with an interactive admin session, never with a tenant-scoped token.
    if not request.user.is_staff or isinstance(request.auth, ApiToken):
        raise exceptions.PermissionDenied("only platform admins can do this")


@extend_schema_view(
    partial_update=extend_schema(request=TenantRenameSerializer, responses=TenantSerializer)
)
class TenantViewSet(
    ApiContract,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Tenants the caller can see; platform admins create and rename them."""

    serializer_class = TenantSerializer
    lookup_field = "slug"
    lookup_url_kwarg = "tenant_slug"

    def get_queryset(self) -> QuerySet[Tenant]:
        tenants = Tenant.objects.visible_to(self.request.user).select_related("quota")
        if isinstance(self.request.auth, ApiToken):
            tenants = tenants.filter(pk=self.request.auth.tenant_id)
        return tenants

    def get_object(self) -> Tenant:
        token = self.request.auth if isinstance(self.request.auth, ApiToken) else None
        access = resolve_access(self.request.user, self.kwargs["tenant_slug"], token=token)
        return Tenant.objects.select_related("quota").get(pk=access.tenant.pk)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        _require_platform_admin(request)
        serializer = TenantSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        tenant = services.create_tenant(
            api_actor(request),
            name=data["name"],
            slug=data["slug"],
            namespace=data["namespace"],
            quota=dict(data.get("quota") or {}),
        )
        return Response(TenantSerializer(tenant).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        tenant = self.get_object()
        _require_platform_admin(request)
        # PATCH: what is left out stays as it is (the schema makes every field optional).
        serializer = TenantRenameSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        if "name" in serializer.validated_data:
            services.rename_tenant(
                api_actor(request), tenant, name=serializer.validated_data["name"]
            )
        return Response(TenantSerializer(tenant).data)


@extend_schema_view(
    create=extend_schema(request=MembershipCreateSerializer, responses={201: MembershipSerializer}),
    partial_update=extend_schema(
        request=MembershipUpdateSerializer, responses=MembershipSerializer
    ),
)
class MembershipViewSet(TenantScopedViewSet):
    """Members of a tenant: everyone reads, owners (and platform admins) manage."""

    queryset = Membership.objects.select_related("user")
    serializer_class = MembershipSerializer
    write_operation = "member.manage"

    def list(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(MembershipSerializer(page, many=True).data)

    def retrieve(self, request: Request, tenant_slug: str, pk: str) -> Response:
        return Response(MembershipSerializer(self.get_object()).data)

    def create(self, request: Request, tenant_slug: str) -> Response:
        serializer = MembershipCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.add_member(
            api_actor(request), self.tenant, **serializer.validated_data
        )
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, tenant_slug: str, pk: str) -> Response:
        membership = self.get_object()
        serializer = MembershipUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data:  # an empty PATCH changes nothing
            services.change_member_role(api_actor(request), membership, **serializer.validated_data)
        return Response(MembershipSerializer(membership).data)

    def destroy(self, request: Request, tenant_slug: str, pk: str) -> Response:
        services.remove_member(api_actor(request), self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    create=extend_schema(
        request=ApiTokenCreateSerializer, responses={201: IssuedApiTokenSerializer}
    ),
)
class ApiTokenViewSet(TenantScopedViewSet):
    """API tokens: maintainers create their own; owners see and revoke everyone's."""

    queryset = ApiToken.objects.select_related("user")
    serializer_class = ApiTokenSerializer
    write_operation = "api_token.manage"

    def get_queryset(self) -> QuerySet[ApiToken]:
        tokens = super().get_queryset()
        if self.access.may("api_token.view_all"):
            return tokens
        return tokens.filter(user=self.request.user)

    def list(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ApiTokenSerializer(page, many=True).data)

    def retrieve(self, request: Request, tenant_slug: str, pk: str) -> Response:
        return Response(ApiTokenSerializer(self.get_object()).data)

    def create(self, request: Request, tenant_slug: str) -> Response:
        serializer = ApiTokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        presented = request.auth if isinstance(request.auth, ApiToken) else None
        wanted = serializer.validated_data.get("role", Role.VIEWER)
        if presented is not None and ROLE_RANK.get(wanted, 99) > ROLE_RANK[presented.role]:
            # A token mints tokens no stronger than itself, whatever its holder's role.
            raise Forbidden(
                f"a token cannot create a token with more than its own role ({presented.role})",
                field="role",
            )
        issued = services.issue_api_token(
            api_actor(request), self.tenant, user=request.user, **serializer.validated_data
        )
        body = IssuedApiTokenSerializer(issued.token, context={"plaintext": issued.plaintext}).data
        return Response(body, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, tenant_slug: str, pk: str) -> Response:
        services.revoke_api_token(api_actor(request), self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    create=extend_schema(
        request=GatewayKeyWriteSerializer, responses={201: IssuedGatewayKeySerializer}
    ),
    partial_update=extend_schema(request=GatewayKeyChangeSerializer(partial=True)),
)
class GatewayKeyViewSet(TenantScopedViewSet):
    """Keys of the OpenAI-compatible gateway: members read, owners create, change, revoke."""

    queryset = GatewayKey.objects.select_related("created_by").prefetch_related("deployments")
    serializer_class = GatewayKeySerializer
    write_operation = "gateway_key.manage"

    def list(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(GatewayKeySerializer(page, many=True).data)

    def retrieve(self, request: Request, tenant_slug: str, pk: str) -> Response:
        return Response(GatewayKeySerializer(self.get_object()).data)

    def create(self, request: Request, tenant_slug: str) -> Response:
        serializer = GatewayKeyWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = services.create_gateway_key(
            api_actor(request), self.tenant, **serializer.validated_data
        )
        body = IssuedGatewayKeySerializer(issued.key, context={"plaintext": issued.plaintext}).data
        return Response(body, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, tenant_slug: str, pk: str) -> Response:
        key = self.get_object()
        if isinstance(request.data, dict) and "name" in request.data:
            raise DomainError("a key's name cannot be changed; create a new key", field="name")
        serializer = GatewayKeyChangeSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        key = services.update_gateway_key(api_actor(request), key, changes)
        return Response(GatewayKeySerializer(self.get_queryset().get(pk=key.pk)).data)

    def destroy(self, request: Request, tenant_slug: str, pk: str) -> Response:
        services.revoke_gateway_key(api_actor(request), self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(list=extend_schema(operation_id="tenants_quota_retrieve"))
class QuotaViewSet(TenantScopedViewSet):
    """The tenant's quota: members read it, platform admins change it."""

    serializer_class = QuotaSerializer
    write_operation = "quota.change"

    def get_quota(self) -> TenantQuota:
        try:
            return TenantQuota.objects.get(tenant=self.tenant)
        except TenantQuota.DoesNotExist:
            raise Http404("quota not found") from None

    def list(self, request: Request, tenant_slug: str) -> Response:
        return Response(QuotaSerializer(self.get_quota()).data)

    def update(self, request: Request, tenant_slug: str, partial: bool = False) -> Response:
        _require_platform_admin(request)
        quota = self.get_quota()
        serializer = QuotaSerializer(quota, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        quota = services.update_quota(
            api_actor(request), self.tenant, dict(serializer.validated_data)
        )
        return Response(QuotaSerializer(quota).data)

    def partial_update(self, request: Request, tenant_slug: str) -> Response:
        return self.update(request, tenant_slug, partial=True)


class AuditEventViewSet(TenantScopedViewSet):
    """The tenant's audit trail, newest first."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_fields = ("action", "actor_name", "target_type")

    def list(self, request: Request, tenant_slug: str) -> Response:
        events = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(events)
        return self.get_paginated_response(AuditEventSerializer(page, many=True).data)


class MeViewSet(ApiContract, viewsets.ViewSet):
    """Who the caller is and which tenants they belong to."""

    @extend_schema(responses=MeSerializer, operation_id="me_retrieve")
    def list(self, request: Request) -> Response:
        user: Any = request.user
        memberships = Membership.objects.filter(user=user).select_related("tenant")
        token = request.auth if isinstance(request.auth, ApiToken) else None
        if token is not None:
            memberships = memberships.filter(tenant_id=token.tenant_id)
        return Response(
            {
                "username": request.user.get_username(),
                "is_platform_admin": bool(request.user.is_staff) and token is None,
                "token": {"tenant": token.tenant.slug, "role": token.role} if token else None,
                "memberships": [{"tenant": m.tenant.slug, "role": m.role} for m in memberships],
            }
        )

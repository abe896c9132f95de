"""Tenant scoping of every UI view and API viewset: the tenant comes from the URL, the role
the request needs is checked by ``tenants.access``, and querysets only ever reach rows through
``for_tenant()``.

The isolation test suite fails for any URL that is not declared there, so a new view cannot
forget the scope.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase
from rest_framework import exceptions, permissions, viewsets
from rest_framework.request import Request

from portal.api import ApiContract
from tenants.access import READ_METHODS, TenantAccess, resolve_access
from tenants.models import ApiToken
from tenants.tenancy import TenantScopedQuerySet

CURRENT_TENANT_SESSION_KEY = "current_tenant"


class TenantViewMixin(LoginRequiredMixin):
    """Resolves the tenant from the URL, enforces the role for the operation and scopes
    querysets.

    Subclasses name the operations they perform (keys of tenants.roles.OPERATION_ROLES, which
    the API's viewsets name too): `read_operation` for GET, `write_operation` for the other
    methods, and `action_operations` for views that serve several actions by the URL's
    `action`. A tenant the user cannot see answers 404 and an insufficient role answers 403.
    """

    read_operation: str = "tenant.view"
    write_operation: str = "tenant.write"
    action_operations: dict[str, str] = {}
    tenant_url_kwarg = "tenant_slug"
    access: TenantAccess

    def operation(self, request: HttpRequest, kwargs: dict[str, Any]) -> str:
        if (request.method or "GET").upper() in READ_METHODS:
            return self.read_operation
        return self.action_operations.get(kwargs.get("action", ""), self.write_operation)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        self.access = resolve_access(request.user, kwargs[self.tenant_url_kwarg])
        if not self.access.may(self.operation(request, kwargs)):
            raise PermissionDenied("your role in this tenant does not allow this")
        request.session[CURRENT_TENANT_SESSION_KEY] = self.access.tenant.slug
        return super().dispatch(request, *args, **kwargs)

    @property
    def tenant(self) -> Any:
        return self.access.tenant

    def get_queryset(self) -> QuerySet[Any]:
        queryset = super().get_queryset()  # type: ignore[misc]
        if not isinstance(queryset, TenantScopedQuerySet):
            raise ImproperlyConfigured(
                f"{type(self).__name__} must list a tenant-owned model (TenantScopedQuerySet)"
            )
        return queryset.for_tenant(self.tenant)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = super().get_context_data(**kwargs)  # type: ignore[misc]
        context.update(tenant=self.tenant, access=self.access)
        return context


class TenantRolePermission(permissions.BasePermission):
    """Resolves the URL's tenant for the caller and checks the role the action needs."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        token = request.auth if isinstance(request.auth, ApiToken) else None
        view.access = resolve_access(request.user, view.kwargs["tenant_slug"], token=token)
        if not view.access.may(view.operation(request)):
            raise exceptions.PermissionDenied("your role in this tenant does not allow this")
        return True


class TenantScopedViewSet(ApiContract, viewsets.GenericViewSet):
    """Base of every tenant API: URLs carry the tenant slug, querysets are always scoped.

    Viewsets name the operations they perform (keys of tenants.roles.OPERATION_ROLES, which
    the UI's views name too): `read_operation` and `write_operation` by method, and
    `action_operations` per viewset action.
    """

    permission_classes = [TenantRolePermission]
    read_operation: str = "tenant.view"
    write_operation: str = "tenant.write"
    action_operations: dict[str, str] = {}
    access: TenantAccess

    def operation(self, request: Request) -> str:
        if self.action in self.action_operations:
            return self.action_operations[self.action]
        if (request.method or "GET").upper() in READ_METHODS:
            return self.read_operation
        return self.write_operation

    @property
    def tenant(self) -> Any:
        return self.access.tenant

    def get_queryset(self) -> QuerySet[Any]:
        queryset = super().get_queryset()
        if not isinstance(queryset, TenantScopedQuerySet):
            raise TypeError(f"{type(self).__name__} must use a tenant-owned model")
        return queryset.for_tenant(self.tenant)

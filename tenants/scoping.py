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
from tenants.access import TenantAccess, required_rank_for, resolve_access
from tenants.choices import Role
from tenants.models import ApiToken
from tenants.roles import rank_of
from tenants.tenancy import TenantScopedQuerySet

CURRENT_TENANT_SESSION_KEY = "current_tenant"


class TenantViewMixin(LoginRequiredMixin):
    """Resolves the tenant from the URL, enforces the role for the method and scopes querysets.

    Subclasses declare `read_role` / `write_role` (membership roles or PLATFORM_ADMIN); a
    tenant the user cannot see answers 404 and an insufficient role answers 403.
    """

    read_role: str = Role.VIEWER
    write_role: str = Role.MAINTAINER
    tenant_url_kwarg = "tenant_slug"
    access: TenantAccess

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        self.access = resolve_access(request.user, kwargs[self.tenant_url_kwarg])
        needed = required_rank_for(
            request.method or "GET",
            read_rank=rank_of(self.read_role),
            write_rank=rank_of(self.write_role),
        )
        if not self.access.allows(needed):
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
        needed = view.required_rank(request)
        if not view.access.allows(needed):
            raise exceptions.PermissionDenied("your role in this tenant does not allow this")
        return True


class TenantScopedViewSet(ApiContract, viewsets.GenericViewSet):
    """Base of every tenant API: URLs carry the tenant slug, querysets are always scoped.

    `read_role`/`write_role` set the default levels; `action_roles` overrides per action.
    """

    permission_classes = [TenantRolePermission]
    read_role: str = Role.VIEWER
    write_role: str = Role.MAINTAINER
    action_roles: dict[str, str] = {}
    access: TenantAccess

    def required_rank(self, request: Request) -> int:
        if self.action in self.action_roles:
            return rank_of(self.action_roles[self.action])
        return required_rank_for(
            request.method or "GET",
            read_rank=rank_of(self.read_role),
            write_rank=rank_of(self.write_role),
        )

    @property
    def tenant(self) -> Any:
        return self.access.tenant

    def get_queryset(self) -> QuerySet[Any]:
        queryset = super().get_queryset()
        if not isinstance(queryset, TenantScopedQuerySet):
            raise TypeError(f"{type(self).__name__} must use a tenant-owned model")
        return queryset.for_tenant(self.tenant)

"""Base classes for the web UI: tenant-scoped views and HTMX helpers."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views import defaults
from django.views.decorators.http import require_GET

from portal.tenancy import TenantScopedQuerySet
from tenants.access import READ_METHODS, TenantAccess, resolve_access

CURRENT_TENANT_SESSION_KEY = "current_tenant"


def htmx_partial(request: HttpRequest) -> bool:
    """True when HTMX asks for a fragment (not a boosted full-page navigation)."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted  # type: ignore[union-attr]


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


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and the dev script; touches nothing external."""
    return JsonResponse({"status": "ok"})


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponseBase:
    """404 for URLs no route matches: the API's JSON error envelope under /api/ (clients of
    the API parse every error the same way), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        from portal.api import _error_body

        return JsonResponse(_error_body(404, "not_found", "no such API route"), status=404)
    return defaults.page_not_found(request, exception)

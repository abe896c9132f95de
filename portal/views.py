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
from tenants.access import TenantAccess, required_rank_for, resolve_access
from tenants.choices import Role
from tenants.roles import rank_of

CURRENT_TENANT_SESSION_KEY = "current_tenant"


def htmx_partial(request: HttpRequest) -> bool:
    """True when HTMX asks for a fragment (not a boosted full-page navigation)."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted  # type: ignore[union-attr]


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

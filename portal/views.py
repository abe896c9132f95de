"""Helpers of the web UI (HTMX, forms) and the project-wide pages (health, 404).

The tenant-scoped base view is tenants.scoping.TenantViewMixin."""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views import defaults
from django.views.decorators.http import require_GET

from portal.errors import DomainError, error_body


def htmx_partial(request: HttpRequest) -> bool:
    """True when HTMX asks for a fragment (not a boosted full-page navigation)."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted  # type: ignore[union-attr]


def apply_domain_error(form: forms.Form, error: DomainError) -> None:
    """Show a refusal of the domain on the form field it names (else on the form)."""
    field = error.field if error.field in form.fields else None
    form.add_error(field, error.message)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and the dev script; touches nothing external."""
    return JsonResponse({"status": "ok"})


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponseBase:
    """404 for URLs no route matches: the API's JSON error envelope under /api/ (clients of
    the API parse every error the same way), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(404, "not_found", "no such API route"), status=404)
    return defaults.page_not_found(request, exception)

"""Template context shared by every page: the tenants a user can switch between."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from tenants.models import Tenant


def tenant_navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    current_slug = (
        request.resolver_match.kwargs.get("tenant_slug") if request.resolver_match else None
    )

    def switchable() -> list[Tenant]:
        # Lazy: only pages that render the switcher pay for the query.
        return list(Tenant.objects.visible_to(user).only("name", "slug"))

    return {
        "switchable_tenants": switchable,
        "current_tenant_slug": current_slug,
        "gateway_url": settings.GATEWAY_PUBLIC_URL,
    }

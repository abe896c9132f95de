"""Who may do what in which tenant: the single decision point for UI views and API viewsets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import Http404

from tenants.choices import PLATFORM_ADMIN_RANK, ROLE_RANK
from tenants.models import ApiToken, Membership, Tenant
from tenants.roles import required_rank

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class TenantAccess:
    """The acting user's standing in one tenant for the current request."""

    tenant: Tenant
    rank: int
    role: str | None  # the membership role, None for a platform admin who is not a member

    @property
    def is_platform_admin(self) -> bool:
        return self.rank >= PLATFORM_ADMIN_RANK

    def may(self, operation: str) -> bool:
        """Whether the role allows `operation` (a key of tenants.roles.OPERATION_ROLES)."""
        return self.rank >= required_rank(operation)


def resolve_access(user: Any, tenant_slug: str, token: ApiToken | None = None) -> TenantAccess:
    """The user's access to the tenant, or Http404 when the tenant is not theirs to see.

    A tenant the user cannot see answers 404, never 403, so its existence does not leak. An API
    token reaches only its own tenant and never more than the role it was issued with; platform
    admin powers come with an interactive session, not with a token.
    """
    if not getattr(user, "is_authenticated", False):
        raise Http404("tenant not found")
    tenant = Tenant.objects.filter(slug=tenant_slug).first()
    if tenant is None:
        raise Http404("tenant not found")
    if token is not None and token.tenant_id != tenant.pk:
        raise Http404("tenant not found")
    membership = Membership.objects.filter(tenant=tenant, user=user).first()
    if token is not None:
        if membership is None:
            raise Http404("tenant not found")
        rank = min(ROLE_RANK[token.role], membership.rank)
        return TenantAccess(tenant=tenant, rank=rank, role=membership.role)
    if user.is_staff:
        return TenantAccess(
            tenant=tenant, rank=PLATFORM_ADMIN_RANK, role=getattr(membership, "role", None)
        )
    if membership is None:
        raise Http404("tenant not found")
    return TenantAccess(tenant=tenant, rank=membership.rank, role=membership.role)

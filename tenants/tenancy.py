"""Tenant scoping: the one place that decides which rows a request may see.

Every tenant-owned model derives from TenantOwnedModel, whose default manager is a
TenantScopedQuerySet. The UI base mixin and the API base viewset (tenants.scoping) only ever
reach rows through `for_tenant()`, and the isolation test suite fails for any URL that is not
declared there, so a new view cannot forget the scope. No model imports here: tenants.models
itself builds on these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from django.db import models

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    from tenants.models import Tenant


class TenantScopedQuerySet(models.QuerySet[Any]):
    """A queryset of tenant-owned rows with the only two sanctioned ways to narrow it."""

    def for_tenant(self, tenant: Tenant) -> Self:
        return self.filter(tenant=tenant)

    def visible_to(self, user: AbstractBaseUser | AnonymousUser) -> Self:
        """Rows of every tenant the user belongs to; all rows for platform admins."""
        if not user.is_authenticated:
            return self.none()
        if getattr(user, "is_staff", False):
            return self.all()
        return self.filter(tenant__memberships__user=user).distinct()


class TenantOwnedModel(models.Model):
    """Abstract base of every model that belongs to exactly one tenant."""

    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.CASCADE,
        related_name="%(app_label)s_%(class)s_set",
    )

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        abstract = True

"""`{% if access|may:"deployment.delete" %}`: templates show a control by the same table
(tenants.roles.OPERATION_ROLES) that views and API viewsets enforce."""

from __future__ import annotations

from django import template

from tenants.access import TenantAccess

register = template.Library()


@register.filter
def may(access: TenantAccess | None, operation: str) -> bool:
    return access is not None and access.may(operation)

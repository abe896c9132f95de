"""The one table of operations and the least role each needs (tenants.roles), and that every
view and viewset names operations from it."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tenants.access import TenantAccess
from tenants.choices import PLATFORM_ADMIN_RANK, ROLE_RANK, Role
from tenants.models import Tenant
from tenants.roles import OPERATION_ROLES

VIEWER_OPS = {"tenant.view"}
MAINTAINER_OPS = VIEWER_OPS | {
    "tenant.write",
    "api_token.manage",
    "model.register",
    "model.update",
    "model.delete",
    "deployment.create",
    "deployment.change",
    "deployment.delete",
    "rollout.start",
    "rollout.promote",
    "rollout.abort",
    "rollout.rollback",
}
OWNER_OPS = MAINTAINER_OPS | {
    "member.manage",
    "api_token.view_all",
    "gateway_key.manage",
    "model.acknowledge_license",
    "hub_token.manage",
}
ADMIN_OPS = OWNER_OPS | {"quota.change", "model.approve_remote_code"}

EXPECTED = {
    Role.VIEWER: VIEWER_OPS,
    Role.MAINTAINER: MAINTAINER_OPS,
    Role.OWNER: OWNER_OPS,
    "platform_admin": ADMIN_OPS,
}
RANKS = {**ROLE_RANK, "platform_admin": PLATFORM_ADMIN_RANK}


def test_the_table_names_every_operation_once() -> None:
    assert set(OPERATION_ROLES) == ADMIN_OPS


@pytest.mark.parametrize("role", list(EXPECTED))
def test_each_role_may_do_exactly_its_operations(role: str) -> None:
    access = TenantAccess(tenant=Tenant(slug="t"), rank=RANKS[role], role=role)
    assert {op for op in OPERATION_ROLES if access.may(op)} == EXPECTED[role]


def _view_classes() -> list[Any]:
    found: list[Any] = []

    def walk(patterns: list[Any]) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns)
            elif isinstance(pattern, URLPattern):
                callback = pattern.callback
                found.append(
                    getattr(callback, "view_class", None) or getattr(callback, "cls", None)
                )

    walk(get_resolver().url_patterns)
    return [cls for cls in found if cls is not None]


def test_every_view_and_viewset_names_operations_of_the_table() -> None:
    named: set[str] = set()
    for cls in _view_classes():
        for attribute in ("read_operation", "write_operation"):
            if hasattr(cls, attribute):
                named.add(getattr(cls, attribute))
        named.update(getattr(cls, "action_operations", {}).values())
    assert named <= set(OPERATION_ROLES), named - set(OPERATION_ROLES)
    # The API and the UI name the same operations for what both offer.
    assert {"deployment.create", "rollout.promote", "model.acknowledge_license"} <= named

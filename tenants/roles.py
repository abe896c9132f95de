"""The minimum role of every operation in a tenant: one table for UI views and API viewsets.

A view or viewset names the operation a request performs (TenantViewMixin, TenantScopedViewSet);
the role it needs comes from OPERATION_ROLES only, so the page and the API route of one
operation cannot disagree. Keys are `<resource>.<verb>`, as the audit log's actions are.
"""

from tenants.choices import PLATFORM_ADMIN_RANK, ROLE_RANK, Role

PLATFORM_ADMIN = "platform_admin"

OPERATION_ROLES: dict[str, str] = {
    # Reading the tenant's pages and resources.
    "tenant.view": Role.VIEWER,
    # A write that names no operation of its own: what a view or viewset does not serve answers
    # 405 once this check passes.
    "tenant.write": Role.MAINTAINER,
    # tenants
    "member.manage": Role.OWNER,
    "api_token.manage": Role.MAINTAINER,
    "api_token.view_all": Role.OWNER,  # others see only their own tokens
    "gateway_key.manage": Role.OWNER,
    "quota.change": PLATFORM_ADMIN,
    # models_registry
    "model.register": Role.MAINTAINER,
    "model.update": Role.MAINTAINER,
    "model.delete": Role.MAINTAINER,
    "model.acknowledge_license": Role.OWNER,
    "model.approve_remote_code": PLATFORM_ADMIN,
    "hub_token.manage": Role.OWNER,
    # deployments; the deploy wizard and the new-revision form need the role to be opened too.
    "deployment.create": Role.MAINTAINER,
    "deployment.change": Role.MAINTAINER,
    "deployment.delete": Role.MAINTAINER,
    "rollout.start": Role.MAINTAINER,  # roll out an existing revision
    "rollout.promote": Role.MAINTAINER,
    "rollout.abort": Role.MAINTAINER,
    "rollout.rollback": Role.MAINTAINER,
}


def rank_of(level: str) -> int:
    """Rank of a membership role or of PLATFORM_ADMIN."""
    return PLATFORM_ADMIN_RANK if level == PLATFORM_ADMIN else ROLE_RANK[level]


def required_rank(operation: str) -> int:
    """The least rank that may perform `operation` (a key of OPERATION_ROLES)."""
    return rank_of(OPERATION_ROLES[operation])

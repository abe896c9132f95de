"""Names of the access levels views and viewsets require."""

from tenants.choices import PLATFORM_ADMIN_RANK, ROLE_RANK

PLATFORM_ADMIN = "platform_admin"


def rank_of(level: str) -> int:
    """Rank of a membership role or of PLATFORM_ADMIN."""
    return PLATFORM_ADMIN_RANK if level == PLATFORM_ADMIN else ROLE_RANK[level]

"""Enumerations of the tenants app."""

from django.db import models


class Role(models.TextChoices):
    """A member's role in a tenant; each role includes the rights of the ones below it."""

    OWNER = "owner", "Owner"
    MAINTAINER = "maintainer", "Maintainer"
    VIEWER = "viewer", "Viewer"


# Higher ranks include every right of lower ranks. Platform admins rank above every member.
ROLE_RANK: dict[str, int] = {Role.VIEWER: 1, Role.MAINTAINER: 2, Role.OWNER: 3}
PLATFORM_ADMIN_RANK = 4


class Channel(models.TextChoices):
    """Where a write came from, recorded on every audit event."""

    UI = "ui", "Web UI"
    API = "api", "REST API"
    ADMIN = "admin", "Admin console"
    TASK = "task", "Background task"
    CLI = "cli", "Command line"


class ApiTokenStatus(models.TextChoices):
    """What ApiToken.status answers; a revoked or expired token stays readable, with its date."""

    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


class GatewayKeyStatus(models.TextChoices):
    """What GatewayKey.status answers; a revoked key stays readable, with revoked_at set."""

    ACTIVE = "active", "Active"
    REVOKED = "revoked", "Revoked"

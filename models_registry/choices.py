"""Enumerations of the model registry."""

from django.db import models


class Gating(models.TextChoices):
    NONE = "", "Not gated"
    AUTO = "auto", "Gated (automatic approval)"
    MANUAL = "manual", "Gated (manual approval)"


class AccessStatus(models.TextChoices):
    """Whether the tenant's Hub token can still reach a registered model."""

    OK = "ok", "Accessible"
    LOST = "lost", "Access lost"
    UNCHECKED = "unchecked", "Not checked"


class TokenStatus(models.TextChoices):
    VALID = "valid", "Valid"
    INVALID = "invalid", "Invalid"

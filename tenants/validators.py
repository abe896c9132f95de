"""Validators for tenant fields."""

import re

from django.core.exceptions import ValidationError

from tenants.constants import DNS1123_LABEL_MAX_LENGTH, RESERVED_NAMESPACES

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_TIER_SLUG = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_dns1123_label(value: str) -> None:
    """Kubernetes namespace names must be DNS-1123 labels; say exactly which rule is broken."""
    if len(value) > DNS1123_LABEL_MAX_LENGTH:
        raise ValidationError(
            f"must be at most {DNS1123_LABEL_MAX_LENGTH} characters (got {len(value)})",
            code="too_long",
        )
    if not _DNS1123_LABEL.match(value):
        raise ValidationError(
            "must be a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
            code="invalid_dns1123_label",
        )
    if value in RESERVED_NAMESPACES or value.startswith("kube-"):
        raise ValidationError(f"'{value}' is reserved for the cluster", code="reserved")


def validate_tier_slugs(value: list[str]) -> None:
    """Allowed tiers are stored as tier slugs; reject anything that cannot be one."""
    if not isinstance(value, list):
        raise ValidationError("must be a list of tier names", code="invalid")
    bad = [item for item in value if not isinstance(item, str) or not _TIER_SLUG.match(item)]
    if bad:
        raise ValidationError(f"invalid tier names: {', '.join(map(str, bad))}", code="invalid")
    if len(set(value)) != len(value):
        raise ValidationError("tier names must not repeat", code="duplicate")

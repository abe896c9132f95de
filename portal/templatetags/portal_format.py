"""Formatting filters shared by the portal's templates."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def gb(value: int | float | None, digits: int = 2) -> str:
    """Bytes as decimal gigabytes (10^9), the unit GPU memory is sold and reasoned in."""
    if value is None or value == "":
        return ""
    return f"{float(value) / 1e9:.{int(digits)}f} GB"

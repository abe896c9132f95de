"""Formatting of metric values and money for the metrics and cost pages."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from django import template

from deployments import cost

register = template.Library()


@register.filter
def metric(value: Any, unit: str = "") -> str:
    """A metric value with its unit: 3 significant figures, durations in ms below 1 s."""
    if value is None or value == "":
        return "—"
    number = float(value)
    if not math.isfinite(number):
        return "—"
    if unit == "s":
        return f"{number * 1000:.0f} ms" if number < 1 else f"{number:.2f} s"
    if unit == "ratio":
        return f"{number * 100:.1f}%"
    if unit == "%":
        return f"{number:.0f}%"
    text = f"{number:.3g}" if abs(number) < 1000 else f"{number:,.0f}"
    return f"{text} {unit}".strip()


@register.filter
def money(value: Decimal | None) -> str:
    return cost.money(value)


@register.filter
def share(value: Decimal | float | None) -> str:
    """0.75 -> 75%; None -> an em dash."""
    if value is None:
        return "—"
    return f"{float(value) * 100:.0f}%"


@register.filter
def get(mapping: dict[Any, Any] | None, key: Any) -> Any:
    return (mapping or {}).get(key)

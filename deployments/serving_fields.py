"""The serving fields a user asks of a revision, and how its rollout is promoted, stated once.

Each field's type, bounds, default, label and help live here; the API serializer, the UI forms,
``ServingRequest``'s defaults and the revision diff are derived from this list, so a field is
added or changed in one place. Rules across fields (limits against the tier, the model, the
quota) are admission's (deployments.admission), not a field's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from deployments.choices import PromotionMode
from engines import DEFAULT_ENGINE, engine_choices
from models_registry.constants import QUANTIZE_CHOICES

Choices = Sequence[tuple[str, str]]

DTYPE_CHOICES = ("float16", "bfloat16")
KV_CACHE_DTYPE_CHOICES = ("fp8_e4m3fn", "fp8_e5m2")


def _same(values: Sequence[str]) -> Callable[[], Choices]:
    return lambda: [(value, value) for value in values]


@dataclass(frozen=True)
class ServingField:
    name: str
    kind: Literal["choice", "integer", "boolean"]
    # None: optional, admission fills it in from the tier, the model and the engine.
    default: Any = None
    label: str = ""  # empty: the name, capitalised
    help_text: str = ""
    min_value: int | None = None
    max_value: int | None = None
    # Choice fields: the values offered (a callable, so the engine registry is read when used).
    choices: Callable[[], Choices] | None = None
    # Choice fields whose default is "": what leaving them empty means, as the UI shows it.
    blank_label: str = ""

    @property
    def optional(self) -> bool:
        return self.default is None

    @property
    def allows_blank(self) -> bool:
        return self.kind == "choice" and self.default == ""


SERVING_SCHEMA: tuple[ServingField, ...] = (
    ServingField(
        "engine",
        "choice",
        default=DEFAULT_ENGINE,
        label="Engine",
        help_text="The inference server; each tier offers its own engines and images.",
        choices=engine_choices,
    ),
    ServingField(
        "quantize",
        "choice",
        default="",
        choices=_same(QUANTIZE_CHOICES),
        blank_label="none (as stored)",
    ),
    ServingField("dtype", "choice", default="", choices=_same(DTYPE_CHOICES), blank_label="auto"),
    ServingField(
        "kv_cache_dtype",
        "choice",
        default="",
        label="KV cache dtype",
        choices=_same(KV_CACHE_DTYPE_CHOICES),
        blank_label="same as dtype",
    ),
    ServingField("max_input_tokens", "integer", min_value=1),
    ServingField("max_total_tokens", "integer", min_value=2),
    ServingField(
        "max_batch_prefill_tokens", "integer", min_value=1, label="Max batch prefill tokens"
    ),
    ServingField("max_concurrent_requests", "integer", default=128, min_value=1, max_value=100_000),
    ServingField("replicas", "integer", default=1, min_value=1, max_value=1000),
    ServingField("min_replicas", "integer", min_value=1),
    ServingField("max_replicas", "integer", min_value=1),
    ServingField("autoscaling", "boolean", default=False, label="Autoscale on queue size"),
    ServingField("queue_size_target", "integer", default=4, min_value=1, max_value=10_000),
)

# The serving fields a revision carries, in the order the API and the wizard show them.
SERVING_FIELDS: tuple[str, ...] = tuple(f.name for f in SERVING_SCHEMA)
SERVING_DEFAULTS: dict[str, Any] = {f.name: f.default for f in SERVING_SCHEMA}


# How a rollout goes live (the API's ``promotion`` object; the wizard offers mode and delay).
DAY_SECONDS = 86_400
PROMOTION_SCHEMA: tuple[ServingField, ...] = (
    ServingField(
        "mode",
        "choice",
        default=PromotionMode.AUTOMATIC.value,
        label="Promotion",
        choices=lambda: list(PromotionMode.choices),
    ),
    ServingField(
        "after_seconds",
        "integer",
        default=0,
        label="Promote after seconds",
        help_text="automatic mode: how long the new side runs beside the old one first",
        min_value=0,
        max_value=DAY_SECONDS,
    ),
    # Optional: None takes the portal's setting (ROLLOUT_SCALE_DOWN_DELAY_SECONDS, ...).
    ServingField(
        "scale_down_delay_seconds",
        "integer",
        help_text="how long the old side stays up after the switch, for a quick rollback",
        min_value=0,
        max_value=DAY_SECONDS,
    ),
    ServingField(
        "progress_deadline_seconds",
        "integer",
        help_text="how long the new side may take to become available before the rollout fails",
        min_value=30,
        max_value=DAY_SECONDS,
    ),
)
PROMOTION_FIELDS: tuple[str, ...] = tuple(f.name for f in PROMOTION_SCHEMA)
PROMOTION_DEFAULTS: dict[str, Any] = {f.name: f.default for f in PROMOTION_SCHEMA}


def promotion_field(name: str) -> ServingField:
    return next(f for f in PROMOTION_SCHEMA if f.name == name)


def out_of_range(field: ServingField, value: Any) -> str:
    """Why ``value`` is not one ``field`` accepts ("" when it is)."""
    if value is None:
        return "" if field.optional else "is required"
    if field.kind == "choice":
        assert field.choices is not None
        offered = [choice for choice, _ in field.choices()]
        if value in offered or (value == "" and field.allows_blank):
            return ""
        return f"unknown value {value!r} (one of: {', '.join(offered)})"
    if field.kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be a whole number"
        if field.min_value is not None and value < field.min_value:
            return f"must be at least {field.min_value}"
        if field.max_value is not None and value > field.max_value:
            return f"must be at most {field.max_value}"
    return ""

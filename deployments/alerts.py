"""Soft guardrails: alerts on queue depth, p95 time to first token and the error ratio.

The guardrails are data (``GUARDRAILS``). The same definitions serve twice:

- ``render_rules(tiers)`` exports them as a Prometheus rule file (one rule per guardrail and
  tier, since thresholds are per tier); ``manage.py export_guardrail_rules`` writes it and
  ``deploy/prometheus/inference-rules.yml`` is that file for the default tiers.
- ``evaluate(namespace)`` asks Prometheus the same expressions for the deployment and tenant
  pages: ONE range query per guardrail for all of a tenant's deployments, covering the hold
  time (the rule's ``for``). A guardrail fires when every point of the hold is above the
  tier's threshold, and is pending when only the latest is.

Series come from the serving pods' scrape (see deployments/metrics.py): the pod labels after
labelmap carry tenant, deployment, colour, tier and engine (``inference_backend``). Nothing
here is enforced: these are soft guardrails with remedies, not admission checks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import yaml
from django.conf import settings

from deployments import metrics
from deployments.models import Tier
from engines import ENGINES
from engines.promql import NotReported

LABELS = (
    "namespace",
    "inference_portal_tenant",
    "inference_portal_deployment",
    "inference_portal_colour",
    "inference_portal_tier",
)
TIER_LABEL = "inference_portal_tier"
GROUP_NAME = "inference-portal-guardrails"
ERROR_RATIO_THRESHOLD = 0.05
POINTS_PER_HOLD = 12
"""Resolution of the portal's evaluation: the hold is checked at this many steps."""

_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class Guardrail:
    """One alert: a value per deployment and colour, a per-tier threshold, a hold, remedies.

    The expression is each engine's (``engines/<name>``: ``metrics.alerts[alert]``), a PromQL
    template with ``{sel}`` and ``{by}``; the guardrail's query is their union, each over its own
    engine's series. Engines that cannot report a guardrail are left out of it (``not_reported``
    says which and why).
    """

    alert: str
    title: str
    unit: str
    hold: timedelta
    threshold: Callable[[Tier], float]
    summary: str
    description: str
    remedies: tuple[str, ...]

    def _parts(self) -> list[tuple[str, str, str]]:
        parts = []
        for engine in ENGINES.values():
            expr = engine.metrics.alerts.get(self.alert)
            if isinstance(expr, str):
                parts.append((engine.name, expr, engine.metrics.selector()))
        return parts

    def query(self, selector: str) -> str:
        """The union over engines; ``selector`` holds the matchers besides the engine's own."""
        by = ", ".join(LABELS)
        queries = []
        for _name, expr, own in self._parts():
            sel = f"{selector}, {own}" if selector else own
            queries.append(expr.format(sel=sel, by=by))
        if len(queries) == 1:
            return queries[0]
        return " or ".join(f"({query})" for query in queries)

    @property
    def not_reported(self) -> dict[str, str]:
        """Engine label -> why it cannot report this guardrail."""
        return {
            engine.label: expr.why
            for engine in ENGINES.values()
            if isinstance(expr := engine.metrics.alerts.get(self.alert), NotReported)
        }

    @property
    def hold_text(self) -> str:
        return _duration(self.hold)


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


REMEDY_REPLICAS = "Add replicas (or raise max replicas so the autoscaler can)."
REMEDY_POOL = "Move the deployment to a dedicated GPU pool so it does not share capacity."
REMEDY_MAX_INPUT = "Lower max input tokens so prefill batches are shorter."
REMEDY_QUANTIZE = "Serve a quantized model (AWQ/GPTQ, fp8) for faster prefill and more KV cache."

GUARDRAILS: tuple[Guardrail, ...] = (
    Guardrail(
        alert="QueueDepthHigh",
        title="Queue depth high",
        unit="requests per replica",
        hold=timedelta(minutes=2),
        threshold=lambda tier: float(tier.queue_depth_alert),
        summary="{{ $labels.inference_portal_deployment }} ({{ $labels.inference_portal_colour }})"
        ' in {{ $labels.namespace }} has {{ $value | printf "%.0f" }} requests queued per replica',
        description="The average queue per replica stayed above the tier's threshold for the"
        " hold time; requests wait before any work starts.",
        remedies=(REMEDY_REPLICAS, REMEDY_POOL),
    ),
    Guardrail(
        alert="TimeToFirstTokenHigh",
        title="p95 time to first token high",
        unit="s",
        hold=timedelta(minutes=5),
        threshold=lambda tier: float(tier.ttft_p95_alert_seconds),
        summary="{{ $labels.inference_portal_deployment }} ({{ $labels.inference_portal_colour }})"
        " in {{ $labels.namespace }}: p95 time to first token {{ $value | humanizeDuration }}",
        description="p95 time to first token (vLLM's and SGLang's own histogram; for TGI, which"
        " has none, p95 queue time plus p95 prefill time) stayed above the tier's threshold for"
        " the hold time.",
        remedies=(REMEDY_REPLICAS, REMEDY_MAX_INPUT, REMEDY_POOL, REMEDY_QUANTIZE),
    ),
    Guardrail(
        alert="ErrorRatioHigh",
        title="Error ratio high",
        unit="ratio",
        hold=timedelta(minutes=5),
        threshold=lambda tier: ERROR_RATIO_THRESHOLD,
        summary="{{ $labels.inference_portal_deployment }} ({{ $labels.inference_portal_colour }})"
        " in {{ $labels.namespace }} fails {{ $value | humanizePercentage }} of requests",
        description="More than 5% of requests failed over 5 minutes (the failure counter by err"
        " shows which kind: overloaded, validation, generation, ...).",
        remedies=(
            "Overloaded errors: add replicas or use a dedicated GPU pool.",
            "Validation errors: clients send prompts beyond max input tokens (raise it, or send"
            " less).",
            "Generation errors: check the pod logs; a quantized model helps when memory is short.",
        ),
    ),
)
GUARDRAILS_BY_ALERT = {guardrail.alert: guardrail for guardrail in GUARDRAILS}


# --- the rule file -------------------------------------------------------------------------


def _number(value: float) -> str:
    return format(Decimal(str(value)).normalize(), "f")


def render_rules(tiers: Iterable[Tier]) -> dict[str, Any]:
    """The guardrails as a Prometheus rule file: one rule per guardrail and tier."""
    rules: list[dict[str, Any]] = []
    for guardrail in GUARDRAILS:
        for tier in sorted(tiers, key=lambda t: t.slug):
            selector = f'{TIER_LABEL}="{tier.slug}"'
            threshold = guardrail.threshold(tier)
            rules.append(
                {
                    "alert": guardrail.alert,
                    "expr": f"({guardrail.query(selector)}) > {_number(threshold)}",
                    "for": guardrail.hold_text,
                    "labels": {"severity": "warning", "guardrail": "soft", "tier": tier.slug},
                    "annotations": {
                        "summary": guardrail.summary,
                        "description": f"{guardrail.description} Threshold on tier {tier.slug}:"
                        f" {_number(threshold)} {guardrail.unit}, hold {guardrail.hold_text}.",
                        "remedy": " ".join(guardrail.remedies),
                    },
                }
            )
    return {"groups": [{"name": GROUP_NAME, "rules": rules}]}


RULES_HEADER = """\
# Soft guardrails for the deployments served by the inference portal (every engine).
# GENERATED by `manage.py export_guardrail_rules` from deployments/alerts.py and the tiers'
# thresholds (Tier.queue_depth_alert, Tier.ttft_p95_alert_seconds); do not edit by hand.
# Each rule is the union of the engines' own expressions (engines/<name>/metrics.py), each over
# its engine's series (inference_backend label). TGI has no time-to-first-token histogram: its
# part is p95 queue time plus p95 prefill time, read from the 5-minute p95s recorded by
# inference-recording-rules.yml: load both files.
"""


def rules_yaml(tiers: Iterable[Tier]) -> str:
    body = yaml.safe_dump(render_rules(list(tiers)), sort_keys=False, width=100)
    return RULES_HEADER + body


# --- evaluating for the pages --------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """A guardrail that fires (held for its hold time) or is pending (above right now)."""

    guardrail: Guardrail
    deployment: str
    colour: str
    tier: str
    value: float
    threshold: float
    firing: bool

    @property
    def state(self) -> str:
        return "firing" if self.firing else "pending"


def hold_for(guardrail: Guardrail) -> timedelta:
    """The hold the portal checks: the rule's, unless GUARDRAIL_HOLD_SECONDS overrides it."""
    override = settings.GUARDRAIL_HOLD_SECONDS
    return timedelta(seconds=override) if override else guardrail.hold


def evaluate(namespace: str, *, end: datetime | None = None) -> list[Alert]:
    """Firing and pending guardrails of a tenant's deployments, worst first.

    One range query per guardrail; raises metrics.MetricsUnavailable when Prometheus cannot
    answer. Thresholds come from the Tier named by each series' tier label.
    """
    return start_evaluate(namespace, end=end)()


def start_evaluate(namespace: str, *, end: datetime | None = None) -> Callable[[], list[Alert]]:
    """``evaluate`` started now (``metrics.submit``); call the result for its answer."""
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"{namespace!r} is not a Kubernetes namespace name")
    end = end or datetime.now().astimezone()
    selector = f'namespace="{namespace}"'
    holds = [hold_for(guardrail) for guardrail in GUARDRAILS]
    steps = [max(1, int(hold.total_seconds() // POINTS_PER_HOLD)) for hold in holds]
    answers = metrics.submit(
        [
            metrics.Query.range(guardrail.query(selector), end - hold, end, f"{step}s")
            for guardrail, hold, step in zip(GUARDRAILS, holds, steps, strict=True)
        ]
    )

    def collect() -> list[Alert]:
        answered = answers()
        tiers = {tier.slug: tier for tier in Tier.objects.all()}
        alerts: list[Alert] = []
        for guardrail, hold, step, series in zip(GUARDRAILS, holds, steps, answered, strict=True):
            for item in series:
                alert = _judge(guardrail, item, tiers, hold, step)
                if alert is not None:
                    alerts.append(alert)
        return sorted(
            alerts, key=lambda a: (not a.firing, a.deployment, a.colour, a.guardrail.alert)
        )

    return collect


def _judge(
    guardrail: Guardrail,
    item: dict[str, Any],
    tiers: dict[str, Tier],
    hold: timedelta,
    step: int,
) -> Alert | None:
    labels = item["metric"]
    tier = tiers.get(labels.get(TIER_LABEL, ""))
    if tier is None:
        return None
    threshold = guardrail.threshold(tier)
    points = [(float(t), float(v)) for t, v in item["values"]]
    if not points or math.isnan(points[-1][1]) or points[-1][1] <= threshold:
        return None
    # Firing needs the whole hold covered (a gap or a late start is not "stayed high").
    covered = len(points) >= int(hold.total_seconds() // step)
    firing = covered and all(not math.isnan(v) and v > threshold for _, v in points)
    return Alert(
        guardrail=guardrail,
        deployment=labels.get("inference_portal_deployment", ""),
        colour=labels.get("inference_portal_colour", ""),
        tier=tier.slug,
        value=points[-1][1],
        threshold=threshold,
        firing=firing,
    )

"""What the metrics pages show, built from metrics, alerts and autoscaling for the views.

A page costs a fixed number of PromQL queries whatever the number of deployments: one instant
query per panel, one range query per ranged panel, one per gateway panel and one per
guardrail, all started before the page waits for any (``metrics.submit``). When Prometheus
cannot answer, the page still renders its database facts and says "Prometheus unreachable" once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from deployments import alerts as guardrails
from deployments import charts, metrics
from deployments.autoscaling import HpaState, ReplicaBounds, hpa_state, replica_bounds
from deployments.choices import ACTIVE_STATES
from deployments.models import Deployment, Rollout
from engines import DEFAULT_ENGINE, ENGINES
from tenants.models import Tenant, TenantQuota

# The panels of the tenant page's table (its notes explain only what the table lacks).
TABLE_PANELS = (
    "request_rate",
    "success_ratio",
    "error_rate",
    "queue_size",
    "batch_size",
    "request_p50",
    "request_p95",
    "request_p99",
    "ttft_p95",
    "generated_tokens_rate",
    "ready_replicas",
)
SPARK_PANELS = ("request_rate", "queue_size", "ttft_p95", "generated_tokens_rate")
CHART_PANELS = (
    "request_rate",
    "success_ratio",
    "queue_size",
    "batch_size",
    "request_p50",
    "request_p95",
    "request_p99",
    "queue_p95",
    "prefill_p95",
    "ttft_p95",
    "generated_tokens_rate",
    "ready_replicas",
    "gpu_utilisation",
)
# The tenant page shows every panel's current value except input lengths (the deployment page
# has their distribution: 100 buckets a deployment are the dearest queries), and sparklines of
# four.
TENANT_PANELS = tuple(p.name for p in metrics.PANELS if not p.name.startswith("input_length"))
RANGE = timedelta(minutes=30)
STEP = "30s"
WINDOW = "1m"


@dataclass
class Row:
    """One deployment and colour on the tenant page."""

    deployment: Deployment | None
    name: str
    colour: str
    values: dict[str, float] = field(default_factory=dict)
    errors: list[tuple[str, float]] = field(default_factory=list)
    sparks: dict[str, Any] = field(default_factory=dict)
    alerts: list[guardrails.Alert] = field(default_factory=list)
    not_reported: dict[str, str] = field(default_factory=dict)
    """Panel -> why the engine serving this colour cannot fill it (shown instead of a value)."""


@dataclass
class Usage:
    label: str
    used: float
    limit: float
    unit: str

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.used / self.limit)) if self.limit else 0

    @property
    def level(self) -> str:
        return "high" if self.percent >= 90 else "medium" if self.percent >= 70 else "low"


def _alerts(started: Callable[[], list[guardrails.Alert]]) -> tuple[list[guardrails.Alert], str]:
    try:
        return started(), ""
    except metrics.MetricsUnavailable as error:
        return [], str(error)


def tenant_page(tenant: Tenant) -> dict[str, Any]:
    """Context of the tenant metrics page (and its live partial)."""
    deployments = list(
        Deployment.objects.for_tenant(tenant).select_related("tier", "active_revision")
    )
    quota = TenantQuota.objects.get(tenant=tenant)
    context: dict[str, Any] = {"deployments": deployments, "quota": quota, "error": ""}
    # Every query of the page starts before the page waits for any (metrics.submit).
    started_current = metrics.start_tenant_panels(tenant.namespace, WINDOW, panels=TENANT_PANELS)
    started_series = metrics.start_tenant_panels_range(
        tenant.namespace, WINDOW, duration=RANGE, step=STEP, panels=SPARK_PANELS
    )
    started_gateway = metrics.start_gateway_usage(tenant.slug, WINDOW)
    started_alerts = guardrails.start_evaluate(tenant.namespace)
    try:
        current, series, gateway = started_current(), started_series(), started_gateway()
    except metrics.MetricsUnavailable as error:
        context["error"] = str(error)
        context["rows"] = [Row(d, d.name, d.active_colour) for d in deployments]
        context["alerts"], context["alerts_error"] = [], str(error)
        return context
    alerts, alerts_error = _alerts(started_alerts)
    by_name = {d.name: d for d in deployments}
    live = live_colours(deployments)
    engines = colour_engines(deployments)
    # Prometheus keeps series of deleted deployments and removed colours for minutes (and the
    # sparklines' range for 30): only what serves in the portal now gets a row.
    keys = sorted(
        key
        for key in (
            {key[:2] for panel in current.values() for key in panel}
            | {key[:2] for panel in series.values() for key in panel}
        )
        if key[1] in live.get(key[0], ())
    )
    rows: list[Row] = []
    for name, colour in keys:
        row = Row(by_name[name], name, colour)
        row.values = {
            panel: values[(name, colour)]
            for panel, values in current.items()
            if (name, colour) in values
        }
        row.errors = sorted(
            (key[2], value)
            for key, value in current["error_rate"].items()
            if key[:2] == (name, colour) and value > 0
        )
        for panel in SPARK_PANELS:
            points = series.get(panel, {}).get((name, colour), [])
            row.sparks[panel] = charts.sparkline(points, colour=charts.COLOURS.get(colour, "#555"))
        row.alerts = [a for a in alerts if (a.deployment, a.colour) == (name, colour)]
        row.not_reported = _not_reported(engines.get((name, colour), DEFAULT_ENGINE))
        rows.append(row)
    seen = set(keys)
    for d in deployments:
        missing = [colour for colour in sorted(live[d.name]) if (d.name, colour) not in seen]
        if not live[d.name]:
            missing = [""]  # not serving: one row says so
        rows += [Row(d, d.name, colour) for colour in missing]
    rows.sort(key=lambda r: (r.name, r.colour))
    requests = sum(gateway["gateway_requests_per_minute"].values())
    tokens = sum(gateway["gateway_tokens_per_minute"].values())
    context.update(
        rows=rows,
        # Each reason once under the table; the cells only say "not reported".
        not_reported_notes=sorted(
            {
                why
                for row in rows
                for panel, why in row.not_reported.items()
                if panel in TABLE_PANELS
            }
        ),
        totals=metrics.rollup(current),
        alerts=alerts,
        alerts_error=alerts_error,
        gateway_usage=[
            Usage("Requests per minute", requests, quota.requests_per_minute, "req/min"),
            Usage("Tokens per minute", tokens, quota.tokens_per_minute, "tokens/min"),
        ],
        # An empty deployment is traffic the gateway answered before routing (the model
        # list, an unknown model, a refusal): sorted last, and labelled by the template.
        gateway_by_deployment=sorted(
            (
                (key[0], value, gateway["gateway_tokens_per_minute"].get(key, 0.0))
                for key, value in gateway["gateway_requests_per_minute"].items()
            ),
            key=lambda row: (not row[0], row[0]),
        ),
        gateway_errors=sorted(
            (
                (key[0], key[1], value)
                for key, value in gateway["gateway_errors_per_minute"].items()
                if value > 0
            ),
            key=lambda row: (not row[0], row[0], row[1]),
        ),
        has_gpu_metrics=bool(current["gpu_utilisation"] or current["gpu_memory_used"]),
    )
    return context


def live_colours(deployments: list[Deployment]) -> dict[str, set[str]]:
    """The colours that serve or are being rolled, per deployment name: the active one, and
    both sides of a running rollout (the old side stays up until it is scaled down)."""
    live = {d.name: {d.active_colour} - {""} for d in deployments}
    running = Rollout.objects.filter(
        deployment__in=deployments, state__in=ACTIVE_STATES
    ).values_list("deployment__name", "colour", "previous_colour")
    for name, colour, previous in running:
        live[name] |= {colour, previous} - {"", None}
    return live


def colour_engines(deployments: list[Deployment]) -> dict[tuple[str, str], str]:
    """The engine serving each live (deployment, colour): the active revision's, and a running
    rollout's revision on its new side (an engine switch runs both engines for a while)."""
    engines = {
        (d.name, d.active_colour): d.active_revision.engine
        for d in deployments
        if d.active_revision is not None and d.active_colour
    }
    running = Rollout.objects.filter(
        deployment__in=deployments, state__in=ACTIVE_STATES
    ).values_list("deployment__name", "colour", "revision__engine")
    for name, colour, engine in running:
        engines[(name, colour)] = engine
    return engines


def _not_reported(engine: str) -> dict[str, str]:
    return {panel.name: why for panel in metrics.PANELS if (why := panel.not_reported.get(engine))}


def _buckets(values: dict[metrics.Key, float], name: str) -> list[tuple[str, float]]:
    """Per-bucket counts (not cumulative) of the input length histogram, colours summed."""
    cumulative: dict[float, float] = {}
    for (deployment, _colour, le), count in values.items():
        if deployment != name:
            continue
        try:
            bound = math.inf if le == "+Inf" else float(le)
        except ValueError:
            continue  # not a bucket boundary: nothing to draw
        cumulative[bound] = cumulative.get(bound, 0.0) + count
    result, previous = [], 0.0
    for bound in sorted(cumulative):
        label = "∞" if math.isinf(bound) else f"{bound:g}"
        result.append((label, max(0.0, cumulative[bound] - previous)))
        previous = cumulative[bound]
    return result


@dataclass
class Autoscaling:
    bounds: ReplicaBounds | None
    state: HpaState | None


def deployment_page(deployment: Deployment) -> dict[str, Any]:
    """Context of a deployment's metrics panel: charts, current values, alerts, the HPA."""
    tenant = deployment.tenant
    revision = deployment.active_revision
    autoscaling = None
    if revision is not None and revision.autoscaling:
        quota = TenantQuota.objects.get(tenant=tenant)
        autoscaling = Autoscaling(replica_bounds(revision, quota), hpa_state(deployment))
    context: dict[str, Any] = {"deployment": deployment, "autoscaling": autoscaling, "error": ""}
    started_current = metrics.start_tenant_panels(tenant.namespace, WINDOW)
    started_series = metrics.start_tenant_panels_range(
        tenant.namespace, WINDOW, duration=RANGE, step=STEP, panels=CHART_PANELS
    )
    started_alerts = guardrails.start_evaluate(tenant.namespace)
    try:
        current, series = started_current(), started_series()
    except metrics.MetricsUnavailable as error:
        context["error"] = str(error)
        return context
    alerts, alerts_error = _alerts(started_alerts)
    name = deployment.name
    colours = sorted(
        {key[1] for panel in current.values() for key in panel if key[0] == name}
        | {key[1] for panel in series.values() for key in panel if key[0] == name}
    )
    # The engine of the revision serving now (a switch shows the new engine once promoted).
    engine = getattr(revision, "engine", "") or DEFAULT_ENGINE
    engine_label = ENGINES[engine].label if engine in ENGINES else engine
    panels = []
    for panel_name in CHART_PANELS:
        panel = metrics.PANELS_BY_NAME[panel_name]
        lines = {
            colour: points
            for (dep, colour), points in series.get(panel_name, {}).items()
            if dep == name
        }
        now = {c: v for (dep, c), v in current.get(panel_name, {}).items() if dep == name}
        panels.append(
            {
                "panel": panel,
                "now": now,
                "chart": charts.timeseries(lines, title=panel.title, unit=panel.unit),
                # An engine that cannot fill the panel says why instead of an empty chart.
                "not_reported": panel.not_reported.get(engine, ""),
            }
        )
    context.update(
        colours=colours,
        panels=panels,
        errors=sorted(
            (key[1], key[2], value)
            for key, value in current["error_rate"].items()
            if key[0] == name and value > 0
        ),
        input_p50={c: v for (d, c), v in current["input_length_p50"].items() if d == name},
        input_p95={c: v for (d, c), v in current["input_length_p95"].items() if d == name},
        input_chart=charts.bars(_buckets(current["input_length_buckets"], name)),
        input_not_reported=metrics.not_reported("input_length_buckets", engine),
        errors_not_reported=metrics.not_reported("error_rate", engine),
        guardrails_not_reported=[
            (g.title, why)
            for g in guardrails.GUARDRAILS
            if (why := g.not_reported.get(engine_label))
        ],
        engine_label=engine_label,
        gpu_memory={c: v for (d, c), v in current["gpu_memory_used"].items() if d == name},
        alerts=[a for a in alerts if a.deployment == name],
        alerts_error=alerts_error,
    )
    return context


def tenant_alerts(tenant: Tenant) -> dict[str, Any]:
    """Only the guardrails (for the tenant dashboard)."""
    alerts, error = _alerts(guardrails.start_evaluate(tenant.namespace))
    by_name = {d.name: d for d in Deployment.objects.for_tenant(tenant)}
    return {"alerts": alerts, "alerts_error": error, "deployments_by_name": by_name}

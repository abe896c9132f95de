"""Serving metrics for a tenant's deployments, read from Prometheus.

Panels are data: each is ONE PromQL query over every TGI pod of a tenant's namespace, aggregated
``by (inference_portal_deployment, inference_portal_colour)`` (the pod labels
``inference.portal/deployment`` and ``inference.portal/colour`` after Prometheus' labelmap), so a
page of N deployments costs one query per panel, never one per deployment. Rates and histogram
buckets are read from recording rules (``RECORDED``, shipped as
deploy/prometheus/inference-recording-rules.yml) that pre-aggregate them per deployment and
colour, so a quantile panel is a lookup rather than a pass over every raw bucket sample.

Notes on the TGI metrics (see the TGI "Prometheus metrics" reference):

- Counters carry no ``_total`` suffix.
- ``tgi_request_count`` counts an OpenAI-route request twice (the route, then the inner
  generate), so request rates here count *outcomes* instead: every request ends in exactly one
  ``tgi_request_success`` or ``tgi_request_failure{err}`` increment.
- TGI has no time-to-first-token metric. Like TGI's own Grafana dashboard we use the queue time
  (``tgi_request_queue_duration``) and the prefill batch time
  (``tgi_batch_inference_duration{method="prefill"}``) as the stand-in; ``ttft_p95`` adds their
  two p95s, which bounds rather than equals the p95 of the sum.

Quantile and ratio panels have no value for a deployment without traffic in the window (Prometheus
answers NaN); such samples are left out, so callers show "no data" rather than a number.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

TIMEOUT_SECONDS = 3
"""Per query; a slow or absent Prometheus must not hold a page hostage."""
QUERY_CONCURRENCY = 4
"""Queries of one page in flight at once: Prometheus evaluates them in parallel."""

DEPLOYMENT_LABEL = "inference_portal_deployment"
COLOUR_LABEL = "inference_portal_colour"
BY_DEPLOYMENT = (DEPLOYMENT_LABEL, COLOUR_LABEL)

# Kubernetes namespace names (DNS-1123 labels) and PromQL durations: validated before they are
# interpolated into a query.
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DURATION = re.compile(r"[1-9][0-9]*(ms|s|m|h|d|w|y)")

Key = tuple[str, ...]
"""A panel's values are keyed by its ``by`` labels: (deployment, colour), or (deployment,
colour, err) for the error panel."""


class MetricsUnavailable(Exception):
    """Prometheus could not answer; the message is plain enough to show to a user."""


# --- recording rules ---------------------------------------------------------------------------
#
# The dear part of a panel is Prometheus reading every raw bucket sample of the window (e.g. 50
# deployments x 35 buckets x 30 samples for one quantile). Recording rules pre-aggregate the
# rates the panels (and the TTFT guardrail) need per deployment and colour once per evaluation
# interval, so a query reads one sample per (deployment, colour[, le]) series instead. Names
# follow Prometheus' convention level:metric:operations, the level "deployment" meaning the
# labels RECORDED_BY: constant for a deployment's colour, so they cost no extra series, and the
# panels' and guardrails' selectors (namespace, backend, tier) work on recorded series as is.

RECORDED_WINDOW = "1m"
"""The panels' rate window in the rules; panels asked for another window read raw series."""
RECORDED_BY = (
    "namespace",
    "inference_backend",
    "inference_portal_tenant",
    DEPLOYMENT_LABEL,
    COLOUR_LABEL,
    "inference_portal_tier",
)
RECORDING_GROUP = "inference-portal-panels"


@dataclass(frozen=True)
class Recorded:
    """``rate(<metric>[window])`` of the TGI series summed by RECORDED_BY (+ ``keep``)."""

    metric: str
    keep: tuple[str, ...] = ()
    match: str = ""
    """Extra label matchers (``, method="prefill"``): only what the queries read is recorded."""
    window: str = RECORDED_WINDOW

    @property
    def record(self) -> str:
        return f"deployment:{self.metric}:rate{self.window}"

    @property
    def expr(self) -> str:
        by = ", ".join((*RECORDED_BY, *self.keep))
        return (
            f'sum by ({by}) (rate({self.metric}{{inference_backend="tgi"{self.match}}}'
            f"[{self.window}]))"
        )


_PREFILL = ', method="prefill"'
RECORDED: tuple[Recorded, ...] = (
    Recorded("tgi_request_success"),
    Recorded("tgi_request_failure", keep=("err",)),
    Recorded("tgi_request_generated_tokens_sum"),
    Recorded("tgi_request_duration_bucket", keep=("le",)),
    Recorded("tgi_request_queue_duration_bucket", keep=("le",)),
    Recorded("tgi_batch_inference_duration_bucket", keep=("method", "le"), match=_PREFILL),
    # Not the input length buckets: 100 a pod (TGI divides max input tokens into 100), read only
    # by the deployment page; recording them would cost more every evaluation than it saves.
    # The time-to-first-token guardrail (deployments/alerts.py) over its 5-minute window.
    Recorded("tgi_request_queue_duration_bucket", keep=("le",), window="5m"),
    Recorded(
        "tgi_batch_inference_duration_bucket", keep=("method", "le"), match=_PREFILL, window="5m"
    ),
)
RECORDED_BY_METRIC = {(r.metric, r.window): r for r in RECORDED}


def recorded(metric: str, match: str = "", window: str = RECORDED_WINDOW) -> str:
    """The recorded series ``rate(metric{match}[window])`` as a selector template (``{sel}``)."""
    rule = RECORDED_BY_METRIC[(metric, window)]
    if match != rule.match:
        raise ValueError(f"{rule.record} records {rule.match!r}, not {match!r}")
    return rule.record + "{{{sel}" + match + "}}"


@dataclass(frozen=True)
class RecordedQuantile:
    """A quantile of a recorded bucket rate, per deployment and colour, labelled ``quantile``
    (as Kubernetes' ``cluster_quantile:…:histogram_quantile`` rules are): the quantile panels
    then read one series per deployment instead of one per bucket."""

    histogram: str
    quantile: float
    match: str = ""
    window: str = RECORDED_WINDOW

    @property
    def record(self) -> str:
        return f"deployment_quantile:{self.histogram}:histogram_quantile_rate{self.window}"

    @property
    def expr(self) -> str:
        buckets = RECORDED_BY_METRIC[(f"{self.histogram}_bucket", self.window)].record
        return f"histogram_quantile({self.quantile}, {buckets})"

    @property
    def labels(self) -> dict[str, str]:
        return {"quantile": str(self.quantile)}


QUANTILES: tuple[RecordedQuantile, ...] = (
    RecordedQuantile("tgi_request_duration", 0.5),
    RecordedQuantile("tgi_request_duration", 0.95),
    RecordedQuantile("tgi_request_duration", 0.99),
    RecordedQuantile("tgi_request_queue_duration", 0.95),
    RecordedQuantile("tgi_batch_inference_duration", 0.95, _PREFILL),
    RecordedQuantile("tgi_request_queue_duration", 0.95, window="5m"),
    RecordedQuantile("tgi_batch_inference_duration", 0.95, _PREFILL, window="5m"),
)
_QUANTILES = {(r.histogram, r.quantile, r.window): r for r in QUANTILES}


def recorded_quantile(
    histogram: str, quantile: float, match: str = "", window: str = RECORDED_WINDOW
) -> str:
    """``histogram_quantile(quantile, sum by ({by}, le) (rate(histogram_bucket[window])))`` of
    the selected series, read from its recording rule (a template with ``{sel}`` and ``{by}``).
    One series per deployment and colour: ``max by`` only picks the ``by`` labels."""
    rule = _QUANTILES[(histogram, quantile, window)]
    if match != rule.match:
        raise ValueError(f"{rule.record} records {rule.match!r}, not {match!r}")
    selector = "{{{sel}" + match + f', quantile="{quantile}"' + "}}"
    return f"max by ({{by}}) ({rule.record}{selector})"


RECORDING_RULES_HEADER = """\
# Recording rules for the inference portal's metrics pages: per-deployment rates of the TGI
# series the panels read and quantiles of them, so a panel over N deployments reads
# pre-aggregated series.
# GENERATED by `python -m deployments.metrics` from deployments/metrics.py (RECORDED,
# QUANTILES); do not edit by hand. Series come from the tgi-pods scrape job (pod labels after
# labelmap). The quantiles follow the rates they read, so they see this evaluation's rates.
"""


def render_recording_rules() -> dict[str, Any]:
    rules: list[dict[str, Any]] = [{"record": r.record, "expr": r.expr} for r in RECORDED]
    rules += [{"record": q.record, "expr": q.expr, "labels": q.labels} for q in QUANTILES]
    return {"groups": [{"name": RECORDING_GROUP, "rules": rules}]}


def recording_rules_yaml() -> str:
    import yaml

    body = yaml.safe_dump(render_recording_rules(), sort_keys=False, width=100)
    return RECORDING_RULES_HEADER + body


# --- panels ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Panel:
    """One chart: a PromQL template with ``{sel}`` (the tenant's TGI series), ``{ns}`` (the
    namespace) and ``{window}``; ``recorded`` is the same over the recorded series, used for
    the RECORDED_WINDOW.

    ``rollup`` says how a tenant's total is made from the per-deployment values: ``sum`` for
    rates, gauges and counts, ``max`` (the worst deployment) for quantiles, ``weighted`` for
    the success ratio (weighted by request rate), ``none`` where a total means nothing.
    ``ranged`` panels also get a time series (sparklines, charts).
    """

    name: str
    title: str
    unit: str
    template: str
    by: tuple[str, ...] = BY_DEPLOYMENT
    rollup: str = "sum"
    ranged: bool = True
    recorded: str = ""

    def query(self, namespace: str, window: str) -> str:
        selector = f'namespace="{namespace}", inference_backend="tgi"'
        template = self.template
        if self.recorded and window == RECORDED_WINDOW:
            template = self.recorded
        return template.format(
            sel=selector,
            ns=namespace,
            window=window,
            by=", ".join(self.by),
        )


def _rate(metric: str, match: str = "") -> tuple[str, str]:
    """``rate(metric[window])`` of the tenant's series, raw and recorded (templates)."""
    return "rate(" + metric + "{{{sel}" + match + "}}[{window}])", recorded(metric, match)


def _sum(metric: str, match: str = "") -> tuple[str, str]:
    raw, recorded = _rate(metric, match)
    return f"sum by ({{by}}) ({raw})", f"sum by ({{by}}) ({recorded})"


def _outcomes() -> tuple[str, str]:
    """Rate of requests ended (succeeded or failed): one series name regex over both."""
    names = ("tgi_request_success", "tgi_request_failure")
    raw = '{{__name__=~"' + "|".join(names) + '", {sel}}}'
    rules = "|".join(RECORDED_BY_METRIC[(n, RECORDED_WINDOW)].record for n in names)
    return (
        f"sum by ({{by}}) (rate({raw}[{{window}}]))",
        'sum by ({by}) ({{__name__=~"' + rules + '", {sel}}})',
    )


def _quantile(q: float, histogram: str, match: str = "") -> tuple[str, str]:
    raw, _ = _rate(f"{histogram}_bucket", match)
    return f"histogram_quantile({q}, sum by ({{by}}, le) ({raw}))", recorded_quantile(
        histogram, q, match
    )


def _raw_quantile(q: float, histogram: str) -> str:
    rate = "rate(" + histogram + "_bucket{{{sel}}}[{window}])"
    return f"histogram_quantile({q}, sum by ({{by}}, le) ({rate}))"


def _plus(*parts: tuple[str, str]) -> tuple[str, str]:
    return " + ".join(p[0] for p in parts), " + ".join(p[1] for p in parts)


def _ratio(top: tuple[str, str], bottom: tuple[str, str]) -> tuple[str, str]:
    return f"{top[0]} / {bottom[0]}", f"{top[1]} / {bottom[1]}"


def _panel(name: str, title: str, unit: str, queries: tuple[str, str], **options: Any) -> Panel:
    raw, recorded = queries
    return Panel(name, title, unit, raw, recorded=recorded, **options)


# DCGM exporter series carry the namespace and pod of the pod using the GPU; joining them with
# the TGI pods' `up` series brings in the deployment and colour labels. Without DCGM exporter
# (as on the local cluster) these panels are simply empty.
_TGI_PODS = "max by (namespace, pod, {by}) (up{{{sel}}})"


def _gpu(series: str, aggregate: str = "avg") -> str:
    return (
        f'{aggregate} by ({{by}}) ({series}{{{{namespace="{{ns}}"}}}}'
        f" * on (namespace, pod) group_left({{by}}) {_TGI_PODS})"
    )


_QUEUE_P95 = _quantile(0.95, "tgi_request_queue_duration")
_PREFILL_P95 = _quantile(0.95, "tgi_batch_inference_duration", _PREFILL)

PANELS: tuple[Panel, ...] = (
    _panel("request_rate", "Requests", "req/s", _outcomes()),
    _panel(
        "success_ratio",
        "Success ratio",
        "ratio",
        _ratio(_sum("tgi_request_success"), _outcomes()),
        rollup="weighted",
    ),
    _panel(
        "error_rate",
        "Errors by kind",
        "req/s",
        _sum("tgi_request_failure"),
        by=(*BY_DEPLOYMENT, "err"),
        ranged=False,
    ),
    Panel("queue_size", "Queued requests", "requests", "sum by ({by}) (tgi_queue_size{{{sel}}})"),
    Panel(
        "batch_size",
        "Batch size per replica",
        "requests",
        "avg by ({by}) (tgi_batch_current_size{{{sel}}})",
        rollup="max",
    ),
    _panel(
        "request_p50",
        "Request duration p50",
        "s",
        _quantile(0.5, "tgi_request_duration"),
        rollup="max",
    ),
    _panel(
        "request_p95",
        "Request duration p95",
        "s",
        _quantile(0.95, "tgi_request_duration"),
        rollup="max",
    ),
    _panel(
        "request_p99",
        "Request duration p99",
        "s",
        _quantile(0.99, "tgi_request_duration"),
        rollup="max",
    ),
    _panel("queue_p95", "Queue time p95", "s", _QUEUE_P95, rollup="max"),
    _panel("prefill_p95", "Prefill time p95", "s", _PREFILL_P95, rollup="max"),
    _panel(
        "ttft_p95",
        "Time to first token p95 (queue + prefill)",
        "s",
        _plus(_QUEUE_P95, _PREFILL_P95),
        rollup="max",
    ),
    _panel(
        "generated_tokens_rate",
        "Generated tokens",
        "tokens/s",
        _sum("tgi_request_generated_tokens_sum"),
    ),
    # Input lengths (deployment page only) are read raw: see RECORDED.
    Panel(
        "input_length_p50",
        "Input length p50",
        "tokens",
        _raw_quantile(0.5, "tgi_request_input_length"),
        rollup="max",
        ranged=False,
    ),
    Panel(
        "input_length_p95",
        "Input length p95",
        "tokens",
        _raw_quantile(0.95, "tgi_request_input_length"),
        rollup="max",
        ranged=False,
    ),
    Panel(
        "input_length_buckets",
        "Input length distribution",
        "requests",
        "sum by ({by}) (increase(tgi_request_input_length_bucket{{{sel}}}[{window}]))",
        by=(*BY_DEPLOYMENT, "le"),
        rollup="none",
        ranged=False,
    ),
    Panel("ready_replicas", "Replicas scraped up", "pods", "sum by ({by}) (up{{{sel}}})"),
    Panel("gpu_utilisation", "GPU utilisation", "%", _gpu("DCGM_FI_DEV_GPU_UTIL"), rollup="max"),
    Panel(
        "gpu_memory_used",
        "GPU memory used",
        "MiB",
        _gpu("DCGM_FI_DEV_FB_USED", "sum"),
        ranged=False,
    ),
)
PANELS_BY_NAME = {panel.name: panel for panel in PANELS}
RANGED_PANELS = tuple(panel for panel in PANELS if panel.ranged)

# The gateway's counters are labelled with the tenant slug and the deployment name (not the
# namespace): usage against the tenant's per-minute limits.
_SLUG = re.compile(r"[-a-zA-Z0-9_]+")
GATEWAY_BY = ("deployment",)
GATEWAY_PANELS: tuple[Panel, ...] = (
    Panel(
        "gateway_requests_per_minute",
        "Gateway requests",
        "req/min",
        'sum by ({by}) (rate(gateway_requests_total{{tenant="{ns}"}}[{window}])) * 60',
        by=GATEWAY_BY,
        ranged=False,
    ),
    Panel(
        "gateway_tokens_per_minute",
        "Gateway tokens (prompt + completion)",
        "tokens/min",
        # Two sums, not one rate() over a name regex: prompt and completion series carry the
        # same labels, and rate() drops the name, so Prometheus would refuse the duplicates.
        # The gateway always creates (primes) and increments both together.
        '(sum by ({by}) (rate(gateway_prompt_tokens_total{{tenant="{ns}"}}[{window}]))'
        ' + sum by ({by}) (rate(gateway_completion_tokens_total{{tenant="{ns}"}}[{window}])))'
        " * 60",
        by=GATEWAY_BY,
        ranged=False,
    ),
    Panel(
        "gateway_errors_per_minute",
        "Gateway errors by kind",
        "req/min",
        'sum by ({by}) (rate(gateway_errors_total{{tenant="{ns}"}}[{window}])) * 60',
        by=(*GATEWAY_BY, "kind"),
        ranged=False,
    ),
)


def _checked(namespace: str, window: str) -> None:
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"{namespace!r} is not a Kubernetes namespace name")
    if not _DURATION.fullmatch(window):
        raise ValueError(f"{window!r} is not a Prometheus duration such as 1m")


def client() -> PrometheusConnect:
    """A client that fails fast: a short timeout and no retries (the page retries on reload)."""
    return PrometheusConnect(
        url=settings.PROMETHEUS_URL, retry=Retry(total=0), timeout=TIMEOUT_SECONDS
    )


@dataclass(frozen=True)
class Query:
    """One PromQL call: an instant query (optionally at ``time``) or a range query."""

    promql: str
    start: datetime | None = None
    end: datetime | None = None
    step: str = ""
    time: datetime | None = None

    @classmethod
    def instant(cls, promql: str, at: datetime | None = None) -> Query:
        return cls(promql, time=at)

    @classmethod
    def range(cls, promql: str, start: datetime, end: datetime, step: str) -> Query:
        return cls(promql, start=start, end=end, step=step)

    def run(self, prometheus: PrometheusConnect) -> list[dict[str, Any]]:
        if self.step:
            return ask(prometheus.custom_query_range, self.promql, self.start, self.end, self.step)
        if self.time is not None:
            return ask(prometheus.custom_query, self.promql, {"time": self.time.timestamp()})
        return ask(prometheus.custom_query, self.promql)


_pool = ThreadPoolExecutor(max_workers=QUERY_CONCURRENCY, thread_name_prefix="promql")
_local = threading.local()


def _thread_client() -> PrometheusConnect:
    """One client (and its kept-alive connection) per pool thread and Prometheus URL."""
    cached = getattr(_local, "client", None)
    if cached is None or cached.url != settings.PROMETHEUS_URL:
        if cached is not None:
            cached.close()
        cached = _local.client = client()
    return cached


def _run(query: Query) -> list[dict[str, Any]]:
    return query.run(_thread_client())


def query_all(queries: list[Query]) -> list[list[dict[str, Any]]]:
    """Run the queries concurrently (QUERY_CONCURRENCY at a time); answers in query order.

    Raises MetricsUnavailable (the first failure) when Prometheus cannot answer.
    """
    futures = [_pool.submit(_run, query) for query in queries]
    return [future.result() for future in futures]


def ask(call: Any, *args: Any) -> list[dict[str, Any]]:
    try:
        result = call(*args)
    except requests.RequestException as error:
        raise MetricsUnavailable(f"Prometheus is unreachable ({type(error).__name__})") from error
    except PrometheusApiClientException as error:
        raise MetricsUnavailable(f"Prometheus refused the query: {error}") from error
    except (ValueError, KeyError) as error:
        raise MetricsUnavailable("Prometheus sent an answer that could not be read") from error
    return list(result or [])


def _key(panel: Panel, metric: dict[str, str]) -> Key:
    return tuple(metric.get(label, "") for label in panel.by)


def _select(names: Iterable[str] | None, among: tuple[Panel, ...]) -> tuple[Panel, ...]:
    if names is None:
        return among
    wanted = set(names)
    unknown = wanted - {panel.name for panel in among}
    if unknown:
        raise ValueError(f"unknown panels: {', '.join(sorted(unknown))}")
    return tuple(panel for panel in among if panel.name in wanted)


def tenant_panels(
    namespace: str, window: str = "1m", *, panels: Iterable[str] | None = None
) -> dict[str, dict[Key, float]]:
    """The current value of every panel (or of the named ``panels``) for all of a tenant's
    deployments.

    ``{panel name: {(deployment, colour): value}}``; a panel with no data maps to ``{}``.
    Raises MetricsUnavailable when Prometheus cannot answer.
    """
    _checked(namespace, window)
    selected = _select(panels, PANELS)
    answers = query_all([Query.instant(panel.query(namespace, window)) for panel in selected])
    return {
        panel.name: _instant(panel, samples)
        for panel, samples in zip(selected, answers, strict=True)
    }


def _instant(panel: Panel, samples: list[dict[str, Any]]) -> dict[Key, float]:
    values = {_key(panel, sample["metric"]): float(sample["value"][1]) for sample in samples}
    return {key: value for key, value in values.items() if not math.isnan(value)}


def tenant_panels_range(
    namespace: str,
    window: str = "1m",
    *,
    duration: timedelta = timedelta(minutes=30),
    step: str = "30s",
    end: datetime | None = None,
    panels: Iterable[str] | None = None,
) -> dict[str, dict[Key, list[tuple[float, float]]]]:
    """Series of every ranged panel (or of the named ``panels``):
    ``{panel: {key: [(unix time, value), ...]}}``.

    One range query per panel covering ``duration`` up to ``end`` (now), one point per ``step``.
    """
    _checked(namespace, window)
    selected = _select(panels, RANGED_PANELS)
    if not _DURATION.fullmatch(step):
        raise ValueError(f"{step!r} is not a Prometheus duration such as 30s")
    end = end or datetime.now().astimezone()
    start = end - duration
    answers = query_all(
        [Query.range(panel.query(namespace, window), start, end, step) for panel in selected]
    )
    return {
        panel.name: {
            _key(panel, s["metric"]): points for s in series if (points := _points(s["values"]))
        }
        for panel, series in zip(selected, answers, strict=True)
    }


def _points(values: list[list[Any]]) -> list[tuple[float, float]]:
    return [(float(t), float(v)) for t, v in values if not math.isnan(float(v))]


def gateway_usage(tenant_slug: str, window: str = "1m") -> dict[str, dict[Key, float]]:
    """The gateway's per-minute usage of one tenant, keyed by deployment (errors: and kind).

    One query per gateway panel; raises MetricsUnavailable when Prometheus cannot answer.
    """
    if not _SLUG.fullmatch(tenant_slug):
        raise ValueError(f"{tenant_slug!r} is not a tenant slug")
    if not _DURATION.fullmatch(window):
        raise ValueError(f"{window!r} is not a Prometheus duration such as 1m")
    queries = [
        Query.instant(panel.template.format(ns=tenant_slug, window=window, by=", ".join(panel.by)))
        for panel in GATEWAY_PANELS
    ]
    answers = query_all(queries)
    return {
        panel.name: _instant(panel, samples)
        for panel, samples in zip(GATEWAY_PANELS, answers, strict=True)
    }


def rollup(panels: dict[str, dict[Key, float]]) -> dict[str, float]:
    """The tenant's totals from the per-deployment values (see Panel.rollup); panels with no
    data are left out."""
    totals: dict[str, float] = {}
    for panel in PANELS:
        values = panels.get(panel.name) or {}
        if not values or panel.rollup == "none":
            continue
        if panel.rollup == "sum":
            totals[panel.name] = sum(values.values())
        elif panel.rollup == "max":
            totals[panel.name] = max(values.values())
        elif panel.rollup == "weighted":
            rates = panels.get("request_rate") or {}
            weight = sum(rates.get(key, 0.0) for key in values)
            if weight > 0:
                totals[panel.name] = (
                    sum(value * rates.get(key, 0.0) for key, value in values.items()) / weight
                )
    return totals


def by_deployment(values: dict[Key, float]) -> dict[str, float]:
    """Sum a panel's values over colours (and any further label): ``{deployment: value}``."""
    summed: dict[str, float] = {}
    for key, value in values.items():
        summed[key[0]] = summed.get(key[0], 0.0) + value
    return summed


if (
    __name__ == "__main__"
):  # python -m deployments.metrics > deploy/prometheus/inference-recording-rules.yml
    print(recording_rules_yaml(), end="")

"""Serving metrics for a tenant's deployments, read from Prometheus.

Panels are data: each is ONE PromQL query over every TGI pod of a tenant's namespace, aggregated
``by (inference_portal_deployment, inference_portal_colour)`` (the pod labels
``inference.portal/deployment`` and ``inference.portal/colour`` after Prometheus' labelmap), so a
page of N deployments costs one query per panel, never one per deployment.

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


@dataclass(frozen=True)
class Panel:
    """One chart: a PromQL template with ``{sel}`` (the tenant's TGI series), ``{ns}`` (the
    namespace) and ``{window}``.

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

    def query(self, namespace: str, window: str) -> str:
        selector = f'namespace="{namespace}", inference_backend="tgi"'
        return self.template.format(
            sel=selector, ns=namespace, window=window, by=", ".join(self.by)
        )


_OUTCOMES = '{{__name__=~"tgi_request_success|tgi_request_failure", {sel}}}'


def _quantile(q: float, histogram: str, extra: str = "") -> str:
    return (
        f"histogram_quantile({q}, sum by ({{by}}, le) "
        f"(rate({histogram}_bucket{{{{{{sel}}{extra}}}}}[{{window}}])))"
    )


# DCGM exporter series carry the namespace and pod of the pod using the GPU; joining them with
# the TGI pods' `up` series brings in the deployment and colour labels. Without DCGM exporter
# (as on the local cluster) these panels are simply empty.
_TGI_PODS = "max by (namespace, pod, {by}) (up{{{sel}}})"


def _gpu(series: str, aggregate: str = "avg") -> str:
    return (
        f'{aggregate} by ({{by}}) ({series}{{{{namespace="{{ns}}"}}}}'
        f" * on (namespace, pod) group_left({{by}}) {_TGI_PODS})"
    )


PANELS: tuple[Panel, ...] = (
    Panel(
        "request_rate",
        "Requests",
        "req/s",
        f"sum by ({{by}}) (rate({_OUTCOMES}[{{window}}]))",
    ),
    Panel(
        "success_ratio",
        "Success ratio",
        "ratio",
        "sum by ({by}) (rate(tgi_request_success{{{sel}}}[{window}]))"
        f" / sum by ({{by}}) (rate({_OUTCOMES}[{{window}}]))",
        rollup="weighted",
    ),
    Panel(
        "error_rate",
        "Errors by kind",
        "req/s",
        "sum by ({by}) (rate(tgi_request_failure{{{sel}}}[{window}]))",
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
    Panel(
        "request_p50",
        "Request duration p50",
        "s",
        _quantile(0.5, "tgi_request_duration"),
        rollup="max",
    ),
    Panel(
        "request_p95",
        "Request duration p95",
        "s",
        _quantile(0.95, "tgi_request_duration"),
        rollup="max",
    ),
    Panel(
        "request_p99",
        "Request duration p99",
        "s",
        _quantile(0.99, "tgi_request_duration"),
        rollup="max",
    ),
    Panel(
        "queue_p95",
        "Queue time p95",
        "s",
        _quantile(0.95, "tgi_request_queue_duration"),
        rollup="max",
    ),
    Panel(
        "prefill_p95",
        "Prefill time p95",
        "s",
        _quantile(0.95, "tgi_batch_inference_duration", ', method="prefill"'),
        rollup="max",
    ),
    Panel(
        "ttft_p95",
        "Time to first token p95 (queue + prefill)",
        "s",
        _quantile(0.95, "tgi_request_queue_duration")
        + " + "
        + _quantile(0.95, "tgi_batch_inference_duration", ', method="prefill"'),
        rollup="max",
    ),
    Panel(
        "generated_tokens_rate",
        "Generated tokens",
        "tokens/s",
        "sum by ({by}) (rate(tgi_request_generated_tokens_sum{{{sel}}}[{window}]))",
    ),
    Panel(
        "input_length_p50",
        "Input length p50",
        "tokens",
        _quantile(0.5, "tgi_request_input_length"),
        rollup="max",
        ranged=False,
    ),
    Panel(
        "input_length_p95",
        "Input length p95",
        "tokens",
        _quantile(0.95, "tgi_request_input_length"),
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
        "sum by ({by}) (rate({{__name__=~"
        '"gateway_prompt_tokens_total|gateway_completion_tokens_total", tenant="{ns}"}}'
        "[{window}])) * 60",
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

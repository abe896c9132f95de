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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

TIMEOUT_SECONDS = 3
"""Per query; a slow or absent Prometheus must not hold a page hostage."""

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
    """One chart: a PromQL template with ``{sel}`` (the tenant's TGI series) and ``{window}``."""

    name: str
    title: str
    unit: str
    template: str
    by: tuple[str, ...] = BY_DEPLOYMENT

    def query(self, namespace: str, window: str) -> str:
        selector = f'namespace="{namespace}", inference_backend="tgi"'
        return self.template.format(sel=selector, window=window, by=", ".join(self.by))


_OUTCOMES = '{{__name__=~"tgi_request_success|tgi_request_failure", {sel}}}'


def _quantile(q: float, histogram: str, extra: str = "") -> str:
    return (
        f"histogram_quantile({q}, sum by ({{by}}, le) "
        f"(rate({histogram}_bucket{{{{{{sel}}{extra}}}}}[{{window}}])))"
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
    ),
    Panel(
        "error_rate",
        "Errors by kind",
        "req/s",
        "sum by ({by}) (rate(tgi_request_failure{{{sel}}}[{window}]))",
        by=(*BY_DEPLOYMENT, "err"),
    ),
    Panel("queue_size", "Queued requests", "requests", "sum by ({by}) (tgi_queue_size{{{sel}}})"),
    Panel(
        "batch_size",
        "Batch size per replica",
        "requests",
        "avg by ({by}) (tgi_batch_current_size{{{sel}}})",
    ),
    Panel("request_p50", "Request duration p50", "s", _quantile(0.5, "tgi_request_duration")),
    Panel("request_p95", "Request duration p95", "s", _quantile(0.95, "tgi_request_duration")),
    Panel("request_p99", "Request duration p99", "s", _quantile(0.99, "tgi_request_duration")),
    Panel("queue_p95", "Queue time p95", "s", _quantile(0.95, "tgi_request_queue_duration")),
    Panel(
        "prefill_p95",
        "Prefill time p95",
        "s",
        _quantile(0.95, "tgi_batch_inference_duration", ', method="prefill"'),
    ),
    Panel(
        "ttft_p95",
        "Time to first token p95 (queue + prefill)",
        "s",
        _quantile(0.95, "tgi_request_queue_duration")
        + " + "
        + _quantile(0.95, "tgi_batch_inference_duration", ', method="prefill"'),
    ),
    Panel(
        "generated_tokens_rate",
        "Generated tokens",
        "tokens/s",
        "sum by ({by}) (rate(tgi_request_generated_tokens_sum{{{sel}}}[{window}]))",
    ),
    Panel("ready_replicas", "Replicas scraped up", "pods", "sum by ({by}) (up{{{sel}}})"),
)
PANELS_BY_NAME = {panel.name: panel for panel in PANELS}


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


def _ask(call: Any, *args: Any) -> list[dict[str, Any]]:
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


def tenant_panels(namespace: str, window: str = "1m") -> dict[str, dict[Key, float]]:
    """The current value of every panel for all of a tenant's deployments.

    ``{panel name: {(deployment, colour): value}}``; a panel with no data maps to ``{}``.
    Raises MetricsUnavailable when Prometheus cannot answer.
    """
    _checked(namespace, window)
    prometheus = client()
    try:
        panels: dict[str, dict[Key, float]] = {}
        for panel in PANELS:
            samples = _ask(prometheus.custom_query, panel.query(namespace, window))
            values = {
                _key(panel, sample["metric"]): float(sample["value"][1]) for sample in samples
            }
            panels[panel.name] = {key: v for key, v in values.items() if not math.isnan(v)}
        return panels
    finally:
        prometheus.close()


def tenant_panels_range(
    namespace: str,
    window: str = "1m",
    *,
    duration: timedelta = timedelta(minutes=30),
    step: str = "30s",
    end: datetime | None = None,
) -> dict[str, dict[Key, list[tuple[float, float]]]]:
    """Sparkline series of every panel: ``{panel: {key: [(unix time, value), ...]}}``.

    One range query per panel covering ``duration`` up to ``end`` (now), one point per ``step``.
    """
    _checked(namespace, window)
    if not _DURATION.fullmatch(step):
        raise ValueError(f"{step!r} is not a Prometheus duration such as 30s")
    end = end or datetime.now().astimezone()
    start = end - duration
    prometheus = client()
    try:
        panels: dict[str, dict[Key, list[tuple[float, float]]]] = {}
        for panel in PANELS:
            series = _ask(
                prometheus.custom_query_range, panel.query(namespace, window), start, end, step
            )
            panels[panel.name] = {
                _key(panel, s["metric"]): points
                for s in series
                if (
                    points := [
                        (float(t), float(v)) for t, v in s["values"] if not math.isnan(float(v))
                    ]
                )
            }
        return panels
    finally:
        prometheus.close()

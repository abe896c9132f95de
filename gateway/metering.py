"""Usage metering: Prometheus metrics per tenant, key and deployment.

Every gateway process exposes these on ``/metrics``; Prometheus sums them over processes. Their
names and labels come from ``deployments.gateway_series``, which the portal's gateway panels
(``deployments.metrics``) read too. ``key`` is the key's public prefix, never its secret;
requests refused before a key is known (bad or missing key) carry ``key=""`` and ``tenant=""``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

from deployments import gateway_series as series
from gateway.snapshot import Snapshot

disable_created_metrics()  # the *_created series only double the scrape size here
REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    series.REQUESTS,
    "Requests answered by the gateway, by HTTP status code.",
    (series.TENANT, series.KEY, series.DEPLOYMENT, series.CODE),
    registry=REGISTRY,
)
ERRORS = Counter(
    series.ERRORS,
    "Requests that failed, by kind (rate_limited, invalid_request, payload_too_large, "
    "unauthorized, model_not_found, not_found, upstream_unavailable, upstream_overloaded, "
    "upstream_error, client_disconnected).",
    (series.TENANT, series.KEY, series.DEPLOYMENT, series.KIND),
    registry=REGISTRY,
)
PROMPT_TOKENS = Counter(
    series.PROMPT_TOKENS,
    "Prompt tokens of answered requests (as reported by the model server).",
    (series.TENANT, series.KEY, series.DEPLOYMENT),
    registry=REGISTRY,
)
COMPLETION_TOKENS = Counter(
    series.COMPLETION_TOKENS,
    "Completion tokens of answered requests (as reported by the model server).",
    (series.TENANT, series.KEY, series.DEPLOYMENT),
    registry=REGISTRY,
)
DURATION = Histogram(
    series.DURATION,
    "Time from request to the last byte of the response, as the client sees it.",
    (series.TENANT, series.DEPLOYMENT),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
RATE_LIMITER_DEGRADED = Counter(
    series.RATE_LIMITER_DEGRADED,
    "Requests admitted without rate limiting because Redis was unreachable (fail open).",
    registry=REGISTRY,
)


def record(
    *,
    tenant: str,
    key: str,
    deployment: str,
    code: int,
    error: str | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    seconds: float | None = None,
) -> None:
    REQUESTS.labels(tenant, key, deployment, str(code)).inc()
    if error:
        ERRORS.labels(tenant, key, deployment, error).inc()
    if prompt_tokens:
        PROMPT_TOKENS.labels(tenant, key, deployment).inc(prompt_tokens)
    if completion_tokens:
        COMPLETION_TOKENS.labels(tenant, key, deployment).inc(completion_tokens)
    if seconds is not None and deployment:
        DURATION.labels(tenant, deployment).observe(seconds)


def prime(snapshot: Snapshot) -> None:
    """Create every key × deployment series at zero, so Prometheus sees them before their first
    request (``increase()`` cannot count the jump of a series that appears already at 3)."""
    for key in snapshot.keys_by_hash.values():
        for route in snapshot.routes_of(key.tenant.id):
            if key.may_use(route.name):
                labels = (key.tenant.slug, key.prefix, route.name)
                REQUESTS.labels(*labels, "200")
                PROMPT_TOKENS.labels(*labels)
                COMPLETION_TOKENS.labels(*labels)

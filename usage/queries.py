"""Current usage of a tenant against its quota and the gateway's limits, for the dashboards.

A read model across apps: quotas and keys (tenants), deployments and their GPU-hours
(deployments), the gateway's limiter state in Redis and its traffic in Prometheus. It sits above
all of them, so none of them has to reach up for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from deployments import gateway_series, metrics
from deployments.admission import tenant_gpus_in_use
from deployments.cost import gpu_hours_and_cost, history
from deployments.metrics import MetricsUnavailable
from deployments.models import Deployment
from gateway.ratelimit import LimitName, read_states
from tenants.models import Tenant, TenantQuota


@dataclass(frozen=True)
class UsageRow:
    label: str
    used: float
    limit: float
    unit: str = ""

    @property
    def percent(self) -> int:
        if self.limit <= 0:
            return 100 if self.used > 0 else 0
        return min(100, round(100 * self.used / self.limit))

    @property
    def level(self) -> str:
        return "high" if self.percent >= 90 else "medium" if self.percent >= 70 else "low"


def quota_usage(tenant: Tenant) -> list[UsageRow]:
    quota = TenantQuota.objects.get(tenant=tenant)
    deployments = Deployment.objects.for_tenant(tenant)
    totals = deployments.aggregate(widest=Max("replicas"))
    gpu_hours = _month_gpu_hours(tenant, deployments)
    try:
        last_minute = gateway_traffic(tenant, ("1m",))["1m"]
    except MetricsUnavailable:  # the dashboard still renders; these two rows read 0
        last_minute = {}
    requests = sum(row.requests for row in last_minute.values())
    tokens = sum(row.prompt_tokens + row.completion_tokens for row in last_minute.values())
    return [
        UsageRow("GPUs", tenant_gpus_in_use(tenant), quota.max_gpus),
        UsageRow("Deployments", deployments.count(), quota.max_deployments),
        UsageRow(
            "Largest deployment (replicas)",
            totals["widest"] or 0,
            quota.max_replicas_per_deployment,
        ),
        UsageRow("GPU-hours this month", gpu_hours, float(quota.monthly_gpu_hour_budget), "h"),
        UsageRow("Requests per minute", requests or 0, quota.requests_per_minute),
        UsageRow("Tokens per minute", tokens or 0, quota.tokens_per_minute),
    ]


def _month_gpu_hours(tenant: Tenant, deployments: Any) -> float:
    """GPU-hours since the start of this month (UTC), from the replica history."""
    end = timezone.now()
    start = end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    totals = gpu_hours_and_cost(history(list(deployments), start, end), start, end)
    return round(float(sum(hours for hours, _, _ in totals.values())), 1)


# --- gateway usage -------------------------------------------------------------------------


@dataclass(frozen=True)
class LimitUsage:
    """One gateway limit: what the last minute used (from the gateway's metrics) and what the
    limiter counts in its 60-second window right now (from its state in Redis).

    The limit means at most ``limit`` in any 60-second window; ``burst`` (requests only) caps how
    many arrive at once, refilling at limit/60 per second."""

    limit: int | None
    last_minute: int | None = None
    in_window: int | None = None
    available: int | None = None
    burst: int | None = None
    unit: str = "requests"

    @property
    def percent(self) -> int:
        if not self.limit or self.last_minute is None:
            return 0
        return min(100, round(100 * self.last_minute / self.limit))

    @property
    def refill_seconds(self) -> float | None:
        """Seconds per request the burst allowance refills by."""
        return 60 / self.limit if self.limit and self.burst else None


@dataclass(frozen=True)
class GatewayLiveUsage:
    redis_available: bool
    tenant_rpm: LimitUsage
    tenant_tpm: LimitUsage
    keys: dict[int, tuple[LimitUsage, LimitUsage]]


def _limiter_states(
    tenant: Tenant, quota: TenantQuota, keys: list[Any]
) -> list[tuple[int, int] | None] | None:
    """(used in the window, admissible now) of the tenant's RPM and TPM, then RPM and TPM per
    key (None for an unlimited one), read by the limiter's own script in one round trip; None
    when Redis is unreachable."""
    wanted: list[tuple[str, LimitName, int | None, int | None]] = [
        ("", LimitName.TENANT_RPM, quota.requests_per_minute, quota.requests_burst),
        ("", LimitName.TENANT_TPM, quota.tokens_per_minute, None),
    ]
    for key in keys:
        # As the gateway does: a burst without the key's own limit smooths at the tenant's.
        rpm = key.requests_per_minute or (quota.requests_per_minute if key.requests_burst else None)
        wanted.append((str(key.id), LimitName.KEY_RPM, rpm, key.requests_burst))
        wanted.append((str(key.id), LimitName.KEY_TPM, key.tokens_per_minute, None))
    limited = [(k, name, limit, burst or 0) for k, name, limit, burst in wanted if limit]
    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=0.25, socket_connect_timeout=0.25
        )
        try:
            states = iter(
                read_states(client, settings.GATEWAY_RATELIMIT_PREFIX, tenant.slug, limited)
            )
        finally:
            client.close()
    except redis.RedisError:
        return None
    answers: list[tuple[int, int] | None] = []
    for _, _, limit, _ in wanted:
        state = next(states) if limit else None
        answers.append((state.used, state.remaining) if state else None)
    return answers


def gateway_live_usage(
    tenant: Tenant, keys: list[Any], last_minute: dict[tuple[str, str], Any] | None = None
) -> GatewayLiveUsage:
    """Each gateway limit of the tenant and its keys against what was used.

    ``last_minute`` is ``gateway_traffic(tenant, ("1m",))["1m"]`` (None when Prometheus is
    away).
    """
    quota = TenantQuota.objects.get(tenant=tenant)
    states = _limiter_states(tenant, quota, keys)

    def usage(
        index: int, limit: int | None, used: float | None, unit: str, burst: int | None = None
    ) -> LimitUsage:
        state = states[index] if states is not None else None
        return LimitUsage(
            limit,
            None if used is None else round(used),
            in_window=state[0] if state else None,
            available=state[1] if state else None,
            burst=burst,
            unit=unit,
        )

    def summed(prefix: str | None, field: str) -> float | None:
        if last_minute is None:
            return None
        return sum(
            getattr(row, field)
            if field == "requests"
            else row.prompt_tokens + row.completion_tokens
            for (key, _), row in last_minute.items()
            if prefix is None or key == prefix
        )

    per_key = {
        key.id: (
            usage(
                2 + 2 * i,
                key.requests_per_minute,
                summed(key.prefix, "requests"),
                "requests",
                key.requests_burst,
            ),
            usage(3 + 2 * i, key.tokens_per_minute, summed(key.prefix, "tokens"), "tokens"),
        )
        for i, key in enumerate(keys)
    }
    return GatewayLiveUsage(
        states is not None,
        usage(
            0,
            quota.requests_per_minute,
            summed(None, "requests"),
            "requests",
            quota.requests_burst,
        ),
        usage(1, quota.tokens_per_minute, summed(None, "tokens"), "tokens"),
        per_key,
    )


@dataclass(frozen=True)
class KeyTraffic:
    """One key's (or one deployment's) traffic through the gateway over a window."""

    requests: float = 0
    errors: float = 0
    prompt_tokens: float = 0
    completion_tokens: float = 0


# Which KeyTraffic figure each of the gateway's traffic panels fills.
_TRAFFIC_FIELDS = {
    gateway_series.REQUESTS: "requests",
    gateway_series.ERRORS: "errors",
    gateway_series.PROMPT_TOKENS: "prompt_tokens",
    gateway_series.COMPLETION_TOKENS: "completion_tokens",
}


def gateway_traffic(
    tenant: Tenant, windows: tuple[str, ...] = ("24h",)
) -> dict[str, dict[tuple[str, str], KeyTraffic]]:
    """Per window, per (key prefix, deployment): requests, errors and tokens, from the gateway's
    Prometheus metrics (``metrics.GATEWAY_TRAFFIC_PANELS``, every window in one concurrent
    batch, whatever the number of keys). Raises ``MetricsUnavailable`` when Prometheus cannot
    answer."""
    answers = metrics.gateway_panels(tenant.slug, metrics.GATEWAY_TRAFFIC_PANELS, windows)
    traffic: dict[str, dict[tuple[str, str], KeyTraffic]] = {}
    for window, panels in answers.items():
        rows: dict[tuple[str, str], dict[str, float]] = {}
        for name, values in panels.items():
            for (key, deployment), value in values.items():
                rows.setdefault((key, deployment), {})[_TRAFFIC_FIELDS[name]] = round(value)
        traffic[window] = {k: KeyTraffic(**v) for k, v in rows.items() if k[0]}
    return traffic

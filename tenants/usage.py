"""Current usage of a tenant against its quota, for the dashboard and the API."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Max

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
    # Imported here: deployments depends on tenants, not the other way round at import time.
    from deployments.models import Deployment

    quota = TenantQuota.objects.get(tenant=tenant)
    deployments = Deployment.objects.for_tenant(tenant)
    from deployments.admission import tenant_gpus_in_use

    totals = deployments.aggregate(widest=Max("replicas"))
    return [
        UsageRow("GPUs", tenant_gpus_in_use(tenant), quota.max_gpus),
        UsageRow("Deployments", deployments.count(), quota.max_deployments),
        UsageRow(
            "Largest deployment (replicas)",
            totals["widest"] or 0,
            quota.max_replicas_per_deployment,
        ),
        UsageRow("GPU-hours this month", 0, float(quota.monthly_gpu_hour_budget), "h"),
        UsageRow("Requests per minute", 0, quota.requests_per_minute),
        UsageRow("Tokens per minute", 0, quota.tokens_per_minute),
    ]

"""What a tenant's GPUs cost, against what the same tokens would cost on a cloud API.

Self-managed serving is metered by GPU-hours: a replica costs its tier's price per GPU-hour whether
it serves one request or thousands. The history is ``ReplicaChange`` rows (one per change of a
colour's replica count, written by ``record_replicas``; ``sample_replicas`` observes the
cluster for the Celery beat task, so autoscaler changes count too). GPU-hours integrate that
step function over the window; tokens served come from the engines' own counters in
Prometheus (each engine names them: ``input_tokens_counter``/``output_tokens_counter`` in
engines/<name>/metrics.py), so the figures hold without the gateway.

Idle time is not hidden: GPU-hours are paid for the whole window, so a deployment used now and
then has a high cost per million tokens and shows as dearer than the API. ``active_hours``
(hours with any request, from Prometheus at 1-minute resolution) says how much of the time the
GPUs did work.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from deployments import metrics
from deployments.models import Deployment, ReplicaChange, Tier
from deployments.rendering import constants as c
from engines import ENGINES
from engines.promql import BACKEND_LABEL, EngineMetrics
from portal import kube
from portal.errors import DomainError
from tenants.models import Tenant

HOUR = Decimal(3600)
MILLION = Decimal(1_000_000)
CENTS = Decimal("0.01")
ACTIVITY_STEP = "1m"
ACTIVITY_STEP_HOURS = Decimal(1) / Decimal(60)

Side = tuple[int, str]
"""(deployment id, colour)."""


@dataclass(frozen=True)
class Observed:
    """Replicas one colour of a deployment runs now, with what a replica costs."""

    replicas: int
    gpus_per_replica: int
    price_per_gpu_hour: Decimal


@dataclass(frozen=True)
class ApiPrice:
    """A cloud API's price per million input and output tokens (USD)."""

    input_per_million: Decimal
    output_per_million: Decimal

    @classmethod
    def default(cls) -> ApiPrice:
        return cls(
            Decimal(str(settings.COST_API_INPUT_PRICE_PER_MILLION)),
            Decimal(str(settings.COST_API_OUTPUT_PRICE_PER_MILLION)),
        )

    def cost(self, input_tokens: Decimal, output_tokens: Decimal) -> Decimal:
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / (
            MILLION
        )


# --- recording the history ------------------------------------------------------------------


@transaction.atomic
def record_replicas(observed: dict[Side, Observed], at: datetime | None = None) -> int:
    """Write a ReplicaChange for every side whose replicas (or price) differ from its last row;
    sides with a non-zero last row that are no longer observed get a row of 0 replicas.

    Returns the number of rows written. Safe to call as often as wanted: nothing changes, nothing
    is written.
    """
    at = at or timezone.now()
    latest: dict[Side, ReplicaChange] = {}
    for change in ReplicaChange.objects.order_by("deployment_id", "colour", "-at", "-id").distinct(
        "deployment_id", "colour"
    ):
        latest[(change.deployment_id, change.colour)] = change
    rows = []
    for side in sorted(set(observed) | set(latest)):
        now = observed.get(side)
        last = latest.get(side)
        if now is None:
            if last is None or last.replicas == 0:
                continue
            now = Observed(0, last.gpus_per_replica, last.price_per_gpu_hour)
        if last is not None and (
            last.replicas,
            last.gpus_per_replica,
            last.price_per_gpu_hour,
        ) == (now.replicas, now.gpus_per_replica, now.price_per_gpu_hour):
            continue
        if last is None and now.replicas == 0:
            continue
        rows.append(
            ReplicaChange(
                deployment_id=side[0],
                colour=side[1],
                at=at,
                replicas=now.replicas,
                gpus_per_replica=now.gpus_per_replica,
                price_per_gpu_hour=now.price_per_gpu_hour,
            )
        )
    ReplicaChange.objects.bulk_create(rows)
    return len(rows)


def observe_cluster() -> dict[Side, Observed]:
    """Replicas of every portal TGI Deployment (both colours) in the cluster, by side.

    ``status.replicas`` counts the pods that exist, which is what holds GPUs (an autoscaler's
    changes included). One list call for the whole cluster.
    """
    apps = k8s.AppsV1Api(kube.api_client())
    try:
        listing = apps.list_deployment_for_all_namespaces(label_selector=c.LABEL_DEPLOYMENT)
    except ApiException as error:
        raise kube.ClusterUnavailable(
            f"the Kubernetes API answered {error.status}: {error.reason}"
        ) from None
    except Urllib3HTTPError:
        raise kube.ClusterUnavailable(
            "cannot reach the Kubernetes API server; try again later"
        ) from None
    portal = {
        (d.tenant.namespace, d.name): d
        for d in Deployment.objects.select_related("tenant", "tier").filter(deleting=False)
    }
    tiers = {tier.slug: tier for tier in Tier.objects.all()}
    observed: dict[Side, Observed] = {}
    for item in listing.items:
        if item.metadata is None:
            continue
        labels = item.metadata.labels or {}
        deployment = portal.get((item.metadata.namespace, labels.get(c.LABEL_DEPLOYMENT, "")))
        colour = labels.get(c.LABEL_COLOUR, "")
        if deployment is None or not colour:
            continue
        tier = tiers.get(labels.get(c.LABEL_TIER, ""), deployment.tier)
        observed[(deployment.pk, colour)] = Observed(
            replicas=(item.status.replicas or 0) if item.status else 0,
            gpus_per_replica=tier.gpus_per_replica,
            price_per_gpu_hour=tier.price_per_gpu_hour,
        )
    return observed


def sample_replicas() -> int:
    """Observe the cluster and record what changed (the Celery beat task)."""
    return record_replicas(observe_cluster())


# --- pricing the history --------------------------------------------------------------------


def gpu_hours_and_cost(
    changes: Iterable[ReplicaChange], start: datetime, end: datetime
) -> dict[int, tuple[Decimal, Decimal, Decimal]]:
    """``{deployment id: (GPU-hours, cost, replica-hours)}`` over [start, end).

    Each row holds until the next row of its side (or ``end``); the part before ``start`` is
    cut off. ``changes`` must include the last row before ``start`` of every side.
    """
    by_side: dict[Side, list[ReplicaChange]] = defaultdict(list)
    for change in changes:
        by_side[(change.deployment_id, change.colour)].append(change)
    totals: dict[int, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
    for (deployment_id, _), rows in by_side.items():
        rows.sort(key=lambda r: (r.at, r.id or 0))
        for row, following in zip(rows, [*rows[1:], None], strict=True):
            begin = max(row.at, start)
            until = min(following.at if following else end, end)
            if until <= begin:
                continue
            hours = Decimal(str((until - begin).total_seconds())) / HOUR
            gpu_hours = hours * row.replicas * row.gpus_per_replica
            total = totals[deployment_id]
            total[0] += gpu_hours
            total[1] += gpu_hours * row.price_per_gpu_hour
            total[2] += hours * row.replicas
    return {key: (v[0], v[1], v[2]) for key, v in totals.items()}


def history(deployments: Iterable[Deployment], start: datetime, end: datetime) -> list[Any]:
    """The ReplicaChange rows that matter for [start, end): those inside it, plus each side's
    last row before it."""
    ids = [d.pk for d in deployments]
    before = (
        ReplicaChange.objects.filter(deployment_id__in=ids, at__lt=start)
        .order_by("deployment_id", "colour", "-at", "-id")
        .distinct("deployment_id", "colour")
    )
    inside = ReplicaChange.objects.filter(deployment_id__in=ids, at__gte=start, at__lt=end)
    return [*before, *inside]


@dataclass
class DeploymentCost:
    """The cost figures of one deployment over the window."""

    deployment: Deployment
    gpu_hours: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    replica_hours: Decimal = Decimal(0)
    input_tokens: Decimal = Decimal(0)
    output_tokens: Decimal = Decimal(0)
    active_hours: Decimal | None = None
    api_cost: Decimal = Decimal(0)

    @property
    def tokens(self) -> Decimal:
        return self.input_tokens + self.output_tokens

    @property
    def cost_per_million(self) -> Decimal | None:
        """What a million tokens (input + output) cost here; None without tokens."""
        return self.cost / self.tokens * MILLION if self.tokens else None

    @property
    def api_cost_per_million(self) -> Decimal | None:
        return self.api_cost / self.tokens * MILLION if self.tokens else None

    @property
    def savings(self) -> Decimal | None:
        """1 - cost / API cost: 0.75 is "75% cheaper"; negative means the API is cheaper."""
        if not self.api_cost:
            return None
        return 1 - self.cost / self.api_cost

    @property
    def idle_share(self) -> Decimal | None:
        """Share of the replica-hours in which the deployment served nothing (approximate)."""
        if self.active_hours is None or not self.replica_hours:
            return None
        window_hours = self.replica_hours
        return max(Decimal(0), 1 - min(self.active_hours, window_hours) / window_hours)


@dataclass
class TenantCost:
    """A tenant's cost over a window, per deployment and in total."""

    start: datetime
    end: datetime
    api_price: ApiPrice
    rows: list[DeploymentCost]
    tokens_error: str = ""
    totals: DeploymentCost | None = field(default=None)

    def __post_init__(self) -> None:
        total = DeploymentCost(deployment=None)  # type: ignore[arg-type]
        for row in self.rows:
            total.gpu_hours += row.gpu_hours
            total.cost += row.cost
            total.replica_hours += row.replica_hours
            total.input_tokens += row.input_tokens
            total.output_tokens += row.output_tokens
            total.api_cost += row.api_cost
        self.totals = total

    @property
    def hours(self) -> Decimal:
        return Decimal(str((self.end - self.start).total_seconds())) / HOUR

    def break_even_tokens_per_gpu_hour(self, tier: Tier) -> Decimal | None:
        """Tokens a GPU-hour of ``tier`` must serve (at the API's blended price for this
        tenant's input/output mix) before self-hosting is cheaper."""
        assert self.totals is not None
        if not self.totals.tokens or not self.totals.api_cost:
            return None
        blended = self.totals.api_cost / self.totals.tokens
        return tier.price_per_gpu_hour / blended


def _duration(start: datetime, end: datetime) -> str:
    return f"{max(1, math.ceil((end - start).total_seconds()))}s"


def _tokens(namespace: str, start: datetime, end: datetime) -> dict[str, dict[str, Decimal]]:
    """``{deployment: {"input": n, "output": n, "active_steps": n}}`` from Prometheus: one
    query per figure for all deployments."""
    window = _duration(start, end)
    by = metrics.DEPLOYMENT_LABEL
    # Each engine's counters over its own series; the inner sums keep the engine label so that a
    # deployment that switched engines within the window adds both engines' tokens.
    each = f"{by}, {BACKEND_LABEL}"

    namespace_matcher = f'namespace="{namespace}"'

    def union(part: Callable[[EngineMetrics, str], str]) -> str:
        """One query per engine over its own series (``sel``), joined with ``or``."""
        queries = [
            part(engine.metrics, engine.metrics.selector(namespace_matcher))
            for engine in ENGINES.values()
        ]
        return " or ".join(f"({query})" for query in queries)

    def increase(counter: str) -> Callable[[EngineMetrics, str], str]:
        return lambda m, sel: (
            f"sum by ({each}) (increase({getattr(m, counter)}{{{sel}}}[{window}]))"
        )

    activity = union(
        lambda m, sel: f"sum by ({each}) (rate({m.activity.format(sel=sel)}[{ACTIVITY_STEP}])) > 0"
    )
    queries = {
        "input": f"sum by ({by}) ({union(increase('input_tokens_counter'))})",
        "output": f"sum by ({by}) ({union(increase('output_tokens_counter'))})",
        # Minutes in which the deployment answered at least one request (with any engine).
        "active_steps": f"sum by ({by}) (count_over_time((max by ({by}) ({activity}))"
        f"[{window}:{ACTIVITY_STEP}]))",
    }
    figures: dict[str, dict[str, Decimal]] = defaultdict(dict)
    answers = metrics.query_all([metrics.Query.instant(q, at=end) for q in queries.values()])
    for name, samples in zip(queries, answers, strict=True):
        for sample in samples:
            value = float(sample["value"][1])
            if math.isfinite(value):
                deployment = sample["metric"].get(by, "")
                figures[deployment][name] = Decimal(str(round(value)))
    return figures


def tenant_cost(
    tenant: Tenant,
    start: datetime,
    end: datetime,
    api_price: ApiPrice | None = None,
) -> TenantCost:
    """GPU-hours, cost, tokens and the API comparison of every deployment of the tenant.

    A Prometheus outage does not hide the GPU cost: tokens are then unknown and
    ``tokens_error`` says why.
    """
    if end <= start:
        raise DomainError("the window must end after it starts", field="days")
    api_price = api_price or ApiPrice.default()
    deployments = list(Deployment.objects.for_tenant(tenant).select_related("tier"))
    priced = gpu_hours_and_cost(history(deployments, start, end), start, end)
    tokens_error = ""
    try:
        tokens = _tokens(tenant.namespace, start, end)
    except metrics.MetricsUnavailable as error:
        tokens, tokens_error = {}, str(error)
    rows = []
    for deployment in deployments:
        gpu_hours, cost, replica_hours = priced.get(deployment.pk, (Decimal(0),) * 3)
        figures = tokens.get(deployment.name, {})
        row = DeploymentCost(
            deployment=deployment,
            gpu_hours=gpu_hours,
            cost=cost,
            replica_hours=replica_hours,
            input_tokens=figures.get("input", Decimal(0)),
            output_tokens=figures.get("output", Decimal(0)),
            active_hours=None
            if tokens_error
            else figures.get("active_steps", Decimal(0)) * ACTIVITY_STEP_HOURS,
        )
        row.api_cost = api_price.cost(row.input_tokens, row.output_tokens)
        rows.append(row)
    return TenantCost(
        start=start, end=end, api_price=api_price, rows=rows, tokens_error=tokens_error
    )


def money(value: Decimal | None) -> str:
    """Dollars with cents (sub-cent amounts keep 4 decimals so they do not read as $0.00)."""
    if value is None:
        return "—"
    if value and abs(value) < CENTS:
        return f"${value.quantize(Decimal('0.0001'), rounding=ROUND_HALF_UP)}"
    return f"${value.quantize(CENTS, rounding=ROUND_HALF_UP):,}"


def window_days(days: int, end: datetime | None = None) -> tuple[datetime, datetime]:
    end = end or timezone.now()
    return end - timedelta(days=days), end

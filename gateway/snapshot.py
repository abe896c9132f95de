"""What the gateway needs per request, loaded from PostgreSQL in one go and kept in memory.

A snapshot maps key hashes to keys (with their tenant's policy and limits) and
``(tenant id, deployment name)`` to the deployment's serving limits and active Service. It is
rebuilt whenever ``tenants.gateway_sync`` signals a change and every few seconds regardless, so
requests never touch the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deployments.models import Deployment
from deployments.rendering.meta import service_name
from engines import DEFAULT_ENGINE
from tenants.models import GatewayKey, Tenant


@dataclass(frozen=True)
class TenantPolicy:
    """A tenant's gateway limits and output caps (from its quota)."""

    id: int
    slug: str
    namespace: str
    requests_per_minute: int
    requests_burst: int | None
    tokens_per_minute: int
    require_max_tokens: bool
    max_output_tokens: int | None
    max_request_bytes: int


@dataclass(frozen=True)
class KeyEntry:
    """A live gateway key. ``deployments`` empty means every deployment of the tenant."""

    id: int
    prefix: str
    name: str
    tenant: TenantPolicy
    requests_per_minute: int | None
    requests_burst: int | None
    tokens_per_minute: int | None
    deployments: frozenset[str]

    def may_use(self, deployment: str) -> bool:
        return not self.deployments or deployment in self.deployments


@dataclass(frozen=True)
class Route:
    """A deployment with an active revision: where its traffic goes and its token limits."""

    tenant_id: int
    name: str
    namespace: str
    service: str
    model_id: str
    max_input_tokens: int
    max_total_tokens: int
    created: int
    # The engine serving the active revision (engines.ENGINES key): how to count input tokens.
    engine: str = DEFAULT_ENGINE


@dataclass(frozen=True)
class Snapshot:
    keys_by_hash: dict[str, KeyEntry] = field(default_factory=dict)
    routes: dict[tuple[int, str], Route] = field(default_factory=dict)

    def routes_of(self, tenant_id: int) -> list[Route]:
        return sorted(
            (r for (tid, _), r in self.routes.items() if tid == tenant_id), key=lambda r: r.name
        )


def load_snapshot() -> Snapshot:
    """Four queries, whatever the number of keys and deployments."""
    policies = {
        t.id: TenantPolicy(
            id=t.id,
            slug=t.slug,
            namespace=t.namespace,
            requests_per_minute=t.quota.requests_per_minute,
            requests_burst=t.quota.requests_burst,
            tokens_per_minute=t.quota.tokens_per_minute,
            require_max_tokens=t.quota.require_max_tokens,
            max_output_tokens=t.quota.max_output_tokens,
            max_request_bytes=t.quota.max_request_bytes,
        )
        for t in Tenant.objects.select_related("quota")
        if hasattr(t, "quota")
    }
    keys: dict[str, KeyEntry] = {}
    for key in GatewayKey.objects.active().prefetch_related("deployments"):
        policy = policies.get(key.tenant_id)
        if policy is None:
            continue
        keys[key.secret_hash] = KeyEntry(
            id=key.id,
            prefix=key.prefix,
            name=key.name,
            tenant=policy,
            requests_per_minute=key.requests_per_minute,
            requests_burst=key.requests_burst,
            tokens_per_minute=key.tokens_per_minute,
            deployments=frozenset(d.name for d in key.deployments.all()),
        )
    routes: dict[tuple[int, str], Route] = {}
    serving = Deployment.objects.filter(
        deleting=False, active_revision__isnull=False
    ).select_related("tenant", "active_revision__model_revision__model")
    for deployment in serving:
        revision = deployment.active_revision
        assert revision is not None  # filtered above
        routes[(deployment.tenant_id, deployment.name)] = Route(
            tenant_id=deployment.tenant_id,
            name=deployment.name,
            namespace=deployment.tenant.namespace,
            service=service_name(deployment.name),
            model_id=revision.model_revision.model.repo_id,
            max_input_tokens=revision.max_input_tokens,
            max_total_tokens=revision.max_total_tokens,
            created=int(deployment.created_at.timestamp()),
            engine=getattr(revision, "engine", "") or DEFAULT_ENGINE,
        )
    return Snapshot(keys_by_hash=keys, routes=routes)

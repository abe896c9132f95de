"""Domain operations on tenants, memberships, quotas and API tokens.

Views, API viewsets, the admin console and Celery tasks all call these functions; each one
validates its input completely before writing, writes in one transaction, and records an
audit event.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.errors import Conflict, DomainError, Forbidden
from tenants import audit, gateway_sync
from tenants.audit import Actor
from tenants.choices import ROLE_RANK, Role
from tenants.constants import (
    API_TOKEN_PREFIX_LENGTH,
    API_TOKEN_SCHEME,
    API_TOKEN_SECRET_BYTES,
    GATEWAY_KEY_PREFIX_LENGTH,
    GATEWAY_KEY_SCHEME,
    GATEWAY_KEY_SECRET_BYTES,
)
from tenants.keys import hash_gateway_key_secret, hash_token_secret
from tenants.models import (
    ApiToken,
    GatewayKey,
    Membership,
    QuotaChange,
    Tenant,
    TenantQuota,
    requests_burst_error,
)

QUOTA_FIELDS = (
    "max_gpus",
    "max_deployments",
    "max_replicas_per_deployment",
    "allowed_tiers",
    "monthly_gpu_hour_budget",
    "requests_per_minute",
    "requests_burst",
    "tokens_per_minute",
    "require_max_tokens",
    "max_output_tokens",
    "max_request_bytes",
)


def _validate(instance: Any, exclude: list[str] | None = None) -> None:
    """Run model validation, letting ValidationError (with field names) reach the caller."""
    instance.full_clean(exclude=exclude, validate_unique=True, validate_constraints=False)


# --- tenants -------------------------------------------------------------------------------


@transaction.atomic
def create_tenant(
    actor: Actor,
    *,
    name: str,
    slug: str,
    namespace: str,
    quota: dict[str, Any] | None = None,
) -> Tenant:
    """Create a tenant with its quota (defaults unless given); platform admins only."""
    tenant = Tenant(name=name, slug=slug, namespace=namespace)
    _validate(tenant)
    tenant_quota = TenantQuota(**(quota or {}))
    unknown = set(quota or {}) - set(QUOTA_FIELDS)
    if unknown:
        raise DomainError(f"unknown quota fields: {', '.join(sorted(unknown))}", field="quota")
    _validate(tenant_quota, exclude=["tenant"])
    try:
        tenant.save()
    except IntegrityError:  # a concurrent create won the unique slug or namespace
        raise Conflict(
            "a tenant with this slug or namespace already exists", field="slug"
        ) from None
    tenant_quota.tenant = tenant
    tenant_quota.save()
    audit.record(
        actor,
        "tenant.create",
        tenant,
        tenant=tenant,
        changes={"name": name, "slug": slug, "namespace": namespace},
    )
    return tenant


@transaction.atomic
def rename_tenant(actor: Actor, tenant: Tenant, *, name: str) -> Tenant:
    before = {"name": tenant.name}
    tenant.name = name
    _validate(tenant)
    tenant.save(update_fields=["name"])
    audit.record(
        actor, "tenant.update", tenant, tenant=tenant, changes=audit.diff(before, {"name": name})
    )
    return tenant


# --- memberships ---------------------------------------------------------------------------


def _parse_role(role: str, field: str = "role") -> Role:
    try:
        return Role(role)
    except ValueError:
        allowed = ", ".join(choice.value for choice in Role)
        raise DomainError(
            f"unknown role '{role}' (choose one of: {allowed})", field=field
        ) from None


@transaction.atomic
def add_member(actor: Actor, tenant: Tenant, *, username: str, role: str) -> Membership:
    parsed_role = _parse_role(role)
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise DomainError(f"no user named '{username}'", field="username")
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise Conflict(f"'{username}' is already a member of {tenant}", field="username")
    membership = Membership.objects.create(tenant=tenant, user=user, role=parsed_role)
    audit.record(
        actor,
        "membership.create",
        membership,
        tenant=tenant,
        changes={"user": username, "role": role},
    )
    return membership


def _ensure_an_owner_remains(membership: Membership) -> None:
    others = Membership.objects.filter(tenant=membership.tenant, role=Role.OWNER).exclude(
        pk=membership.pk
    )
    if membership.role == Role.OWNER and not others.exists():
        raise Conflict("a tenant must keep at least one owner", field="role", code="last_owner")


@transaction.atomic
def change_member_role(actor: Actor, membership: Membership, *, role: str) -> Membership:
    parsed_role = _parse_role(role)
    # Lock the tenant's memberships so two concurrent demotions cannot remove the last owner.
    list(Membership.objects.select_for_update().filter(tenant=membership.tenant))
    membership.refresh_from_db()
    if parsed_role != Role.OWNER:
        _ensure_an_owner_remains(membership)
    before = {"role": membership.role}
    membership.role = parsed_role
    membership.save(update_fields=["role"])
    audit.record(
        actor,
        "membership.update",
        membership,
        tenant=membership.tenant,
        changes=audit.diff(before, {"role": parsed_role.value}),
    )
    return membership


@transaction.atomic
def remove_member(actor: Actor, membership: Membership) -> None:
    list(Membership.objects.select_for_update().filter(tenant=membership.tenant))
    _ensure_an_owner_remains(membership)
    audit.record(
        actor,
        "membership.delete",
        membership,
        tenant=membership.tenant,
        changes={"user": membership.user.get_username(), "role": membership.role},
    )
    # The member's API tokens act for them in this tenant, so they go with the membership.
    ApiToken.objects.for_tenant(membership.tenant).filter(
        user=membership.user, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    membership.delete()


# --- quotas --------------------------------------------------------------------------------


@transaction.atomic
def update_quota(actor: Actor, tenant: Tenant, changes: dict[str, Any]) -> TenantQuota:
    """Apply a partial quota update; all fields are validated before anything is saved."""
    unknown = set(changes) - set(QUOTA_FIELDS)
    if unknown:
        field = sorted(unknown)[0]
        raise DomainError(f"'{field}' is not a quota field", field=field)
    quota = TenantQuota.objects.select_for_update().get(tenant=tenant)
    before = {field: getattr(quota, field) for field in QUOTA_FIELDS}
    for field, value in changes.items():
        setattr(quota, field, value)
    _validate(quota, exclude=["tenant"])
    after = {field: getattr(quota, field) for field in QUOTA_FIELDS}
    delta = audit.diff(before, after)
    if not delta:
        return quota
    quota.save()
    QuotaChange.objects.create(
        tenant=tenant, changed_by=actor.user_or_none, changes=delta, changed_at=timezone.now()
    )
    audit.record(actor, "quota.update", quota, tenant=tenant, changes=delta)
    gateway_sync.config_changed()
    return quota


# --- API tokens ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created token; `plaintext` exists only here and is shown once."""

    token: ApiToken
    plaintext: str


@transaction.atomic
def issue_api_token(
    actor: Actor,
    tenant: Tenant,
    *,
    user: Any,
    name: str,
    role: str,
    expires_in_days: int | None = None,
) -> IssuedToken:
    parsed_role = _parse_role(role)
    if not name.strip():
        raise DomainError("a token needs a name", field="name")
    if len(name) > 100:
        raise DomainError("must be at most 100 characters", field="name")
    days = settings.API_TOKEN_DEFAULT_DAYS if expires_in_days is None else expires_in_days
    if not 1 <= days <= 3650:
        raise DomainError("must be between 1 and 3650 days", field="expires_in_days")
    membership = Membership.objects.filter(tenant=tenant, user=user).first()
    if membership is None:
        raise Forbidden("only members of the tenant can hold its tokens", field="user")
    if ROLE_RANK[parsed_role] > membership.rank:
        raise Forbidden(
            f"a token cannot carry more than its holder's role ({membership.role})", field="role"
        )
    prefix = secrets.token_hex(API_TOKEN_PREFIX_LENGTH // 2)
    secret = secrets.token_urlsafe(API_TOKEN_SECRET_BYTES)
    token = ApiToken.objects.create(
        tenant=tenant,
        user=user,
        name=name.strip(),
        prefix=prefix,
        secret_hash=hash_token_secret(secret),
        role=parsed_role,
        expires_at=timezone.now() + timedelta(days=days),
    )
    audit.record(
        actor,
        "api_token.create",
        token,
        tenant=tenant,
        changes={
            "name": token.name,
            "role": token.role,
            "expires_at": token.expires_at.isoformat(),
        },
    )
    return IssuedToken(token=token, plaintext=f"{API_TOKEN_SCHEME}_{prefix}_{secret}")


@transaction.atomic
def revoke_api_token(actor: Actor, token: ApiToken) -> ApiToken:
    # Conditional update: of two concurrent revocations exactly one records the event.
    updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    token.refresh_from_db()
    if updated:
        audit.record(actor, "api_token.revoke", token, tenant=token.tenant)
    return token


class TokenRejected(Exception):
    """Why a presented API token cannot authenticate (shown to the client)."""


def authenticate_api_token(presented: str) -> ApiToken:
    try:
        scheme, prefix, secret = presented.split("_", 2)
    except ValueError:
        raise TokenRejected("malformed API token") from None
    if scheme != API_TOKEN_SCHEME:
        raise TokenRejected("malformed API token")
    token = ApiToken.objects.select_related("tenant", "user").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.secret_hash, hash_token_secret(secret)):
        raise TokenRejected("invalid API token")
    if token.is_revoked:
        raise TokenRejected("API token has been revoked")
    if token.is_expired:
        raise TokenRejected("API token has expired")
    if not token.user.is_active:
        raise TokenRejected("the token's user is deactivated")
    now = timezone.now()
    # Throttled so a busy automation does not turn every read into a write.
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def sweep_expired_api_tokens() -> int:
    """Record one audit event for each token that has expired since the last sweep."""
    recorded = 0
    actor = Actor.system("tenants.sweep_expired_api_tokens")
    for token_id in ApiToken.objects.filter(
        expires_at__lte=timezone.now(), expiry_recorded=False
    ).values_list("id", flat=True):
        with transaction.atomic():
            # Exactly one sweeper claims each token, however many run at once.
            claimed = ApiToken.objects.filter(pk=token_id, expiry_recorded=False).update(
                expiry_recorded=True
            )
            if claimed:
                token = ApiToken.objects.select_related("tenant").get(pk=token_id)
                audit.record(actor, "api_token.expire", token, tenant=token.tenant)
                recorded += 1
    return recorded


# --- gateway keys --------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedGatewayKey:
    """A freshly created gateway key; `plaintext` exists only here and is shown once."""

    key: GatewayKey
    plaintext: str


def _key_limit(value: Any, field: str, ceiling: int) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise DomainError("must be a whole number", field=field)
    if value < 1:
        raise DomainError("must be at least 1 (leave empty for the tenant's limit)", field=field)
    if ceiling and value > ceiling:  # a tenant limit of 0 means unlimited (as in the gateway)
        raise DomainError(f"must not exceed the tenant's limit of {ceiling}", field=field)
    return value


def _key_burst(value: Any, rpm: int | None, tenant_rpm: int) -> int | None:
    """A key's burst, checked against the per-minute limit it smooths: the key's own, else the
    tenant's (which the gateway then applies to the key)."""
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise DomainError("must be a whole number", field="requests_burst")
    if value < 1:
        raise DomainError("must be at least 1 (leave empty for none)", field="requests_burst")
    error = requests_burst_error(value, rpm or tenant_rpm, "" if rpm else "the tenant's ")
    if error:
        raise DomainError(error, field="requests_burst")
    return value


def _key_deployments(tenant: Tenant, names: Any) -> list[Any]:
    # The key's own relation names the deployment model: tenants sits below deployments and
    # declares the link by string, never importing it.
    deployment_model: Any = GatewayKey.deployments.field.related_model
    if names is None:
        return []
    if isinstance(names, str) or not all(isinstance(name, str) for name in names):
        raise DomainError("must be a list of deployment names", field="deployments")
    wanted = sorted(set(names))
    found = list(
        deployment_model.objects.for_tenant(tenant).filter(name__in=wanted, deleting=False)
    )
    missing = sorted(set(wanted) - {d.name for d in found})
    if missing:
        raise DomainError(f"no such deployment: {', '.join(missing)}", field="deployments")
    return found


@transaction.atomic
def create_gateway_key(
    actor: Actor,
    tenant: Tenant,
    *,
    name: str,
    deployments: Any = (),
    requests_per_minute: Any = None,
    requests_burst: Any = None,
    tokens_per_minute: Any = None,
) -> IssuedGatewayKey:
    """A new key for the tenant's OpenAI-compatible endpoint, limited to ``deployments`` when
    given, with per-key limits within the tenant's ceiling."""
    clean_name = (name or "").strip()
    if not clean_name:
        raise DomainError("a key needs a name", field="name")
    if len(clean_name) > 100:
        raise DomainError("must be at most 100 characters", field="name")
    quota = TenantQuota.objects.get(tenant=tenant)
    rpm = _key_limit(requests_per_minute, "requests_per_minute", quota.requests_per_minute)
    burst = _key_burst(requests_burst, rpm, quota.requests_per_minute)
    tpm = _key_limit(tokens_per_minute, "tokens_per_minute", quota.tokens_per_minute)
    scoped = _key_deployments(tenant, deployments)
    if GatewayKey.objects.for_tenant(tenant).active().filter(name=clean_name).exists():
        raise Conflict("an active key of this tenant already has this name", field="name")
    prefix = secrets.token_hex(GATEWAY_KEY_PREFIX_LENGTH // 2)
    secret = secrets.token_urlsafe(GATEWAY_KEY_SECRET_BYTES)
    try:
        with transaction.atomic():
            key = GatewayKey.objects.create(
                tenant=tenant,
                name=clean_name,
                prefix=prefix,
                secret_hash=hash_gateway_key_secret(secret),
                requests_per_minute=rpm,
                requests_burst=burst,
                tokens_per_minute=tpm,
                created_by=actor.user_or_none,
            )
    except IntegrityError:  # a concurrent create took the name
        raise Conflict("an active key of this tenant already has this name", field="name") from None
    key.deployments.set(scoped)
    gateway_sync.config_changed()
    audit.record(
        actor,
        "gateway_key.create",
        key,
        tenant=tenant,
        changes={
            "name": key.name,
            "deployments": [d.name for d in scoped],
            "requests_per_minute": rpm,
            "requests_burst": burst,
            "tokens_per_minute": tpm,
        },
    )
    return IssuedGatewayKey(key=key, plaintext=f"{GATEWAY_KEY_SCHEME}_{prefix}_{secret}")


@transaction.atomic
def update_gateway_key(actor: Actor, key: GatewayKey, changes: dict[str, Any]) -> GatewayKey:
    """Change a key's limits or deployment scope (all validated before anything is saved)."""
    allowed = {"requests_per_minute", "requests_burst", "tokens_per_minute", "deployments"}
    unknown = set(changes) - allowed
    if unknown:
        field = sorted(unknown)[0]
        raise DomainError(f"'{field}' cannot be changed", field=field)
    key = GatewayKey.objects.select_for_update().get(pk=key.pk)
    if key.is_revoked:
        raise Conflict("a revoked key cannot be changed", field="revoked_at")
    quota = TenantQuota.objects.get(tenant_id=key.tenant_id)
    before: dict[str, Any] = {
        "requests_per_minute": key.requests_per_minute,
        "requests_burst": key.requests_burst,
        "tokens_per_minute": key.tokens_per_minute,
        "deployments": sorted(key.deployments.values_list("name", flat=True)),
    }
    after = dict(before)
    if "requests_per_minute" in changes:
        after["requests_per_minute"] = _key_limit(
            changes["requests_per_minute"], "requests_per_minute", quota.requests_per_minute
        )
    if "requests_burst" in changes or "requests_per_minute" in changes:
        # Re-checked when only the limit moves: lowering it below the burst is refused too.
        after["requests_burst"] = _key_burst(
            changes.get("requests_burst", key.requests_burst),
            after["requests_per_minute"],
            quota.requests_per_minute,
        )
    if "tokens_per_minute" in changes:
        after["tokens_per_minute"] = _key_limit(
            changes["tokens_per_minute"], "tokens_per_minute", quota.tokens_per_minute
        )
    scoped = None
    if "deployments" in changes:
        scoped = _key_deployments(key.tenant, changes["deployments"])
        after["deployments"] = sorted(d.name for d in scoped)
    delta = audit.diff(before, after)
    if not delta:
        return key
    key.requests_per_minute = after["requests_per_minute"]
    key.requests_burst = after["requests_burst"]
    key.tokens_per_minute = after["tokens_per_minute"]
    key.save(update_fields=["requests_per_minute", "requests_burst", "tokens_per_minute"])
    if scoped is not None:
        key.deployments.set(scoped)
    audit.record(actor, "gateway_key.update", key, tenant=key.tenant, changes=delta)
    gateway_sync.config_changed()
    return key


@transaction.atomic
def revoke_gateway_key(actor: Actor, key: GatewayKey) -> GatewayKey:
    # Conditional update: of two concurrent revocations exactly one records the event.
    updated = GatewayKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    key.refresh_from_db()
    if updated:
        audit.record(actor, "gateway_key.revoke", key, tenant=key.tenant)
        gateway_sync.config_changed()
    return key

"""Domain operations of the model registry.

Hub tokens live only in a Kubernetes Secret in the tenant's namespace (where TGI pods read
them); the database keeps where it is, a fingerprint, who set it and whether it worked.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from deployments.rendering import render_hub_token_secret, render_namespace
from deployments.rendering.constants import HF_TOKEN_SECRET_KEY, HUB_TOKEN_SECRET_NAME
from models_registry import fit
from models_registry.choices import AccessStatus, TokenStatus
from models_registry.constants import ACCEPTED_PIPELINE_TAGS
from models_registry.hub import GatedNoAccess, HubClient, HubError
from models_registry.metadata import ModelFacts, describe_changes, extract_facts
from models_registry.models import (
    HubCredential,
    ModelRevision,
    RegisteredModel,
    RemoteCodeApproval,
)
from portal import kube
from portal.errors import Conflict, DomainError, Forbidden
from tenants import audit
from tenants.audit import Actor
from tenants.models import Tenant

log = logging.getLogger(__name__)
MAX_REVISION_LENGTH = 200


# --- Hub tokens ----------------------------------------------------------------------------


def fingerprint(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def tenant_hub_token(tenant: Tenant) -> str | None:
    credential = HubCredential.objects.for_tenant(tenant).first()
    if credential is None:
        return None
    return kube.read_secret_value(tenant.namespace, credential.secret_name, credential.secret_key)


def hub_client_for(tenant: Tenant) -> HubClient:
    return HubClient(token=tenant_hub_token(tenant))


def ensure_tenant_namespace(tenant: Tenant) -> None:
    kube.apply(render_namespace(tenant.slug, tenant.namespace))


@transaction.atomic
def set_hub_token(actor: Actor, tenant: Tenant, token: str) -> HubCredential:
    """Validate a new token with whoami and only then store it (also used for rotation)."""
    token = token.strip()
    if not token:
        raise DomainError("a Hugging Face token is required", field="token")
    if not token.startswith("hf_") or len(token) > 200 or any(c.isspace() for c in token):
        raise DomainError("does not look like a Hugging Face token (hf_…)", field="token")
    identity = HubClient(token=token).whoami()  # raises InvalidToken before anything changes
    access = (identity.get("auth") or {}).get("accessToken") or {}
    ensure_tenant_namespace(tenant)
    new_fingerprint = fingerprint(token)
    kube.apply(render_hub_token_secret(tenant.slug, tenant.namespace, token, new_fingerprint))
    now = timezone.now()
    credential = HubCredential.objects.for_tenant(tenant).select_for_update().first()
    previous = credential.fingerprint if credential else None
    values = {
        "secret_name": HUB_TOKEN_SECRET_NAME,
        "secret_key": HF_TOKEN_SECRET_KEY,
        "fingerprint": new_fingerprint,
        "hub_username": str(identity.get("name", ""))[:100],
        "token_name": str(access.get("displayName", ""))[:100],
        "token_role": str(access.get("role", ""))[:32],
        "status": TokenStatus.VALID,
        "validated_at": now,
        "set_by": actor.user_or_none,
        "set_at": now,
    }
    if credential is None:
        credential = HubCredential.objects.create(tenant=tenant, **values)
    else:
        for name, value in values.items():
            setattr(credential, name, value)
        credential.save()
    audit.record(
        actor,
        "hub_token.rotate" if previous else "hub_token.set",
        credential,
        tenant=tenant,
        changes={"fingerprint": [previous, new_fingerprint], "hub_user": credential.hub_username},
    )
    # A new token may grant (or lose) gated access: say so now, not at the nightly check.
    recheck_gated_access(tenant)
    return credential


@transaction.atomic
def remove_hub_token(actor: Actor, tenant: Tenant) -> None:
    credential = HubCredential.objects.for_tenant(tenant).first()
    if credential is None:
        return
    kube.delete("v1", "Secret", credential.secret_name, tenant.namespace)
    audit.record(actor, "hub_token.remove", credential, tenant=tenant)
    credential.delete()


# --- looking models up and registering them ------------------------------------------------


@dataclass
class Lookup:
    """What registering a repo would record, and why it would be refused or needs attention."""

    facts: ModelFacts | None
    refusal: str = ""
    refusal_field: str = "repo_id"
    warnings: list[str] = field(default_factory=list)


def _validate_reference(repo_id: str, revision: str) -> tuple[str, str]:
    repo_id, revision = repo_id.strip(), (revision or "main").strip()
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise DomainError(
            "must be a Hub repository id like 'org/name' (letters, digits, '-', '_', '.')",
            field="repo_id",
        ) from None
    if len(revision) > MAX_REVISION_LENGTH or any(c.isspace() for c in revision):
        raise DomainError("must be a branch, tag or commit sha", field="revision")
    return repo_id, revision


def _facts(client: HubClient, repo_id: str, revision: str) -> ModelFacts:
    info = client.model_info(repo_id, revision)
    pipeline = getattr(info, "pipeline_tag", None) or ""
    if pipeline not in ACCEPTED_PIPELINE_TAGS:
        raise DomainError(
            f"'{repo_id}' is a {pipeline or 'model without a pipeline tag'} model; only "
            "text-generation models can be served by TGI",
            field="repo_id",
            code="not_text_generation",
        )
    if getattr(info, "gated", False) and not client.has_access(repo_id):
        raise GatedNoAccess(
            f"'{repo_id}' is gated and the tenant's Hub token has no access to it: request "
            "access on the Hub, or set a token of an account that has it",
            field="repo_id",
        )
    config = client.read_json(repo_id, str(info.sha), "config.json")
    if config is None:
        raise DomainError(
            f"'{repo_id}' has no config.json at {str(info.sha)[:12]}, so TGI cannot load it",
            field="repo_id",
            code="no_config",
        )
    sha = str(info.sha)
    file_names = {sibling.rfilename for sibling in getattr(info, "siblings", None) or []}
    tokenizer_config = (
        client.read_json(repo_id, sha, "tokenizer_config.json")
        if "tokenizer_config.json" in file_names
        else None
    )
    return extract_facts(info, config, revision, tokenizer_config)


def _warnings(facts: ModelFacts) -> list[str]:
    notes = []
    if facts.license_family:
        notes.append(
            f"Licence {facts.license} ({facts.license_family}): a tenant owner must acknowledge "
            "it before the model can be deployed."
        )
    if facts.requires_custom_code:
        notes.append(
            f"Needs trust_remote_code ({facts.custom_code_reason}): a platform admin must "
            "approve it before the model can be deployed."
        )
    if facts.gated:
        notes.append("Gated on the Hub: deployments depend on the tenant token keeping access.")
    return notes


def lookup(tenant: Tenant, repo_id: str, revision: str = "main") -> Lookup:
    """Preview a registration without saving anything (for the as-you-type lookup)."""
    try:
        repo_id, revision = _validate_reference(repo_id, revision)
        facts = _facts(hub_client_for(tenant), repo_id, revision)
    except DomainError as error:
        return Lookup(facts=None, refusal=error.message, refusal_field=error.field or "repo_id")
    return Lookup(facts=facts, warnings=_warnings(facts))


def _save_revision(
    model: RegisteredModel, facts: ModelFacts, actor: Actor, revision: str
) -> ModelRevision:
    values = facts.as_fields()
    values["requested_revision"] = revision
    return ModelRevision.objects.create(model=model, created_by=actor.user_or_none, **values)


def register_model(
    actor: Actor, tenant: Tenant, *, repo_id: str, revision: str = "main"
) -> RegisteredModel:
    """Resolve the revision to a commit on the Hub and register the model pinned to it."""
    repo_id, revision = _validate_reference(repo_id, revision)
    if RegisteredModel.objects.for_tenant(tenant).filter(repo_id=repo_id).exists():
        raise Conflict(f"'{repo_id}' is already registered in this tenant", field="repo_id")
    facts = _facts(hub_client_for(tenant), repo_id, revision)  # all Hub I/O before any write
    try:
        with transaction.atomic():
            model = RegisteredModel.objects.create(
                tenant=tenant,
                repo_id=repo_id,
                requested_revision=revision,
                registered_by=actor.user_or_none,
                access_checked_at=timezone.now(),
            )
            model.current_revision = _save_revision(model, facts, actor, revision)
            model.save(update_fields=["current_revision"])
            audit.record(
                actor,
                "model.register",
                model,
                tenant=tenant,
                changes={"revision": revision, "commit": facts.commit_sha},
            )
    except IntegrityError:
        raise Conflict(
            f"'{repo_id}' is already registered in this tenant", field="repo_id"
        ) from None
    return model


@dataclass
class UpdatePreview:
    facts: ModelFacts
    changes: dict[str, Any]

    @property
    def is_newer(self) -> bool:
        old, new = self.changes["commit"]
        return bool(old != new)


def preview_update(model: RegisteredModel, revision: str | None = None) -> UpdatePreview:
    """What moving the model to the revision's current commit would change; saves nothing."""
    _, revision = _validate_reference(model.repo_id, revision or model.requested_revision)
    facts = _facts(hub_client_for(model.tenant), model.repo_id, revision)
    current = model.current_revision
    old = {
        "commit_sha": current.commit_sha if current else None,
        "files": current.files if current else [],
        "config": current.config if current else {},
        "license": current.license if current else None,
        "has_chat_template": current.has_chat_template if current else None,
    }
    return UpdatePreview(facts=facts, changes=describe_changes(old, facts))


def apply_update(
    actor: Actor, model: RegisteredModel, *, revision: str | None, expected_sha: str
) -> ModelRevision:
    """Move to a newer commit, but only the one the user saw in the preview."""
    preview = preview_update(model, revision)
    if preview.facts.commit_sha != expected_sha:
        raise Conflict(
            f"the revision now points at {preview.facts.commit_sha[:12]}, not "
            f"{expected_sha[:12]}: review the changes again",
            field="expected_sha",
        )
    if not preview.is_newer:
        raise Conflict("the model is already pinned to this commit", field="expected_sha")
    with transaction.atomic():
        locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        existing = locked.revisions.filter(commit_sha=expected_sha).first()
        new_revision = existing or _save_revision(
            locked, preview.facts, actor, revision or locked.requested_revision
        )
        locked.current_revision = new_revision
        locked.requested_revision = revision or locked.requested_revision
        # A changed licence must be acknowledged again.
        if preview.changes["license"] is not None:
            locked.license_acknowledged_at = None
            locked.license_acknowledged_by = None
        locked.save()
        audit.record(actor, "model.update", locked, tenant=locked.tenant, changes=preview.changes)
    model.refresh_from_db()
    return new_revision


@transaction.atomic
def acknowledge_license(actor: Actor, model: RegisteredModel) -> RegisteredModel:
    revision = model.current_revision
    if revision is None or not revision.license_family:
        raise DomainError("this model's licence needs no acknowledgement", field="license")
    model.license_acknowledged_by = actor.user_or_none
    model.license_acknowledged_at = timezone.now()
    model.save(update_fields=["license_acknowledged_by", "license_acknowledged_at"])
    audit.record(
        actor,
        "model.acknowledge_license",
        model,
        tenant=model.tenant,
        changes={"license": revision.license, "family": revision.license_family},
    )
    return model


def remote_code_approval(revision: ModelRevision) -> RemoteCodeApproval | None:
    """The review of this commit's remote code, if a platform admin gave one."""
    return (
        RemoteCodeApproval.objects.filter(revision=revision).select_related("approved_by").first()
    )


def trusts_remote_code(revision: ModelRevision) -> bool:
    """Whether the commit is served with trust_remote_code: it needs it and its code was
    approved. An approval of another commit of the model does not count."""
    return revision.requires_custom_code and remote_code_approval(revision) is not None


@transaction.atomic
def approve_remote_code(actor: Actor, model: RegisteredModel) -> RegisteredModel:
    """Approve the remote code of the commit the model is pinned to now (and only that one)."""
    user = actor.user_or_none
    if user is None or not user.is_staff:
        raise Forbidden("only platform admins can approve remote code")
    revision = model.current_revision
    if revision is None or not revision.requires_custom_code:
        raise DomainError("this model runs without remote code", field="trust_remote_code")
    approval, _ = RemoteCodeApproval.objects.update_or_create(
        revision=revision, defaults={"approved_by": user, "approved_at": timezone.now()}
    )
    revision.remote_code_approval = approval  # what the caller shows next, without a re-read
    audit.record(
        actor,
        "model.approve_remote_code",
        model,
        tenant=model.tenant,
        changes={"commit": revision.commit_sha, "reason": revision.custom_code_reason},
    )
    return model


@transaction.atomic
def delete_model(actor: Actor, model: RegisteredModel) -> None:
    if model.deployments.exists():
        names = ", ".join(model.deployments.values_list("name", flat=True))
        raise Conflict(f"the model is used by deployments: {names}", field="repo_id")
    audit.record(actor, "model.delete", model, tenant=model.tenant)
    RegisteredModel.objects.filter(pk=model.pk).update(current_revision=None)
    model.delete()


def deployment_blockers(model: RegisteredModel, revision: ModelRevision | None = None) -> list[str]:
    """Why the model's commit `revision` (default: the one it is pinned to) cannot be deployed
    right now (empty when it can)."""
    revision = revision or model.current_revision
    blockers = []
    if revision is None:
        return ["the model has no pinned revision"]
    if revision.license_family and model.license_acknowledged_at is None:
        blockers.append(f"a tenant owner must acknowledge the {revision.license_family}")
    if revision.requires_custom_code and not trusts_remote_code(revision):
        blockers.append(
            f"a platform admin must approve trust_remote_code for commit {revision.commit_sha[:12]}"
        )
    if model.access_status == AccessStatus.LOST:
        blockers.append("the tenant's Hub token can no longer access this gated model")
    return blockers


# --- the nightly access check --------------------------------------------------------------


def recheck_gated_access(tenant: Tenant | None = None) -> dict[str, int]:
    """Check every registered gated model (of ``tenant``, or of all tenants) against its
    tenant's token; flag lost access, and clear the flag where access came back."""
    counts = {"checked": 0, "lost": 0, "restored": 0, "errors": 0}
    actor = Actor.system("models_registry.recheck_gated_access")
    gated = RegisteredModel.objects.select_related("tenant", "current_revision").exclude(
        current_revision__gated=""
    )
    if tenant is not None:
        gated = gated.filter(tenant=tenant)
    clients: dict[int, HubClient] = {}
    for model in gated:
        try:
            client = clients.get(model.tenant_id) or hub_client_for(model.tenant)
            clients[model.tenant_id] = client
            reachable = client.has_access(model.repo_id)
        except (HubError, kube.ClusterUnavailable) as error:
            counts["errors"] += 1
            log.warning("access check of %s failed: %s", model.repo_id, error.message)
            continue
        counts["checked"] += 1
        status = AccessStatus.OK if reachable else AccessStatus.LOST
        with transaction.atomic():
            changed = (
                RegisteredModel.objects.filter(pk=model.pk)
                .exclude(access_status=status)
                .update(
                    access_status=status,
                    access_checked_at=timezone.now(),
                    access_detail=""
                    if reachable
                    else "the tenant's Hub token has no access (auth-check)",
                )
            )
            RegisteredModel.objects.filter(pk=model.pk).update(access_checked_at=timezone.now())
            if changed:
                counts["restored" if reachable else "lost"] += 1
                audit.record(
                    actor,
                    "model.access_restored" if reachable else "model.access_lost",
                    model,
                    tenant=model.tenant,
                )
    return counts


# --- fit -----------------------------------------------------------------------------------


# The tiers a model is checked against belong to deployments, which sits above this app: it
# offers them when Django is ready (DeploymentsConfig.ready). Without it there are none to fit.
_tier_source: Callable[[], list[fit.TierCapacity]] = list


def offer_tier_capacities(source: Callable[[], list[fit.TierCapacity]]) -> None:
    """Set where the fit table reads the active tiers' capacities from."""
    global _tier_source
    _tier_source = source


def tier_capacities() -> list[fit.TierCapacity]:
    return _tier_source()


def fit_check(
    revision: ModelRevision, choice: fit.ServingChoice
) -> tuple[list[fit.TierFit], fit.TierFit | None]:
    try:
        shape = fit.ModelShape.of(revision)
    except ValueError as error:
        raise DomainError(str(error), field="model") from None
    return fit.fit_table(shape, choice, tier_capacities())

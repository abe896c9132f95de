"""Every page and API route with the status each persona must get.

Later capabilities add their routes here; tests/isolation/test_coverage.py fails for any URL
pattern (and HTTP method) of the project that is missing from this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devstack.hub import fixtures as hub

MISTRAL_MAIN = hub.repo(hub.MISTRAL_7B_ID).branches["main"]

Kwargs = Callable[[Any], dict[str, Any]]

# Expected statuses per persona, for the usual shapes of access.
UI_READ = {
    "owner_a": 200,
    "maintainer_a": 200,
    "viewer_a": 200,
    "owner_b": 404,
    "admin": 200,
    "anonymous": 302,
}
API_READ = {**UI_READ, "anonymous": 401}


def writes(success: int, *, least: str, api: bool) -> dict[str, int]:
    """Statuses for a write that needs at least the role `least` in tenant A."""
    order = ["viewer_a", "maintainer_a", "owner_a"]
    allowed = order[order.index(least) :] if least in order else []
    statuses = {persona: (success if persona in allowed else 403) for persona in order}
    statuses.update(owner_b=404, admin=success, anonymous=401 if api else 302)
    return statuses


def platform_write(success: int) -> dict[str, int]:
    return {
        "owner_a": 403,
        "maintainer_a": 403,
        "viewer_a": 403,
        "owner_b": 404,
        "admin": success,
        "anonymous": 401,
    }


def tenant_a(world: Any) -> dict[str, Any]:
    return {"tenant_slug": world.tenant_a.slug}


def action_on(key: str, action: str) -> Kwargs:
    return lambda world: {
        "tenant_slug": world.tenant_a.slug,
        "pk": world.objects[key].pk,
        "action": action,
    }


def in_a(key: str) -> Kwargs:
    return lambda world: {"tenant_slug": world.tenant_a.slug, "pk": world.objects[key].pk}


@dataclass(frozen=True)
class Route:
    url_name: str
    method: str
    expect: dict[str, int]
    kwargs: Kwargs = field(default=lambda world: {})
    data: dict[str, Any] | None = None
    json: bool = False
    note: str = ""

    @property
    def id(self) -> str:
        return f"{self.method.upper()} {self.url_name}{' ' + self.note if self.note else ''}"


ROUTES: list[Route] = [
    # --- public and account pages ---
    Route(
        "healthz",
        "get",
        dict.fromkeys(
            ("owner_a", "maintainer_a", "viewer_a", "owner_b", "admin", "anonymous"), 200
        ),
    ),
    Route(
        "login",
        "get",
        {
            "owner_a": 302,
            "maintainer_a": 302,
            "viewer_a": 302,
            "owner_b": 302,
            "admin": 302,
            "anonymous": 200,
        },
    ),
    # A wrong password re-renders the form (200); a logged-in user is sent on (302).
    Route(
        "login",
        "post",
        {
            "owner_a": 302,
            "maintainer_a": 302,
            "viewer_a": 302,
            "owner_b": 302,
            "admin": 302,
            "anonymous": 200,
        },
        data={"username": "owner_a", "password": "wrong"},
    ),
    Route(
        "logout",
        "post",
        dict.fromkeys(
            ("owner_a", "maintainer_a", "viewer_a", "owner_b", "admin", "anonymous"), 302
        ),
    ),
    Route(
        "home",
        "get",
        dict.fromkeys(
            ("owner_a", "maintainer_a", "viewer_a", "owner_b", "admin", "anonymous"), 302
        ),
    ),
    Route("tenant-list", "get", {**UI_READ, "owner_b": 200}),
    # --- tenant pages ---
    Route("tenant-dashboard", "get", UI_READ, tenant_a),
    Route("tenant-members", "get", UI_READ, tenant_a),
    Route(
        "tenant-members",
        "post",
        writes(302, least="owner_a", api=False),
        tenant_a,
        {"username": "owner_b", "role": "viewer"},
    ),
    Route(
        "tenant-member-change",
        "post",
        writes(302, least="owner_a", api=False),
        in_a("viewer_membership_a"),
        {"role": "maintainer"},
    ),
    Route(
        "tenant-member-change",
        "post",
        {**writes(404, least="owner_a", api=False), "owner_a": 404, "admin": 404},
        lambda w: {"tenant_slug": w.tenant_a.slug, "pk": w.objects["owner_membership_b"].pk},
        {"role": "viewer"},
        note="other tenant's member",
    ),
    Route("tenant-tokens", "get", UI_READ, tenant_a),
    # Tokens are personal credentials of members: a platform admin outside the tenant gets 403.
    Route(
        "tenant-tokens",
        "post",
        {**writes(201, least="maintainer_a", api=False), "admin": 403},
        tenant_a,
        {"name": "deploy-bot", "role": "viewer", "expires_in_days": 30},
    ),
    # A maintainer only sees their own tokens, so the owner's token is not found for them.
    Route(
        "tenant-token-revoke",
        "post",
        {**writes(302, least="maintainer_a", api=False), "maintainer_a": 404},
        in_a("token_a"),
    ),
    Route(
        "tenant-token-revoke",
        "post",
        {**writes(404, least="maintainer_a", api=False), "viewer_a": 403},
        lambda w: {"tenant_slug": w.tenant_a.slug, "pk": w.objects["token_b"].pk},
        note="other tenant's token",
    ),
    Route("tenant-gateway", "get", UI_READ, tenant_a),
    # Gateway keys are the tenant's (not personal): owners and platform admins manage them.
    Route(
        "tenant-gateway",
        "post",
        writes(201, least="owner_a", api=False),
        tenant_a,
        {"name": "web-app", "requests_per_minute": 60},
    ),
    Route(
        "tenant-gateway-key-limits",
        "post",
        writes(302, least="owner_a", api=False),
        in_a("gateway_key_a"),
        {"requests_per_minute": 30, "tokens_per_minute": ""},
    ),
    Route(
        "tenant-gateway-key-revoke",
        "post",
        writes(302, least="owner_a", api=False),
        in_a("gateway_key_a"),
    ),
    Route(
        "tenant-gateway-key-revoke",
        "post",
        {**writes(404, least="owner_a", api=False)},
        lambda w: {"tenant_slug": w.tenant_a.slug, "pk": w.objects["gateway_key_b"].pk},
        note="other tenant's key",
    ),
    Route("tenant-audit", "get", UI_READ, tenant_a),
    Route("model-list", "get", UI_READ, tenant_a),
    Route(
        "model-list",
        "post",
        writes(302, least="maintainer_a", api=False),
        tenant_a,
        {"repo_id": hub.LLAMA_8B_AWQ_ID, "revision": "main"},
    ),
    Route("model-lookup", "get", UI_READ, tenant_a, {"repo_id": hub.MISTRAL_7B_ID}),
    Route("model-detail", "get", UI_READ, in_a("model_a")),
    Route(
        "model-detail",
        "get",
        {**UI_READ, "owner_a": 404, "maintainer_a": 404, "viewer_a": 404, "admin": 404},
        lambda w: {"tenant_slug": w.tenant_a.slug, "pk": w.objects["model_b"].pk},
        note="other tenant's model",
    ),
    Route("model-fit", "get", UI_READ, in_a("model_a"), {"max_total_tokens": 8192}),
    Route("model-action", "get", UI_READ, action_on("model_a", "update")),
    Route(
        "model-action",
        "post",
        writes(302, least="maintainer_a", api=False),
        action_on("model_a", "update"),
        {"revision": "main", "expected_sha": MISTRAL_MAIN},
    ),
    Route(
        "model-action",
        "post",
        writes(302, least="owner_a", api=False),
        action_on("model_a", "acknowledge-license"),
        note="acknowledge",
    ),
    # The model has no custom code: the platform admin passes the role check and gets 422.
    Route(
        "model-action",
        "post",
        {**platform_write(422), "anonymous": 302},
        action_on("model_a", "approve-remote-code"),
        note="approve",
    ),
    # A deployment uses the model, so even permitted personas get 409.
    Route(
        "model-action",
        "post",
        writes(409, least="maintainer_a", api=False),
        action_on("model_a", "delete"),
        note="delete",
    ),
    Route("hub-token", "get", UI_READ, tenant_a),
    # A malformed token is refused (422) before any Hub or cluster call.
    Route(
        "hub-token", "post", writes(422, least="owner_a", api=False), tenant_a, {"token": "nope"}
    ),
    Route("deployment-list", "get", UI_READ, tenant_a),
    # --- REST API ---
    Route("api-me", "get", {**API_READ, "owner_b": 200}),
    # The OpenAPI schema and its docs page: any signed-in user (the schema names no tenant).
    Route("api-schema", "get", {**API_READ, "owner_b": 200}),
    Route("api-docs", "get", {**UI_READ, "owner_b": 200}),
    Route("api-tenant-list", "get", {**API_READ, "owner_b": 200}),
    Route(
        "api-tenant-list",
        "post",
        {**platform_write(201), "owner_b": 403},
        data={"name": "Gamma", "slug": "gamma", "namespace": "tenant-gamma"},
        json=True,
    ),
    Route("api-tenant-detail", "get", API_READ, tenant_a),
    Route(
        "api-tenant-detail",
        "patch",
        platform_write(200),
        tenant_a,
        {"name": "Alpha Team"},
        json=True,
    ),
    Route("api-membership-list", "get", API_READ, tenant_a),
    Route(
        "api-membership-list",
        "post",
        writes(201, least="owner_a", api=True),
        tenant_a,
        {"username": "owner_b", "role": "viewer"},
        json=True,
    ),
    Route("api-membership-detail", "get", API_READ, in_a("viewer_membership_a")),
    Route(
        "api-membership-detail",
        "patch",
        writes(200, least="owner_a", api=True),
        in_a("viewer_membership_a"),
        {"role": "maintainer"},
        json=True,
    ),
    Route(
        "api-membership-detail",
        "delete",
        writes(204, least="owner_a", api=True),
        in_a("viewer_membership_a"),
    ),
    Route(
        "api-membership-detail",
        "get",
        {**API_READ, "owner_a": 404, "maintainer_a": 404, "viewer_a": 404, "admin": 404},
        lambda w: {"tenant_slug": w.tenant_a.slug, "pk": w.objects["owner_membership_b"].pk},
        note="other tenant's member",
    ),
    Route("api-token-list", "get", API_READ, tenant_a),
    Route(
        "api-token-list",
        "post",
        {**writes(201, least="maintainer_a", api=True), "admin": 403},
        tenant_a,
        {"name": "ci", "role": "viewer"},
        json=True,
    ),
    Route(
        "api-token-detail",
        "get",
        {**API_READ, "maintainer_a": 404, "viewer_a": 404},
        in_a("token_a"),
    ),
    Route(
        "api-token-detail",
        "delete",
        {**writes(204, least="maintainer_a", api=True), "maintainer_a": 404},
        in_a("token_a"),
    ),
    Route(
        "api-token-detail",
        "get",
        {**API_READ, "owner_a": 404, "maintainer_a": 404, "viewer_a": 404, "admin": 404},
        lambda w: {"tenant_slug": w.tenant_a.slug, "pk": w.objects["token_b"].pk},
        note="other tenant's token",
    ),
    Route("api-gateway-key-list", "get", API_READ, tenant_a),
    Route(
        "api-gateway-key-list",
        "post",
        writes(201, least="owner_a", api=True),
        tenant_a,
        {"name": "batch-jobs", "deployments": ["alpha-chat"], "tokens_per_minute": 5000},
        json=True,
    ),
    Route("api-gateway-key-detail", "get", API_READ, in_a("gateway_key_a")),
    Route(
        "api-gateway-key-detail",
        "patch",
        writes(200, least="owner_a", api=True),
        in_a("gateway_key_a"),
        {"requests_per_minute": 30},
        json=True,
    ),
    Route(
        "api-gateway-key-detail",
        "delete",
        writes(204, least="owner_a", api=True),
        in_a("gateway_key_a"),
    ),
    Route(
        "api-gateway-key-detail",
        "get",
        {**API_READ, "owner_a": 404, "maintainer_a": 404, "viewer_a": 404, "admin": 404},
        lambda w: {"tenant_slug": w.tenant_a.slug, "pk": w.objects["gateway_key_b"].pk},
        note="other tenant's key",
    ),
    Route("api-quota", "get", API_READ, tenant_a),
    Route("api-quota", "patch", platform_write(200), tenant_a, {"max_gpus": 3}, json=True),
    Route(
        "api-quota",
        "put",
        platform_write(200),
        tenant_a,
        {
            "max_gpus": 4,
            "max_deployments": 2,
            "max_replicas_per_deployment": 2,
            "allowed_tiers": ["l4"],
            "monthly_gpu_hour_budget": "100.0",
            "requests_per_minute": 60,
            "tokens_per_minute": 10000,
        },
        json=True,
    ),
    Route("api-audit-list", "get", API_READ, tenant_a),
    Route("api-model-list", "get", API_READ, tenant_a),
    Route(
        "api-model-list",
        "post",
        writes(201, least="maintainer_a", api=True),
        tenant_a,
        {"repo_id": hub.LLAMA_8B_AWQ_ID},
        json=True,
    ),
    Route("api-model-detail", "get", API_READ, in_a("model_a")),
    Route(
        "api-model-detail", "delete", writes(409, least="maintainer_a", api=True), in_a("model_a")
    ),
    Route(
        "api-model-detail",
        "get",
        {**API_READ, "owner_a": 404, "maintainer_a": 404, "viewer_a": 404, "admin": 404},
        lambda w: {"tenant_slug": w.tenant_a.slug, "pk": w.objects["model_b"].pk},
        note="other tenant's model",
    ),
    Route("api-model-update", "get", API_READ, in_a("model_a")),
    Route(
        "api-model-update",
        "post",
        writes(200, least="maintainer_a", api=True),
        in_a("model_a"),
        {"revision": "main", "expected_sha": MISTRAL_MAIN},
        json=True,
    ),
    Route("api-model-fit", "get", API_READ, in_a("model_a"), {"quantize": "awq"}),
    Route("api-model-ack-license", "post", writes(200, least="owner_a", api=True), in_a("model_a")),
    Route("api-model-approve-code", "post", platform_write(400), in_a("model_a")),
    Route("api-hub-lookup", "get", API_READ, tenant_a, {"repo_id": hub.MINILM_ID}),
    Route("api-hub-token", "get", API_READ, tenant_a),
    Route(
        "api-hub-token",
        "put",
        writes(400, least="owner_a", api=True),
        tenant_a,
        {"token": "not-a-token"},
        json=True,
    ),
    Route("api-hub-token", "delete", writes(204, least="owner_a", api=True), tenant_a),
]


# --- deployments (appended with the deployments UI and API) --------------------------------


def deployment_in_a(world: Any) -> dict[str, Any]:
    return {"tenant_slug": world.tenant_a.slug, "pk": world.objects["deployment_a"].pk}


def other_deployment(world: Any) -> dict[str, Any]:
    return {"tenant_slug": world.tenant_a.slug, "pk": world.objects["deployment_b"].pk}


def deployment_child(world: Any) -> dict[str, Any]:
    return {"tenant_slug": world.tenant_a.slug, "deployment_pk": world.objects["deployment_a"].pk}


def deployment_action(action: str) -> Kwargs:
    return lambda world: {**deployment_in_a(world), "action": action}


def _rollout_a(world: Any) -> Any:
    """A revision and rollout of tenant A's deployment, made on first use (no cluster)."""
    from deployments.models import DeploymentRevision, Rollout

    if "rollout_a" not in world.objects:
        deployment = world.objects["deployment_a"]
        revision = DeploymentRevision.objects.create(
            deployment=deployment,
            number=1,
            model_revision=deployment.model.current_revision,
            tier=deployment.tier,
            max_input_tokens=1024,
            max_total_tokens=2048,
            max_batch_prefill_tokens=1074,
        )
        world.objects["rollout_a"] = Rollout.objects.create(
            deployment=deployment, revision=revision, colour="blue"
        )
    return world.objects["rollout_a"]


def rollout_in_a(world: Any) -> dict[str, Any]:
    return {**deployment_in_a(world), "rollout_pk": _rollout_a(world).pk}


def api_rollout_in_a(world: Any) -> dict[str, Any]:
    return {**deployment_child(world), "pk": _rollout_a(world).pk}


NOT_IN_A = {"owner_a": 404, "maintainer_a": 404, "viewer_a": 404, "admin": 404}
# Refused before admission reaches the cluster: max_input_tokens must be below max_total_tokens.
BAD_LIMITS = {"max_input_tokens": 4096, "max_total_tokens": 2048}

ROUTES += [
    # The wizard is for those who may deploy; a name that is not a DNS label is refused (422).
    Route("deployment-create", "get", writes(200, least="maintainer_a", api=False), tenant_a),
    Route(
        "deployment-create",
        "post",
        writes(422, least="maintainer_a", api=False),
        tenant_a,
        {"name": "Not_A_Label", "tier": "l4", "replicas": 1},
    ),
    Route("deployment-detail", "get", UI_READ, deployment_in_a),
    Route(
        "deployment-detail",
        "get",
        {**UI_READ, **NOT_IN_A},
        other_deployment,
        note="other tenant's deployment",
    ),
    Route("deployment-rollout", "get", UI_READ, rollout_in_a),
    # The new-revision form, like the wizard, is for those who may deploy; admission refuses
    # these limits before the cluster (422).
    Route(
        "deployment-revision",
        "get",
        writes(200, least="maintainer_a", api=False),
        deployment_in_a,
    ),
    Route(
        "deployment-revision",
        "post",
        writes(422, least="maintainer_a", api=False),
        deployment_in_a,
        {
            "tier": "l4",
            "replicas": 1,
            "max_concurrent_requests": 128,
            "queue_size_target": 4,
            "promotion": "automatic",
            **BAD_LIMITS,
        },
    ),
    # No rollout runs: promote is refused (422 shown in the rollout panel).
    Route(
        "deployment-action",
        "post",
        writes(422, least="maintainer_a", api=False),
        deployment_action("promote"),
    ),
    Route(
        "deployment-action",
        "post",
        {**writes(404, least="maintainer_a", api=False), "viewer_a": 403},
        lambda w: {**other_deployment(w), "action": "abort"},
        note="other tenant's deployment",
    ),
    # The world's deployment has no revision, so deleting it needs no cluster call.
    Route(
        "deployment-action",
        "post",
        writes(302, least="maintainer_a", api=False),
        deployment_action("delete"),
        note="delete",
    ),
    Route("api-tier-list", "get", {**API_READ, "owner_b": 200}),
    # Live capacity: reads the local cluster (503 with the standard body when it is down).
    Route("api-node-pool-list", "get", {**API_READ, "owner_b": 200}),
    Route("api-deployment-list", "get", API_READ, tenant_a),
    Route(
        "api-deployment-list",
        "post",
        writes(400, least="maintainer_a", api=True),
        tenant_a,
        {"name": "chat", "model": 0, "tier": "l4"},
        json=True,
    ),
    Route("api-deployment-detail", "get", API_READ, deployment_in_a),
    Route(
        "api-deployment-detail",
        "get",
        {**API_READ, **NOT_IN_A},
        other_deployment,
        note="other tenant's deployment",
    ),
    Route(
        "api-deployment-detail",
        "patch",
        writes(400, least="maintainer_a", api=True),
        deployment_in_a,
        BAD_LIMITS,
        json=True,
    ),
    # Accepted: a worker removes it (deployments/deletion.py).
    Route(
        "api-deployment-detail",
        "delete",
        writes(202, least="maintainer_a", api=True),
        deployment_in_a,
    ),
    # Nothing to promote, abort or roll back: 409 for those allowed to ask.
    Route(
        "api-deployment-promote",
        "post",
        writes(409, least="maintainer_a", api=True),
        deployment_in_a,
    ),
    Route(
        "api-deployment-abort", "post", writes(409, least="maintainer_a", api=True), deployment_in_a
    ),
    Route(
        "api-deployment-rollback",
        "post",
        writes(409, least="maintainer_a", api=True),
        deployment_in_a,
    ),
    Route(
        "api-deployment-promote",
        "post",
        {**writes(404, least="maintainer_a", api=True), "viewer_a": 403},
        other_deployment,
        note="other tenant's deployment",
    ),
    Route("api-revision-list", "get", API_READ, deployment_child),
    Route("api-rollout-list", "get", API_READ, deployment_child),
    Route(
        "api-rollout-list",
        "get",
        {**API_READ, **NOT_IN_A},
        lambda w: {"tenant_slug": w.tenant_a.slug, "deployment_pk": w.objects["deployment_b"].pk},
        note="other tenant's deployment",
    ),
    # Revision 99 does not exist: refused before admission.
    Route(
        "api-rollout-list",
        "post",
        writes(400, least="maintainer_a", api=True),
        deployment_child,
        {"revision": 99},
        json=True,
    ),
    Route("api-rollout-detail", "get", API_READ, api_rollout_in_a),
    Route(
        "api-rollout-detail",
        "get",
        {**API_READ, **NOT_IN_A},
        lambda w: {
            "tenant_slug": w.tenant_a.slug,
            "deployment_pk": w.objects["deployment_b"].pk,
            "pk": _rollout_a(w).pk,
        },
        note="rollout under another tenant's deployment",
    ),
]

# --- metrics, guardrail alerts and cost (deployments/metrics_views.py) ----------------------
# Prometheus being up or not changes what these pages say, never who may see them.
ROUTES += [
    Route("tenant-metrics", "get", UI_READ, tenant_a),
    Route("tenant-alerts", "get", UI_READ, tenant_a),
    Route("tenant-cost", "get", UI_READ, tenant_a),
    # A bad window is refused by every persona who may see the page, naming the field.
    Route(
        "tenant-cost",
        "get",
        {**UI_READ, **dict.fromkeys(("owner_a", "maintainer_a", "viewer_a", "admin"), 422)},
        tenant_a,
        {"days": "0"},
        note="bad window",
    ),
    Route("deployment-metrics", "get", UI_READ, deployment_in_a),
    Route(
        "deployment-metrics",
        "get",
        {**UI_READ, **NOT_IN_A},
        other_deployment,
        note="other tenant's deployment",
    ),
]

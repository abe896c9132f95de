"""The API holds every request to its schema: bodies in the content types it declares, every field
of them honoured, and query parameters only as declared (portal.api.ApiContract).

The body test walks the generated schema: every write operation with a body must have a case
here (a new route without one fails), each case sets every field the schema declares to a
value other than its default and checks the change was made as asked; a body in a content
type the operation does not declare answers 415 and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.test.client import encode_multipart
from django.urls import URLPattern, URLResolver, get_resolver

from deployments.capacity import ClusterCapacity, NodeGpus, PoolCapacity
from deployments.choices import RolloutState
from deployments.models import Deployment, Rollout
from devstack.hub import fixtures as hub
from models_registry import services as registry
from models_registry.models import HubCredential, RegisteredModel
from portal.api import ApiContract
from tenants.audit import Actor
from tenants.models import ApiToken, GatewayKey, Membership, Tenant, TenantQuota
from tests.deployments.test_api import a_rollout
from tests.fixtures.personas import World

JSON = "application/json"
WRITE_METHODS = ("post", "put", "patch")
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
BOUNDARY = "issue17boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def _schema(client: Client) -> dict[str, Any]:
    response = client.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return dict(response.json())


def _send(client: Client, method: str, url: str, body: dict[str, Any]) -> Any:
    return getattr(client, method)(url, data=json.dumps(body), content_type=JSON)


def _component(schema: dict[str, Any], ref: str) -> dict[str, Any]:
    return dict(schema["components"]["schemas"][ref.rsplit("/", 1)[1]])


def _assert_every_field_set_off_default(
    schema: dict[str, Any], component: dict[str, Any], body: dict[str, Any], where: str
) -> None:
    properties = {
        name: prop for name, prop in component["properties"].items() if not prop.get("readOnly")
    }
    assert set(body) == set(properties), f"{where}: body must set every field"
    for name, prop in properties.items():
        if "default" in prop:
            assert body[name] != prop["default"], f"{where}.{name} is its default"
        ref = prop.get("$ref") or next(
            (part["$ref"] for part in prop.get("allOf", []) if "$ref" in part), None
        )
        if ref and isinstance(body[name], dict):
            nested = _component(schema, ref)
            if "properties" in nested:
                _assert_every_field_set_off_default(schema, nested, body[name], f"{where}.{name}")


# --- the cases: one per write operation with a body -------------------------------------------


@dataclass
class Case:
    persona: str
    url: Callable[[World], str]
    body: Callable[[World], dict[str, Any]]
    honoured: Callable[[World, Any, dict[str, Any]], Any]  # fails the test when not
    changed: Callable[[World], Any]  # a snapshot that a refused request must leave as it was


PROMOTION = {
    "mode": "manual",
    "after_seconds": 7,
    "scale_down_delay_seconds": 5,
    "progress_deadline_seconds": 45,
}
SERVING: dict[str, Any] = {
    "tier": "l4",
    "engine": "vllm",
    "quantize": "fp8",
    "dtype": "float16",
    "kv_cache_dtype": "fp8_e5m2",
    "max_input_tokens": 1000,
    "max_total_tokens": 2000,
    "max_batch_prefill_tokens": 1500,
    "max_concurrent_requests": 64,
    "replicas": 2,
    "min_replicas": 1,
    "max_replicas": 3,
    "autoscaling": True,
    "queue_size_target": 8,
    "pod_annotations": {"sidecar.istio.io/inject": "false"},
    "promotion": PROMOTION,
}
QUOTA: dict[str, Any] = {
    "max_gpus": 7,
    "max_deployments": 3,
    "max_replicas_per_deployment": 3,
    "allowed_tiers": ["l4", "a100-80g"],
    "monthly_gpu_hour_budget": "12.5",
    "requests_per_minute": 99,
    "requests_burst": 50,
    "tokens_per_minute": 12345,
    "require_max_tokens": True,
    "max_output_tokens": 777,
    "max_request_bytes": 65536,
}


def _rollout_honours(rollout: Rollout | dict[str, Any]) -> None:
    get = rollout.get if isinstance(rollout, dict) else lambda name: getattr(rollout, name)
    assert get("promotion_mode") == "manual"
    assert get("promote_after_seconds") == 7
    assert get("scale_down_delay_seconds") == 5
    assert get("progress_deadline_seconds") == 45


def _revision_honours(deployment: Deployment) -> None:
    revision = deployment.revisions.order_by("-number").first()
    assert revision is not None
    for name, value in SERVING.items():
        if name == "tier":
            assert revision.tier.slug == value
        elif name != "promotion":
            assert getattr(revision, name) == value, name
    _rollout_honours(deployment.rollouts.order_by("-id").first())  # type: ignore[arg-type]


def _quota_honours(quota: TenantQuota) -> None:
    for name, value in QUOTA.items():
        expected = Decimal(value) if name == "monthly_gpu_hour_budget" else value
        assert getattr(quota, name) == expected, name


def _tenant_path(world: World, suffix: str = "") -> str:
    return f"/api/v1/tenants/{world.tenant_a.slug}/{suffix}"


def _deployment(world: World) -> Deployment:
    return Deployment.objects.get(pk=world.objects["deployment_a"].pk)


def _with_completed_revision(world: World) -> str:
    deployment = world.objects["deployment_a"]
    if not deployment.revisions.exists():
        a_rollout(deployment, state=RolloutState.COMPLETED)
    return _tenant_path(world, f"deployments/{deployment.pk}/rollouts/")


def _model_update_sha(world: World) -> str:
    return hub.repo(hub.MISTRAL_7B_ID).branches["main"]


CASES: dict[tuple[str, str], Case] = {
    ("post", "/api/v1/tenants/"): Case(
        "admin",
        lambda w: "/api/v1/tenants/",
        lambda w: {"slug": "gamma", "name": "Gamma", "namespace": "tenant-gamma", "quota": QUOTA},
        lambda w, r, b: _quota_honours(Tenant.objects.get(slug="gamma").quota),
        lambda w: Tenant.objects.count(),
    ),
    ("patch", "/api/v1/tenants/{tenant_slug}/"): Case(
        "admin",
        lambda w: _tenant_path(w),
        lambda w: {"name": "Alpha renamed"},
        lambda w, r, b: (
            Tenant.objects.get(pk=w.tenant_a.pk).name == "Alpha renamed"
            or pytest.fail("not renamed")
        ),
        lambda w: Tenant.objects.get(pk=w.tenant_a.pk).name,
    ),
    ("put", "/api/v1/tenants/{tenant_slug}/quota/"): Case(
        "admin",
        lambda w: _tenant_path(w, "quota/"),
        lambda w: QUOTA,
        lambda w, r, b: _quota_honours(TenantQuota.objects.get(tenant=w.tenant_a)),
        lambda w: TenantQuota.objects.filter(tenant=w.tenant_a).values().get(),
    ),
    ("patch", "/api/v1/tenants/{tenant_slug}/quota/"): Case(
        "admin",
        lambda w: _tenant_path(w, "quota/"),
        lambda w: QUOTA,
        lambda w, r, b: _quota_honours(TenantQuota.objects.get(tenant=w.tenant_a)),
        lambda w: TenantQuota.objects.filter(tenant=w.tenant_a).values().get(),
    ),
    ("post", "/api/v1/tenants/{tenant_slug}/memberships/"): Case(
        "owner_a",
        lambda w: _tenant_path(w, "memberships/"),
        lambda w: {"username": "owner_b", "role": "maintainer"},
        lambda w, r, b: (
            Membership.objects.get(tenant=w.tenant_a, user__username="owner_b").role == "maintainer"
            or pytest.fail("wrong role")
        ),
        lambda w: Membership.objects.filter(tenant=w.tenant_a).count(),
    ),
    ("patch", "/api/v1/tenants/{tenant_slug}/memberships/{id}/"): Case(
        "owner_a",
        lambda w: _tenant_path(w, f"memberships/{w.objects['viewer_membership_a'].pk}/"),
        lambda w: {"role": "maintainer"},
        lambda w, r, b: (
            Membership.objects.get(pk=w.objects["viewer_membership_a"].pk).role == "maintainer"
            or pytest.fail("role not changed")
        ),
        lambda w: Membership.objects.get(pk=w.objects["viewer_membership_a"].pk).role,
    ),
    ("post", "/api/v1/tenants/{tenant_slug}/tokens/"): Case(
        "owner_a",
        lambda w: _tenant_path(w, "tokens/"),
        lambda w: {"name": "ci", "role": "maintainer", "expires_in_days": 7},
        lambda w, r, b: _token_honours(r.json()),
        lambda w: ApiToken.objects.count(),
    ),
    ("post", "/api/v1/tenants/{tenant_slug}/gateway-keys/"): Case(
        "owner_a",
        lambda w: _tenant_path(w, "gateway-keys/"),
        lambda w: {
            "name": "batch",
            "deployments": ["alpha-chat"],
            "requests_per_minute": 5,
            "requests_burst": 3,
            "tokens_per_minute": 500,
        },
        lambda w, r, b: _key_honours(GatewayKey.objects.get(pk=r.json()["id"]), b),
        lambda w: GatewayKey.objects.count(),
    ),
    ("patch", "/api/v1/tenants/{tenant_slug}/gateway-keys/{id}/"): Case(
        "owner_a",
        lambda w: _tenant_path(w, f"gateway-keys/{w.objects['gateway_key_a'].pk}/"),
        lambda w: {
            "deployments": ["alpha-chat"],
            "requests_per_minute": 5,
            "requests_burst": 2,
            "tokens_per_minute": 9,
        },
        lambda w, r, b: _key_honours(GatewayKey.objects.get(pk=w.objects["gateway_key_a"].pk), b),
        lambda w: GatewayKey.objects.filter(pk=w.objects["gateway_key_a"].pk).values().get(),
    ),
    ("put", "/api/v1/tenants/{tenant_slug}/hub-token/"): Case(
        "owner_a",
        lambda w: _tenant_path(w, "hub-token/"),
        lambda w: {"token": hub.TOKEN_READ},
        lambda w, r, b: _hub_token_is(w, registry.fingerprint(hub.TOKEN_READ)),
        lambda w: _hub_fingerprint(w),
    ),
    ("post", "/api/v1/tenants/{tenant_slug}/models/"): Case(
        "owner_a",
        lambda w: _tenant_path(w, "models/"),
        lambda w: {"repo_id": hub.MISTRAL_GPTQ_ID, "revision": _gptq_sha()},
        lambda w, r, b: (
            RegisteredModel.objects.get(pk=r.json()["id"]).current_revision.commit_sha  # type: ignore[union-attr]
            == b["revision"]
            or pytest.fail("not pinned to the revision asked")
        ),
        lambda w: RegisteredModel.objects.count(),
    ),
    ("post", "/api/v1/tenants/{tenant_slug}/models/{id}/update/"): Case(
        "owner_a",
        lambda w: _tenant_path(w, f"models/{w.objects['model_a'].pk}/update/"),
        lambda w: {"revision": "main", "expected_sha": _model_update_sha(w)},
        lambda w, r, b: _model_updated(w),
        lambda w: RegisteredModel.objects.get(pk=w.objects["model_a"].pk).current_revision_id,
    ),
    ("post", "/api/v1/tenants/{tenant_slug}/deployments/"): Case(
        "owner_a",
        lambda w: _tenant_path(w, "deployments/"),
        lambda w: {"name": "chat-two", "model": w.objects["model_a"].pk, **SERVING},
        lambda w, r, b: _revision_honours(Deployment.objects.get(pk=r.json()["deployment"]["id"])),
        lambda w: Deployment.objects.count(),
    ),
    ("patch", "/api/v1/tenants/{tenant_slug}/deployments/{id}/"): Case(
        "owner_a",
        lambda w: _tenant_path(w, f"deployments/{w.objects['deployment_a'].pk}/"),
        lambda w: {"model": w.objects["model_a"].pk, **SERVING},
        lambda w, r, b: _revision_honours(_deployment(w)),
        lambda w: Rollout.objects.count(),
    ),
    ("post", "/api/v1/tenants/{tenant_slug}/deployments/{deployment_pk}/rollouts/"): Case(
        "owner_a",
        _with_completed_revision,
        lambda w: {"revision": 1, "promotion": PROMOTION},
        lambda w, r, b: _rollout_honours(r.json()),
        lambda w: Rollout.objects.count(),
    ),
}


def _hub_fingerprint(world: World) -> str | None:
    credential = HubCredential.objects.filter(tenant=world.tenant_a).first()
    return credential.fingerprint if credential else None


def _hub_token_is(world: World, fingerprint: str) -> None:
    assert _hub_fingerprint(world) == fingerprint


def _gptq_sha() -> str:
    return hub.repo(hub.MISTRAL_GPTQ_ID).branches["main"]


def _token_honours(body: dict[str, Any]) -> None:
    token = ApiToken.objects.get(pk=body["id"])
    assert token.name == "ci" and token.role == "maintainer"
    assert 6 <= (token.expires_at - token.created_at).days <= 7


def _key_honours(key: GatewayKey, body: dict[str, Any]) -> None:
    assert sorted(d.name for d in key.deployments.all()) == body["deployments"]
    assert key.requests_per_minute == body["requests_per_minute"]
    assert key.tokens_per_minute == body["tokens_per_minute"]
    assert key.requests_burst == body["requests_burst"]
    if "name" in body:
        assert key.name == body["name"]


def _model_updated(world: World) -> None:
    model = RegisteredModel.objects.select_related("current_revision").get(
        pk=world.objects["model_a"].pk
    )
    assert model.current_revision is not None
    assert model.current_revision.commit_sha == _model_update_sha(world)
    assert model.requested_revision == "main"


@pytest.fixture
def writable(world: World, monkeypatch: pytest.MonkeyPatch, settings: Any) -> World:
    """The world with what the writes need beyond the database: GPUs free in every pool (no
    cluster here), licence acknowledged, and the Hub token's Secret write accepted."""
    free = _EveryTierFits([NodeGpus(f"n{i}", {}, allocatable=8, requested=0) for i in range(4)])
    monkeypatch.setattr("deployments.admission.pool_capacity", lambda: free)
    monkeypatch.setattr(registry, "ensure_tenant_namespace", lambda tenant: None)
    monkeypatch.setattr(registry.kube, "apply", lambda *args, **kwargs: None)
    owner = Actor(world.users["owner_a"], "cli")
    registry.acknowledge_license(owner, world.objects["model_a"])
    TenantQuota.objects.filter(tenant=world.tenant_a).update(max_gpus=16, max_deployments=10)
    return world


class _EveryTierFits(ClusterCapacity):
    """Four free 8-GPU nodes that every tier's selector matches."""

    def matching(self, selector: Any) -> PoolCapacity | None:
        return super().matching({})


def _write_operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if method in WRITE_METHODS and "requestBody" in operation
    }


@pytest.mark.django_db
def test_every_write_route_declares_json_only_and_has_a_case_here(world: World) -> None:
    schema = _schema(world.client_for("viewer_a"))
    operations = _write_operations(schema)
    assert set(operations) == set(CASES)
    for key, operation in operations.items():
        assert set(operation["requestBody"]["content"]) == {JSON}, key


@pytest.mark.django_db
@pytest.mark.parametrize("key", sorted(CASES), ids=lambda key: f"{key[0]} {key[1]}")
def test_every_field_of_a_json_body_is_honoured(writable: World, key: tuple[str, str]) -> None:
    world, case = writable, CASES[key]
    client = world.client_for(case.persona)
    schema = _schema(client)
    ref = schema["paths"][key[1]][key[0]]["requestBody"]["content"][JSON]["schema"]["$ref"]
    body = case.body(world)
    _assert_every_field_set_off_default(schema, _component(schema, ref), body, ref)
    response = _send(client, key[0], case.url(world), body)
    assert response.status_code in (200, 201), response.content
    case.honoured(world, response, body)


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", FORM_TYPES)
@pytest.mark.parametrize("key", sorted(CASES), ids=lambda key: f"{key[0]} {key[1]}")
def test_an_undeclared_content_type_is_415_and_changes_nothing(
    writable: World, key: tuple[str, str], content_type: str
) -> None:
    world, case = writable, CASES[key]
    client = world.client_for(case.persona)
    url, before = case.url(world), case.changed(world)
    flat = {
        name: json.dumps(v) if isinstance(v, dict | list) else v
        for name, v in case.body(world).items()
    }
    if content_type == "multipart/form-data":
        data, sent_as = encode_multipart(BOUNDARY, flat), MULTIPART
    else:
        data, sent_as = urlencode(flat).encode(), content_type
    response = getattr(client, key[0])(url, data=data, content_type=sent_as)
    assert response.status_code == 415, response.content
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type" and JSON in error["message"]
    assert case.changed(world) == before


@pytest.mark.django_db
def test_the_multipart_rollout_of_issue_17_saves_nothing(writable: World) -> None:
    """`curl -F revision=1 -F 'promotion={...};type=application/json'` once gave an automatic
    rollout: the nested part was dropped. Now the content type itself is refused."""
    world = writable
    url = _with_completed_revision(world)
    promotion = json.dumps({"mode": "manual", "scale_down_delay_seconds": 5})
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="revision"\r\n\r\n1\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="promotion"\r\n'
        f"Content-Type: application/json\r\n\r\n{promotion}\r\n--{BOUNDARY}--\r\n"
    ).encode()
    rollouts = Rollout.objects.count()
    for method, target in (
        ("post", url),
        ("patch", _tenant_path(world, f"deployments/{world.objects['deployment_a'].pk}/")),
    ):
        response = getattr(world.client_for("owner_a"), method)(
            target, data=body, content_type=MULTIPART
        )
        assert response.status_code == 415, response.content
        assert "application/json" in response.json()["error"]["message"]
    assert Rollout.objects.count() == rollouts


# --- query parameters ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "parameter", "message"),
    [
        ("page_size=null", "page_size", "must be an integer"),
        ("page_size=abc", "page_size", "must be an integer"),
        ("page_size=0", "page_size", "must be at least 1"),
        ("page_size=201", "page_size", "must be at most 200"),
        ("page=0", "page", "must be at least 1"),
        ("page=last", "page", "must be an integer"),
        ("page=1&page=2", "page", "given more than once"),
        ("foo=1", "foo", "unknown query parameter (this route accepts: page, page_size)"),
    ],
)
def test_a_bad_query_parameter_is_a_400_naming_it(
    world: World, query: str, parameter: str, message: str
) -> None:
    response = world.client_for("viewer_a").get(f"{_tenant_path(world, 'deployments/')}?{query}")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["fields"] == {parameter: [message]}
    assert error["message"] == f"{parameter}: {message}"


@pytest.mark.django_db
def test_declared_query_parameters_still_work(world: World) -> None:
    client = world.client_for("viewer_a")
    assert client.get(_tenant_path(world, "deployments/?page=1&page_size=200")).status_code == 200
    assert client.get(_tenant_path(world, "deployments/?page=9")).status_code == 404
    assert client.get(_tenant_path(world, "audit-events/?action=member.add")).status_code == 200
    detail = _tenant_path(world, f"deployments/{world.objects['deployment_a'].pk}/")
    assert client.get(detail).status_code == 200
    refused = client.get(f"{detail}?page=1").json()["error"]  # no list: no page parameter
    assert refused["fields"] == {"page": ["unknown query parameter (this route accepts: none)"]}
    assert client.get("/api/v1/tiers/?page_size=abc").status_code == 400
    assert client.get("/api/v1/me/?x=1").status_code == 400


@pytest.mark.django_db
def test_strangers_still_get_404_before_any_parameter_check(world: World) -> None:
    other = f"/api/v1/tenants/{world.tenant_b.slug}/deployments/?foo=1"
    assert world.client_for("viewer_a").get(other).status_code == 404
    assert Client().get("/api/v1/tiers/?foo=1").status_code == 401


def _api_views() -> list[Any]:
    views: list[Any] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("api/v1/"):
                views.append((route, pattern.callback))

    walk(get_resolver().url_patterns, "")
    return views


def test_every_api_view_is_held_to_its_schema() -> None:
    views = _api_views()
    assert len(views) > 20
    for route, callback in views:
        if route.startswith(("api/v1/schema/", "api/v1/docs/")):
            continue
        view_class = getattr(callback, "cls", None)
        assert view_class is not None and issubclass(view_class, ApiContract), route


# --- body values the schema declares ---------------------------------------------------------


@pytest.mark.django_db
def test_a_token_with_a_blank_role_is_refused_not_made_a_viewer(world: World) -> None:
    tokens = ApiToken.objects.count()
    response = _send(
        world.client_for("owner_a"),
        "post",
        _tenant_path(world, "tokens/"),
        {"name": "x", "role": ""},
    )
    assert response.status_code == 400
    assert "role" in response.json()["error"]["fields"]
    assert ApiToken.objects.count() == tokens


@pytest.mark.django_db
def test_null_pod_annotations_mean_none(writable: World) -> None:
    world = writable
    body = {
        "name": "plain",
        "model": world.objects["model_a"].pk,
        "tier": "l4",
        "pod_annotations": None,
    }
    response = _send(world.client_for("owner_a"), "post", _tenant_path(world, "deployments/"), body)
    assert response.status_code == 201, response.content
    deployment = Deployment.objects.get(pk=response.json()["deployment"]["id"])
    assert deployment.revisions.get().pod_annotations == {}
    refused = _send(
        world.client_for("owner_a"),
        "post",
        _tenant_path(world, "deployments/"),
        body | {"name": "other", "pod_annotations": {"a": ["1"]}},
    )
    assert refused.status_code == 400 and "pod_annotations.a" in refused.json()["error"]["fields"]


@pytest.mark.django_db
@pytest.mark.parametrize("repo_id", ["0", "no-such-model", "acme/no-such-model"])
def test_a_repo_that_cannot_exist_is_the_documented_404(world: World, repo_id: str) -> None:
    response = _send(
        world.client_for("owner_a"), "post", _tenant_path(world, "models/"), {"repo_id": repo_id}
    )
    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "repo_not_found"


@pytest.mark.django_db
def test_revoked_tokens_and_keys_read_as_the_schema_says(world: World) -> None:
    client = world.client_for("owner_a")
    schema = _schema(client)["components"]["schemas"]
    for kind, url, component in (
        ("token", f"tokens/{world.objects['token_a'].pk}/", "ApiToken"),
        ("key", f"gateway-keys/{world.objects['gateway_key_a'].pk}/", "GatewayKey"),
    ):
        assert client.delete(_tenant_path(world, url)).status_code == 204, kind
        body = client.get(_tenant_path(world, url)).json()
        assert body["status"] == "revoked" and body["revoked_at"], kind
        status_ref = schema[component]["properties"]["status"]["allOf"][0]["$ref"]
        assert "revoked" in _component({"components": {"schemas": schema}}, status_ref)["enum"]
        assert schema[component]["properties"]["revoked_at"]["nullable"] is True


@pytest.mark.django_db
def test_an_empty_patch_changes_nothing(world: World) -> None:
    """The schema makes every PATCH field optional; an empty body is a no-op, not a 400."""
    membership = world.objects["viewer_membership_a"]
    url = _tenant_path(world, f"memberships/{membership.pk}/")
    response = _send(world.client_for("owner_a"), "patch", url, {})
    assert response.status_code == 200 and response.json()["role"] == "viewer"
    renamed = _send(world.client_for("admin"), "patch", _tenant_path(world), {})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Alpha"


@pytest.mark.django_db
def test_the_schema_says_a_trimmed_text_needs_a_non_space_character(world: World) -> None:
    schema = _schema(world.client_for("viewer_a"))["components"]["schemas"]
    assert schema["ApiTokenCreateRequest"]["properties"]["name"]["pattern"] == r"\S"
    assert schema["UpdateRequest"]["properties"]["expected_sha"]["pattern"] == "^[0-9a-f]{40}$"
    response = _send(
        world.client_for("owner_a"), "post", _tenant_path(world, "tokens/"), {"name": "  "}
    )
    assert response.status_code == 400 and "name" in response.json()["error"]["fields"]

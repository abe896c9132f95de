"""The deployments REST API: shapes, field-naming refusals, roles, tenancy, idempotency."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from deployments import tasks
from deployments.choices import RolloutState
from deployments.models import Deployment, DeploymentRevision, Rollout, RolloutEvent, Tier
from models_registry import services as registry
from tenants.audit import Actor
from tests.fixtures.personas import World


def acknowledge(world: World) -> None:
    """Tenant A's Mistral carries a non-commercial licence: an owner accepts it first."""
    registry.acknowledge_license(Actor(world.users["owner_a"], "cli"), world.objects["model_a"])


def a_rollout(
    deployment: Deployment,
    state: str = RolloutState.WAITING_READY,
    number: int = 1,
    **fields: Any,
) -> Rollout:
    """A revision and its rollout written straight to the database (no cluster, no worker)."""
    model_revision = deployment.model.current_revision
    assert model_revision is not None
    revision = DeploymentRevision.objects.create(
        deployment=deployment,
        number=number,
        model_revision=model_revision,
        tier=deployment.tier,
        max_input_tokens=1024,
        max_total_tokens=2048,
        max_batch_prefill_tokens=1074,
    )
    rollout = Rollout.objects.create(
        deployment=deployment, revision=revision, colour="blue", state=state, **fields
    )
    for step in (RolloutState.PENDING, RolloutState.WEIGHTS, RolloutState.CREATING):
        RolloutEvent.objects.create(
            rollout=rollout,
            actor_name="rollout-worker",
            state=step,
            message=f"entered {step}",
            k8s_objects=["Deployment/tgi-x-blue"] if step == RolloutState.CREATING else [],
        )
    if state not in (RolloutState.PENDING, RolloutState.WEIGHTS, RolloutState.CREATING):
        RolloutEvent.objects.create(
            rollout=rollout, actor_name="rollout-worker", state=state, message=f"entered {state}"
        )
    return rollout


def post(client: Client, url: str, body: dict[str, Any], **headers: Any) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json", **headers)


def create_body(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "chat",
        "model": None,
        "tier": "l4",
        "max_input_tokens": 1024,
        "max_total_tokens": 2048,
        "replicas": 1,
    } | overrides


@pytest.fixture
def maintainer(world: World) -> Client:
    return world.client_for("maintainer_a")


def deployments_url(world: World) -> str:
    return reverse("api-deployment-list", args=[world.tenant_a.slug])


# --- tiers and node pools ------------------------------------------------------------------


def test_any_signed_in_user_lists_the_tiers(world: World) -> None:
    response = world.client_for("owner_b").get(reverse("api-tier-list"))
    assert response.status_code == 200
    tiers = {t["slug"]: t for t in response.json()["results"]}
    assert set(tiers) == {"l4", "a100-80g", "a100-80g-x2", "h100-80g-x4"}
    l4 = tiers["l4"]
    assert l4["gpu_product"] == "NVIDIA-L4" and l4["gpu_memory_gb"] == 24.0
    assert l4["gpus_per_replica"] == 1 and l4["max_total_tokens_limit"] == 16384
    assert l4["price_per_gpu_hour"] == "0.8000" and l4["engine_images"]["tgi"].startswith(
        "ghcr.io/huggingface/text-generation-inference:"
    )
    assert world.client_for("anonymous").get(reverse("api-tier-list")).status_code == 401


def test_node_pools_answer_503_with_the_standard_body_when_the_cluster_is_unreachable(
    world: World, no_cluster: None
) -> None:
    response = world.client_for("viewer_a").get(reverse("api-node-pool-list"))
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["status"] == 503 and error["code"] == "cluster_unavailable"
    assert "cannot read node pools" in error["message"]


@pytest.mark.cluster
def test_node_pools_report_free_gpus_of_the_local_cluster(world: World, portal_kube: None) -> None:
    response = world.client_for("viewer_a").get(reverse("api-node-pool-list"))
    assert response.status_code == 200
    pools = {p["pool"]: p for p in response.json()["pools"]}
    l4 = pools["l4"]
    assert l4["nodes"] == 4 and l4["allocatable_gpus"] == 4 and l4["gpu_product"] == "NVIDIA-L4"
    assert l4["free_gpus"] == l4["allocatable_gpus"] - l4["requested_gpus"]
    assert sum(l4["free_gpus_per_node"].values()) == l4["free_gpus"]


# --- reading deployments -------------------------------------------------------------------


def test_list_shows_active_revision_colour_and_current_rollout(world: World) -> None:
    deployment = world.objects["deployment_a"]
    rollout = a_rollout(deployment)
    Deployment.objects.filter(pk=deployment.pk).update(
        active_revision=rollout.revision, active_colour="blue"
    )
    response = world.client_for("viewer_a").get(deployments_url(world))
    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["name"] == "alpha-chat" and row["tier"] == "l4"
    assert row["model"] == world.objects["model_a"].pk
    assert row["active_colour"] == "blue"
    assert row["active_revision"]["number"] == 1
    assert row["active_revision"]["max_total_tokens"] == 2048
    assert row["active_revision"]["gpus"] == 1
    assert row["current_rollout"] == {
        "id": rollout.pk,
        "revision": 1,
        "colour": "blue",
        "state": "waiting_ready",
        "is_active": True,
    }
    assert row["endpoint"] == "tgi-alpha-chat.tenant-alpha.svc"


def test_rollout_detail_has_timeline_progress_and_ready_replicas(world: World) -> None:
    deployment = world.objects["deployment_a"]
    rollout = a_rollout(deployment, ready_replicas=1, old_ready_replicas=0)
    url = reverse("api-rollout-detail", args=[world.tenant_a.slug, deployment.pk, rollout.pk])
    body = world.client_for("viewer_a").get(url).json()
    assert body["state"] == "waiting_ready"
    assert body["progress"] == {"index": 3, "total": 11, "percent": 30}
    assert body["ready"] == {"blue": 1}
    assert body["ready_replicas"] == 1 and body["old_ready_replicas"] == 0
    assert [e["state"] for e in body["events"]] == [
        "pending",
        "weights",
        "creating",
        "waiting_ready",
    ]
    creating = body["events"][2]
    assert set(creating) == {"at", "actor", "state", "message", "level", "k8s_objects"}
    assert creating["actor"] == "rollout-worker"
    assert creating["k8s_objects"] == ["Deployment/tgi-x-blue"]
    assert body["failure_reason"] == "" and body["remedy"] == ""


def test_a_failed_rollout_keeps_the_step_it_reached_with_reason_and_remedy(world: World) -> None:
    deployment = world.objects["deployment_a"]
    rollout = a_rollout(
        deployment,
        state=RolloutState.FAILED,
        failure_reason="pods cannot be scheduled",
        remedy="choose a tier with free GPUs",
    )
    url = reverse("api-rollout-detail", args=[world.tenant_a.slug, deployment.pk, rollout.pk])
    body = world.client_for("viewer_a").get(url).json()
    assert body["state"] == "failed" and body["is_active"] is False
    assert body["progress"]["index"] == 2  # creating: the last step the rollout reached
    assert body["failure_reason"] == "pods cannot be scheduled"
    assert body["remedy"] == "choose a tier with free GPUs"


def test_revisions_and_rollouts_are_listed_newest_first(world: World) -> None:
    deployment = world.objects["deployment_a"]
    a_rollout(deployment, state=RolloutState.COMPLETED)
    a_rollout(deployment, state=RolloutState.PENDING, number=2)
    client = world.client_for("viewer_a")
    args = [world.tenant_a.slug, deployment.pk]
    revisions = client.get(reverse("api-revision-list", args=args)).json()["results"]
    assert [r["number"] for r in revisions] == [2, 1]
    assert revisions[0]["model"] == world.objects["model_a"].repo_id
    assert len(revisions[0]["model_commit"]) == 40
    rollouts = client.get(reverse("api-rollout-list", args=args)).json()["results"]
    assert [(r["revision"], r["state"]) for r in rollouts] == [(2, "pending"), (1, "completed")]


def test_other_tenants_deployments_are_not_found(world: World) -> None:
    other = world.objects["deployment_b"]
    client = world.client_for("owner_a")
    for name, args in (
        ("api-deployment-detail", [world.tenant_a.slug, other.pk]),
        ("api-revision-list", [world.tenant_a.slug, other.pk]),
        ("api-rollout-list", [world.tenant_a.slug, other.pk]),
    ):
        response = client.get(reverse(name, args=args))
        assert response.status_code == 404, name
        assert response.json()["error"]["code"] == "not_found"
    assert world.client_for("owner_b").get(deployments_url(world)).status_code == 404


# --- refusals that name the field ----------------------------------------------------------


def refusal(response: Any, status: int, field: str) -> str:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["status"] == status
    assert field in error["fields"], error
    return str(error["fields"][field][0])


# Each kind of refusal reaches the client as its status and envelope, naming the field, and
# saves nothing; the rules themselves are tested once in test_services.py.
@pytest.mark.parametrize(
    ("acknowledged", "overrides", "status", "code", "field"),
    [
        pytest.param(False, {"name": "Chat_Bot"}, 400, "invalid", "name", id="domain-error"),
        pytest.param(
            True,
            {"max_input_tokens": 2048, "max_total_tokens": 2048},
            400,
            "admission_refused",
            "max_input_tokens",
            id="admission-refused",
        ),
        pytest.param(False, {"name": "alpha-chat"}, 409, "conflict", "name", id="conflict"),
        # The API's own lookups: a tier slug that names no tier, a model outside the tenant.
        pytest.param(False, {"tier": "tpu-v9"}, 400, "invalid", "tier", id="unknown-tier"),
        pytest.param(False, {"model": "model_b"}, 400, "invalid", "model", id="other-tenants"),
    ],
)
def test_create_refusals_answer_their_status_and_name_the_field(
    world: World,
    maintainer: Client,
    acknowledged: bool,
    overrides: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    if acknowledged:
        acknowledge(world)
    model = world.objects[overrides.pop("model", "model_a")]
    before = Deployment.objects.count()
    response = post(maintainer, deployments_url(world), create_body(model=model.pk, **overrides))
    refusal(response, status, field)
    assert response.json()["error"]["code"] == code
    assert Deployment.objects.count() == before


def test_create_refuses_bad_types_by_field(world: World, maintainer: Client) -> None:
    body = create_body(model=world.objects["model_a"].pk, replicas=0, promotion={"mode": "soon"})
    response = post(maintainer, deployments_url(world), body)
    refusal(response, 400, "replicas")
    assert "promotion.mode" in response.json()["error"]["fields"]


def test_patch_refusal_names_the_field(world: World, maintainer: Client) -> None:
    acknowledge(world)
    deployment = world.objects["deployment_a"]
    url = reverse("api-deployment-detail", args=[world.tenant_a.slug, deployment.pk])
    response = maintainer.patch(
        url,
        data=json.dumps({"max_input_tokens": 9000, "max_total_tokens": 4096}),
        content_type="application/json",
    )
    refusal(response, 400, "max_input_tokens")


# --- roles ---------------------------------------------------------------------------------


def test_viewers_cannot_write(world: World) -> None:
    viewer = world.client_for("viewer_a")
    deployment = world.objects["deployment_a"]
    args = [world.tenant_a.slug, deployment.pk]
    for response in (
        post(viewer, deployments_url(world), create_body(model=world.objects["model_a"].pk)),
        post(viewer, reverse("api-deployment-promote", args=args), {}),
        post(viewer, reverse("api-rollout-list", args=args), {"revision": 1}),
        viewer.delete(reverse("api-deployment-detail", args=args)),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
    assert Deployment.objects.filter(pk=deployment.pk).exists()


def test_a_token_reaches_only_its_tenant(world: World, api_token_for: Any) -> None:
    bearer = api_token_for("owner_a", world.tenant_a, "viewer")
    client = Client(HTTP_AUTHORIZATION=bearer)
    assert client.get(deployments_url(world)).status_code == 200
    other = reverse("api-deployment-list", args=[world.tenant_b.slug])
    assert client.get(other).status_code == 404
    body = create_body(model=world.objects["model_a"].pk)
    assert post(client, deployments_url(world), body).status_code == 403


# --- steering rollouts ---------------------------------------------------------------------


def test_promote_abort_rollback_answer_409_without_a_rollout(
    world: World, maintainer: Client
) -> None:
    args = [world.tenant_a.slug, world.objects["deployment_a"].pk]
    for name in ("api-deployment-promote", "api-deployment-abort", "api-deployment-rollback"):
        response = post(maintainer, reverse(name, args=args), {})
        assert response.status_code == 409, name
        assert response.json()["error"]["code"] == "conflict"
        assert "rollout" in response.json()["error"]["fields"]


def test_promote_and_abort_are_requested_on_the_running_rollout(
    world: World, maintainer: Client
) -> None:
    deployment = world.objects["deployment_a"]
    rollout = a_rollout(deployment, state=RolloutState.AWAITING_PROMOTION)
    args = [world.tenant_a.slug, deployment.pk]
    response = post(maintainer, reverse("api-deployment-promote", args=args), {})
    assert response.status_code == 202
    assert response.json()["id"] == rollout.pk
    assert response.json()["events"][-1]["message"] == "promotion requested"
    response = post(maintainer, reverse("api-deployment-abort", args=args), {})
    assert response.status_code == 202
    rollout.refresh_from_db()
    assert rollout.promotion_requested and rollout.abort_requested


def test_delete_is_accepted_then_a_worker_removes_the_deployment(
    world: World, maintainer: Client
) -> None:
    deployment = world.objects["deployment_a"]
    url = reverse("api-deployment-detail", args=[world.tenant_a.slug, deployment.pk])
    response = maintainer.delete(url)
    assert response.status_code == 202
    assert response.json()["id"] == deployment.pk
    assert response.json()["deleting"] is True
    assert response.json()["deletion_step"] == "waiting"
    assert maintainer.get(url).json()["deleting"] is True
    tasks.delete_deployment(deployment.pk)  # what the worker runs
    assert not Deployment.objects.filter(pk=deployment.pk).exists()
    assert maintainer.get(url).status_code == 404


# --- through admission on the local cluster ------------------------------------------------


@pytest.mark.cluster
def test_create_then_redeploy_with_an_idempotency_key(
    world: World, cluster_tenant: Any, maintainer: Client
) -> None:
    acknowledge(world)
    body = create_body(
        model=world.objects["model_a"].pk,
        max_input_tokens=32767,
        max_total_tokens=32768,
        promotion={"mode": "manual", "scale_down_delay_seconds": 5},
        pod_annotations={"sidecar.istio.io/inject": "false"},
    )
    Tier.objects.filter(slug="l4").update(max_total_tokens_limit=32768)
    response = post(maintainer, deployments_url(world), body)
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["deployment"]["name"] == "chat"
    assert created["deployment"]["current_rollout"]["state"] == "pending"
    assert created["rollout"]["revision"] == 1 and created["rollout"]["colour"] == "blue"
    assert created["rollout"]["promotion_mode"] == "manual"
    assert created["rollout"]["scale_down_delay_seconds"] == 5
    assert any("maximum context" in w for w in created["warnings"])
    deployment = Deployment.objects.get(pk=created["deployment"]["id"])
    assert deployment.revisions.get().pod_annotations == {"sidecar.istio.io/inject": "false"}

    # No worker runs here: finish the first rollout by hand, then roll revision 1 out again.
    first = deployment.rollouts.get()
    Rollout.objects.filter(pk=first.pk).update(state=RolloutState.COMPLETED)
    Deployment.objects.filter(pk=deployment.pk).update(
        active_revision=first.revision, active_colour="blue"
    )
    url = reverse("api-rollout-list", args=[world.tenant_a.slug, deployment.pk])
    key = {"HTTP_IDEMPOTENCY_KEY": "redeploy-1"}
    again = post(maintainer, url, {"revision": 1}, **key)
    assert again.status_code == 201, again.content
    assert again.json()["colour"] == "green" and again.json()["previous_colour"] == "blue"
    replay = post(maintainer, url, {"revision": 1}, **key)
    assert replay.status_code == 200
    assert replay.json()["id"] == again.json()["id"]
    assert deployment.rollouts.count() == 2
    # A different key while that rollout runs is a conflict, not a second rollout.
    clash = post(maintainer, url, {"revision": 1}, HTTP_IDEMPOTENCY_KEY="redeploy-2")
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "rollout_in_progress"


@pytest.mark.cluster
def test_patch_makes_a_new_revision_and_rollout(
    world: World, cluster_tenant: Any, maintainer: Client
) -> None:
    acknowledge(world)
    deployment = world.objects["deployment_a"]
    url = reverse("api-deployment-detail", args=[world.tenant_a.slug, deployment.pk])
    body = json.dumps({"max_input_tokens": 1024, "max_total_tokens": 3072})
    response = maintainer.patch(
        url, data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="p1"
    )
    assert response.status_code == 201, response.content
    assert response.json()["revision"]["number"] == 1
    assert response.json()["revision"]["max_total_tokens"] == 3072
    assert response.json()["rollout"]["state"] == "pending"
    replay = maintainer.patch(
        url, data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="p1"
    )
    assert replay.status_code == 200
    assert replay.json()["rollout"]["id"] == response.json()["rollout"]["id"]

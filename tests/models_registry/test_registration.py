"""Registering models through the API, against the local Hub through huggingface_hub."""

from __future__ import annotations

import json
from typing import Any

import huggingface_hub.constants
import pytest
from django.urls import reverse

from devstack.hub import fixtures as hub
from devstack.hub.server import HubControl
from models_registry import services
from models_registry.models import ModelRevision, RegisteredModel
from tenants import services as tenant_services
from tenants.audit import Actor
from tenants.models import AuditEvent, Tenant
from tests.fixtures.personas import World


def post(world: World, persona: str, url: str, body: dict[str, Any]) -> Any:
    return world.client_for(persona).post(
        url, data=json.dumps(body), content_type="application/json"
    )


def register(
    world: World, repo_id: str, revision: str | None = None, persona: str = "maintainer_a"
) -> Any:
    body = {"repo_id": repo_id} | ({"revision": revision} if revision else {})
    return post(world, persona, reverse("api-model-list", args=["alpha"]), body)


def test_branch_is_resolved_and_the_commit_pinned(world: World) -> None:
    response = register(world, hub.LLAMA_8B_AWQ_ID)
    assert response.status_code == 201, response.content
    body = response.json()
    current = body["current"]
    assert current["commit_sha"] == hub.repo(hub.LLAMA_8B_AWQ_ID).branches["main"]
    assert body["requested_revision"] == "main"
    assert current["quantization_method"] == "awq" and current["quantization_bits"] == 4
    assert current["parameters_by_dtype"] == {"I32": 879_230_976, "F16": 1_105_465_344}
    assert current["weights_bytes"] == 879_230_976 * 4 + 1_105_465_344 * 2
    assert current["license"] == "llama3.1"
    assert body["blockers"] == [
        "a tenant owner must acknowledge the Meta Llama 3.1 Community License"
    ]


def test_tag_branch_and_sha_all_pin_exact_commits(world: World) -> None:
    gptq = hub.repo(hub.MISTRAL_GPTQ_ID)
    branch = "gptq-8bit-128g-actorder_True"
    response = register(world, hub.MISTRAL_GPTQ_ID, branch)
    assert response.json()["current"]["commit_sha"] == gptq.branches[branch]
    assert response.json()["requested_revision"] == branch
    # by tag and by commit sha, in a fresh tenant (A and B already have Mistral)
    mistral = hub.repo(hub.MISTRAL_7B_ID)
    admin = Actor(world.users["admin"], "cli")
    tenant_services.create_tenant(admin, name="Gamma", slug="gamma", namespace="tenant-gamma")
    tenant_services.add_member(
        admin, Tenant.objects.get(slug="gamma"), username="owner_b", role="owner"
    )
    beta = reverse("api-model-list", args=["gamma"])
    by_tag = post(world, "owner_b", beta, {"repo_id": hub.MISTRAL_7B_ID, "revision": "v1.0"})
    assert by_tag.status_code == 201
    assert by_tag.json()["current"]["commit_sha"] == mistral.tags["v1.0"]
    sha = gptq.branches["main"]
    by_sha = post(world, "owner_b", beta, {"repo_id": hub.MISTRAL_GPTQ_ID, "revision": sha})
    assert by_sha.json()["current"]["commit_sha"] == sha


def test_pinned_commit_does_not_move_when_the_branch_does(
    world: World, hub_control: HubControl
) -> None:
    awq = hub.repo(hub.LLAMA_8B_AWQ_ID)
    register(world, hub.LLAMA_8B_AWQ_ID)
    model = RegisteredModel.objects.get(repo_id=hub.LLAMA_8B_AWQ_ID, tenant=world.tenant_a)
    assert model.current_revision is not None
    pinned = model.current_revision.commit_sha
    mistral_main = hub.repo(hub.MISTRAL_7B_ID).branches["main"]
    assert awq.branches["main"] == pinned
    # any later read of the model still answers the pinned commit
    detail = (
        world.client_for("viewer_a")
        .get(reverse("api-model-detail", args=["alpha", model.pk]))
        .json()
    )
    assert detail["current"]["commit_sha"] == pinned != mistral_main


# One refusal per status a registration can answer; which registrations are refused and why
# is tested once, at the service, in test_services.py.
@pytest.mark.parametrize(
    ("repo_id", "status", "code", "field"),
    [
        ("not a repo id!", 400, "invalid", "repo_id"),
        ("nobody/no-such-model", 404, "repo_not_found", "repo_id"),
        (hub.LLAMA_8B_ID, 403, "gated_no_access", "repo_id"),
    ],
)
def test_refusals_answer_their_status_name_the_field_and_save_nothing(
    world: World, repo_id: str, status: int, code: str, field: str
) -> None:
    before = (
        RegisteredModel.objects.count(),
        ModelRevision.objects.count(),
        AuditEvent.objects.count(),
    )
    response = register(world, repo_id)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    assert field in error["fields"], error
    assert (
        RegisteredModel.objects.count(),
        ModelRevision.objects.count(),
        AuditEvent.objects.count(),
    ) == before


def test_slow_hub_times_out_with_a_clear_message(
    world: World, hub_control: HubControl, settings: Any
) -> None:
    settings.HF_HUB_TIMEOUT_SECONDS = 0.5
    hub_control.set_faults(delay_seconds=3, path_regex="/api/models/")
    response = register(world, hub.LLAMA_8B_AWQ_ID)
    assert response.status_code == 503
    assert "did not answer within 0.5 s" in response.json()["error"]["message"]
    assert not RegisteredModel.objects.filter(repo_id=hub.LLAMA_8B_AWQ_ID).exists()


def test_hub_error_midway_saves_nothing(
    world: World, hub_control: HubControl, settings: Any, tmp_path: Any
) -> None:
    settings.HF_METADATA_CACHE = str(tmp_path)  # nothing cached: config.json must be fetched
    # model_info succeeds, then the download of config.json fails
    hub_control.set_faults(status=501, path_regex="/resolve/.*config.json")
    response = register(world, hub.LLAMA_8B_AWQ_ID)
    assert response.status_code == 503, response.content
    assert response.json()["error"]["message"] == "the Hub answered 501; try again later"
    assert not RegisteredModel.objects.filter(repo_id=hub.LLAMA_8B_AWQ_ID).exists()


def test_unreachable_hub(world: World, settings: Any) -> None:
    settings.HF_ENDPOINT = "http://127.0.0.1:9"
    response = register(world, hub.LLAMA_8B_AWQ_ID)
    assert response.status_code == 503
    assert "cannot reach the Hub at http://127.0.0.1:9" in response.json()["error"]["message"]


def test_offline_mode_is_honoured(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    response = register(world, hub.LLAMA_8B_AWQ_ID)
    assert response.status_code == 503
    assert "HF_HUB_OFFLINE=1" in response.json()["error"]["message"]


def test_duplicate_registration_is_a_conflict(world: World) -> None:
    response = register(world, hub.MISTRAL_7B_ID)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert "repo_id" in response.json()["error"]["fields"]


def test_custom_code_needs_platform_admin_approval_which_is_audited(world: World) -> None:
    response = register(world, hub.CUSTOM_CODE_ID)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["current"]["requires_custom_code"] is True
    assert (
        "auto_map" in body["current"]["custom_code_reason"]
        or "not served natively" in body["current"]["custom_code_reason"]
    )
    assert (
        f"a platform admin must approve trust_remote_code for commit "
        f"{body['current']['commit_sha'][:12]}" in body["blockers"]
    )
    url = reverse("api-model-approve-code", args=["alpha", body["id"]])
    assert post(world, "owner_a", url, {}).status_code == 403
    approved = post(world, "admin", url, {})
    assert approved.status_code == 200
    assert approved.json()["remote_code_approval"]["approved_by"] == "platform_admin"
    assert approved.json()["blockers"] == []
    event = AuditEvent.objects.get(action="model.approve_remote_code")
    assert (
        event.actor_name == "platform_admin"
        and event.changes["commit"] == body["current"]["commit_sha"]
    )


def test_restricted_licence_needs_an_owner_acknowledgement(world: World) -> None:
    model_id = register(world, hub.LLAMA_8B_AWQ_ID).json()["id"]
    url = reverse("api-model-ack-license", args=["alpha", model_id])
    assert post(world, "maintainer_a", url, {}).status_code == 403
    response = post(world, "owner_a", url, {})
    assert response.status_code == 200
    assert response.json()["license_acknowledged_by"] == "owner_a"
    assert response.json()["blockers"] == []


def test_update_shows_what_changes_and_moves_only_on_confirmation(world: World) -> None:
    mistral = hub.repo(hub.MISTRAL_7B_ID)
    model = world.objects["model_a"]
    services.acknowledge_license(Actor(world.users["owner_a"], "cli"), model)
    url = reverse("api-model-update", args=["alpha", model.pk])
    preview = world.client_for("viewer_a").get(url).json()
    assert preview["is_newer"] is True
    changes = preview["changes"]
    assert changes["commit"] == [mistral.tags["v1.0"], mistral.branches["main"]]
    assert changes["license"] == ["cc-by-nc-4.0", "apache-2.0"]
    assert changes["files_added"], "main adds files"
    model.refresh_from_db()
    assert model.current_revision.commit_sha == mistral.tags["v1.0"]  # preview moved nothing

    stale = post(
        world, "maintainer_a", url, {"revision": "main", "expected_sha": mistral.tags["v1.0"]}
    )
    assert stale.status_code == 409
    moved = post(
        world, "maintainer_a", url, {"revision": "main", "expected_sha": mistral.branches["main"]}
    )
    assert moved.status_code == 200
    assert moved.json()["current"]["commit_sha"] == mistral.branches["main"]
    assert model.revisions.count() == 2
    # a changed licence resets the acknowledgement
    assert moved.json()["license_acknowledged_at"] is None
    assert AuditEvent.objects.filter(
        action="model.update", changes__license=["cc-by-nc-4.0", "apache-2.0"]
    ).exists()


def test_lookup_previews_without_saving(world: World) -> None:
    before = RegisteredModel.objects.count()
    url = reverse("api-hub-lookup", args=["alpha"])
    answer = world.client_for("viewer_a").get(url, {"repo_id": hub.GEMMA_9B_ID}).json()
    assert answer["registrable"] is False and "gated" in answer["refusal"]
    answer = world.client_for("viewer_a").get(url, {"repo_id": hub.LLAMA_70B_ID}).json()
    assert answer["registrable"] is False
    answer = world.client_for("viewer_a").get(url, {"repo_id": hub.MISTRAL_GPTQ_ID}).json()
    assert answer["registrable"] is True and answer["model"]["quantization_method"] == "gptq"
    assert RegisteredModel.objects.count() == before


def test_fit_endpoint_for_a_registered_model(world: World) -> None:
    model_id = register(world, hub.LLAMA_8B_AWQ_ID).json()["id"]
    url = reverse("api-model-fit", args=["alpha", model_id])
    result = (
        world.client_for("viewer_a")
        .get(url, {"max_total_tokens": 8192, "concurrent_sequences": 4})
        .json()
    )
    assert result["recommended_tier"] == "l4"
    l4 = next(row for row in result["tiers"] if row["tier"] == "l4")
    assert l4["weights_gb"] == round((879_230_976 * 4 + 1_105_465_344 * 2) / 1e9, 2)
    assert l4["kv_cache_per_token_kib"] == 128
    refused = world.client_for("viewer_a").get(url, {"quantize": "bitsandbytes"}).json()
    assert all(not row["fits"] and "must be one of" in row["reason"] for row in refused["tiers"])
    bad = world.client_for("viewer_a").get(url, {"max_total_tokens": 0})
    assert bad.status_code == 400 and "max_total_tokens" in bad.json()["error"]["fields"]

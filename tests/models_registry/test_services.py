"""The registry's domain rules, tested once here by calling models_registry.services directly
(against the local Hub): which registrations are refused and why, what blocks a deployment,
who approves what and when an update is stale. The API tests check only how a refusal reaches
the client (status, envelope) and that nothing was saved."""

from __future__ import annotations

import pytest

from devstack.hub import fixtures as hub
from models_registry import services
from models_registry.models import ModelRevision, RegisteredModel
from portal.errors import Conflict, DomainError, Forbidden
from tenants.audit import Actor
from tenants.models import AuditEvent
from tests.fixtures.personas import World


def maintainer(world: World) -> Actor:
    return Actor(world.users["maintainer_a"], "cli")


def saved(world: World) -> tuple[int, int, int]:
    return (
        RegisteredModel.objects.count(),
        ModelRevision.objects.count(),
        AuditEvent.objects.count(),
    )


@pytest.mark.parametrize(
    ("repo_id", "revision", "status", "code", "field", "text"),
    [
        (hub.MINILM_ID, "main", 400, "not_text_generation", "repo_id", "sentence-similarity"),
        (
            "nobody/no-such-model",
            "main",
            404,
            "repo_not_found",
            "repo_id",
            "no model 'nobody/no-such-model'",
        ),
        (
            hub.LLAMA_8B_AWQ_ID,
            "no-such-branch",
            404,
            "revision_not_found",
            "revision",
            "no branch, tag or commit",
        ),
        (
            hub.LLAMA_8B_ID,
            "main",
            403,
            "gated_no_access",
            "repo_id",
            "is gated and the tenant's Hub token has no access",
        ),
        ("not a repo id!", "main", 400, "invalid", "repo_id", "must be a Hub repository id"),
        (hub.LLAMA_8B_AWQ_ID, "a branch", 400, "invalid", "revision", "must be a branch, tag"),
    ],
    ids=[
        "not-text-generation",
        "no-such-repo",
        "no-such-revision",
        "gated-without-access",
        "bad-repo-id",
        "bad-revision",
    ],
)
def test_registration_refusals_name_the_field_and_save_nothing(
    world: World, repo_id: str, revision: str, status: int, code: str, field: str, text: str
) -> None:
    before = saved(world)
    with pytest.raises(DomainError) as refused:
        services.register_model(
            maintainer(world), world.tenant_a, repo_id=repo_id, revision=revision
        )
    assert (refused.value.status_code, refused.value.code, refused.value.field) == (
        status,
        code,
        field,
    )
    assert text in refused.value.message, refused.value.message
    assert saved(world) == before


def test_registering_a_model_twice_is_a_conflict(world: World) -> None:
    before = saved(world)
    with pytest.raises(Conflict) as refused:
        services.register_model(maintainer(world), world.tenant_a, repo_id=hub.MISTRAL_7B_ID)
    assert refused.value.field == "repo_id"
    assert refused.value.message == (
        "'mistralai/Mistral-7B-Instruct-v0.3' is already registered in this tenant"
    )
    assert saved(world) == before


def test_custom_code_blocks_deployment_until_a_platform_admin_approves(world: World) -> None:
    model = services.register_model(maintainer(world), world.tenant_a, repo_id=hub.CUSTOM_CODE_ID)
    assert model.current_revision is not None
    sha = model.current_revision.commit_sha
    assert services.deployment_blockers(model) == [
        f"a platform admin must approve trust_remote_code for commit {sha[:12]}"
    ]
    with pytest.raises(Forbidden) as refused:
        services.approve_remote_code(Actor(world.users["owner_a"], "cli"), model)
    assert refused.value.message == "only platform admins can approve remote code"
    services.approve_remote_code(Actor(world.users["admin"], "cli"), model)
    assert services.deployment_blockers(model) == []


def test_a_restricted_licence_blocks_deployment_until_acknowledged(world: World) -> None:
    model = world.objects["model_a"]
    assert services.deployment_blockers(model) == [
        "a tenant owner must acknowledge the Creative Commons Non-Commercial"
    ]
    services.acknowledge_license(Actor(world.users["owner_a"], "cli"), model)
    assert services.deployment_blockers(model) == []


def test_a_licence_without_restrictions_needs_no_acknowledgement(world: World) -> None:
    model = services.register_model(maintainer(world), world.tenant_a, repo_id=hub.MISTRAL_GPTQ_ID)
    with pytest.raises(DomainError) as refused:
        services.acknowledge_license(Actor(world.users["owner_a"], "cli"), model)
    assert refused.value.field == "license"


def test_an_update_to_a_commit_other_than_the_previewed_one_is_stale(world: World) -> None:
    mistral = hub.repo(hub.MISTRAL_7B_ID)
    model = world.objects["model_a"]
    with pytest.raises(Conflict) as refused:
        services.apply_update(
            maintainer(world), model, revision="main", expected_sha=mistral.tags["v1.0"]
        )
    assert refused.value.field == "expected_sha"
    assert "review the changes again" in refused.value.message
    assert model.revisions.count() == 1


def test_a_model_in_use_cannot_be_deleted(world: World) -> None:
    with pytest.raises(Conflict) as refused:
        services.delete_model(maintainer(world), world.objects["model_a"])
    assert refused.value.message == "the model is used by deployments: alpha-chat"
    assert RegisteredModel.objects.filter(pk=world.objects["model_a"].pk).exists()

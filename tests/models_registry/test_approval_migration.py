"""The approval migration: a model's approval moves to its commit, and deployed commits keep it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from deployments.models import DeploymentRevision
from models_registry.models import ModelRevision, RemoteCodeApproval
from tests.fixtures.personas import World

BEFORE = [("models_registry", "0002_revision_has_chat_template")]


def _revision(current: ModelRevision, sha: str) -> ModelRevision:
    return ModelRevision.objects.create(
        model=current.model,
        commit_sha=sha,
        requested_revision=sha,
        requires_custom_code=True,
        total_parameters=current.total_parameters,
    )


@pytest.mark.django_db(transaction=True)
def test_an_approval_moves_to_the_current_commit_and_those_deployments_serve(
    world: World,
) -> None:
    model, deployment = world.objects["model_a"], world.objects["deployment_a"]
    current = model.current_revision
    ModelRevision.objects.filter(pk=current.pk).update(requires_custom_code=True)
    served = _revision(current, "b" * 40)
    never_used = _revision(current, "c" * 40)
    DeploymentRevision.objects.create(
        deployment=deployment,
        number=1,
        model_revision=served,
        tier=deployment.tier,
        max_input_tokens=1024,
        max_total_tokens=2048,
        max_batch_prefill_tokens=1074,
    )
    approved_at = timezone.now()

    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old_model = executor.loader.project_state(BEFORE).apps.get_model(
        "models_registry", "RegisteredModel"
    )
    old_model.objects.filter(pk=model.pk).update(
        remote_code_approved_by_id=world.users["admin"].pk, remote_code_approved_at=approved_at
    )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    approvals = RemoteCodeApproval.objects.filter(revision__model=model)
    assert {a.revision_id for a in approvals} == {current.pk, served.pk}
    assert never_used.pk not in {a.revision_id for a in approvals}
    assert {(a.approved_by_id, a.approved_at) for a in approvals} == {
        (world.users["admin"].pk, approved_at)
    }

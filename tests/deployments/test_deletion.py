"""Deleting a deployment: the request marks, stops and enqueues; the task converges however often
it runs and wherever a worker was killed; the reconciler re-drives a lost task."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from deployments import deletion, services, tasks
from deployments.choices import DeletionStep, RolloutState
from deployments.models import Deployment, Rollout
from deployments.reconcile import ReconcileReport
from portal import kube
from portal.errors import Conflict
from tenants.audit import Actor
from tenants.models import AuditEvent
from tests.deployments.test_api import a_rollout
from tests.fixtures.personas import World


class WorkerKilled(BaseException):
    """A SIGKILL, as far as the code under test can tell: nothing after it runs."""


@pytest.fixture
def actor(world: World) -> Actor:
    return Actor(world.users["maintainer_a"], "api")


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The deployment ids sent to the deletion task (instead of the broker)."""
    ids: list[int] = []
    monkeypatch.setattr(tasks.delete_deployment, "delay", ids.append)
    return ids


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every kube.delete, as (kind, name); the objects are never there twice."""
    deleted: list[tuple[str, str]] = []

    def delete(api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        deleted.append((kind, name))
        return deleted.count((kind, name)) == 1

    monkeypatch.setattr(kube, "delete", delete)
    return deleted


def run_to_end(deployment_id: int) -> list[str]:
    """Drive the deletion as the task chain does (no sleeping): the steps it went through."""
    seen = []
    for _ in range(20):
        row = Deployment.objects.filter(pk=deployment_id).first()
        seen.append(row.deletion_step if row else "gone")
        if deletion.advance(deployment_id) is None:
            return seen
    raise AssertionError(f"the deletion did not finish: {seen}")


def test_deleting_marks_stops_audits_and_enqueues(
    world: World,
    actor: Actor,
    sent: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    deployment = world.objects["deployment_a"]
    rollout = a_rollout(deployment, state=RolloutState.WAITING_READY)
    with django_capture_on_commit_callbacks(execute=True):
        returned = services.delete_deployment(actor, deployment)
    assert returned.deleting and returned.deletion_step == DeletionStep.WAITING
    assert returned.deletion_requested_at is not None
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.ABORTED
    assert rollout.failure_reason == "the deployment was deleted"
    assert sent == [deployment.pk]
    assert Deployment.objects.filter(pk=deployment.pk).exists()  # the worker removes it
    assert AuditEvent.objects.filter(action="deployment.delete").count() == 1

    # Asking again changes nothing but sends the task once more.
    with django_capture_on_commit_callbacks(execute=True):
        services.delete_deployment(actor, deployment)
    assert sent == [deployment.pk, deployment.pk]
    assert AuditEvent.objects.filter(action="deployment.delete").count() == 1


def test_a_deployment_being_deleted_gets_no_new_rollout(world: World, actor: Actor) -> None:
    deployment = world.objects["deployment_a"]
    a_rollout(deployment, state=RolloutState.COMPLETED)
    services.delete_deployment(actor, deployment)
    with pytest.raises(Conflict) as refused:
        services.deploy_revision(actor, deployment, 1)
    assert refused.value.code == "deployment_deleting"


def test_the_task_removes_objects_then_rows_and_running_it_again_changes_nothing(
    world: World, actor: Actor, cluster: list[tuple[str, str]]
) -> None:
    deployment = world.objects["deployment_a"]
    a_rollout(deployment, state=RolloutState.COMPLETED)
    services.delete_deployment(actor, deployment)
    assert run_to_end(deployment.pk) == ["waiting", "kubernetes", "records"]
    kinds = [kind for kind, _ in cluster]
    assert kinds == ["ConfigMap", "Job", "PersistentVolumeClaim"]
    assert not Deployment.objects.filter(pk=deployment.pk).exists()
    assert not Rollout.objects.filter(deployment_id=deployment.pk).exists()

    tasks.delete_deployment(deployment.pk)  # a redelivered message, after the end
    assert run_to_end(deployment.pk) == ["gone"]
    assert len(cluster) == 3


@pytest.mark.parametrize("killed_in", ["kube.delete", "_delete_records"])
def test_a_worker_killed_midway_is_resumed_to_the_same_end(
    world: World,
    actor: Actor,
    cluster: list[tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    killed_in: str,
) -> None:
    deployment = world.objects["deployment_a"]
    a_rollout(deployment, state=RolloutState.COMPLETED)
    services.delete_deployment(actor, deployment)
    with monkeypatch.context() as patched:
        if killed_in == "kube.delete":
            real_delete = kube.delete

            def killed_after_the_root(*args: Any) -> bool:
                real_delete(*args)
                raise WorkerKilled

            patched.setattr(kube, "delete", killed_after_the_root)
        else:

            def killed(deployment: Deployment) -> None:
                raise WorkerKilled

            patched.setattr(deletion, "_delete_records", killed)
        with pytest.raises(WorkerKilled):
            tasks.delete_deployment(deployment.pk)
    row = Deployment.objects.get(pk=deployment.pk)
    expected = DeletionStep.KUBERNETES if killed_in == "kube.delete" else DeletionStep.RECORDS
    assert row.deleting and row.deletion_step == expected

    tasks.delete_deployment(deployment.pk)  # the message, delivered again
    assert not Deployment.objects.filter(pk=deployment.pk).exists()
    assert {kind for kind, _ in cluster} == {"ConfigMap", "Job", "PersistentVolumeClaim"}


def test_the_deletion_waits_for_a_running_step(
    world: World, actor: Actor, cluster: list[tuple[str, str]]
) -> None:
    deployment = world.objects["deployment_a"]
    rollout = a_rollout(
        deployment,
        state=RolloutState.CREATING,
        claimed_until=timezone.now() + timedelta(seconds=10),
    )
    services.delete_deployment(actor, deployment)
    wait = deletion.advance(deployment.pk)
    assert wait is not None and 0 < wait <= deletion.POLL_SECONDS
    assert Deployment.objects.get(pk=deployment.pk).deletion_step == DeletionStep.WAITING
    assert cluster == []
    Rollout.objects.filter(pk=rollout.pk).update(claimed_until=None)  # the step gave it back
    assert deletion.advance(deployment.pk) == 0.0
    assert Deployment.objects.get(pk=deployment.pk).deletion_step == DeletionStep.KUBERNETES


def test_a_lease_that_outlives_the_wait_is_not_waited_for(
    world: World, actor: Actor, settings: Any
) -> None:
    deployment = world.objects["deployment_a"]
    a_rollout(deployment, claimed_until=timezone.now() + timedelta(hours=1))
    services.delete_deployment(actor, deployment)
    asked = timezone.now() - timedelta(seconds=settings.ROLLOUT_CLAIM_SECONDS + 1)
    Deployment.objects.filter(pk=deployment.pk).update(deletion_requested_at=asked)
    assert deletion.advance(deployment.pk) == 0.0


def test_a_cluster_away_is_waited_for_in_the_same_step(
    world: World, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = world.objects["deployment_a"]
    a_rollout(deployment, state=RolloutState.COMPLETED)
    services.delete_deployment(actor, deployment)

    def away(*args: Any) -> bool:
        raise kube.ClusterUnavailable("the Kubernetes API answered 503: unavailable")

    monkeypatch.setattr(kube, "delete", away)
    assert deletion.advance(deployment.pk) == 0.0
    assert deletion.advance(deployment.pk) == deletion.CLUSTER_RETRY_SECONDS
    row = Deployment.objects.get(pk=deployment.pk)
    assert row.deleting and row.deletion_step == DeletionStep.KUBERNETES


def test_the_reconciler_re_drives_a_lost_deletion_once(
    world: World, actor: Actor, sent: list[int], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    lost, running = world.objects["deployment_a"], world.objects["deployment_b"]
    services.delete_deployment(actor, lost)
    services.delete_deployment(actor, running)
    long_ago = timezone.now() - timedelta(seconds=settings.ROLLOUT_CLAIM_SECONDS + 1)
    Deployment.objects.filter(pk=lost.pk).update(deletion_progress_at=long_ago)
    assert deletion.stalled(claim=False) == [lost.pk]
    assert deletion.stalled() == [lost.pk]
    assert deletion.stalled() == []  # handed out: not again while its task waits in the queue

    monkeypatch.setattr(tasks, "reconcile_pass", lambda **_: ReconcileReport(stalled_deletions=[7]))
    assert tasks.reconcile_rollouts()["stalled_deletions"] == [7]
    assert sent == [7]

"""Where a tier's pods find their weights (cluster setting, tier override) and which weights
volumes the reconciler may delete. Database only: no cluster."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from deployments import reconcile
from deployments.admin import TierForm
from deployments.choices import RolloutState
from deployments.models import Deployment, DeploymentRevision, Rollout, Tier
from deployments.rendering import OwnerRef, download_job_name_of
from deployments.rendering.meta import weights_pvc_name
from deployments.rollout import desired_colour_deployment
from deployments.specs import serving_spec, serving_specs
from deployments.weights import mounted_volumes, needed_volumes, unused_volumes
from models_registry.models import ModelRevision, RegisteredModel
from portal import kube
from tenants.audit import Actor, Channel
from tests.deployments.fleet_rows import settled_deployments, tenant_with_model
from tests.fixtures.personas import World

OLD, NEW, FAILED = "a" * 40, "b" * 40, "c" * 40


def _revision(model: RegisteredModel, sha: str) -> ModelRevision:
    return ModelRevision.objects.get_or_create(
        model=model,
        commit_sha=sha,
        defaults={
            "requested_revision": "main",
            "pipeline_tag": "text-generation",
            "parameters_by_dtype": {"BF16": 7_000_000_000},
            "num_hidden_layers": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "context_length": 8192,
        },
    )[0]


def _deployment_revision(deployment: Deployment, number: int, sha: str) -> DeploymentRevision:
    return DeploymentRevision.objects.create(
        deployment=deployment,
        number=number,
        model_revision=_revision(deployment.model, sha),
        tier=deployment.tier,
        max_input_tokens=1024,
        max_total_tokens=2048,
        max_batch_prefill_tokens=1074,
    )


@pytest.fixture
def serving(world: World) -> Deployment:
    """One settled deployment (blue, serving commit OLD) of a tenant of its own."""
    model = tenant_with_model(Actor(user=world.users["admin"], channel=Channel.CLI), "wts")
    settled_deployments(model, 1)
    return Deployment.objects.select_related("tenant", "tier", "model").get(tenant=model.tenant)


# --- the strategy in the spec ---------------------------------------------------------------


@override_settings(WEIGHTS_STRATEGY="shared-volume", WEIGHTS_STORAGE_CLASS="shared-files")
def test_a_tier_without_a_choice_follows_the_cluster_setting(serving: Deployment) -> None:
    spec = serving_spec(serving.active_revision)  # type: ignore[arg-type]

    assert spec.tier.weights_strategy == "shared-volume"
    assert spec.tier.weights_storage_class == "shared-files"
    # The reconciler's bulk specs carry the same choice (it re-renders the same pods).
    assert serving_specs([serving])[serving.pk] == spec


@override_settings(WEIGHTS_STRATEGY="shared-volume", WEIGHTS_STORAGE_CLASS="shared-files")
def test_a_tier_s_own_choice_overrides_the_cluster_and_reaches_the_pods(
    serving: Deployment,
) -> None:
    Tier.objects.filter(pk=serving.tier_id).update(weights_strategy="node-local")
    revision = _active_revision(serving)

    spec = serving_spec(revision, OwnerRef("v1", "ConfigMap", "tgi-d0", "uid-1"))
    # As the rollout and the reconciler render the serving side.
    pod = desired_colour_deployment(spec, "blue")["spec"]["template"]["spec"]

    assert spec.tier.weights_strategy == "node-local"
    assert spec.tier.weights_storage_class is None
    assert "emptyDir" in pod["volumes"][0] and pod["initContainers"]


@override_settings(WEIGHTS_STRATEGY="single-node-volume", WEIGHTS_STORAGE_CLASS="")
def test_a_tier_may_bring_its_own_storage_class(serving: Deployment) -> None:
    Tier.objects.filter(pk=serving.tier_id).update(
        weights_strategy="shared-volume", weights_storage_class="filestore-zonal"
    )
    revision = _active_revision(serving)

    assert serving_spec(revision).tier.weights_storage_class == "filestore-zonal"


def _active_revision(deployment: Deployment) -> DeploymentRevision:
    """Read again: the tier was changed behind the cached row."""
    return DeploymentRevision.objects.select_related("tier").get(deployment=deployment, number=1)


def _tier_form(tier: Tier, **weights: str) -> TierForm:
    data: dict[str, Any] = {
        field: getattr(tier, field)
        for field in (
            "slug",
            "name",
            "description",
            "is_active",
            "gpu_product",
            "gpu_memory_gb",
            "gpus_per_replica",
            "cpu_request",
            "memory_request",
            "default_max_total_tokens",
            "max_total_tokens_limit",
            "price_per_gpu_hour",
            "queue_depth_alert",
            "ttft_p95_alert_seconds",
        )
    }
    for field in ("node_selector", "tolerations", "engine_images"):
        data[field] = json.dumps(getattr(tier, field))
    return TierForm(data={**data, **weights}, instance=tier)


@override_settings(WEIGHTS_STRATEGY="single-node-volume", WEIGHTS_STORAGE_CLASS="")
def test_the_tier_admin_refuses_a_shared_volume_without_a_storage_class(world: World) -> None:
    tier = Tier.objects.get(slug="l4")

    refused = _tier_form(tier, weights_strategy="shared-volume", weights_storage_class="")
    assert not refused.is_valid()
    assert "ReadWriteMany storage class" in refused.errors["weights_storage_class"][0]
    bad_name = _tier_form(tier, weights_strategy="shared-volume", weights_storage_class="No_Such")
    assert "StorageClass name" in bad_name.errors["weights_storage_class"][0]

    accepted = _tier_form(tier, weights_strategy="shared-volume", weights_storage_class="nfs")
    assert accepted.is_valid(), accepted.errors
    accepted.save()
    tier.refresh_from_db()
    assert (tier.weights_strategy, tier.weights_storage_class) == ("shared-volume", "nfs")


@override_settings(WEIGHTS_STRATEGY="shared-volume", WEIGHTS_STORAGE_CLASS="shared-files")
def test_the_tier_admin_accepts_a_shared_volume_on_the_cluster_s_class(world: World) -> None:
    form = _tier_form(Tier.objects.get(slug="l4"), weights_strategy="", weights_storage_class="")
    assert form.is_valid(), form.errors


# --- which volumes may go -------------------------------------------------------------------


def _volume(deployment: Deployment, sha: str) -> tuple[str, str]:
    return (deployment.tenant.namespace, weights_pvc_name(deployment.model.repo_id, sha))


def test_volumes_of_the_active_the_new_and_the_old_side_are_needed_others_not(
    serving: Deployment,
) -> None:
    old = serving.active_revision
    new = _deployment_revision(serving, 2, NEW)
    failed = _deployment_revision(serving, 3, FAILED)
    Rollout.objects.create(
        deployment=serving,
        revision=failed,
        previous_revision=old,
        colour="green",
        state=RolloutState.FAILED,
        finished_at=timezone.now(),
    )
    # The new side serves; the old one is still up for an instant rollback.
    Deployment.objects.filter(pk=serving.pk).update(active_revision=new, active_colour="green")
    running = Rollout.objects.create(
        deployment=serving,
        revision=new,
        previous_revision=old,
        colour="green",
        state=RolloutState.SCALE_DOWN_DELAY,
        traffic_switched=True,
    )
    volumes = [_volume(serving, sha) for sha in (OLD, NEW, FAILED)]

    needed = needed_volumes()
    assert unused_volumes(volumes, needed, ()) == [_volume(serving, FAILED)]

    # Once the old side is scaled down, its commit's volume may go too.
    Rollout.objects.filter(pk=running.pk).update(state=RolloutState.COMPLETED)
    needed = needed_volumes()
    assert unused_volumes(volumes, needed, ()) == sorted(
        [_volume(serving, OLD), _volume(serving, FAILED)]
    )
    # ...but never while a pod (a terminating old pod, a download) still mounts it.
    assert unused_volumes(volumes, needed, {_volume(serving, OLD)}) == [_volume(serving, FAILED)]


def test_another_deployment_serving_the_commit_keeps_its_volume(
    serving: Deployment, world: World
) -> None:
    settled_deployments(serving.model, 1, prefix="other")  # same tenant, same commit OLD
    new = _deployment_revision(serving, 2, NEW)
    Deployment.objects.filter(pk=serving.pk).update(active_revision=new)

    assert _volume(serving, OLD) in needed_volumes([serving.tenant_id])
    assert needed_volumes([serving.tenant_id + 10_000]) == set()


def _pod(namespace: str, *claims: str, phase: str = "Running") -> Any:
    volumes = [
        SimpleNamespace(persistent_volume_claim=SimpleNamespace(claim_name=claim))
        for claim in claims
    ]
    volumes.append(SimpleNamespace(persistent_volume_claim=None))  # e.g. /dev/shm
    return SimpleNamespace(
        metadata=SimpleNamespace(namespace=namespace),
        spec=SimpleNamespace(volumes=volumes),
        status=SimpleNamespace(phase=phase),
    )


class WeightsCluster:
    """Lists the given weights PVCs and pods; records what the pass deletes."""

    def __init__(self, volumes: list[tuple[str, str]], pods: list[Any]) -> None:
        self.volumes = volumes
        self.pods = pods
        self.deleted: list[tuple[str, str, str]] = []

    def _page(self, items: list[Any]) -> Any:
        return SimpleNamespace(items=items, metadata=SimpleNamespace(_continue=None))

    def list_deployment_for_all_namespaces(self, **_: Any) -> Any:
        return self._page([])

    def list_service_for_all_namespaces(self, **_: Any) -> Any:
        return self._page([])

    def list_persistent_volume_claim_for_all_namespaces(self, **_: Any) -> Any:
        return self._page(
            [
                SimpleNamespace(metadata=SimpleNamespace(namespace=n, name=v))
                for n, v in self.volumes
            ]
        )

    def list_namespaced_pod(self, namespace: str, **_: Any) -> Any:
        return self._page([p for p in self.pods if p.metadata.namespace == namespace])

    def delete(self, api_version: str, kind: str, name: str, namespace: str) -> bool:
        self.deleted.append((kind, namespace, name))
        return True


def test_the_reconciler_deletes_unused_volumes_with_their_jobs_and_spares_mounted_ones(
    serving: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = serving.tenant.namespace
    unused, mounted = _volume(serving, FAILED), _volume(serving, NEW)
    fake = WeightsCluster(
        [_volume(serving, OLD), unused, mounted], [_pod(namespace, mounted[1], "unrelated")]
    )
    monkeypatch.setattr(kube, "api_client", lambda: None)
    monkeypatch.setattr(kube, "core", lambda: fake)
    monkeypatch.setattr(kube, "delete", fake.delete)
    monkeypatch.setattr(reconcile.client, "AppsV1Api", lambda api_client: fake)
    monkeypatch.setattr(reconcile, "_repair", lambda *args, **kwargs: None)

    looked = reconcile.reconcile_pass(repair=False)
    assert looked.unused_weights == [f"{namespace}/{unused[1]}"]
    assert fake.deleted == []  # a dry pass only reports

    reconcile.reconcile_pass(repair=True)
    assert fake.deleted == [
        ("Job", namespace, download_job_name_of(unused[1])),
        ("PersistentVolumeClaim", namespace, unused[1]),
    ]


def test_mounted_volumes_reads_the_claims_of_every_pod_still_running() -> None:
    pods = [
        _pod("tenant-a", "weights-x"),
        _pod("tenant-b", "weights-y", "data"),
        # A finished download's pod, kept until its Job's TTL, holds nothing.
        _pod("tenant-a", "weights-done", phase="Succeeded"),
    ]
    assert mounted_volumes(pods) == {
        ("tenant-a", "weights-x"),
        ("tenant-b", "weights-y"),
        ("tenant-b", "data"),
    }

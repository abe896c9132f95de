"""Rollouts that go wrong: crashing or OOM new sides, aborts, quotas, races and killed workers."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from deployments import services
from deployments.admission import AdmissionRefused
from deployments.choices import RolloutState as S
from deployments.models import Deployment, Rollout, Tier
from deployments.rendering import active_service_name, colour_name, preview_service_name
from deployments.rendering.specs import ServingSpec
from deployments.rollout import ready_endpoint_ips
from deployments.specs import serving_spec
from engines import ENGINES
from portal.errors import Conflict
from tenants import services as tenant_services
from tenants.audit import Actor
from tests.fixtures.cluster import wait_for
from tests.fixtures.fleet import Fleet

pytestmark = [pytest.mark.cluster, pytest.mark.worker, pytest.mark.slow]
FAULTS = "sim.inference.portal/faults"


def spec_of(fleet: Fleet, name: str = "chat") -> ServingSpec:
    """A spec of the deployment (object names depend on its name only)."""
    deployment = Deployment.objects.get(tenant=fleet.tenant, name=name)
    return serving_spec(deployment.revisions.order_by("-number").first())  # type: ignore[arg-type]


def service_of(fleet: Fleet, name: str = "chat") -> str:
    """The Service selecting the active colour, named as the renderer names it."""
    return active_service_name(spec_of(fleet, name))


def colour_deployment(fleet: Fleet, colour: str, name: str = "chat") -> str:
    return colour_name(spec_of(fleet, name), colour)  # type: ignore[arg-type]


def active_colour(fleet: Fleet, name: str = "chat") -> str:
    service = fleet.k8s.core.read_namespaced_service(
        service_of(fleet, name), fleet.tenant.namespace
    )
    return str(service.spec.selector["inference.portal/colour"])


def deployments_of(fleet: Fleet, name: str = "chat") -> list[str]:
    items = fleet.k8s.apps.list_namespaced_deployment(
        fleet.tenant.namespace, label_selector=f"inference.portal/deployment={name}"
    ).items
    return sorted(d.metadata.name for d in items)


def serving_first(fleet: Fleet, **promotion: Any) -> tuple[Deployment, list[str]]:
    deployment, rollout = fleet.deploy(
        promotion=services.Promotion(scale_down_delay_seconds=1, **promotion)
    )
    fleet.wait_state(rollout, S.COMPLETED)
    deployment.refresh_from_db()
    return deployment, ready_endpoint_ips(fleet.tenant.namespace, service_of(fleet))


@pytest.mark.parametrize("engine", list(ENGINES))
def test_crash_looping_new_side_never_gets_traffic(fleet: Fleet, engine: str) -> None:
    deployment, blue_ips = serving_first(fleet)
    _, rollout, _ = services.change_deployment(
        fleet.actor,
        deployment,
        fleet.request(max_total_tokens=3072),
        pod_annotations={FAULTS: "crash"},
    )
    seen_colours = set()

    def failed() -> bool:
        seen_colours.add(active_colour(fleet))
        rollout.refresh_from_db()
        return rollout.state == S.FAILED

    wait_for(failed, 120, describe=lambda: f"{rollout.state}: {list(rollout.events.all())}")
    assert seen_colours == {"blue"}
    # Named by the engine: the crash loop once it repeats, or the engine's own fatal log line
    # (SGLang's launcher kills itself after "Scheduler hit an exception").
    assert ENGINES[engine].label in rollout.failure_reason
    assert "out of memory" not in rollout.failure_reason
    assert "log" in rollout.remedy
    assert ready_endpoint_ips(fleet.tenant.namespace, service_of(fleet)) == blue_ips
    wait_for(
        lambda: deployments_of(fleet) == [colour_deployment(fleet, "blue")],
        30,
        describe=lambda: deployments_of(fleet),
    )
    deployment.refresh_from_db()
    assert deployment.active_colour == "blue"


# What each real engine does when CUDA runs out of memory while starting: its process's exit
# status (SGLang's launcher SIGKILLs its own tree: 137 without the kubelet's OOMKilled) and the
# remedy's opening words.
GPU_OOM_EXIT = {"tgi": 1, "vllm": 1, "sglang": 137}
OOM_REMEDY = {
    "tgi": "lower max input tokens or quantize",
    "vllm": "lower max total tokens",
    "sglang": "lower max total tokens",
}


@pytest.mark.parametrize("engine", list(ENGINES))
def test_oom_new_side_fails_with_the_remedy(fleet: Fleet, engine: str) -> None:
    deployment, _ = serving_first(fleet)
    _, rollout, _ = services.change_deployment(
        fleet.actor,
        deployment,
        fleet.request(max_total_tokens=3072),
        pod_annotations={FAULTS: "oom"},
    )
    rollout = fleet.wait_state(rollout, S.FAILED)
    # A CUDA OOM at warm-up is not a kernel OOM kill: the cause is only in the engine's log.
    label = ENGINES[engine].label
    assert f"exited with code {GPU_OOM_EXIT[engine]}" in rollout.failure_reason
    assert rollout.failure_reason.startswith(f"{label} in pod ")
    assert "ran out of GPU memory" in rollout.failure_reason
    assert "OOMKilled" not in rollout.failure_reason
    assert rollout.remedy.startswith(OOM_REMEDY[engine]) and "quantize" in rollout.remedy
    assert active_colour(fleet) == "blue"


@pytest.mark.parametrize("engine", list(ENGINES))
def test_abort_before_promotion_leaves_the_old_side_serving(fleet: Fleet, engine: str) -> None:
    deployment, blue_ips = serving_first(fleet)
    _, rollout, _ = services.change_deployment(
        fleet.actor,
        deployment,
        fleet.request(max_total_tokens=3072),
        promotion=services.Promotion(mode="manual"),
    )
    fleet.wait_state(rollout, S.AWAITING_PROMOTION)
    assert len(deployments_of(fleet)) == 2
    services.abort(fleet.actor, deployment)
    fleet.wait_state(rollout, S.ABORTED, timeout=30)
    assert active_colour(fleet) == "blue"
    assert ready_endpoint_ips(fleet.tenant.namespace, service_of(fleet)) == blue_ips
    wait_for(
        lambda: deployments_of(fleet) == [colour_deployment(fleet, "blue")],
        30,
        describe=lambda: deployments_of(fleet),
    )


def test_manual_promotion_waits_for_the_request(fleet: Fleet) -> None:
    deployment, _ = serving_first(fleet)
    _, rollout, _ = services.change_deployment(
        fleet.actor,
        deployment,
        fleet.request(max_total_tokens=3072),
        promotion=services.Promotion(mode="manual", scale_down_delay_seconds=1),
    )
    fleet.wait_state(rollout, S.AWAITING_PROMOTION)
    time.sleep(3)
    rollout.refresh_from_db()
    assert rollout.state == S.AWAITING_PROMOTION and active_colour(fleet) == "blue"
    services.promote(fleet.actor, deployment)
    fleet.wait_state(rollout, S.COMPLETED)
    assert active_colour(fleet) == "green"


def test_over_quota_and_unschedulable_are_refused_before_anything_exists(fleet: Fleet) -> None:
    admin = Actor(fleet.world.users["admin"], "cli")
    tenant_services.update_quota(admin, fleet.tenant, {"max_gpus": 1})
    with pytest.raises(AdmissionRefused) as over_quota:
        fleet.deploy(replicas=2, max_replicas=2)
    assert over_quota.value.field == "replicas"
    assert (
        "needs 2 GPUs" in over_quota.value.message and "quota is 1 GPUs" in over_quota.value.message
    )
    tenant_services.update_quota(
        admin, fleet.tenant, {"max_gpus": 16, "max_replicas_per_deployment": 8}
    )
    with pytest.raises(AdmissionRefused) as unschedulable:
        fleet.deploy(tier="l4", replicas=5, max_replicas=5)  # the l4 pool has 4 one-GPU nodes
    assert "the tier's 4 nodes" in unschedulable.value.message
    assert "needs 5 replicas" in unschedulable.value.message
    assert not Deployment.objects.filter(name="chat").exists()
    assert deployments_of(fleet) == []
    assert (
        fleet.k8s.core.list_namespaced_config_map(
            fleet.tenant.namespace, label_selector="inference.portal/deployment=chat"
        ).items
        == []
    )


def test_namespace_quota_refuses_pods_that_bypass_the_portal(fleet: Fleet) -> None:
    admin = Actor(fleet.world.users["admin"], "cli")
    tenant_services.update_quota(admin, fleet.tenant, {"max_gpus": 2})
    serving_first(fleet)  # the rollout applies the namespace's ResourceQuota mirroring the quota
    quota = fleet.k8s.core.read_namespaced_resource_quota("portal-quota", fleet.tenant.namespace)
    assert quota.spec.hard["requests.nvidia.com/gpu"] == "2"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sneaky", "namespace": fleet.tenant.namespace},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {
                        "requests": {"nvidia.com/gpu": "2", "cpu": "10m", "memory": "16Mi"},
                        "limits": {"nvidia.com/gpu": "2", "cpu": "10m", "memory": "16Mi"},
                    },
                }
            ]
        },
    }
    with pytest.raises(ApiException) as refused:
        fleet.k8s.core.create_namespaced_pod(fleet.tenant.namespace, pod)
    assert refused.value.status == 403
    assert "exceeded quota" in str(refused.value.body)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_rollout_requests_run_exactly_one(fleet: Fleet) -> None:
    deployment, _ = serving_first(fleet)
    outcomes: list[Any] = []
    barrier = threading.Barrier(2)

    def request(tokens: int) -> None:
        from django.db import connection

        try:
            barrier.wait()
            outcomes.append(
                services.change_deployment(
                    fleet.actor,
                    Deployment.objects.get(pk=deployment.pk),
                    fleet.request(max_total_tokens=tokens),
                )[1]
            )
        except Conflict as error:
            outcomes.append(error)
        except Exception as error:
            outcomes.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=request, args=(t,)) for t in (3072, 3584)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started = [o for o in outcomes if isinstance(o, Rollout)]
    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(started) == 1 and len(refused) == 1, outcomes
    assert refused[0].status_code == 409 and "already running" in refused[0].message
    fleet.wait_state(started[0], S.COMPLETED)
    assert deployment.revisions.count() == 2  # the refused request left no revision behind


KILL_STATES = [
    S.WEIGHTS,
    S.CREATING,
    S.WAITING_READY,
    S.PRE_PROMOTION,
    S.PROMOTING,
    S.POST_PROMOTION,
    S.SCALE_DOWN_DELAY,
    S.SCALING_DOWN,
]


def objects_of(fleet: Fleet) -> dict[str, list[str]]:
    ns, selector = fleet.tenant.namespace, "inference.portal/deployment=chat"
    return {
        "deployments": deployments_of(fleet),
        "services": sorted(
            x.metadata.name
            for x in fleet.k8s.core.list_namespaced_service(ns, label_selector=selector).items
        ),
        "configmaps": sorted(
            x.metadata.name
            for x in fleet.k8s.core.list_namespaced_config_map(ns, label_selector=selector).items
        ),
        "pvcs": sorted(
            x.metadata.name
            for x in fleet.k8s.core.list_namespaced_persistent_volume_claim(ns).items
        ),
        "jobs": sorted(x.metadata.name for x in fleet.k8s.batch.list_namespaced_job(ns).items),
    }


def test_worker_killed_in_every_step_and_the_reconciler_finishes(fleet: Fleet) -> None:
    """SIGKILL lands after a step's side effects and before its state is saved; a new worker's
    reconciler picks the rollout up, and nothing is duplicated or orphaned."""
    from deployments.choices import STEP_ORDER

    [first_worker] = fleet.pool.workers
    first_worker.stop()
    fleet.pool.env.update(
        {"ROLLOUT_CHAOS_PAUSE_SECONDS": "4", "ROLLOUT_CHAOS_PAUSE_STATES": ",".join(KILL_STATES)}
    )
    victim = fleet.pool.start(beat=True)
    deployment, rollout = fleet.deploy(promotion=services.Promotion(scale_down_delay_seconds=1))
    baseline: dict[str, list[str]] | None = None
    for index, state in enumerate(KILL_STATES):
        if index > 0:
            deployment.refresh_from_db()
            _, rollout, _ = services.change_deployment(
                fleet.actor,
                deployment,
                fleet.request(max_total_tokens=2048 + 256 * index),
                promotion=services.Promotion(scale_down_delay_seconds=1),
            )

        def in_step(rollout: Rollout = rollout, state: str = state) -> bool:
            rollout.refresh_from_db()
            return rollout.state == state and rollout.claimed_until is not None

        if state in (S.SCALE_DOWN_DELAY, S.SCALING_DOWN) and not rollout.previous_colour:
            pytest.fail("the first rollout has no old side; kill states need an old side")

        def describe(rollout: Rollout = rollout) -> str:
            return f"{rollout.state} {list(rollout.events.all())}"

        wait_for(in_step, 120, describe=describe)
        time.sleep(1)  # inside the chaos pause: side effects done, state not yet saved
        victim.kill()
        victim = fleet.pool.start(beat=True)  # still pausing: later kills need the window too
        rollout = fleet.wait_state(rollout, S.COMPLETED, timeout=180)
        order = [STEP_ORDER.index(S(e.state)) for e in rollout.events.all()]
        assert order == sorted(order), f"killed in {state}: states went backwards: {order}"
        completed = [e for e in rollout.events.all() if e.state == S.COMPLETED]
        assert len(completed) == 1, f"killed in {state}: {completed}"
        assert active_colour(fleet) == rollout.colour
        objects = objects_of(fleet)
        assert objects["deployments"] == [colour_deployment(fleet, rollout.colour)], (
            state,
            objects,
        )
        if baseline is None:
            baseline = {k: v for k, v in objects.items() if k != "deployments"}
        assert {k: v for k, v in objects.items() if k != "deployments"} == baseline, (
            state,
            objects,
        )
    assert baseline is not None
    spec = spec_of(fleet)
    assert baseline["services"] == sorted([active_service_name(spec), preview_service_name(spec)])
    assert len(baseline["configmaps"]) == 1 and len(baseline["pvcs"]) == 1


def test_an_engine_image_nobody_can_pull_fails_the_weight_download_with_its_name(
    fleet: Fleet,
) -> None:
    # Unverified when written (no cluster for its author): the simulated kubelet answers an
    # image outside the engines' registries with ErrImagePull / ImagePullBackOff.
    missing = "registry.invalid/huggingface/text-generation-inference:3.3.6"
    tier = Tier.objects.get(slug="a100-80g")
    Tier.objects.filter(pk=tier.pk).update(engine_images={**tier.engine_images, "tgi": missing})
    _, rollout = fleet.deploy(engine="tgi")
    fleet.wait_state(rollout, S.FAILED, timeout=60)
    assert "weight download Job" in rollout.failure_reason
    assert f"the image {missing}" in rollout.failure_reason and "cannot be pulled" in (
        rollout.failure_reason
    )
    assert "engine image" in rollout.remedy

"""Blue/green rollouts on the local cluster, driven by a real Celery worker.

The main rollout paths run once per engine; object names, ports, routes and metric names come
from the product (the renderer's naming functions and the engine objects), never from TGI's.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from deployments import services
from deployments.choices import RolloutState as S
from deployments.models import Deployment
from deployments.rendering import active_service_name, colour_name
from deployments.rendering.specs import ServingSpec
from deployments.rollout import ready_endpoint_ips
from deployments.specs import serving_spec
from engines import ENGINES
from engines.base import dig
from tests.fixtures.fleet import Fleet

pytestmark = [pytest.mark.cluster, pytest.mark.worker, pytest.mark.slow]


def spec_of(deployment: Deployment) -> ServingSpec:
    """The spec of the deployment's newest revision (names depend on the deployment only)."""
    return serving_spec(deployment.revisions.order_by("-number").first())  # type: ignore[arg-type]


def service_of(deployment: Deployment) -> str:
    """The Service selecting the active colour, named as the renderer names it."""
    return active_service_name(spec_of(deployment))


def active_selector(fleet: Fleet, deployment: Deployment) -> dict[str, str]:
    service = fleet.k8s.core.read_namespaced_service(service_of(deployment), fleet.tenant.namespace)
    return dict(service.spec.selector)


def chat(ip: str, spec: ServingSpec) -> dict[str, Any]:
    """A chat completion as a client sends it, straight to one pod on the engine's port."""
    response = httpx.post(
        f"http://{ip}:{spec.engine.port}/v1/chat/completions",
        json={
            "model": spec.model.repo_id,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 3,
        },
        timeout=10,
    )
    response.raise_for_status()
    return dict(response.json())


@pytest.mark.parametrize("engine", list(ENGINES))
def test_first_rollout_is_promoted_and_serves(fleet: Fleet, engine: str) -> None:
    deployment, rollout = fleet.deploy()
    rollout = fleet.wait_state(rollout, S.COMPLETED)
    deployment.refresh_from_db()
    assert deployment.active_colour == "blue"
    assert deployment.active_revision_id == rollout.revision_id
    assert rollout.revision.engine == engine
    assert active_selector(fleet, deployment)["inference.portal/colour"] == "blue"
    ips = ready_endpoint_ips(fleet.tenant.namespace, service_of(deployment))
    assert len(ips) == 1 and ips[0].startswith("10.244.")
    assert chat(ips[0], spec_of(deployment))["choices"]
    steps = [event.state for event in rollout.events.all()]
    for state in (
        S.WEIGHTS,
        S.CREATING,
        S.WAITING_READY,
        S.PRE_PROMOTION,
        S.PROMOTING,
        S.POST_PROMOTION,
        S.COMPLETED,
    ):
        assert state in steps, steps
    # weights were really downloaded from the local Hub into the model revision's volume
    pvcs = fleet.k8s.core.list_namespaced_persistent_volume_claim(fleet.tenant.namespace).items
    assert [p.status.phase for p in pvcs] == ["Bound"]


@pytest.mark.parametrize("engine", list(ENGINES))
def test_second_revision_goes_green_then_rolls_back_instantly(fleet: Fleet, engine: str) -> None:
    deployment, first = fleet.deploy(promotion=services.Promotion(scale_down_delay_seconds=120))
    fleet.wait_state(first, S.COMPLETED)
    service = service_of(deployment)
    blue_ips = ready_endpoint_ips(fleet.tenant.namespace, service)
    deployment.refresh_from_db()
    _, second, _ = services.change_deployment(
        fleet.actor,
        deployment,
        fleet.request(max_total_tokens=3072, max_input_tokens=1024),
        promotion=services.Promotion(scale_down_delay_seconds=120),
    )
    assert second.colour == "green" and second.previous_colour == "blue"
    fleet.wait_state(second, S.SCALE_DOWN_DELAY)
    assert active_selector(fleet, deployment)["inference.portal/colour"] == "green"
    green_ips = ready_endpoint_ips(fleet.tenant.namespace, service)
    assert green_ips and not set(green_ips) & set(blue_ips)
    # The green pod reports the new context length on the engine's own info route.
    green_spec = serving_spec(second.revision)
    reported = {
        key: dig(httpx.get(f"http://{green_ips[0]}:{green_spec.engine.port}{c.path}").json(), key)
        for c in green_spec.engine.info_checks(green_spec)
        for key in c.expected
    }
    assert 3072 in reported.values(), reported
    # the old side is still up and ready during the window, ready for an instant flip back
    blue = fleet.k8s.apps.read_namespaced_deployment(
        colour_name(green_spec, "blue"), fleet.tenant.namespace
    )
    assert blue.status.available_replicas == 1
    services.rollback(fleet.actor, deployment)
    rolled = fleet.wait_state(second, S.ROLLED_BACK, timeout=30)
    assert active_selector(fleet, deployment)["inference.portal/colour"] == "blue"
    assert ready_endpoint_ips(fleet.tenant.namespace, service) == blue_ips
    assert chat(blue_ips[0], green_spec)["choices"]
    deployment.refresh_from_db()
    assert deployment.active_colour == "blue" and deployment.active_revision_id == first.revision_id
    assert "rolled back" in rolled.events.last().message  # type: ignore[union-attr]
    assert not fleet.k8s.apps.list_namespaced_deployment(
        fleet.tenant.namespace, label_selector="inference.portal/colour=green"
    ).items


def test_deleting_a_deployment_removes_all_its_objects(fleet: Fleet) -> None:
    deployment, rollout = fleet.deploy()
    fleet.wait_state(rollout, S.COMPLETED)
    fleet.delete(deployment)
    assert not Deployment.objects.filter(pk=deployment.pk).exists()
    ns = fleet.tenant.namespace
    selector = "inference.portal/deployment=chat"
    from tests.fixtures.cluster import wait_for

    def leftovers() -> list[str]:
        found = [
            f"Deployment/{d.metadata.name}"
            for d in fleet.k8s.apps.list_namespaced_deployment(ns, label_selector=selector).items
        ]
        found += [
            f"Service/{s.metadata.name}"
            for s in fleet.k8s.core.list_namespaced_service(ns, label_selector=selector).items
        ]
        found += [
            f"Pod/{p.metadata.name}"
            for p in fleet.k8s.core.list_namespaced_pod(ns, label_selector=selector).items
        ]
        found += [
            f"PVC/{p.metadata.name}"
            for p in fleet.k8s.core.list_namespaced_persistent_volume_claim(ns).items
        ]
        found += [
            f"ConfigMap/{c.metadata.name}"
            for c in fleet.k8s.core.list_namespaced_config_map(ns, label_selector=selector).items
        ]
        return found

    wait_for(lambda: not leftovers(), 60, describe=lambda: leftovers())


def test_reconciler_repairs_a_deleted_serving_side(fleet: Fleet) -> None:
    """Level-triggered: someone deletes the serving Deployment and flips the Service; the next
    reconciler pass (beat, every second here) puts both back from the active revision."""
    from tests.fixtures.cluster import wait_for

    deployment, rollout = fleet.deploy()
    fleet.wait_state(rollout, S.COMPLETED)
    ns = fleet.tenant.namespace
    service, blue_name = service_of(deployment), colour_name(spec_of(deployment), "blue")
    fleet.k8s.apps.delete_namespaced_deployment(blue_name, ns)
    fleet.k8s.core.patch_namespaced_service(
        service, ns, {"spec": {"selector": {"inference.portal/colour": "green"}}}
    )

    def repaired() -> bool:
        serving = fleet.k8s.apps.list_namespaced_deployment(
            ns, label_selector="inference.portal/deployment=chat"
        ).items
        return [d.metadata.name for d in serving] == [blue_name] and active_selector(
            fleet, deployment
        )["inference.portal/colour"] == "blue"

    wait_for(repaired, 60, describe="the reconciler to restore the blue side")
    wait_for(lambda: ready_endpoint_ips(ns, service), 60, describe="the restored side to be ready")
    from tenants.models import AuditEvent

    event = AuditEvent.objects.filter(
        action="deployment.repair", target_id=str(deployment.pk)
    ).first()
    assert event is not None and any("missing" in d for d in event.changes["drift"])


def test_reconciler_repairs_a_service_selector_drift_without_touching_the_pods(
    fleet: Fleet,
) -> None:
    """The repair re-renders the serving side exactly as the rollout did: the tenant's pod
    annotations stay (no new pod template, so no replica restarts) and the replica count an
    autoscaler chose is left alone."""
    from tests.fixtures.cluster import wait_for

    deployment, rollout = fleet.deploy(
        autoscaling=True,
        replicas=1,
        min_replicas=1,
        max_replicas=3,
        pod_annotations={"mesh.example.com/inject": "enabled"},
    )
    fleet.wait_state(rollout, S.COMPLETED)
    ns = fleet.tenant.namespace
    apps = fleet.k8s.apps
    service, blue_name = service_of(deployment), colour_name(spec_of(deployment), "blue")
    # Scale as the HPA controller does: through the scale subresource, under its own manager.
    apps.patch_namespaced_deployment_scale(
        blue_name, ns, {"spec": {"replicas": 2}}, field_manager="horizontal-pod-autoscaler"
    )

    def pods() -> dict[str, str]:
        found = fleet.k8s.core.list_namespaced_pod(
            ns, label_selector="inference.portal/deployment=chat"
        ).items
        return {
            p.metadata.uid: p.metadata.labels.get("pod-template-hash", "")
            for p in found
            if p.metadata.deletion_timestamp is None
        }

    def scaled() -> bool:
        status = apps.read_namespaced_deployment(blue_name, ns).status
        return status.ready_replicas == 2 and len(pods()) == 2

    wait_for(scaled, 90, describe="the autoscaled second replica to be ready")
    before = apps.read_namespaced_deployment(blue_name, ns)
    pods_before = pods()
    assert before.spec.template.metadata.annotations["mesh.example.com/inject"] == "enabled"

    fleet.k8s.core.patch_namespaced_service(
        service, ns, {"spec": {"selector": {"inference.portal/colour": "green"}}}
    )
    wait_for(
        lambda: active_selector(fleet, deployment)["inference.portal/colour"] == "blue",
        60,
        describe="the reconciler to point the Service at the blue side again",
    )
    from tenants.models import AuditEvent

    event = AuditEvent.objects.filter(
        action="deployment.repair", target_id=str(deployment.pk)
    ).first()
    assert event is not None and any("does not select" in d for d in event.changes["drift"])

    after = apps.read_namespaced_deployment(blue_name, ns)
    assert after.metadata.generation == before.metadata.generation
    assert after.spec.replicas == 2
    assert after.spec.template.metadata.annotations["mesh.example.com/inject"] == "enabled"
    assert pods() == pods_before


def test_prometheus_counts_the_requests_served_by_the_pod(fleet: Fleet, cluster: Any) -> None:
    """Traffic to a rolled-out pod shows up in Prometheus (queried with prometheus-api-client)
    under the engine's own request counter, labelled with the portal's deployment and colour."""
    from prometheus_api_client import PrometheusConnect

    from tests.fixtures.cluster import wait_for

    deployment, rollout = fleet.deploy()
    fleet.wait_state(rollout, S.COMPLETED)
    spec = spec_of(deployment)
    [ip] = ready_endpoint_ips(fleet.tenant.namespace, service_of(deployment))
    for _ in range(5):
        chat(ip, spec)
    prometheus = PrometheusConnect(url=cluster.prometheus_url, disable_ssl=True)
    metrics = spec.engine.metrics
    query = metrics.activity.format(sel=metrics.selector(f'namespace="{fleet.tenant.namespace}"'))

    def counted() -> float:
        samples = prometheus.custom_query(query)
        return sum(float(sample["value"][1]) for sample in samples)

    # 5 chats, >= 5 counted (the pre- and post-promotion checks add their own).
    total = wait_for(
        lambda: counted() >= 5 and counted(), 60, describe=lambda: prometheus.custom_query(query)
    )
    samples = prometheus.custom_query(query)
    assert {s["metric"]["inference_portal_deployment"] for s in samples} == {"chat"}
    assert {s["metric"]["inference_portal_colour"] for s in samples} == {"blue"}
    assert total >= 5


def test_switching_from_tgi_to_vllm_is_a_blue_green_rollout(fleet: Fleet) -> None:
    """The engine is a field of the revision: the new colour runs vLLM while TGI keeps serving
    until it is promoted."""
    deployment, first = fleet.deploy()
    fleet.wait_state(first, S.COMPLETED)
    deployment.refresh_from_db()
    _, second, _ = services.change_deployment(fleet.actor, deployment, fleet.request(engine="vllm"))
    assert second.colour == "green" and second.previous_colour == "blue"
    fleet.wait_state(second, S.COMPLETED, timeout=180)
    assert active_selector(fleet, deployment)["inference.portal/colour"] == "green"
    green = fleet.k8s.apps.read_namespaced_deployment(
        colour_name(spec_of(deployment), "green"), fleet.tenant.namespace
    )
    (container,) = green.spec.template.spec.containers
    assert container.image.startswith("vllm/vllm-openai:")
    assert second.revision.engine == "vllm"

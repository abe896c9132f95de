"""One serving spec: the engine and image a revision runs; refusals come before any row."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from deployments.models import Deployment, DeploymentRevision, Tier
from deployments.rendering import OwnerRef
from deployments.rollout import desired_colour_deployment
from deployments.specs import serving_spec
from engines import DEFAULT_ENGINE, ENGINES
from tests.deployments.test_api import acknowledge, create_body, deployments_url, post, refusal
from tests.fixtures.personas import World

pytestmark = pytest.mark.cluster  # admission reads the node pools' free GPUs

TGI_IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.6"


@pytest.fixture
def maintainer(world: World) -> Client:
    acknowledge(world)
    return world.client_for("maintainer_a")


def test_seeded_tiers_offer_every_engine_at_its_default_image(world: World) -> None:
    for tier in Tier.objects.all():
        assert tier.engine_images == {n: e.default_image for n, e in ENGINES.items()}
        assert tier.offered_engines() == list(ENGINES)


def test_an_engine_the_tier_does_not_offer_is_refused_naming_the_field(
    world: World, cluster_tenant: Any, maintainer: Client
) -> None:
    Tier.objects.filter(slug="l4").update(engine_images={"unlisted": "example/unlisted:1"})
    body = create_body(model=world.objects["model_a"].pk, engine=DEFAULT_ENGINE)
    message = refusal(post(maintainer, deployments_url(world), body), 400, "engine")
    assert f"does not offer the engine '{DEFAULT_ENGINE}'" in message
    assert not Deployment.objects.filter(name="chat").exists()


def test_a_refusal_of_the_renderers_is_a_field_error_before_any_row_exists(
    world: World, cluster_tenant: Any, maintainer: Client
) -> None:
    """Rendering refuses an image reference with a space; admission builds the complete spec,
    so the user hears it at once instead of a worker failing after the revision was saved."""
    Tier.objects.filter(slug="l4").update(engine_images={DEFAULT_ENGINE: "bad image:1"})
    body = create_body(model=world.objects["model_a"].pk)
    message = refusal(post(maintainer, deployments_url(world), body), 400, "engine")
    assert "image reference" in message
    assert not Deployment.objects.filter(name="chat").exists()
    assert not DeploymentRevision.objects.filter(deployment__name="chat").exists()


def test_a_revision_pins_the_image_the_tier_offered_when_it_was_made(
    world: World, cluster_tenant: Any, maintainer: Client
) -> None:
    created = post(
        maintainer, deployments_url(world), create_body(model=world.objects["model_a"].pk)
    )
    assert created.status_code == 201, created.content
    deployment = Deployment.objects.get(pk=created.json()["deployment"]["id"])
    first = deployment.revisions.get()
    assert (first.engine, first.image) == (DEFAULT_ENGINE, ENGINES[DEFAULT_ENGINE].default_image)

    newer = ENGINES[DEFAULT_ENGINE].default_image.rsplit(":", 1)[0] + ":9.9.9"
    Tier.objects.filter(slug="l4").update(engine_images={DEFAULT_ENGINE: newer})
    Deployment.objects.filter(pk=deployment.pk).update(active_revision=first)
    deployment.rollouts.update(state="completed")
    url = reverse("api-deployment-detail", args=[world.tenant_a.slug, deployment.pk])
    response = maintainer.patch(
        url, data=json.dumps({"max_total_tokens": 3072}), content_type="application/json"
    )
    assert response.status_code == 201, response.content
    revision = response.json()["revision"]
    assert revision["engine"] == DEFAULT_ENGINE and revision["image"] == newer
    first.refresh_from_db()
    assert serving_spec(first).tier.image == ENGINES[DEFAULT_ENGINE].default_image
    second = deployment.revisions.get(number=2)
    assert serving_spec(second).tier.image == newer

    page = world.client_for("viewer_a").get(
        reverse("deployment-detail", args=[world.tenant_a.slug, deployment.pk])
    )
    assert ENGINES[DEFAULT_ENGINE].label in page.content.decode()
    listed = maintainer.get(
        reverse("api-revision-list", args=[world.tenant_a.slug, deployment.pk])
    ).json()["results"]
    assert [(r["number"], r["image"]) for r in listed] == [
        (2, newer),
        (1, ENGINES[DEFAULT_ENGINE].default_image),
    ]


def test_the_spec_carries_pod_annotations_and_the_deadline_into_the_colour_deployment(
    world: World, cluster_tenant: Any, maintainer: Client
) -> None:
    body = create_body(
        model=world.objects["model_a"].pk,
        autoscaling=True,
        min_replicas=1,
        replicas=1,
        max_replicas=2,
        pod_annotations={"mesh.example.com/inject": "enabled"},
    )
    created = post(maintainer, deployments_url(world), body)
    assert created.status_code == 201, created.content
    revision = DeploymentRevision.objects.get(deployment__name="chat")
    owner = OwnerRef(api_version="v1", kind="ConfigMap", name="root", uid="uid-1")
    spec = serving_spec(revision, owner, progress_deadline_seconds=900)

    created_side = desired_colour_deployment(spec, "blue")
    repaired_side = desired_colour_deployment(spec, "blue", hpa_owns_replicas=True)
    template = created_side["spec"]["template"]
    assert template["metadata"]["annotations"]["mesh.example.com/inject"] == "enabled"
    assert created_side["spec"]["progressDeadlineSeconds"] == 900
    assert created_side["spec"]["replicas"] == 1
    # The repair leaves replicas to the autoscaler and changes nothing else.
    assert "replicas" not in repaired_side["spec"]
    assert repaired_side["spec"]["template"] == template


def test_admin_refuses_an_unknown_engine_naming_it(world: World) -> None:
    admin = User.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(admin)
    tier = Tier.objects.get(slug="l4")
    url = reverse("admin:deployments_tier_change", args=[tier.pk])
    form = {
        "slug": tier.slug,
        "name": tier.name,
        "description": tier.description,
        "is_active": "on",
        "node_selector": json.dumps(tier.node_selector),
        "tolerations": json.dumps(tier.tolerations),
        "gpu_product": tier.gpu_product,
        "gpu_memory_gb": str(tier.gpu_memory_gb),
        "gpus_per_replica": str(tier.gpus_per_replica),
        "cpu_request": tier.cpu_request,
        "memory_request": tier.memory_request,
        "default_max_total_tokens": str(tier.default_max_total_tokens),
        "max_total_tokens_limit": str(tier.max_total_tokens_limit),
        "price_per_gpu_hour": str(tier.price_per_gpu_hour),
        "queue_depth_alert": str(tier.queue_depth_alert),
        "ttft_p95_alert_seconds": str(tier.ttft_p95_alert_seconds),
        "engine_images": json.dumps({"tgi": TGI_IMAGE, "tensorrt": "nvcr.io/trt:1"}),
    }
    response = client.post(url, form)
    assert response.status_code == 200
    assert "unknown engine &#x27;tensorrt&#x27;" in response.content.decode()
    tier.refresh_from_db()
    assert "tensorrt" not in tier.engine_images

    form["engine_images"] = json.dumps({"tgi": TGI_IMAGE})
    assert client.post(url, form).status_code == 302
    tier.refresh_from_db()
    assert tier.engine_images == {"tgi": TGI_IMAGE}


def test_switching_the_engine_is_a_new_revision_rendered_with_the_other_engine(
    world: World, cluster_tenant: Any, maintainer: Client
) -> None:
    other = next(name for name in ENGINES if name != DEFAULT_ENGINE)
    body = create_body(model=world.objects["model_a"].pk)
    created = post(maintainer, deployments_url(world), body)
    assert created.status_code == 201, created.content
    deployment = Deployment.objects.get(pk=created.json()["deployment"]["id"])
    deployment.rollouts.update(state="completed")
    url = reverse("api-deployment-detail", args=[world.tenant_a.slug, deployment.pk])
    response = maintainer.patch(
        url, data=json.dumps({"engine": other}), content_type="application/json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["revision"]["engine"] == other

    revision = deployment.revisions.get(number=2)
    owner = OwnerRef(api_version="v1", kind="ConfigMap", name="root", uid="uid-1")
    manifest = desired_colour_deployment(serving_spec(revision, owner), "green")
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    assert container["image"] == ENGINES[other].default_image
    assert revision.max_total_tokens == deployment.revisions.get(number=1).max_total_tokens

"""The deployments UI: list, deploy wizard with refusals on the right field, deployment page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse
from prometheus_api_client import PrometheusConnect

from deployments import admission, deletion, tasks, views
from deployments.capacity import ClusterCapacity, NodeGpus
from deployments.choices import RolloutState
from deployments.models import Deployment, DeploymentRevision
from deployments.rendering.constants import LABEL_GKE_NODEPOOL, LABEL_GPU_PRODUCT
from tests.deployments.test_api import a_rollout, acknowledge
from tests.fixtures.personas import World

L4_NODE = {LABEL_GPU_PRODUCT: "NVIDIA-L4", LABEL_GKE_NODEPOOL: "l4"}
HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


def wizard_url(world: World) -> str:
    return reverse("deployment-create", args=[world.tenant_a.slug])


def detail_url(world: World, deployment: Deployment | None = None) -> str:
    deployment = deployment or world.objects["deployment_a"]
    return reverse("deployment-detail", args=[world.tenant_a.slug, deployment.pk])


def field_errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'class="field-error" data-field="(\w+)">([^<]*)<', html))


def wizard_data(world: World, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "chat",
        "model": world.objects["model_a"].pk,
        "tier": "l4",
        "quantize": "",
        "max_input_tokens": 1024,
        "max_total_tokens": 2048,
        "max_concurrent_requests": 128,
        "replicas": 1,
        "queue_size_target": 4,
        "promotion": "automatic",
        "promote_after_seconds": 0,
    } | overrides


# --- list ----------------------------------------------------------------------------------


def test_list_shows_serving_side_rollout_state_and_gpus(world: World) -> None:
    deployment = world.objects["deployment_a"]
    rollout = a_rollout(deployment, state=RolloutState.COMPLETED)
    Deployment.objects.filter(pk=deployment.pk).update(
        active_revision=rollout.revision, active_colour="blue"
    )
    page = world.client_for("maintainer_a").get(
        reverse("deployment-list", args=[world.tenant_a.slug])
    )
    html = page.content.decode()
    assert page.status_code == 200
    assert f'href="{detail_url(world)}"' in html
    assert "colour-blue" in html and "revision 1" in html
    assert 'class="state state-completed"' in html
    assert re.search(r'<td class="num">1</td>', html)  # one GPU held by the blue side
    assert f'href="{wizard_url(world)}"' in html
    viewer = world.client_for("viewer_a").get(reverse("deployment-list", args=["alpha"]))
    assert "New deployment" not in viewer.content.decode()


# --- the wizard ----------------------------------------------------------------------------


def test_wizard_shows_blockers_fit_valid_quantizations_and_the_review(
    world: World, no_cluster: None
) -> None:
    client = world.client_for("maintainer_a")
    params = {"model": world.objects["model_a"].pk, "tier": "l4", "replicas": 2}
    response = client.get(wizard_url(world), params, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and html.lstrip().startswith('<div id="wizard"')
    assert "a tenant owner must acknowledge the Creative Commons Non-Commercial" in html
    # The fit table is the tier picker; tiers outside the quota cannot be picked.
    assert 'data-testid="fit-table"' in html
    assert re.search(r'value="l4"\s+checked', html)
    assert re.search(r'value="a100-80g"\s+disabled', html)
    # A plain 16-bit checkpoint: only on-the-fly quantizations are offered.
    quantize = re.search(r'<select name="quantize".*?</select>', html, re.S)
    assert quantize is not None
    options = re.findall(r'<option value="([^"]*)"', quantize.group(0))
    assert "" in options and "bitsandbytes" in options and "awq" not in options
    # Review: quota impact and pool headroom (unknown without a cluster).
    assert '<span class="mono" data-testid="quota-impact">0 + 2 / 8</span>' in html
    assert "Node pool headroom unknown" in html


@pytest.mark.cluster
def test_wizard_review_shows_the_node_pools_free_gpus(world: World, portal_kube: None) -> None:
    params = {"model": world.objects["model_a"].pk, "tier": "l4"}
    html = world.client_for("maintainer_a").get(wizard_url(world), params).content.decode()
    assert re.search(r"\d+ free / 4 GPUs", html)  # the l4 pool: four 1-GPU nodes
    assert "Room for <strong>" in html


def test_wizard_is_for_maintainers(world: World) -> None:
    assert world.client_for("viewer_a").get(wizard_url(world)).status_code == 403
    assert world.client_for("owner_b").get(wizard_url(world)).status_code == 404


def test_deploy_refusals_land_on_their_fields(world: World) -> None:
    client = world.client_for("maintainer_a")
    response = client.post(wizard_url(world), wizard_data(world), **HTMX)
    assert response.status_code == 422
    assert "acknowledge" in field_errors(response.content.decode())["model"]
    acknowledge(world)
    # One refusal per place the wizard shows errors (the rules: test_services.py).
    cases: dict[str, dict[str, Any]] = {
        "name": {"name": "Chat_Bot"},  # the name field
        "replicas": {"replicas": 9},  # the limits partial
        "tier": {"tier": "a100-80g"},  # under the fit table
    }
    for field, overrides in cases.items():
        response = client.post(wizard_url(world), wizard_data(world, **overrides), **HTMX)
        assert response.status_code == 422, field
        assert field in field_errors(response.content.decode()), (field, response.content)
    assert not Deployment.objects.filter(name="chat").exists()


def test_wizard_without_htmx_renders_the_whole_page_on_refusal(world: World) -> None:
    response = world.client_for("maintainer_a").post(
        wizard_url(world), wizard_data(world, name="alpha-chat")
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "<html" in html
    assert "already exists" in field_errors(html)["name"]


@pytest.mark.cluster
def test_deploy_creates_the_deployment_and_goes_to_its_page(
    world: World, cluster_tenant: Any
) -> None:
    acknowledge(world)
    client = world.client_for("maintainer_a")
    response = client.post(wizard_url(world), wizard_data(world), **HTMX)
    assert response.status_code == 204, response.content
    deployment = Deployment.objects.get(tenant=world.tenant_a, name="chat")
    assert response["HX-Location"] == detail_url(world, deployment)
    page = client.get(response["HX-Location"]).content.decode()
    assert 'data-state="pending"' in page and 'hx-trigger="every 2s"' in page


# --- the deployment page -------------------------------------------------------------------


def test_page_shows_spec_endpoint_and_live_rollout_progress(world: World) -> None:
    deployment = world.objects["deployment_a"]
    a_rollout(deployment, state=RolloutState.WAITING_READY, ready_replicas=0)
    html = world.client_for("viewer_a").get(detail_url(world)).content.decode()
    assert "tgi-alpha-chat.tenant-alpha.svc" in html
    assert 'hx-trigger="every 2s"' in html
    current = re.findall(r'<li class="step-current" data-step="(\w+)"', html)
    assert current == ["waiting_ready"]
    assert len(re.findall(r'<li class="step-done"', html)) == 3
    assert 'aria-valuenow="30"' in html
    assert "0 / 1</strong> ready" in html
    assert 'data-testid="timeline"' in html and "entered creating" in html
    # A viewer sees no buttons.
    assert "Promote" not in html and "Abort" not in html and "Delete deployment" not in html


def test_polling_returns_only_the_panel_and_stops_when_terminal(world: World) -> None:
    deployment = world.objects["deployment_a"]
    rollout = a_rollout(
        deployment,
        state=RolloutState.FAILED,
        failure_reason="the new side never became ready",
        remedy="read the pod logs",
    )
    url = reverse("deployment-rollout", args=[world.tenant_a.slug, deployment.pk, rollout.pk])
    response = world.client_for("viewer_a").get(url, HTTP_HX_TARGET="rollout-panel", **HTMX)
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="rollout-panel"')
    assert "hx-trigger" not in html  # terminal: polling stops
    assert "the new side never became ready" in html and "read the pod logs" in html
    assert re.findall(r'<li class="step-failed" data-step="(\w+)"', html) == ["creating"]


def test_buttons_follow_the_state_and_the_role(world: World) -> None:
    deployment = world.objects["deployment_a"]
    a_rollout(deployment, state=RolloutState.AWAITING_PROMOTION)
    html = world.client_for("maintainer_a").get(detail_url(world)).content.decode()
    assert "Promote blue" in html and "Abort" in html
    assert "Roll back" not in html  # a first rollout has no previous side
    assert "Deploy this revision" not in html  # a rollout is running


def test_promote_from_the_page(world: World) -> None:
    deployment = world.objects["deployment_a"]
    rollout = a_rollout(deployment, state=RolloutState.AWAITING_PROMOTION)
    url = reverse("deployment-action", args=[world.tenant_a.slug, deployment.pk, "promote"])
    response = world.client_for("maintainer_a").post(url, **HTMX)
    assert response.status_code == 204 and response["HX-Location"] == detail_url(world)
    rollout.refresh_from_db()
    assert rollout.promotion_requested


def test_refused_actions_show_their_reason_in_the_panel(world: World) -> None:
    deployment = world.objects["deployment_a"]
    client = world.client_for("maintainer_a")
    url = reverse("deployment-action", args=[world.tenant_a.slug, deployment.pk, "rollback"])
    response = client.post(url, **HTMX)
    assert response.status_code == 422
    assert 'data-testid="action-error"' in response.content.decode()
    assert "only possible while the previous side is on standby" in response.content.decode()


def test_delete_from_the_page_shows_its_progress_until_it_is_gone(world: World) -> None:
    deployment = world.objects["deployment_a"]
    client = world.client_for("maintainer_a")
    url = reverse("deployment-action", args=[world.tenant_a.slug, deployment.pk, "delete"])
    response = client.post(url)
    assert response.status_code == 302 and response["Location"] == detail_url(world)

    html = client.get(detail_url(world)).content.decode()
    assert 'data-testid="deletion-panel"' in html and "Deleting…" in html
    assert re.findall(r'<li class="step-current" data-step="(\w+)"', html) == ["waiting"]
    assert "Delete deployment" not in html and "New revision" not in html
    listed = client.get(reverse("deployment-list", args=[world.tenant_a.slug])).content.decode()
    assert "Deleting…" in listed and 'hx-trigger="every 2s"' in listed

    deletion.advance(deployment.pk)  # the worker: nothing runs, on to the cluster
    poll = {**HTMX, "HTTP_HX_TARGET": "deletion-panel"}
    panel = client.get(detail_url(world), **poll).content.decode()
    assert panel.lstrip().startswith('<section id="deletion-panel"')
    assert re.findall(r'<li class="step-current" data-step="(\w+)"', panel) == ["kubernetes"]

    tasks.delete_deployment(deployment.pk)
    gone = client.get(detail_url(world), **poll)
    assert gone.status_code == 204
    assert gone["HX-Location"] == reverse("deployment-list", args=[world.tenant_a.slug])
    table = client.get(
        reverse("deployment-list", args=[world.tenant_a.slug]),
        HTTP_HX_TARGET="deployments-table",
        **HTMX,
    ).content.decode()
    assert table.lstrip().startswith('<div id="deployments-table">')
    assert "alpha-chat" not in table
    assert client.get(detail_url(world)).status_code == 404


def test_other_tenants_deployment_is_not_found(world: World) -> None:
    other = world.objects["deployment_b"]
    url = reverse("deployment-detail", args=[world.tenant_a.slug, other.pk])
    assert world.client_for("owner_a").get(url).status_code == 404


# --- the admin console ---------------------------------------------------------------------


def test_platform_admin_manages_tiers_with_capacity_shown_read_only(
    world: World, no_cluster: None
) -> None:
    from deployments.models import Tier

    client = world.client_for("admin")
    listing = client.get(reverse("admin:deployments_tier_changelist"), {"q": "a100"})
    html = listing.content.decode()
    assert listing.status_code == 200
    assert "a100-80g-x2" in html and "h100-80g-x4" not in html
    assert "cluster unreachable" in html
    tier = Tier.objects.get(slug="l4")
    change = client.get(reverse("admin:deployments_tier_change", args=[tier.pk]))
    assert change.status_code == 200
    assert "the cluster is unreachable; capacity unknown" in change.content.decode()
    assert (
        world.client_for("owner_a").get(reverse("admin:deployments_tier_changelist")).status_code
        == 302
    )


@pytest.mark.cluster
def test_tier_admin_shows_live_pool_capacity(world: World, portal_kube: None) -> None:
    from deployments.models import Tier

    tier = Tier.objects.get(slug="l4")
    page = world.client_for("admin").get(reverse("admin:deployments_tier_change", args=[tier.pk]))
    assert re.search(r"4 nodes \(NVIDIA-L4\): 4 GPUs allocatable", page.content.decode())


# --- the new-revision form ------------------------------------------------------------------


def revision_url(world: World) -> str:
    return reverse(
        "deployment-revision", args=[world.tenant_a.slug, world.objects["deployment_a"].pk]
    )


def serving(world: World) -> Deployment:
    """Tenant A's deployment with revision 1 serving on blue (a completed first rollout)."""
    deployment = world.objects["deployment_a"]
    rollout = a_rollout(deployment, state=RolloutState.COMPLETED)
    DeploymentRevision.objects.filter(pk=rollout.revision.pk).update(
        pod_annotations={"team": "search"}
    )
    Deployment.objects.filter(pk=deployment.pk).update(
        active_revision=rollout.revision, active_colour="blue"
    )
    deployment.refresh_from_db()
    return deployment


def revision_data(**overrides: Any) -> dict[str, Any]:
    """The form as revision 1 (see a_rollout) fills it."""
    return {
        "tier": "l4",
        "quantize": "",
        "dtype": "",
        "kv_cache_dtype": "",
        "max_input_tokens": 1024,
        "max_total_tokens": 2048,
        "max_batch_prefill_tokens": 1074,
        "max_concurrent_requests": 128,
        "replicas": 1,
        "min_replicas": 1,
        "max_replicas": 1,
        "queue_size_target": 4,
        "promotion": "automatic",
        "promote_after_seconds": 0,
    } | overrides


def diff(html: str) -> dict[str, tuple[str, str]]:
    found = re.findall(r'<li data-field="(\w+)">.*?<del>([^<]*)</del> → <ins>([^<]*)</ins>', html)
    return {field: (old, new) for field, old, new in found}


def test_new_revision_form_is_offered_to_writers_only(world: World) -> None:
    serving(world)
    page = world.client_for("maintainer_a").get(detail_url(world)).content.decode()
    assert 'data-testid="new-revision"' in page and f'hx-get="{revision_url(world)}"' in page
    viewer = world.client_for("viewer_a")
    assert 'data-testid="new-revision"' not in viewer.get(detail_url(world)).content.decode()
    assert viewer.get(revision_url(world), **HTMX).status_code == 403
    assert viewer.post(revision_url(world), revision_data(replicas=2), **HTMX).status_code == 403
    assert world.client_for("owner_b").get(revision_url(world)).status_code == 404
    assert DeploymentRevision.objects.filter(deployment=world.objects["deployment_a"]).count() == 1


def test_new_revision_form_is_prefilled_from_the_serving_revision(
    world: World, no_cluster: None
) -> None:
    serving(world)
    response = world.client_for("maintainer_a").get(revision_url(world), **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="revision-form"') and "<html" not in html
    assert "Prefilled from revision 1, which serves now" in html
    assert re.search(r'name="max_total_tokens" value="2048"', html)
    assert re.search(r'name="max_batch_prefill_tokens" value="1074"', html)
    assert re.search(r'value="l4"\s+checked', html)  # the wizard's fit table picks the tier
    # The wizard's review: 1 GPU held by the live side, 1 more for the new side.
    assert '<span class="mono" data-testid="quota-impact">1 + 1 / 8</span>' in html
    assert "this deployment's live side included" in html
    assert 'data-testid="no-change"' in html and diff(html) == {}


def test_new_revision_diff_follows_the_inputs(world: World, no_cluster: None) -> None:
    serving(world)
    changed = revision_data(max_total_tokens=3072, max_batch_prefill_tokens="", replicas=2)
    changed["max_replicas"] = 2
    html = world.client_for("maintainer_a").get(revision_url(world), changed, **HTMX)
    page = html.content.decode()
    # An emptied prefill limit resolves to TGI's default: input + 50 is 1074, no change.
    assert diff(page) == {
        "max_total_tokens": ("2048", "3072"),
        "replicas": ("1", "2"),
        "max_replicas": ("1", "2"),
    }
    assert '<span class="mono" data-testid="quota-impact">1 + 2 / 8</span>' in page
    invalid = world.client_for("maintainer_a").get(
        revision_url(world), revision_data(replicas=0), **HTMX
    )
    assert "replicas" in field_errors(invalid.content.decode())
    assert "Correct the fields marked above" in invalid.content.decode()


def test_new_revision_refusals_land_on_the_form_and_save_nothing(
    world: World, no_cluster: None
) -> None:
    deployment = serving(world)
    client = world.client_for("maintainer_a")
    # The model's licence is not acknowledged yet: refused above the form (no model field).
    response = client.post(revision_url(world), revision_data(replicas=2, max_replicas=2), **HTMX)
    assert response.status_code == 422
    assert "acknowledge" in re.search(
        r'data-testid="form-error">([^<]*)<', response.content.decode()
    ).group(1)  # type: ignore[union-attr]
    acknowledge(world)
    # A refusal naming a field lands on it (the rules: test_services.py).
    response = client.post(
        revision_url(world), revision_data(max_input_tokens=4096, max_total_tokens=4096), **HTMX
    )
    assert response.status_code == 422
    assert "max_input_tokens" in field_errors(response.content.decode())
    assert deployment.revisions.count() == 1
    assert deployment.rollouts.count() == 1


def test_new_revision_without_a_change_deploys_nothing(world: World) -> None:
    deployment = serving(world)
    response = world.client_for("maintainer_a").post(
        revision_url(world), revision_data(promotion="manual"), **HTMX
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "Nothing to deploy: these are the settings of revision 1." in html
    assert deployment.revisions.count() == 1 and deployment.rollouts.count() == 1


def test_new_revision_deploys_through_the_apis_service(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = serving(world)
    acknowledge(world)
    pools = ClusterCapacity(
        [
            NodeGpus("a", L4_NODE, allocatable=1, requested=0),
            NodeGpus("b", L4_NODE, allocatable=1, requested=0),
            NodeGpus("c", L4_NODE, allocatable=1, requested=1),
        ]
    )
    monkeypatch.setattr(admission, "pool_capacity", lambda: pools)
    monkeypatch.setattr(views, "pool_capacity", lambda: pools)
    client = world.client_for("maintainer_a")
    data = revision_data(max_total_tokens=3072, promotion="manual")
    response = client.post(revision_url(world), data, **HTMX)
    assert response.status_code == 204, response.content
    assert response["HX-Location"] == detail_url(world)
    revision = deployment.revisions.get(number=2)
    assert (revision.max_total_tokens, revision.max_input_tokens) == (3072, 1024)
    assert revision.pod_annotations == {"team": "search"}  # carried over
    rollout = deployment.rollouts.get(revision=revision)
    assert (rollout.colour, rollout.previous_colour, rollout.promotion_mode) == (
        "green",
        "blue",
        "manual",
    )
    page = client.get(detail_url(world)).content.decode()
    assert "Revision 2 is rolling out." in page
    # A second one while that rollout runs is refused above the form, and saves nothing.
    again = client.post(revision_url(world), revision_data(max_total_tokens=4096), **HTMX)
    assert again.status_code == 422
    assert "already running" in again.content.decode()
    assert deployment.revisions.count() == 2


# --- the tenant metrics page ------------------------------------------------------------------


def test_metrics_rows_are_deployments_that_exist_in_colours_that_are_live(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    serving(world)  # alpha-chat: blue live
    idle = Deployment.objects.create(
        tenant=world.tenant_a,
        name="idle",
        model=world.objects["model_a"],
        tier=world.objects["deployment_a"].tier,
    )
    colours = [("alpha-chat", "blue"), ("alpha-chat", "green"), ("deleted-one", "blue")]

    def instant(self: Any, query: str, params: Any = None) -> list[dict[str, Any]]:
        if "gateway_" in query:
            return [
                {"metric": {"deployment": name}, "value": [1.0, "6"]} for name in ("alpha-chat", "")
            ]
        return [
            {
                "metric": {"inference_portal_deployment": d, "inference_portal_colour": c},
                "value": [1.0, "1"],
            }
            for d, c in colours
        ]

    def ranged(self: Any, query: str, *args: Any) -> list[dict[str, Any]]:
        return [
            {
                "metric": {"inference_portal_deployment": d, "inference_portal_colour": c},
                "values": [[1.0, "1"], [31.0, "2"]],
            }
            for d, c in colours
        ]

    monkeypatch.setattr(PrometheusConnect, "custom_query", instant)
    monkeypatch.setattr(PrometheusConnect, "custom_query_range", ranged)
    client = world.client_for("viewer_a")
    url = reverse("tenant-metrics", args=[world.tenant_a.slug])
    html = client.get(url).content.decode()
    rows = re.findall(r'data-testid="row" data-deployment="([\w-]*)" data-colour="(\w*)"', html)
    # The deleted deployment and the removed green side are gone; idle says it serves nothing.
    assert rows == [("alpha-chat", "blue"), ("idle", "")]
    assert "not in the portal" not in html and "Not serving: no side is live." in html
    # While a rollout runs both of its sides are live.
    a_rollout(idle, state=RolloutState.WAITING_READY)
    colours.append(("idle", "blue"))
    html = client.get(url).content.decode()
    rows = re.findall(r'data-testid="row" data-deployment="([\w-]*)" data-colour="(\w*)"', html)
    assert rows == [("alpha-chat", "blue"), ("idle", "blue")]
    # Gateway traffic refused before routing has no deployment: labelled, and listed last.
    gateway = re.findall(r'<tr data-deployment="([\w-]*)"><td>(.*?)</td>', html)
    assert [name for name, _ in gateway] == ["alpha-chat", ""]
    assert 'data-testid="not-routed">not routed</span>' in gateway[1][1]

"""The two refusals a newcomer meets first, in the browser: a deployment beyond the tenant's
GPU quota, and a gated model the tenant's Hugging Face token may not read."""

from __future__ import annotations

from typing import Any

import pytest

from deployments.models import Deployment
from devstack.hub import fixtures as hub
from models_registry import services as registry
from models_registry.models import RegisteredModel
from tenants import services as tenant_services
from tenants.audit import Actor
from tenants.models import Tenant
from tests.browser.conftest import keep, log_in
from tests.fixtures.personas import World

pytestmark = [pytest.mark.browser, pytest.mark.cluster]


def test_deploying_beyond_the_gpu_quota_names_the_field_and_the_numbers(
    live_server: Any, world: World, portal_kube: None, page: Any, screenshot: Any
) -> None:
    admin = Actor(world.users["admin"], "cli")
    tenant_services.update_quota(admin, world.tenant_a, {"max_gpus": 2})
    model = world.objects["model_a"]
    registry.acknowledge_license(Actor(world.users["owner_a"], "cli"), model)
    base = live_server.url
    log_in(page, base, "owner_a")
    page.goto(f"{base}/t/alpha/deployments/new/")
    page.fill("#id_name", "too-big")
    page.fill("#id_max_total_tokens", "2048")
    page.fill("#id_max_input_tokens", "1024")
    page.fill("#id_replicas", "3")
    page.select_option("#id_model", str(model.pk))
    page.wait_for_selector("[data-testid=fit-table]")
    # A tier outside the quota cannot even be chosen, and says why.
    assert page.locator("#tier-a100-80g").is_disabled()
    assert "not in your quota" in page.inner_text("tr[data-tier=a100-80g]")
    page.check("#tier-l4")
    page.wait_for_selector("[data-testid=pool-headroom] .usage-head")
    # The review warns before anything is sent ...
    assert page.inner_text("[data-testid=quota-impact]") == "0 + 3 / 2"
    assert "That is over the quota of 2." in page.inner_text("[data-testid=review]")
    page.click("[data-testid=deploy]")
    # ... and Deploy is refused on the replicas field, with the numbers.
    error = page.locator(".field-error[data-field=replicas]")
    error.wait_for()
    assert error.inner_text() == (
        "needs 3 GPUs (3) while 0 are in use by other deployments; the tenant's quota is 2 GPUs"
    )
    assert page.input_value("#id_replicas") == "3"  # the form keeps what was typed
    error.scroll_into_view_if_needed()
    keep(screenshot("refusal-quota"), "newcomer-refusal-quota.png")
    assert not Deployment.objects.filter(name="too-big").exists()


def test_registering_a_gated_model_without_access_says_so_plainly(
    live_server: Any, world: World, cluster_tenant: Tenant, page: Any, screenshot: Any
) -> None:
    base = live_server.url
    log_in(page, base, "owner_a")
    # A valid token, but of an account that was never granted the gated repositories.
    page.goto(f"{base}/t/alpha/hub-token/")
    page.fill("#id_token", hub.TOKEN_NO_GATED)
    page.click("text=Validate and save")
    page.wait_for_selector("[data-testid=token-status]")
    assert "portal-newcomer" in page.inner_text("[data-testid=token-status]")

    plainly = f"'{hub.GEMMA_9B_ID}' is gated and the tenant's Hub token has no access to it"
    page.goto(f"{base}/t/alpha/models/")
    page.fill("#id_repo_id", hub.GEMMA_9B_ID)
    page.wait_for_selector("[data-testid=lookup-refusal]")
    assert plainly in page.inner_text("[data-testid=lookup-refusal]")  # while typing
    page.click("#register-form button[type=submit]")
    page.wait_for_selector("#register-form .field-error")
    message = page.inner_text("#register-form .field-error")
    assert plainly in message and "request access on the Hub" in message
    assert page.url == f"{base}/t/alpha/models/"
    keep(screenshot("refusal-gated"), "newcomer-refusal-gated.png")
    assert not RegisteredModel.objects.filter(repo_id=hub.GEMMA_9B_ID).exists()

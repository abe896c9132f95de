"""The deploy wizard and the deployment page in a real browser (no cluster, no worker)."""

from __future__ import annotations

from typing import Any

import pytest

from deployments.choices import RolloutState
from deployments.models import Deployment, Rollout, RolloutEvent
from tests.deployments.test_api import a_rollout, acknowledge
from tests.fixtures.personas import PASSWORD, World

pytestmark = pytest.mark.browser


def log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


def test_wizard_walks_to_a_refusal_on_the_right_field(
    live_server: Any, world: World, page: Any, screenshot: Any
) -> None:
    base = live_server.url
    log_in(page, base, "maintainer_a")
    page.goto(f"{base}/t/alpha/deployments/")
    page.click("text=New deployment")
    page.wait_for_url(f"{base}/t/alpha/deployments/new/")
    page.evaluate("window.__marker = 'same page'")
    page.fill("#id_name", "chat")
    page.select_option("#id_model", str(world.objects["model_a"].pk))
    page.wait_for_selector("[data-testid=blockers]")
    assert "acknowledge the Creative Commons" in page.inner_text("[data-testid=blockers]")
    assert page.locator("tr[data-tier=a100-80g] input[type=radio]").is_disabled()
    page.check("#tier-l4")
    page.wait_for_selector(
        "[data-testid=pool-headroom] .usage-head, [data-testid=pool-headroom] .warning"
    )
    screenshot("deploy-wizard-blocked")

    acknowledge(world)
    page.fill("#id_max_total_tokens", "4096")
    page.fill("#id_max_input_tokens", "4096")
    page.dispatch_event("#id_max_input_tokens", "change")
    page.wait_for_function("!document.querySelector('[data-testid=blockers]')")
    assert page.input_value("#id_name") == "chat"  # values survive the re-render
    page.click("[data-testid=deploy]")
    page.wait_for_selector(".field-error[data-field=max_input_tokens]")
    error = page.inner_text(".field-error[data-field=max_input_tokens]")
    assert "must be less than max_total_tokens (4096)" in error
    assert page.evaluate("window.__marker") == "same page"  # swapped in place by HTMX
    page.locator(".field-error[data-field=max_input_tokens]").scroll_into_view_if_needed()
    screenshot("deploy-wizard-refusal")
    assert not Deployment.objects.filter(name="chat").exists()


def test_deployment_page_follows_a_rollout_until_it_fails(
    live_server: Any, world: World, page: Any, screenshot: Any
) -> None:
    base = live_server.url
    deployment = world.objects["deployment_a"]
    rollout = a_rollout(deployment, state=RolloutState.WAITING_READY, ready_replicas=0)
    log_in(page, base, "maintainer_a")
    page.goto(f"{base}/t/alpha/deployments/{deployment.pk}/")
    current = page.locator("[data-testid=steps] li[aria-current=step]")
    assert current.get_attribute("data-step") == "waiting_ready"
    assert page.locator("[data-testid=steps] li.step-done").count() == 3
    assert page.is_visible("text=Promote blue") and page.is_visible("text=Abort")
    screenshot("deployment-rollout-waiting")

    # The worker moves on: the panel refreshes itself in place.
    Rollout.objects.filter(pk=rollout.pk).update(
        state=RolloutState.AWAITING_PROMOTION, ready_replicas=1
    )
    RolloutEvent.objects.create(
        rollout=rollout,
        actor_name="rollout-worker",
        state=RolloutState.AWAITING_PROMOTION,
        message="every replica is ready; waiting for a manual promotion",
    )
    page.wait_for_selector("li[aria-current=step][data-step=awaiting_promotion]", timeout=8000)
    assert "1 / 1" in page.inner_text("[data-testid=ready]")

    Rollout.objects.filter(pk=rollout.pk).update(
        state=RolloutState.FAILED,
        failure_reason="pods of the blue side crash-loop: CUDA out of memory",
        remedy="lower max_total_tokens or choose a tier with more GPU memory",
    )
    page.wait_for_selector("[data-testid=failure]", timeout=8000)
    assert "CUDA out of memory" in page.inner_text("[data-testid=failure]")
    assert page.locator("#rollout-panel[hx-trigger]").count() == 0  # polling stopped
    assert page.locator("text=Promote blue").count() == 0
    screenshot("deployment-rollout-failed")

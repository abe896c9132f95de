"""The registry in a real browser: as-you-type Hub lookup, registration, fit table, update."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command

from devstack.hub import fixtures as hub
from models_registry.models import RegisteredModel

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(live_server: Any, local_hub: str, settings: Any) -> str:
    settings.HF_ENDPOINT = local_hub
    call_command("seed_demo")
    return str(live_server.url)


def log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "portal-demo")
    page.click("button[type=submit]")


def test_lookup_as_you_type_then_register_and_read_the_fit(
    demo: str, page: Any, screenshot: Any
) -> None:
    log_in(page, demo, "bob")
    page.goto(f"{demo}/t/search/models/")
    page.fill("#id_repo_id", hub.MINILM_ID)
    page.wait_for_selector("[data-testid=lookup-refusal]")
    assert "only text-generation models can be served" in page.inner_text(
        "[data-testid=lookup-refusal]"
    )
    page.fill("#id_repo_id", hub.LLAMA_8B_AWQ_ID)
    page.wait_for_selector("[data-testid=lookup-card]")
    card = page.inner_text("[data-testid=lookup-card]")
    assert "awq 4-bit" in card and "a tenant owner must acknowledge" in card
    screenshot("registry-lookup")
    page.click("#register-form button[type=submit]")
    page.wait_for_selector("[data-testid=fit-table]")
    model = RegisteredModel.objects.get(repo_id=hub.LLAMA_8B_AWQ_ID)
    assert page.inner_text("[data-testid=pinned-sha]") == model.current_revision.commit_sha  # type: ignore[union-attr]
    assert page.locator("tr.recommended").get_attribute("data-tier") == "l4"
    # Changing the serving choice re-renders only the fit table.
    page.evaluate("window.__marker = 1")
    page.fill("#id_max_total_tokens", "131072")
    page.dispatch_event("#id_max_total_tokens", "change")
    page.wait_for_function("!document.querySelector('tr[data-tier=l4] td.ok')")
    assert page.evaluate("window.__marker") == 1
    screenshot("registry-fit")


def test_update_preview_then_move(demo: str, page: Any, screenshot: Any) -> None:
    log_in(page, demo, "bob")
    page.goto(f"{demo}/t/search/models/")
    page.fill("#id_repo_id", hub.MISTRAL_7B_ID)
    page.fill("#id_revision", "v1.0")
    page.click("#register-form button[type=submit]")
    page.wait_for_selector("[data-testid=pinned-sha]")
    page.click("text=Check v1.0 for a newer commit")
    page.wait_for_selector("#update-slot p")
    assert "Already pinned to the newest commit" in page.inner_text("#update-slot")
    # the branch the model follows is v1.0 (a tag), so nothing moves; register main elsewhere
    model = RegisteredModel.objects.get(repo_id=hub.MISTRAL_7B_ID)
    RegisteredModel.objects.filter(pk=model.pk).update(requested_revision="main")
    page.reload()
    page.click("text=Check main for a newer commit")
    page.wait_for_selector("#update-preview h2")
    preview = page.inner_text("#update-preview")
    assert "Licence changes from cc-by-nc-4.0 to apache-2.0" in preview
    screenshot("registry-update-preview")
    page.click("#update-preview button.primary")
    main = hub.repo(hub.MISTRAL_7B_ID).branches["main"]
    page.wait_for_function(
        f"document.querySelector('[data-testid=pinned-sha]').innerText === '{main}'"
    )

"""The foundation's pages in a real browser against a live server."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command

from tenants.models import ApiToken, Membership

pytestmark = pytest.mark.browser


def log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "portal-demo")
    page.click("button[type=submit]")


def test_admin_sees_both_tenants_and_switches(live_server: Any, page: Any, screenshot: Any) -> None:
    call_command("seed_demo")
    log_in(page, live_server.url, "admin")
    page.wait_for_url(f"{live_server.url}/tenants/")
    assert page.locator("table.table tbody tr").count() == 2
    screenshot("tenant-list-admin")
    page.select_option("[data-testid=tenant-switcher]", "search")
    page.wait_for_url(f"{live_server.url}/t/search/")
    assert page.locator(".usage").count() == 6
    assert page.inner_text(".sidenav .tenant-name") == "Search Platform"
    screenshot("dashboard")


def test_owner_adds_a_member_without_a_page_reload(
    live_server: Any, page: Any, screenshot: Any
) -> None:
    call_command("seed_demo")
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/t/search/members/")
    page.evaluate("window.__marker = 'same page'")
    page.fill("#id_username", "dave")
    page.select_option("#id_role", "maintainer")
    page.click("text=Add member")
    page.wait_for_selector("#members-panel td:has-text('dave')")
    assert page.evaluate("window.__marker") == "same page"  # swapped in place by HTMX
    assert Membership.objects.get(tenant__slug="search", user__username="dave").role == "maintainer"
    page.fill("#id_username", "nobody")
    page.click("text=Add member")
    page.wait_for_selector(".field-error")
    assert "no user named 'nobody'" in page.inner_text(".field-error")
    screenshot("members-error")


def test_token_is_shown_once_in_the_browser(live_server: Any, page: Any, screenshot: Any) -> None:
    call_command("seed_demo")
    log_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}/t/search/tokens/")
    page.fill("#id_name", "deploy-bot")
    page.click("text=Create token")
    secret = page.inner_text("#new-token-value")
    assert secret.startswith("ipt_")
    screenshot("token-created")
    page.reload()
    assert page.locator("#new-token-value").count() == 0
    assert secret not in page.content()
    assert ApiToken.objects.filter(name="deploy-bot").count() == 1


def test_viewer_has_no_write_controls(live_server: Any, page: Any) -> None:
    call_command("seed_demo")
    log_in(page, live_server.url, "carol")
    page.goto(f"{live_server.url}/t/search/members/")
    assert page.locator("text=Add a member").count() == 0
    # carol is not in "assistants": the tenant does not exist for her.
    assert page.goto(f"{live_server.url}/t/assistants/").status == 404


def test_owner_creates_and_revokes_a_gateway_key_in_place(
    live_server: Any, page: Any, screenshot: Any
) -> None:
    call_command("seed_demo")
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/t/search/gateway/")
    assert "/v1" in page.inner_text("[data-testid=gateway-url]")
    page.evaluate("window.__marker = 'same page'")
    page.fill("#id_name", "notebook")
    page.fill("#id_requests_per_minute", "999999")
    page.click("text=Create key")
    page.wait_for_selector(".field-error")
    assert "must not exceed the tenant's limit" in page.inner_text(".field-error")
    page.fill("#id_requests_per_minute", "60")
    page.click("text=Create key")
    page.wait_for_selector("[data-testid=new-gateway-key]")
    key = page.inner_text("#new-gateway-key-value")
    assert key.startswith("igk_")
    assert page.evaluate("window.__marker") == "same page"  # swapped in place by HTMX
    screenshot("gateway-key-created")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("[data-testid=gateway-key-notebook] >> text=Revoke")
    page.wait_for_selector("[data-testid=gateway-key-notebook] .status-revoked")
    assert page.locator("[data-testid=new-gateway-key]").count() == 0  # shown once
    screenshot("gateway-page")


def test_deployment_page_offers_copyable_client_snippets(
    live_server: Any, page: Any, screenshot: Any, world: Any, no_cluster: Any
) -> None:
    deployment = world.objects["deployment_a"]
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    log_in_persona(page, live_server.url, "viewer_a")
    page.goto(f"{live_server.url}/t/alpha/deployments/{deployment.pk}/")
    snippet = page.locator("[data-testid=gateway-snippet]")
    snippet.scroll_into_view_if_needed()
    assert f'model="{deployment.name}"' in page.inner_text("#snippet-python")
    page.click("[data-copy='#snippet-python']")
    page.wait_for_selector("[data-copy='#snippet-python']:has-text('Copied')")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("import os") and "base_url=" in copied
    snippet.screenshot(
        path=str(screenshot("deployment-snippet").with_name("deployment-snippet.png"))
    )


def log_in_persona(page: Any, base: str, username: str) -> None:
    from tests.factories import PASSWORD

    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)

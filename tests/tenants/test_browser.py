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

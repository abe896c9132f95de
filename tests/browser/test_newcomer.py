"""A newcomer's first day, end to end in Debian's Chromium against the local cluster.

The owner of a tenant logs in, sets the tenant's Hugging Face token, registers a gated model
from the local Hub, reads its fit table, acknowledges its licence, deploys it to a tier,
watches the blue/green rollout complete, creates a gateway key, sends traffic with the official
`openai` client through a real gateway process, sees the live metrics move, then rolls a second
revision back from the deployment page.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import openai
import pytest

from deployments.models import Deployment
from devstack.hub import fixtures as hub
from models_registry.models import RegisteredModel
from tests.browser.conftest import Newcomer, clip, keep, log_in
from tests.fixtures.cluster import wait_for
from tests.gateway.conftest import Gateways, gateways  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.cluster, pytest.mark.worker, pytest.mark.slow]

ROLLOUT_MS = 180_000
LOGIN = "newcomer-01-login.png"
REQUESTS = "[data-testid=deployment-live] [data-panel=request_rate] figcaption"


def _rate(page: Any) -> float:
    """The blue side's request rate the live panel shows now (0 while it shows none)."""
    if page.locator(REQUESTS).count() == 0:
        return 0.0
    match = re.search(r"([\d.]+) req/s", page.inner_text(REQUESTS))
    return float(match.group(1)) if match else 0.0


def _chat(client: openai.OpenAI, text: str = "Hello!") -> str:
    reply = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": text}], max_tokens=16
    )
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    return reply.choices[0].message.content or ""


def test_newcomer_registers_deploys_calls_watches_and_rolls_back(
    newcomer: Newcomer,
    live_server: Any,
    page: Any,
    screenshot: Any,
    gateways: Gateways,  # noqa: F811 - fixture
    cluster: Any,
    settings: Any,
) -> None:
    settings.PROMETHEUS_URL = cluster.prometheus_url
    gateway = gateways.start(scraped=True)
    settings.GATEWAY_PUBLIC_URL = gateway.url  # the pages show where to send traffic
    base = live_server.url
    tenant = f"{base}/t/{newcomer.tenant.slug}"
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm on promote/rollback

    # 1. Log in: a single tenant, so the portal opens its dashboard.
    log_in(page, base, "owner_a", before_submit=lambda: keep(screenshot("newcomer-login"), LOGIN))
    page.wait_for_url(f"{tenant}/")

    # 2. The tenant's Hugging Face token, checked with the Hub before it is stored.
    page.goto(f"{tenant}/hub-token/")
    assert "No token set" in page.inner_text("main")
    page.fill("#id_token", hub.TOKEN_READ)
    page.click("text=Validate and save")
    page.wait_for_selector("[data-testid=token-status]")
    status = page.inner_text("[data-testid=token-status]")
    assert "Valid" in status and "portal-ci" in status
    assert hub.TOKEN_READ not in page.content()  # only a fingerprint comes back
    keep(screenshot("newcomer-hub-token"), "newcomer-02-hub-token.png")

    # 3. Register a gated model from the local Hub: the lookup card first, then the model page.
    page.goto(f"{tenant}/models/")
    page.fill("#id_repo_id", hub.LLAMA_8B_ID)
    page.wait_for_selector("[data-testid=lookup-card]")
    assert "manual" in page.inner_text("[data-testid=lookup-card]")  # gated, and we may read it
    page.click("#register-form button[type=submit]")
    page.wait_for_selector("[data-testid=fit-table]")
    model = RegisteredModel.objects.get(tenant=newcomer.tenant, repo_id=hub.LLAMA_8B_ID)
    assert page.inner_text("[data-testid=pinned-sha]") == model.current_revision.commit_sha  # type: ignore[union-attr]

    # 4. Read the fit table, and accept the licence the page says blocks deploying.
    assert "Llama 3.1 Community License" in page.inner_text("[data-testid=blockers]")
    assert page.locator("tr[data-tier=a100-80g] td.ok").count() == 1
    assert page.locator("tr.recommended").count() == 1
    page.click("text=I have read and accept")
    page.wait_for_function("!document.querySelector('[data-testid=blockers]')")
    keep(screenshot("newcomer-model-fit"), "newcomer-03-model-fit.png")

    # 5. Deploy it to a tier through the wizard.
    page.goto(f"{tenant}/deployments/new/")
    page.fill("#id_name", "chat")
    page.fill("#id_max_total_tokens", "2048")
    page.fill("#id_max_input_tokens", "1024")
    page.select_option("#id_model", str(model.pk))
    page.wait_for_selector("[data-testid=fit-table]")
    page.check("#tier-a100-80g")
    page.wait_for_selector("[data-testid=pool-headroom] .usage-head")
    assert page.input_value("#id_max_total_tokens") == "2048"
    assert "0 + 1 / 16" in page.inner_text("[data-testid=quota-impact]")
    page.click("[data-testid=deploy]")
    page.wait_for_url(re.compile(r"/deployments/\d+/$"))
    deployment = Deployment.objects.get(tenant=newcomer.tenant, name="chat")

    # 6. The rollout panel follows the blue/green steps in place until it completes.
    page.wait_for_selector("[data-testid=steps] li[aria-current=step]")
    # The whole deployment page, not the rollout panel alone (HX-Location navigates here).
    assert page.inner_text("h1") == "chat" and page.locator("header.topbar").count() == 1
    screenshot("newcomer-rollout-running")
    try:
        page.wait_for_selector("#rollout-panel[data-state=completed]", timeout=ROLLOUT_MS)
    except Exception:
        print(newcomer.pool.logs())
        raise
    assert page.locator("#rollout-panel[hx-trigger]").count() == 0  # polling stopped
    assert page.locator("[data-testid=steps] li.step-done").count() == 11
    screenshot("newcomer-rollout-completed")
    keep(clip(page, "#rollout-panel", "newcomer-rollout-panel"), "newcomer-04-rollout.png")
    page.reload()
    assert page.inner_text("[data-testid=active-colour]") == "blue live"
    assert gateway.url in page.inner_text("[data-testid=gateway-base-url]")

    # 7. A gateway key, shown once.
    page.goto(f"{tenant}/gateway/")
    page.fill("#id_name", "newcomer-app")
    page.click("text=Create key")
    page.wait_for_selector("#new-gateway-key-value")
    key = page.inner_text("#new-gateway-key-value").strip()
    screenshot("newcomer-gateway-key")

    # 8. Traffic with the official openai client, through the gateway, to the new deployment.
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    assert [m.id for m in client.models.list()] == ["chat"]
    assert _chat(client)

    # 9. The live metrics on the deployment page move (Prometheus scrapes every 2 s; the
    # panel refreshes itself every 10 s): keep a trickle of traffic going while waiting.
    page.goto(f"{tenant}/deployments/{deployment.pk}/")
    page.wait_for_selector("[data-testid=deployment-live]")
    page.evaluate("window.__marker = 'same page'")
    before = _rate(page)

    def moved() -> float | None:
        _chat(client)
        rate = _rate(page)
        return rate if rate > before else None

    after = wait_for(moved, 90, describe=lambda: page.inner_text("[data-testid=deployment-live]"))
    assert after > 0
    assert page.evaluate("window.__marker") == "same page"  # swapped in place, not reloaded
    assert page.locator("[data-panel=request_rate] svg.chart").count() == 1
    page.locator("[data-testid=deployment-live]").scroll_into_view_if_needed()
    screenshot("newcomer-live-metrics")
    live = clip(page, "[data-testid=deployment-live]", "newcomer-live-panel")
    keep(live, "newcomer-05-live-metrics.png")

    # The gateway page counts the key's requests too (from the gateway's own metrics).
    def counted() -> str | None:
        _chat(client)
        page.goto(f"{tenant}/gateway/")
        row = page.inner_text("[data-testid=gateway-key-newcomer-app]")
        found = re.search(r"(\d+) req", row)
        return row if found and int(found.group(1)) > 0 else None

    wait_for(counted, 60, describe=lambda: page.inner_text("[data-testid=gateway-keys]"))
    screenshot("newcomer-gateway-traffic")

    # 10. A second revision (a larger token budget) from automation: the UI has no form to
    # change a spec. Its old side stays on standby long enough to roll back from the page.
    token = newcomer.world.objects["token_plaintext_a"]
    answer = httpx.patch(
        f"{base}/api/v1/tenants/{newcomer.tenant.slug}/deployments/{deployment.pk}/",
        headers={"Authorization": f"Bearer {token}"},
        json={"max_total_tokens": 3072, "promotion": {"scale_down_delay_seconds": 600}},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    page.goto(f"{tenant}/deployments/{deployment.pk}/")
    rollback = page.locator("text=Roll back to blue")
    try:
        rollback.wait_for(timeout=ROLLOUT_MS)
    except Exception:
        print(newcomer.pool.logs())
        raise
    deployment.refresh_from_db()
    assert (deployment.active_colour, deployment.active_revision.number) == ("green", 2)  # type: ignore[union-attr]
    assert _chat(client)  # the gateway follows the promotion by itself
    screenshot("newcomer-rollback-offered")

    # 11. Roll back from the page: traffic goes back to blue, revision 1.
    rollback.click()
    page.wait_for_selector("#rollout-panel[data-state=rolled_back]", timeout=60_000)
    assert page.inner_text("h1") == "chat" and page.locator("header.topbar").count() == 1
    assert "Rolled back" in page.inner_text("[data-testid=rollout-panel]")
    page.reload()
    assert page.inner_text("[data-testid=active-colour]") == "blue live"
    assert "Active revision 1" in page.inner_text("[data-testid=spec]")
    assert "total ≤ 2,048" in page.inner_text("[data-testid=spec]")
    assert _chat(client)
    screenshot("newcomer-rolled-back")
    keep(clip(page, "#rollout-panel", "newcomer-rolled-back-panel"), "newcomer-06-rolled-back.png")

"""Every main page at a phone's width (390 × 844) and at 1300 px, in Debian's Chromium.

An on-call engineer must be able to read a rollout and press Abort from a phone: no page may be
wider than the window (wide tables scroll inside their own box), and the rollout's buttons are
on screen. Prometheus answers from canned data and the cluster is absent (no_cluster): this is
about layout, not numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import reverse

from deployments import cost, services
from deployments.choices import RolloutState
from deployments.models import Deployment, DeploymentRevision, Rollout
from tests.browser.conftest import clip, keep, log_in
from tests.deployments.test_api import a_rollout
from tests.deployments.test_cost import scripted  # noqa: F401 - fixture
from tests.deployments.test_metrics_browser import canned_prometheus  # noqa: F401 - fixture
from tests.fixtures.browser import SCREENSHOTS
from tests.fixtures.personas import World

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
WIDE = {"width": 1300, "height": 900}
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"
# The deepest elements that reach past the window's right edge, to say what overflows.
WIDEST = """() => {
  const past = e => e.getBoundingClientRect().right > window.innerWidth + 0.5;
  const clipped = e => { for (let a = e.parentElement; a; a = a.parentElement) {
    if (getComputedStyle(a).overflowX !== 'visible') return true; } return false; };
  return [...document.querySelectorAll('body *')]
    .filter(e => past(e) && !clipped(e))
    .slice(-5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(
      e.getBoundingClientRect().right));
}"""


@pytest.fixture
def site(
    live_server: Any,
    world: World,
    no_cluster: None,
    canned_prometheus: None,  # noqa: F811 - fixture
    scripted: dict[str, Any],  # noqa: F811 - fixture
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """Tenant A with a rollout waiting for its pods, and the URL of each main page."""
    monkeypatch.setattr(cost, "_tokens", lambda namespace, start, end: scripted["tokens"])
    # Abort is pressed for real: keep its task off the shared broker (no worker runs here).
    monkeypatch.setattr(services, "_kick", lambda rollout_id: None)
    deployment = world.objects["deployment_a"]
    a_rollout(deployment, state=RolloutState.WAITING_READY, ready_replicas=0)
    slug = world.tenant_a.slug
    pk = deployment.pk
    tenant = {"tenant_slug": slug}
    pages = {
        "tenants": reverse("tenant-list"),
        "dashboard": reverse("tenant-dashboard", kwargs=tenant),
        "models": reverse("model-list", kwargs=tenant),
        "model": reverse("model-detail", kwargs={**tenant, "pk": world.objects["model_a"].pk}),
        "deployments": reverse("deployment-list", kwargs=tenant),
        "deploy-wizard": reverse("deployment-create", kwargs=tenant),
        "deployment": reverse("deployment-detail", kwargs={**tenant, "pk": pk}),
        "new-revision": reverse("deployment-revision", kwargs={**tenant, "pk": pk}),
        "metrics": reverse("tenant-metrics", kwargs=tenant),
        "cost": reverse("tenant-cost", kwargs=tenant) + "?days=1",
        "gateway": reverse("tenant-gateway", kwargs=tenant),
        "members": reverse("tenant-members", kwargs=tenant),
        "tokens": reverse("tenant-tokens", kwargs=tenant),
        "hub-token": reverse("hub-token", kwargs=tenant),
        "audit": reverse("tenant-audit", kwargs=tenant),
    }
    return {name: live_server.url + path for name, path in pages.items()}


def browser_page(chromium: Any, viewport: dict[str, int]) -> Iterator[Any]:
    context = chromium.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm
    yield page
    context.close()


@pytest.fixture
def phone(chromium: Any) -> Iterator[Any]:
    yield from browser_page(chromium, PHONE)


@pytest.fixture
def wide(chromium: Any) -> Iterator[Any]:
    yield from browser_page(chromium, WIDE)


def shot(page: Any, name: str) -> Any:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def visit_every_page(page: Any, site: dict[str, str], width: str) -> dict[str, list[str]]:
    """Open each page, let its HTMX parts load, and return what overflows on which."""
    overflow = {}
    for name, url in site.items():
        page.goto(url)
        page.wait_for_load_state("networkidle")
        if page.evaluate(OVERFLOW) > 0:
            overflow[name] = page.evaluate(WIDEST)
        shot(page, f"{width}-{name}")
    return overflow


def test_every_main_page_fits_a_phone(
    live_server: Any, site: dict[str, str], phone: Any, world: World
) -> None:
    log_in(phone, live_server.url, "maintainer_a")
    phone.goto(site["dashboard"])
    keep(shot(phone, "phone-login-dashboard"), "phone-dashboard.png")
    overflow = visit_every_page(phone, site, "phone")
    assert overflow == {}
    for name in ("deployment", "metrics", "gateway", "deploy-wizard"):
        keep(SCREENSHOTS / f"phone-{name}.png", f"phone-{name}.png")
    # The tenant menu is a row under the top bar, not a column beside the page.
    phone.goto(site["metrics"])
    menu = phone.locator(".sidenav-links").bounding_box()
    main = phone.locator("main").bounding_box()
    assert menu["width"] <= PHONE["width"] and main["y"] >= menu["y"] + menu["height"]
    assert main["width"] >= PHONE["width"] - 2
    assert phone.locator(".sidenav-links a.active").is_visible()


def test_rollout_abort_is_on_screen_and_works_at_phone_width(
    live_server: Any, site: dict[str, str], phone: Any, world: World
) -> None:
    log_in(phone, live_server.url, "maintainer_a")
    phone.goto(site["deployment"])
    phone.wait_for_selector("[data-testid=steps] li[aria-current=step]")
    abort = phone.locator("#rollout-panel button", has_text="Abort")
    abort.scroll_into_view_if_needed()
    box = abort.bounding_box()
    assert abort.is_visible() and abort.is_enabled()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert box["height"] >= 36  # a finger can hit it
    abort.click()
    phone.wait_for_selector("#rollout-panel [data-testid=timeline] >> text=abort requested")
    assert Rollout.objects.get(deployment=world.objects["deployment_a"]).abort_requested
    assert phone.evaluate(OVERFLOW) <= 0
    shot(phone, "phone-abort-requested")
    keep(clip(phone, "#rollout-panel", "phone-rollout-panel"), "phone-rollout-abort.png")


def test_new_revision_form_at_phone_width_shows_the_diff(
    live_server: Any, site: dict[str, str], phone: Any, world: World
) -> None:
    deployment = world.objects["deployment_a"]
    Rollout.objects.filter(deployment=deployment).update(state=RolloutState.COMPLETED)
    rollout = Rollout.objects.get(deployment=deployment)
    deployment.active_revision = rollout.revision
    deployment.save(update_fields=["active_revision"])
    log_in(phone, live_server.url, "maintainer_a")
    phone.goto(site["deployment"])
    phone.click("[data-testid=new-revision] summary")
    phone.wait_for_selector("#revision-form [data-testid=no-change]")
    assert phone.input_value("#id_max_total_tokens") == "2048"  # prefilled from revision 1
    phone.fill("#id_max_total_tokens", "3072")
    phone.dispatch_event("#id_max_total_tokens", "change")
    change = phone.locator("[data-testid=revision-diff] li[data-field=max_total_tokens]")
    change.wait_for()
    assert change.inner_text() == "Max total tokens: 2048 → 3072"
    assert phone.evaluate(OVERFLOW) <= 0
    change.scroll_into_view_if_needed()
    shot(phone, "phone-new-revision-page")
    keep(clip(phone, "[data-testid=new-revision]", "phone-new-revision"), "phone-new-revision.png")


def test_every_main_page_fits_1300_px(
    live_server: Any, site: dict[str, str], wide: Any, world: World
) -> None:
    log_in(wide, live_server.url, "maintainer_a")
    overflow = visit_every_page(wide, site, "wide")
    assert overflow == {}
    # The top bar spans the window (it stopped short when the metrics page was wider).
    wide.goto(site["metrics"])
    assert wide.locator("header.topbar").bounding_box()["width"] == WIDE["width"]
    keep(SCREENSHOTS / "wide-metrics.png", "wide-metrics.png")


def _serve_with(deployment: Any, engine: str) -> None:
    """The deployment serves blue from a revision of ``engine`` (written straight to the
    database: the metrics pages read the engine of each live side from its revision)."""
    model_revision = deployment.model.current_revision
    revision = DeploymentRevision.objects.create(
        deployment=deployment,
        number=deployment.revisions.count() + 1,
        model_revision=model_revision,
        tier=deployment.tier,
        engine=engine,
        max_input_tokens=1024,
        max_total_tokens=2048,
        max_batch_prefill_tokens=1074,
    )
    Deployment.objects.filter(pk=deployment.pk).update(
        active_revision=revision, active_colour="blue"
    )
    # A rollout still running on that side (the site's) rolls out the same engine.
    DeploymentRevision.objects.filter(deployment=deployment).update(engine=engine)


@pytest.mark.parametrize("width", ["phone", "wide"])
def test_cells_an_engine_cannot_fill_say_why_at_both_widths(
    live_server: Any,
    site: dict[str, str],
    request: pytest.FixtureRequest,
    world: World,
    scripted: dict[str, Any],  # noqa: F811 - fixture
    width: str,
) -> None:
    """vLLM and SGLang do not count refused requests; SGLang has no prefill histogram: their
    cells say so, instead of a 0 or a blank that reads as "no errors"."""
    _serve_with(scripted["busy"], "sglang")
    _serve_with(world.objects["deployment_a"], "vllm")
    page = request.getfixturevalue(width)
    log_in(page, live_server.url, "viewer_a")
    page.goto(site["metrics"])
    page.wait_for_selector("[data-testid=row][data-deployment=busy]")
    notes = page.locator("[data-testid=not-reported-note]").all_inner_texts()
    for name, label in (("busy", "SGLang"), (world.objects["deployment_a"].name, "vLLM")):
        for panel in ("success_ratio", "error_rate"):
            cell = page.locator(
                f"[data-deployment='{name}'] [data-panel={panel}] [data-testid=not-reported]"
            )
            assert cell.inner_text() == "not reported"
            why = cell.get_attribute("title")
            assert f"not reported by {label}" in why
            # The reason is spelled out once under the table (a phone shows no tooltips).
            assert why[0].upper() + why[1:] + "." in notes
    assert page.evaluate(OVERFLOW) <= 0
    keep(shot(page, f"{width}-metrics-not-reported"), f"{width}-metrics-not-reported.png")

    busy = {"tenant_slug": world.tenant_a.slug, "pk": scripted["busy"].pk}
    page.goto(live_server.url + reverse("deployment-detail", kwargs=busy))
    live = page.locator("[data-testid=deployment-live]")
    live.wait_for()
    reasons = live.locator("[data-testid=not-reported]").all_inner_texts()
    assert any("no prefill-time histogram" in reason for reason in reasons), reasons
    assert (
        "not reported by SGLang"
        in live.locator("[data-testid=guardrail-not-reported]").inner_text()
    )
    assert page.evaluate(OVERFLOW) <= 0
    shot(page, f"{width}-deployment-not-reported")


def test_deleting_shows_its_progress_at_phone_width(
    live_server: Any,
    site: dict[str, str],
    phone: Any,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Delete is pressed on a phone: the page turns into the deletion's progress (the work runs
    as a task; none runs here, so it stays at its first step), readable without sideways scroll."""
    monkeypatch.setattr(services, "_kick_deletion", lambda deployment_id: None)
    deployment = world.objects["deployment_a"]
    log_in(phone, live_server.url, "maintainer_a")
    phone.goto(site["deployment"])
    delete = phone.locator("button", has_text="Delete deployment")
    delete.scroll_into_view_if_needed()
    delete.click()  # hx-confirm is accepted by the page's dialog handler
    panel = phone.locator("[data-testid=deletion-panel]")
    panel.wait_for()
    current = panel.locator("li[aria-current=step]")
    assert current.get_attribute("data-step") == "waiting"
    assert Deployment.objects.get(pk=deployment.pk).deletion_requested_at is not None
    # The rollout's buttons are gone: nothing more can be asked of a deployment being deleted.
    assert phone.locator("#rollout-panel button", has_text="Abort").count() == 0
    assert phone.evaluate(OVERFLOW) <= 0
    # The panel keeps polling: a reload still shows the same step, not an error.
    phone.reload()
    panel.wait_for()
    assert panel.locator("li[aria-current=step]").get_attribute("data-step") == "waiting"
    keep(clip(phone, "[data-testid=deletion-panel]", "phone-deletion"), "phone-deletion.png")

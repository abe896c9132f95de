"""The tenant metrics page's "gateway usage against limits" panel with real gateway traffic.

A real gateway process (scraped by the devstack Prometheus through its file_sd directory) in
front of a deployment rolled out on the local cluster; a known number of requests goes through
it, and the page must show them per minute against the tenant's quota.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
from django.urls import reverse
from prometheus_api_client import PrometheusConnect

from engines import ENGINES
from tenants.models import Tenant, TenantQuota
from tests.fixtures.cluster import wait_for
from tests.gateway.conftest import (  # noqa: F401 - fixture re-exports
    Gateways,
    Served,
    gateways,
    served,
)
from tests.gateway.test_gateway import client

pytestmark = [pytest.mark.cluster, pytest.mark.worker, pytest.mark.slow]

REQUESTS = 8
REQUESTS_PER_MINUTE = 40
TOKENS_PER_MINUTE = 5000


def _usage(page: str) -> dict[str, tuple[float, int, int]]:
    """``{label: (used, limit, percent)}`` of the usage bars."""
    bars = re.findall(
        r'data-testid="gateway-\d+">\s*<div class="usage-head"><span>([^<]+)</span>'
        r'<span class="mono">([\d,.]+) / ([\d,]+) [^<]*</span></div>\s*'
        r'<div class="bar" role="progressbar" aria-label="[^"]*" aria-valuenow="(\d+)"',
        page,
    )
    return {
        label: (float(used.replace(",", "")), int(limit.replace(",", "")), int(percent))
        for label, used, limit, percent in bars
    }


def _by_deployment(page: str) -> dict[str, tuple[float, float]]:
    section = page.split('data-testid="gateway-usage"')[1].split("</section>")[0]
    return {
        name: (float(requests), float(tokens.replace(",", "")))
        for name, requests, tokens in re.findall(
            r'<tr[^>]*><td>([^<]+)</td><td class="num">([\d.]+)</td>'
            r'<td class="num">([\d,]+)</td></tr>',
            section,
        )
    }


def _observed(response: Any) -> str:
    page = response.content.decode()
    section = page.split('data-testid="gateway-usage"')[-1].split("</section>")[0]
    error = re.search(r'data-testid="prometheus-unreachable">(.*?)</div>', page, re.S)
    return (
        f"HTTP {response.status_code}: {_usage(page)} {error.group(1) if error else ''}\n"
        f"{section[-1500:]}"
    )


@pytest.mark.parametrize("engine", list(ENGINES))
def test_gateway_usage_against_limits_shows_real_gateway_traffic(
    served: Served,  # noqa: F811 - the imported fixture
    gateways: Gateways,  # noqa: F811
    cluster: Any,
    settings: Any,
    engine: str,
) -> None:
    settings.PROMETHEUS_URL = cluster.prometheus_url
    tenant = served.fleet.tenant
    # The gateway labels its series with the tenant's slug; other tests' gateways serve the
    # same persona tenant against the same Prometheus, so this one gets a slug of its own.
    Tenant.objects.filter(pk=tenant.pk).update(slug=f"gwm-{uuid.uuid4().hex[:8]}")
    tenant.refresh_from_db()
    served.set_quota(requests_per_minute=REQUESTS_PER_MINUTE, tokens_per_minute=TOKENS_PER_MINUTE)
    gateway = gateways.start(scraped=True)
    prometheus = PrometheusConnect(cluster.prometheus_url)
    # Let Prometheus scrape the primed (zero) series first, so rate() sees the counters rise.
    wait_for(
        lambda: prometheus.custom_query(f'up{{instance="127.0.0.1:{gateway.port}"}} == 1'),
        30,
        describe="Prometheus to scrape the gateway",
    )
    time.sleep(2.5)
    tokens = 0
    openai_client = client(gateway.url, served.key)
    for i in range(REQUESTS):
        answer = openai_client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": f"count me {i}"}], max_tokens=4
        )
        assert answer.usage is not None
        tokens += answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert 0 < tokens < TOKENS_PER_MINUTE

    owner = served.fleet.world.client_for("owner_a")
    url = reverse("tenant-metrics", args=[tenant.slug])

    # rate() over 1 minute extrapolates to the window's end (never to before the primed zero):
    # the figures reach the counts sent and may overshoot a little; later scrapes settle them.
    def shown() -> dict[str, Any] | None:
        page = owner.get(url).content.decode()
        usage = _usage(page)
        requests_used = usage.get("Requests per minute", (0.0, 0, 0))[0]
        tokens_used = usage.get("Tokens per minute", (0.0, 0, 0))[0]
        if REQUESTS <= requests_used <= 1.25 * REQUESTS and (
            tokens <= tokens_used <= 1.25 * tokens
        ):
            return {"usage": usage, "table": _by_deployment(page), "page": page}
        return None

    found = wait_for(shown, 40, describe=lambda: _observed(owner.get(url)), interval=1)

    quota = TenantQuota.objects.get(tenant=tenant)
    assert (quota.requests_per_minute, quota.tokens_per_minute) == (
        REQUESTS_PER_MINUTE,
        TOKENS_PER_MINUTE,
    )
    requests_used, requests_limit, requests_percent = found["usage"]["Requests per minute"]
    tokens_used, tokens_limit, tokens_percent = found["usage"]["Tokens per minute"]
    assert (requests_limit, tokens_limit) == (REQUESTS_PER_MINUTE, TOKENS_PER_MINUTE)
    # The bars are the share of the limit used (shown figures are rounded to whole units).
    assert abs(requests_percent - 100 * requests_used / REQUESTS_PER_MINUTE) <= 2
    assert abs(tokens_percent - 100 * tokens_used / TOKENS_PER_MINUTE) <= 1
    # Per deployment: all of it went to "chat".
    chat_requests, chat_tokens = found["table"]["chat"]
    assert REQUESTS <= chat_requests <= 1.25 * REQUESTS + 0.1
    assert tokens <= chat_tokens <= 1.25 * tokens + 1
    assert set(found["table"]) == {"chat"}
    assert "No requests through the gateway" not in found["page"]

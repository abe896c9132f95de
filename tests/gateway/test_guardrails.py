"""Guardrails enforced by real gateway processes: rate limits shared across processes through
Redis, output caps, input and payload limits, metering, and a promotion under load. The main
checks run once per engine (each counts input tokens its own way); variants on the default."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from django.urls import reverse
from prometheus_api_client import PrometheusConnect

from deployments import services as deployment_services
from deployments.services import Promotion
from engines import ENGINES
from tests.gateway.conftest import GatewayProcess, Gateways, Served, exposition_sum
from tests.gateway.test_gateway import client

pytestmark = [pytest.mark.cluster, pytest.mark.worker, pytest.mark.slow]


def _chat(max_tokens: int | None = 1, content: str = "hi", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": content}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body | extra


def _fire(targets: list[tuple[GatewayProcess, str]], body: dict[str, Any]) -> list[httpx.Response]:
    """Send one request per target, all at once."""

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        f"{gateway.url}/v1/chat/completions",
                        headers={"Authorization": f"Bearer {key}"},
                        json=body,
                    )
                    for gateway, key in targets
                )
            )

    return asyncio.run(run())


def _eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def test_sixty_rpm_admits_exactly_sixty_across_two_gateways(
    served: Served, gateways: Gateways
) -> None:
    key = served.new_key(requests_per_minute=60)
    first, second = gateways.start(), gateways.start()
    # 61 requests at once, alternating between the two processes.
    responses = _fire([(first if i % 2 else second, key) for i in range(61)], _chat())
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 60, 429: 1}, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "key's requests per minute" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "60"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    admitted = next(r for r in responses if r.status_code == 200)
    assert admitted.headers["x-ratelimit-limit-requests"] == "60"
    # Another key of the same tenant is not affected by this key's limit.
    assert _fire([(first, served.key)], _chat())[0].status_code == 200


@pytest.mark.parametrize("engine", list(ENGINES))
def test_tokens_and_tenant_rpm_hold_across_two_gateways(
    served: Served, gateways: Gateways, tmp_path: Path
) -> None:
    """A key's TPM (settled with the usage each engine reports) and the tenant's RPM (shared by
    all its keys) hold across two gateway processes, whichever engine serves."""
    limit = 1200
    key = served.new_key(tokens_per_minute=limit)
    first, second = gateways.start(), gateways.start()
    started = time.monotonic()
    responses = _fire([(first if i % 2 else second, key) for i in range(24)], _chat(40))
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    used = sum(r.json()["usage"]["total_tokens"] for r in admitted)
    refill = (time.monotonic() - started) * limit / 60
    assert refused and admitted
    assert used <= limit + refill, (used, limit)
    assert refused[0].json()["error"]["type"] == "tokens"
    assert refused[0].headers["x-ratelimit-limit-tokens"] == str(limit)
    # Reservations are settled with the real usage: what the completed requests did not use
    # (the reservation counts max_tokens and an upper bound of the prompt) is given back, so
    # sequential requests keep being admitted until the actual usage reaches the limit.
    for _ in range(40):
        response = _fire([(first, key)], _chat(40))[0]
        if response.status_code != 200:
            break
        used += response.json()["usage"]["total_tokens"]
    refill = (time.monotonic() - started) * limit / 60
    assert used <= limit + refill
    one_request = 40 + 64 + 200  # max_tokens + template allowance + body bytes (upper bound)
    assert used >= limit - one_request, used

    # The tenant's RPM, counted afresh (another limiter prefix) by two new processes that load
    # the lowered quota at start.
    served.set_quota(requests_per_minute=30)
    other = served.new_key()
    (tmp_path / "rpm").mkdir()
    fresh = Gateways(tmp_path / "rpm")
    try:
        third, fourth = fresh.start(), fresh.start()
        responses = _fire([(third, served.key), (fourth, other)] * 20, _chat())
    finally:
        fresh.stop_all()
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 30, 429: 10}, statuses
    refused_rpm = next(r for r in responses if r.status_code == 429)
    assert "tenant's requests per minute" in refused_rpm.json()["error"]["message"]
    assert refused_rpm.headers["x-ratelimit-limit-requests"] == "30"


def test_a_request_larger_than_the_tpm_limit_is_refused_without_retry_after(
    served: Served, gateways: Gateways
) -> None:
    key = served.new_key(tokens_per_minute=100)
    gateway = gateways.start()
    response = _fire([(gateway, key)], _chat(500))[0]
    assert response.status_code == 429
    assert "lower max_tokens" in response.json()["error"]["message"]
    assert "retry-after" not in response.headers


def _check_input_over_max_input_is_refused_before_the_engine(
    served: Served, gateway: GatewayProcess
) -> None:
    """Counted exactly with the pod's own tokenizer (the engine's tokenize route), refused by the
    gateway: the engine never processes the prompt."""
    processed = served.engine.metrics.input_tokens_counter
    before = sum(served.pod_counters(processed))
    with pytest.raises(openai.BadRequestError) as refused:
        client(gateway.url, served.key).chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "word " * 1500}],
            max_tokens=10,
        )
    assert refused.value.code == "context_length_exceeded"
    assert refused.value.param == "messages"
    assert "at most 1024 input tokens" in refused.value.message  # the gateway's words
    # Just under the limit passes (the exact count comes from the pod's tokenizer).
    ok = client(gateway.url, served.key).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "word " * 900}], max_tokens=10
    )
    assert ok.usage is not None and 900 <= ok.usage.prompt_tokens <= 1024
    # The engine processed the second prompt only.
    _eventually(lambda: sum(served.pod_counters(processed)) > before)
    assert sum(served.pod_counters(processed)) - before == ok.usage.prompt_tokens


@pytest.mark.parametrize("engine", list(ENGINES))
def test_metering_input_limit_and_output_caps(served: Served, gateways: Gateways) -> None:
    """The per-request guardrails in front of each engine, on one rollout per engine (in this
    order: metering counts the gateway's traffic exactly, the caps change the tenant's quota)."""
    gateway = gateways.start(scraped=True)
    _check_usage_is_metered_in_prometheus(served, gateway)
    _check_input_over_max_input_is_refused_before_the_engine(served, gateway)
    _check_output_caps(served, gateway)


def _check_usage_is_metered_in_prometheus(served: Served, gateway: GatewayProcess) -> None:
    """Requests, tokens and errors of a key reach Prometheus and the tenant's gateway page."""
    key = served.new_key(name="metered")
    prefix = key.split("_")[1]
    prometheus = PrometheusConnect("http://127.0.0.1:59090")
    # Let Prometheus see the (primed, zero) series first, as it would in steady operation.
    _eventually(
        lambda: bool(prometheus.custom_query(f'up{{instance="127.0.0.1:{gateway.port}"}} == 1')),
        timeout=20,
    )
    time.sleep(2.5)
    prompt = completion = 0
    for _ in range(3):
        answer = client(gateway.url, key).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "meter me"}], max_tokens=4
        )
        assert answer.usage is not None
        prompt += answer.usage.prompt_tokens
        completion += answer.usage.completion_tokens
    with pytest.raises(openai.NotFoundError):
        client(gateway.url, key).chat.completions.create(
            model="missing", messages=[{"role": "user", "content": "x"}], max_tokens=1
        )
    selector = (
        f'tenant="{served.fleet.tenant.slug}", key="{prefix}", instance="127.0.0.1:{gateway.port}"'
    )

    def value(query: str) -> float | None:
        result = prometheus.custom_query(query)
        return float(result[0]["value"][1]) if result else None

    def scraped() -> bool:
        return (
            value(f'sum(gateway_requests_total{{{selector}, deployment="chat", code="200"}})') == 3
        )

    _eventually(scraped, timeout=20)
    assert value(f"sum(gateway_prompt_tokens_total{{{selector}}})") == prompt
    assert value(f"sum(gateway_completion_tokens_total{{{selector}}})") == completion
    assert value(f'sum(gateway_errors_total{{{selector}, kind="model_not_found"}})') == 1
    assert (
        value(
            f'sum(gateway_request_duration_seconds_count{{tenant="{served.fleet.tenant.slug}", '
            f'instance="127.0.0.1:{gateway.port}"}})'
        )
        == 3
    )
    # The tenant's gateway page shows the traffic of the key (requests and tokens).
    page = served.fleet.world.client_for("owner_a").get(
        reverse("tenant-gateway", args=[served.fleet.tenant.slug])
    )
    row = page.content.decode().split('data-testid="gateway-key-metered"')[1].split("</tr>")[0]
    # Prometheus' increase() extrapolates to the window's edges: close, not exact.
    figures = row.split('<td class="mono nowrap">')[-1].split("</td>")[0]
    requests_shown, tokens_shown = (
        int(part.split()[0].replace(",", "")) for part in figures.split(" · ")[:2]
    )
    assert requests_shown == 3, row
    assert abs(tokens_shown - (prompt + completion)) <= 0.15 * (prompt + completion), row


def _check_output_caps(served: Served, gateway: GatewayProcess) -> None:
    """max_tokens clamped to what the input leaves, then the tenant's caps (changes the quota)."""
    openai_client = client(gateway.url, served.key)

    # The deployment allows 2048 tokens in total: 5000 is clamped to what the input leaves.
    raw = openai_client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hello"}], max_tokens=5000
    )
    answer = raw.parse()
    assert answer.usage is not None
    assert raw.headers["x-gateway-max-tokens-clamped-from"] == "5000"
    clamped, room = int(raw.headers["x-gateway-max-tokens"]), 2048 - answer.usage.prompt_tokens
    if served.engine.tokenize_chat({"messages": []}) is not None:
        assert clamped == room  # counted with the chat template, exactly
    else:  # an upper bound of the template's tokens is left free as well
        assert room - 200 < clamped <= room

    served.set_quota(require_max_tokens=True, max_output_tokens=6)
    with_cap: dict[str, Any] = {}

    def refused_without_max_tokens() -> bool:
        try:
            openai_client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "x"}]
            )
        except openai.BadRequestError as error:
            with_cap["error"] = error
            return True
        return False

    _eventually(refused_without_max_tokens)
    error = with_cap["error"]
    assert error.code == "max_tokens_required"
    assert error.param == "max_tokens"
    assert "requires 'max_tokens'" in error.message
    capped = openai_client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hello"}], max_tokens=50
    )
    assert capped.usage is not None and capped.usage.completion_tokens == 6
    # max_completion_tokens (OpenAI's newer name) counts as max_tokens.
    newer = openai_client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hello"}], max_completion_tokens=3
    )
    assert newer.usage is not None and newer.usage.completion_tokens == 3


def test_payload_limit(served: Served, gateways: Gateways) -> None:
    gateway = gateways.start()
    served.set_quota(max_request_bytes=2048)

    def too_large() -> bool:
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {served.key}"},
            json=_chat(1, "x" * 3000),
        )
        return (
            response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
        )

    _eventually(too_large)
    bad_json = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {served.key}", "content-type": "application/json"},
        content=b"{not json",
    )
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["code"] == "invalid_json"


def test_redis_unreachable_fails_open_and_is_counted(
    served: Served, gateways: Gateways, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented choice: serve without rate limits (the engine still bounds its own queue) and
    count the degraded decisions, rather than take every tenant's inference down."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")  # nothing listens there
    monkeypatch.setattr("django.conf.settings.REDIS_URL", "redis://127.0.0.1:9/0")
    key_limited_to_one = served.new_key(requests_per_minute=1)
    gateway = gateways.start()
    _eventually(lambda: _fire([(gateway, key_limited_to_one)], _chat())[0].status_code == 200, 8)
    statuses = Counter(r.status_code for r in _fire([(gateway, key_limited_to_one)] * 5, _chat()))
    assert statuses == {200: 5}
    assert (
        exposition_sum(
            httpx.get(f"{gateway.url}/metrics").text, "gateway_rate_limiter_degraded_total"
        )
        >= 5
    )


def test_promotion_under_steady_load_fails_no_request(served: Served, gateways: Gateways) -> None:
    served.set_quota(requests_per_minute=100_000)
    first, second = gateways.start(), gateways.start()
    deployment = served.deployment
    colours_before = deployment.active_colour
    stop = threading.Event()
    results: Counter[int] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def load(gateway: GatewayProcess) -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                response = http.post(
                    f"{gateway.url}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {served.key}"},
                    json=_chat(4),
                )
                with lock:
                    results[response.status_code] += 1
                    if response.status_code != 200:
                        failures.append(response.text)

    threads = [threading.Thread(target=load, args=(g,)) for g in (first, second) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        _, rollout, _ = deployment_services.change_deployment(
            served.fleet.actor,
            deployment,
            served.fleet.request(max_total_tokens=2048, max_input_tokens=1000, replicas=2),
            promotion=Promotion(scale_down_delay_seconds=2),
        )
        served.fleet.wait_state(rollout, "completed", timeout=180)
        time.sleep(2)  # keep going on the new side alone
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    deployment.refresh_from_db()
    assert deployment.active_colour != colours_before
    assert failures == [], failures[:3]
    assert results[200] > 100

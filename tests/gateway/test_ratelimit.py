"""The gateway's rate limiter against the real local Redis; no database.

Every test uses its own key prefix, so tests never share counters and can run beside anything
else using this Redis.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from gateway import ratelimit
from gateway.ratelimit import (
    Decision,
    LimitName,
    Limits,
    RateLimiter,
    format_duration,
    redis_client,
)

REDIS_URL = "redis://127.0.0.1:56379/0"
ROOT = Path(__file__).resolve().parents[2]

# Run in two separate OS processes: connect, say "ready", wait for "go" on stdin, then fire all
# attempts concurrently and print each decision as JSON.
_HAMMER = """
import asyncio, json, sys
from gateway.ratelimit import Limits, RateLimiter, redis_client

async def main(url, prefix, limits, tokens, attempts):
    client = redis_client(url, timeout=5.0)
    limiter = RateLimiter(client, prefix=prefix, timeout=5.0)
    await asyncio.gather(*(client.ping() for _ in range(attempts)))  # open the connections first
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    decisions = await asyncio.gather(
        *(limiter.reserve("acme", "key-1", limits, tokens) for _ in range(attempts))
    )
    print(json.dumps([[d.allowed, d.degraded, d.retry_after_seconds] for d in decisions]))
    await client.aclose()

url, prefix, limits, tokens, attempts = json.loads(sys.argv[1])
asyncio.run(main(url, prefix, Limits(**limits), tokens, attempts))
"""


async def _reserve_many(
    prefix: str, calls: list[tuple[str, Limits, int]], tenant: str = "acme"
) -> list[Decision]:
    """Reserve sequentially through one limiter: (key, limits, tokens) per call."""
    client = redis_client(REDIS_URL)
    try:
        limiter = RateLimiter(client, prefix=prefix)
        return [await limiter.reserve(tenant, key, limits, tokens) for key, limits, tokens in calls]
    finally:
        await client.aclose()


def _hammer_from_two_processes(
    prefix: str, limits: Limits, tokens: int, attempts_each: int
) -> list[tuple[bool, bool, float]]:
    arg = json.dumps([REDIS_URL, prefix, asdict(limits), tokens, attempts_each])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _HAMMER, arg],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:  # start both as close together as possible
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results: list[tuple[bool, bool, float]] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            results += [(bool(a), bool(d), float(w)) for a, d, w in json.loads(out)]
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def test_60_rpm_admits_exactly_60_across_two_processes(prefix: str) -> None:
    # 40 attempts each: neither process alone can reach 60, so the count is truly shared.
    results = _hammer_from_two_processes(prefix, Limits(tenant_rpm=60), 0, 40)

    assert not any(degraded for _, degraded, _ in results)
    assert sum(allowed for allowed, _, _ in results) == 60
    refused_waits = [wait for allowed, _, wait in results if not allowed]
    assert len(refused_waits) == 20
    # The window promise: the 61st may come only when the first admission leaves the window,
    # a minute after it (the burst happened well within a second).
    assert all(59 < wait <= 60.0 for wait in refused_waits)
    assert Decision(allowed=False, retry_after_seconds=max(refused_waits)).headers() == {
        "retry-after": "60"
    }


def test_tpm_reservations_across_two_processes_never_exceed_the_limit(prefix: str) -> None:
    # 6000 TPM at 150 tokens a request fits exactly 40; each process alone tries only 30.
    limits = Limits(tenant_tpm=6000, key_tpm=6000)
    results = _hammer_from_two_processes(prefix, limits, 150, 30)

    assert not any(degraded for _, degraded, _ in results)
    assert sum(allowed for allowed, _, _ in results) * 150 == 6000


def test_settle_returns_unused_tokens_so_later_requests_fit(prefix: str) -> None:
    async def scenario() -> None:
        client = redis_client(REDIS_URL)
        limiter = RateLimiter(client, prefix=prefix)
        limits = Limits(tenant_tpm=1000)
        first = await limiter.reserve("acme", "key-1", limits, 800)
        assert first.allowed and first.remaining_tokens == 200 and first.reservation

        refused = await limiter.reserve("acme", "key-1", limits, 800)
        assert not refused.allowed and refused.refused_by is LimitName.TENANT_TPM
        # 1600 tokens at 1000/min: they fit once the first 800 leave the window, a minute on.
        assert 59.9 < refused.retry_after_seconds <= 60.0
        assert refused.headers()["retry-after"] == "60"

        assert await limiter.settle(first.reservation, 100) == 700
        second = await limiter.reserve("acme", "key-1", limits, 800)
        assert second.allowed and second.remaining_tokens == 100
        assert second.reservation

        # Using more than reserved is charged anyway (the work is done), not refused.
        assert await limiter.settle(second.reservation, 900) == -100
        assert (await limiter.reserve("acme", "key-1", limits, 0)).remaining_tokens == 0
        await client.aclose()

    asyncio.run(scenario())


def test_refusal_by_key_limit_consumes_nothing_from_tenant_limit(prefix: str) -> None:
    key_a = Limits(tenant_rpm=10, key_rpm=3)
    key_b = Limits(tenant_rpm=10, key_rpm=100)
    decisions = asyncio.run(
        _reserve_many(prefix, [("key-a", key_a, 0)] * 5 + [("key-b", key_b, 0)])
    )

    assert [d.allowed for d in decisions] == [True, True, True, False, False, True]
    assert {d.refused_by for d in decisions[3:5]} == {LimitName.KEY_RPM}
    # key-b's request is the tenant's 4th admitted: the two refusals took nothing.
    tenant_headers = decisions[5].headers()
    assert tenant_headers["x-ratelimit-limit-requests"] == "10"
    assert tenant_headers["x-ratelimit-remaining-requests"] == "6"


def test_refusal_by_tenant_tokens_consumes_nothing_from_key_requests(prefix: str) -> None:
    limits = Limits(tenant_tpm=1000, key_rpm=5)
    decisions = asyncio.run(
        _reserve_many(
            prefix, [("key-a", limits, 600), ("key-a", limits, 600), ("key-a", limits, 0)]
        )
    )

    assert [d.allowed for d in decisions] == [True, False, True]
    assert decisions[1].refused_by is LimitName.TENANT_TPM
    assert decisions[1].remaining_requests == 4
    assert decisions[2].remaining_requests == 3  # two admitted, the refusal not counted


def test_headers_report_the_most_constraining_limits(prefix: str) -> None:
    limits = Limits(tenant_rpm=60, tenant_tpm=1000, key_rpm=100, key_tpm=50_000)
    (decision,) = asyncio.run(_reserve_many(prefix, [("key-a", limits, 100)]))

    assert decision.allowed and decision.refused_by is None
    assert decision.headers() == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        # Back to the initial state when this request's entries leave the window.
        "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900",
        "x-ratelimit-reset-tokens": "1m0s",
    }


def test_request_larger_than_the_token_limit_is_refused_without_retry_after(prefix: str) -> None:
    (decision,) = asyncio.run(_reserve_many(prefix, [("key-a", Limits(key_tpm=1000), 1001)]))

    assert not decision.allowed and decision.too_large
    assert decision.refused_by is LimitName.KEY_TPM
    assert "retry-after" not in decision.headers()


def test_unlimited_needs_no_redis_and_sends_no_headers(unreachable_url: str) -> None:
    async def scenario() -> list[Decision]:
        client = redis_client(unreachable_url)
        limiter = RateLimiter(client)
        decisions = [
            await limiter.reserve("acme", "key-a", limits, 10_000)
            for limits in (Limits(), Limits(tenant_rpm=0, tenant_tpm=None, key_rpm=0, key_tpm=0))
        ]
        await client.aclose()
        return decisions

    for decision in asyncio.run(scenario()):
        assert decision.allowed and not decision.degraded
        assert decision.headers() == {}


def test_only_the_limited_kind_gets_headers(prefix: str) -> None:
    (decision,) = asyncio.run(_reserve_many(prefix, [("key-a", Limits(key_rpm=5), 10_000)]))

    assert decision.allowed
    assert set(decision.headers()) == {
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    }


def test_script_missing_from_redis_falls_back_to_eval(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratelimit, "SCRIPT_SHA", "0" * 40)  # EVALSHA answers NOSCRIPT

    decisions = asyncio.run(_reserve_many(prefix, [("key-a", Limits(key_rpm=1), 0)] * 2))

    assert [(d.allowed, d.degraded) for d in decisions] == [(True, False), (False, False)]


@pytest.fixture
def unreachable_url() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_redis_refusing_connections_fails_open_fast(unreachable_url: str) -> None:
    async def scenario() -> None:
        client = redis_client(unreachable_url)
        limiter = RateLimiter(client)
        started = time.monotonic()
        decision = await limiter.reserve("acme", "key-a", Limits(tenant_rpm=1, key_tpm=100), 50)
        assert time.monotonic() - started < 0.5
        assert decision.allowed and decision.degraded and decision.reservation
        assert decision.headers() == {}
        assert await limiter.settle(decision.reservation, 10) == 40  # nothing to give back to
        await client.aclose()

    asyncio.run(scenario())


def test_redis_that_never_answers_costs_one_timeout_then_is_skipped() -> None:
    # Accepts connections into its backlog but never reads or replies: a hung Redis.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]

        async def scenario() -> tuple[float, float, Decision, Decision]:
            client = redis_client(f"redis://127.0.0.1:{port}/0", timeout=0.2)
            limiter = RateLimiter(client, timeout=0.2, cooldown=30)
            started = time.monotonic()
            first = await limiter.reserve("acme", "key-a", Limits(tenant_rpm=1), 0)
            first_took = time.monotonic() - started
            started = time.monotonic()
            second = await limiter.reserve("acme", "key-a", Limits(tenant_rpm=1), 0)
            second_took = time.monotonic() - started
            await client.aclose()
            return first_took, second_took, first, second

        first_took, second_took, first, second = asyncio.run(scenario())

    assert first.allowed and first.degraded and first_took < 0.5
    assert second.allowed and second.degraded and second_took < 0.05  # within the cooldown


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0ms"), (0.0195, "20ms"), (0.9999995, "1s"), (1.5, "1.5s"), (6, "6s"), (360, "6m0s")],
)
def test_reset_durations_are_written_like_openai(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text

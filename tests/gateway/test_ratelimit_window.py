"""The limiter's promise against the real local Redis: no 60-second window admits more than a
per-minute limit, a burst caps what arrives at once, Retry-After is exact, and idle keys vanish.

Tests that would otherwise wait a minute run the same script with a shorter window
(``window_seconds``); the slow test holds the real one for 70 s.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from redis.asyncio import Redis

from gateway.ratelimit import Decision, LimitName, Limits, RateLimiter, redis_client, window_keys

REDIS_URL = "redis://127.0.0.1:56379/0"
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def _run(scenario: Callable[[Redis], Awaitable[T]]) -> T:
    """Run ``scenario`` with one limiter-style client, closed afterwards."""

    async def main() -> T:
        client = redis_client(REDIS_URL, timeout=5.0)
        try:
            return await scenario(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def _most_in_any_window(times_us: list[int], window_us: int) -> int:
    """The largest number of admissions in any half-open window [t, t + w); the largest is
    always found in a window that starts at an admission."""
    ordered = sorted(times_us)
    return max(
        (bisect.bisect_left(ordered, t + window_us) - i for i, t in enumerate(ordered)),
        default=0,
    )


def _admission_times(members: set[Any]) -> list[int]:
    """Redis times of admitted entries ("<time us>-<seq>:<cost>")."""
    return [int(m.decode().split("-", 1)[0]) for m in members]


# Each of two OS processes runs this: say "ready", wait for "go", then keep four requests in
# flight against one 60-rpm key for the given seconds (pausing 20 ms after a refusal), and
# print how many were admitted.
_HAMMER = """
import asyncio, json, sys, time
from gateway.ratelimit import Limits, RateLimiter, redis_client

async def worker(limiter, limits, deadline, admitted):
    while time.monotonic() < deadline:
        decision = await limiter.reserve("acme", "key-1", limits, 0)
        assert not decision.degraded
        if decision.allowed:
            admitted.append(time.time())
        else:
            await asyncio.sleep(0.02)

async def main(url, prefix, seconds):
    client = redis_client(url, timeout=5.0)
    limiter = RateLimiter(client, prefix=prefix, timeout=5.0)
    await asyncio.gather(*(client.ping() for _ in range(4)))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    deadline, admitted = time.monotonic() + seconds, []
    limits = Limits(key_rpm=60)
    await asyncio.gather(*(worker(limiter, limits, deadline, admitted) for _ in range(4)))
    print(json.dumps(admitted))
    await client.aclose()

asyncio.run(main(*json.loads(sys.argv[1])))
"""


@pytest.mark.slow
def test_two_processes_for_70_seconds_never_exceed_60_in_any_window(prefix: str) -> None:
    log_key = window_keys(prefix, "acme", "key-1", LimitName.KEY_RPM)[0]
    client = redis.Redis.from_url(REDIS_URL)
    assert not client.exists(log_key)  # an idle start: the key has no history
    seen: set[Any] = set()
    done = threading.Event()

    def collect() -> None:
        # Every entry stays in the log for 60 s, so reading it every 2 s sees each admission
        # with the Redis time the limiter admitted it at.
        while not done.wait(2.0):
            seen.update(client.zrange(log_key, 0, -1))
        seen.update(client.zrange(log_key, 0, -1))

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _HAMMER, json.dumps([REDIS_URL, prefix, 70])],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    collector = threading.Thread(target=collect)
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        collector.start()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        admitted_by_process = []
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0
            admitted_by_process.append(json.loads(out))
    finally:
        done.set()
        if collector.is_alive():
            collector.join()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        client.close()

    times = sorted(_admission_times(seen))
    # Every admission is in the log exactly once (entries are unique across processes).
    assert len(times) == sum(len(a) for a in admitted_by_process)
    assert all(admitted_by_process)  # both processes got some: the count was shared
    assert _most_in_any_window(times, 60_000_000) == 60
    first_window = bisect.bisect_left(times, times[0] + 60_000_000)
    assert first_window >= 60
    # 70 s hold two minutes' worth at most: 60 in the first window and 60 from its end on.
    assert 60 < len(times) <= 120


def test_a_full_window_refuses_until_its_oldest_entries_leave(prefix: str) -> None:
    async def scenario(client: Redis) -> Any:
        limiter = RateLimiter(client, prefix=prefix, timeout=5.0, window_seconds=2.0)
        limits = Limits(key_rpm=5)
        first = [await limiter.reserve("acme", "k", limits, 0) for _ in range(5)]
        await asyncio.sleep(0.5)
        late = await limiter.reserve("acme", "k", limits, 0)
        return first, late

    first, late = _run(scenario)
    assert all(d.allowed for d in first)
    assert [d.remaining_requests for d in first] == [4, 3, 2, 1, 0]
    # The whole allowance was spent at once (no burst set) and nothing came back with time:
    # the sixth waits for the first entry to leave, 2 s after it, about 1.5 s from now.
    assert not late.allowed and late.refused_by is LimitName.KEY_RPM
    assert 1.4 < late.retry_after_seconds < 1.5


def test_a_refused_request_retried_after_retry_after_is_admitted(prefix: str) -> None:
    async def scenario(client: Redis) -> Any:
        limiter = RateLimiter(client, prefix=prefix, timeout=5.0, window_seconds=3.0)
        limits = Limits(tenant_rpm=10, tenant_tpm=1000)
        await limiter.reserve("acme", "k", limits, 600)
        await asyncio.sleep(1.0)
        await limiter.reserve("acme", "k", limits, 300)
        refused = await limiter.reserve("acme", "k", limits, 500)
        # Exact, not just an upper bound: a little before, it is still refused...
        await asyncio.sleep(refused.retry_after_seconds - 0.15)
        early = await limiter.reserve("acme", "k", limits, 500)
        await asyncio.sleep(0.15)
        on_time = await limiter.reserve("acme", "k", limits, 500)
        return refused, early, on_time

    refused, early, on_time = _run(scenario)
    # 600 + 300 + 500 > 1000: the 600 must leave first, 3 s after it was admitted.
    assert not refused.allowed and refused.refused_by is LimitName.TENANT_TPM
    assert 1.9 < refused.retry_after_seconds <= 2.0
    assert not early.allowed
    assert on_time.allowed and on_time.remaining_tokens == 200  # 300 + 500 in the window


def test_settle_corrects_the_entry_in_the_window_and_never_refuses(prefix: str) -> None:
    async def scenario(client: Redis) -> Any:
        limiter = RateLimiter(client, prefix=prefix, timeout=5.0, window_seconds=2.0)
        limits = Limits(tenant_tpm=1000, key_tpm=1000)
        steps: list[object] = []
        big = await limiter.reserve("acme", "k", limits, 900)
        assert big.reservation
        steps.append(await limiter.settle(big.reservation, 100))  # refund 800 in both windows
        fits = await limiter.reserve("acme", "k", limits, 850)
        steps.append(fits.remaining_tokens)
        assert fits.reservation
        steps.append(await limiter.settle(fits.reservation, 1200))  # over the limit: charged
        steps.append((await limiter.reserve("acme", "k", limits, 1)).allowed)
        late = await limiter.reserve("acme", "other", Limits(key_tpm=1000), 500)
        assert late.reservation
        await asyncio.sleep(2.1)  # every entry has left its window
        fresh = await limiter.reserve("acme", "k", limits, 1000)
        steps.append((fresh.allowed, fresh.remaining_tokens))  # the extra charge left too
        # Settling an entry that has left the window banks no credit in the next one.
        steps.append(await limiter.settle(late.reservation, 0))
        after = await limiter.reserve("acme", "other", Limits(key_tpm=1000), 1000)
        steps.append((after.allowed, after.remaining_tokens))
        return steps

    assert _run(scenario) == [800, 50, -350, False, (True, 0), 500, (True, 0)]


def test_tpm_window_holds_across_two_limits_of_one_request(prefix: str) -> None:
    async def scenario(client: Redis) -> Any:
        limiter = RateLimiter(client, prefix=prefix, timeout=5.0)
        tight = Limits(tenant_tpm=10_000, key_tpm=500)
        loose = Limits(tenant_tpm=10_000)
        refused = [await limiter.reserve("acme", "a", tight, 300) for _ in range(2)]
        other = await limiter.reserve("acme", "b", loose, 100)
        return refused, other

    (first, second), other = _run(scenario)
    assert first.allowed and not second.allowed and second.refused_by is LimitName.KEY_TPM
    # The refusal took nothing from the tenant's window: 300 + 100 of 10 000.
    assert other.remaining_tokens == 9600


def test_burst_10_on_60_rpm_admits_10_at_once_then_one_a_second(prefix: str) -> None:
    async def scenario(client: Redis) -> Any:
        limiter = RateLimiter(client, prefix=prefix, timeout=5.0)
        limits = Limits(key_rpm=60, key_rpm_burst=10)
        at_once = await asyncio.gather(
            *(limiter.reserve("acme", "k", limits, 0) for _ in range(20))
        )
        admitted_later = 0
        started = time.monotonic()
        retry_after = max(d.retry_after_seconds for d in at_once if not d.allowed)
        while time.monotonic() - started < 3.5:
            decision = await limiter.reserve("acme", "k", limits, 0)
            admitted_later += decision.allowed
            await asyncio.sleep(0.05)
        return at_once, retry_after, admitted_later

    at_once, retry_after, admitted_later = _run(scenario)
    assert not any(d.degraded for d in at_once)
    assert sum(d.allowed for d in at_once) == 10
    assert 0.9 < retry_after <= 1.0  # refills one per 60 s / 60
    assert Decision(allowed=False, retry_after_seconds=retry_after).headers()["retry-after"] == "1"
    assert admitted_later in (3, 4)  # about one a second over 3.5 s


def test_burst_is_applied_in_addition_to_the_window(prefix: str) -> None:
    # A 6 s window with 60 per window: the burst alone (10 at once, then one every 0.1 s)
    # would admit 70 in 6 s; the window still caps it at 60.
    log_key = window_keys(prefix, "acme", "k", LimitName.KEY_RPM)[0]
    seen: set[Any] = set()

    async def scenario(client: Redis) -> Any:
        limiter = RateLimiter(client, prefix=prefix, timeout=5.0, window_seconds=6.0)
        limits = Limits(key_rpm=60, key_rpm_burst=10)
        started = time.monotonic()
        while time.monotonic() - started < 9:
            await asyncio.gather(*(limiter.reserve("acme", "k", limits, 0) for _ in range(5)))
            seen.update(await client.zrange(log_key, 0, -1))
            await asyncio.sleep(0.02)

    _run(scenario)
    times = sorted(_admission_times(seen))
    assert _most_in_any_window(times, 6_000_000) == 60
    first_second = bisect.bisect_left(times, times[0] + 500_000)
    assert first_second <= 10 + 5 + 1  # the burst, then one per 0.1 s


def test_idle_keys_vanish_after_one_window(prefix: str) -> None:
    async def scenario(client: Redis) -> Any:
        limiter = RateLimiter(client, prefix=prefix, timeout=5.0, window_seconds=0.5)
        limits = Limits(tenant_rpm=5, tenant_tpm=100, key_rpm=5, tenant_rpm_burst=2)
        assert (await limiter.reserve("acme", "k", limits, 10)).allowed
        keys = [k async for k in client.scan_iter(f"{prefix}:*")]
        ttls = [await client.pttl(k) for k in keys]
        await asyncio.sleep(0.6)
        left = [k async for k in client.scan_iter(f"{prefix}:*")]
        return keys, ttls, left

    keys, ttls, left = _run(scenario)
    assert len(keys) == 6  # a log and a meta hash per limit, all with the tenant's hash tag
    assert all(b"{acme}" in k for k in keys)
    assert all(0 < ttl <= 501 for ttl in ttls)
    assert left == []


def test_60_rpm_key_never_exceeds_60_per_window_with_real_minute_headers(prefix: str) -> None:
    # The gateway's headers on a fresh 60-rpm key: the full minute is available at once.
    async def scenario(client: Redis) -> Any:
        limiter = RateLimiter(client, prefix=prefix, timeout=5.0)
        return await asyncio.gather(
            *(limiter.reserve("acme", "k", Limits(key_rpm=60), 0) for _ in range(61))
        )

    decisions = _run(scenario)
    assert not any(d.degraded for d in decisions)
    assert sum(d.allowed for d in decisions) == 60
    remaining = sorted(d.remaining_requests for d in decisions if d.allowed)
    assert remaining == list(range(60))
    (refused,) = [d for d in decisions if not d.allowed]
    assert refused.headers()["retry-after"] == "60"
    assert refused.headers()["x-ratelimit-remaining-requests"] == "0"

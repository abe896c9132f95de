"""Load generator for OpenAI-compatible chat completion endpoints (asyncio + aiohttp).

Two measurements, both against one or more *targets* (a base URL such as
``http://127.0.0.1:5001/v1``, a bearer key and a model name):

* latency: requests one at a time; with several targets they are interleaved (request i goes to
  every target before request i + 1 goes to any, in an order rotated every round), so a drift
  of the machine, and a target's leftover work after it answers, hits all alike;
* throughput: C concurrent clients send back to back for T seconds; requests/s and errors.

Each request is a small chat completion (one short user message, ``max_tokens`` cycling 1..4),
non-streaming, or streaming (``stream: true``, read to ``data: [DONE]``).

Stand-alone use (one target)::

    .venv/bin/python -m bench.gateway.load --base-url http://127.0.0.1:5001/v1 --key sk-x \
        --model chat latency --requests 500
    .venv/bin/python -m bench.gateway.load --base-url ... throughput --concurrency 32 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

PROMPT = "Say hello in one word."
MAX_TOKENS_CYCLE = (1, 2, 3, 4)


@dataclass(frozen=True)
class Target:
    """Where to send requests: an OpenAI base URL (ending in ``/v1``), a key and a model."""

    name: str
    base_url: str
    key: str
    model: str

    @property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}


def request_body(model: str, index: int, *, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS_CYCLE[index % len(MAX_TOKENS_CYCLE)],
    }
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


class RequestFailed(Exception):
    """A response that is not a complete, successful chat completion."""


async def one_request(
    session: aiohttp.ClientSession, target: Target, index: int, *, stream: bool
) -> None:
    """Send one chat completion and read the whole answer; raise RequestFailed if it failed."""
    body = request_body(target.model, index, stream=stream)
    async with session.post(target.chat_url, data=body, headers=target.headers) as response:
        if response.status != 200:
            text = (await response.read())[:200].decode(errors="replace")
            raise RequestFailed(f"HTTP {response.status}: {text}")
        if not stream:
            payload = await response.json(content_type=None)
            if not payload.get("choices"):
                raise RequestFailed(f"no choices in {str(payload)[:200]}")
            return
        done = False
        async for line in response.content:
            if line.strip() == b"data: [DONE]":
                done = True
        if not done:
            raise RequestFailed("stream ended without data: [DONE]")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (fraction in 0..1)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class LatencyResult:
    """Per-request wall times (seconds) of one target in a sequential run."""

    samples: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        ms = [s * 1000 for s in self.samples]
        if not ms:
            return {"requests": 0, "errors": dict(self.errors)}
        return {
            "requests": len(ms),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors.most_common(5)),
            "p50_ms": round(statistics.median(ms), 3),
            "p95_ms": round(percentile(ms, 0.95), 3),
            "p99_ms": round(percentile(ms, 0.99), 3),
            "mean_ms": round(statistics.fmean(ms), 3),
        }


def _session(connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, force_close=False, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=60)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


async def measure_latency(
    targets: list[Target], requests: int, *, stream: bool, warmup: int = 50
) -> dict[str, LatencyResult]:
    """Sequential requests, interleaved across targets; each target has its own keep-alive
    connection (one session each), warmed up first."""
    results = {t.name: LatencyResult() for t in targets}
    sessions = {t.name: _session(1) for t in targets}
    try:
        for target in targets:
            for index in range(warmup):
                await one_request(sessions[target.name], target, index, stream=stream)
        for index in range(requests):
            # Rotated each round: a target must not always follow the same one (LiteLLM keeps
            # working after it answers, which slowed whichever target came next).
            shift = index % len(targets)
            for target in targets[shift:] + targets[:shift]:
                started = time.perf_counter()
                try:
                    await one_request(sessions[target.name], target, index, stream=stream)
                except (RequestFailed, aiohttp.ClientError, TimeoutError) as exc:
                    results[target.name].errors[_kind(exc)] += 1
                    continue
                results[target.name].samples.append(time.perf_counter() - started)
    finally:
        for session in sessions.values():
            await session.close()
    return results


def _kind(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text[:80]}" if text else type(exc).__name__


async def measure_throughput(
    target: Target, *, concurrency: int, seconds: float, stream: bool, warmup_seconds: float = 2.0
) -> dict[str, Any]:
    """``concurrency`` clients send back to back; only requests that *start* within the measured
    window count (after a warm-up of ``warmup_seconds``), and every started one is awaited."""
    ok = 0
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    async with _session(concurrency) as session:
        loop = asyncio.get_running_loop()
        measure_from = loop.time() + warmup_seconds
        stop_at = measure_from + seconds

        async def client(worker: int) -> None:
            nonlocal ok
            index = worker
            while (now := loop.time()) < stop_at:
                counted = now >= measure_from
                started = time.perf_counter()
                try:
                    await one_request(session, target, index, stream=stream)
                except (RequestFailed, aiohttp.ClientError, TimeoutError) as exc:
                    if counted:
                        errors[_kind(exc)] += 1
                    else:
                        await asyncio.sleep(0.01)
                else:
                    if counted:
                        ok += 1
                        latencies.append(time.perf_counter() - started)
                index += concurrency

        started_wall = time.perf_counter()
        await asyncio.gather(*(client(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - started_wall - warmup_seconds
    ms = [s * 1000 for s in latencies]
    return {
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "ok": ok,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(5)),
        "requests_per_second": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(statistics.median(ms), 3) if ms else None,
        "p99_ms": round(percentile(ms, 0.99), 3) if ms else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="OpenAI base URL, e.g. http://h:p/v1")
    parser.add_argument("--key", default="none")
    parser.add_argument("--model", default="tgi")
    parser.add_argument("--stream", action="store_true")
    sub = parser.add_subparsers(dest="mode", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--requests", type=int, default=500)
    thr = sub.add_parser("throughput")
    thr.add_argument("--concurrency", type=int, default=32)
    thr.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    target = Target("target", args.base_url, args.key, args.model)
    if args.mode == "latency":
        result = asyncio.run(measure_latency([target], args.requests, stream=args.stream))
        print(json.dumps(result["target"].summary(), indent=2))
    else:
        summary = asyncio.run(
            measure_throughput(
                target, concurrency=args.concurrency, seconds=args.seconds, stream=args.stream
            )
        )
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

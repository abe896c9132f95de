"""Per-tenant and per-API-key rate limits (requests and tokens per minute), shared through Redis.

Semantics (what the Gateway page and the docs promise): a limit of N per minute means no
60-second window ever admits more than N, across every gateway process. Users, partners' SLAs and
downstream budgets read "60 requests per minute" that way. The GCRA used before (a token bucket
of N refilling at N/60 per second) let 2N - 1 through in the first minute after an idle spell.

Algorithm: a sliding-window log per limit. Each admitted request leaves an entry in a sorted set
scored by its time (Redis' ``TIME``), carrying its cost (1 request, or its tokens), next to a
running total; a request is admitted while the total of the last 60 s plus its cost stays within
the limit. Work per call is O(entries leaving the window), and Retry-After is exact: the time until
enough old entries have left. Tokens are charged in two phases: ``reserve`` adds an entry with an
estimate (prompt tokens + ``max_tokens``), ``settle`` rewrites that entry's cost to the actual
usage if it is still in the window (a refund, or an extra charge without refusing, since the work
is done). An entry leaving the window takes its cost with it, so nothing drifts.

Burst (optional, requests only): ``requests_burst`` = B caps how many requests arrive at once; after
a burst the allowance refills at N/60 per second (GCRA with a tolerance of B intervals), checked
in addition to the window. Without it the whole minute's N may arrive at once, and then none until
they leave the window. It is a separate, explicit setting because smoothing is a choice (it
protects a model server from spikes) and never part of what "N per minute" means.

All applicable limits (tenant RPM, tenant TPM, key RPM, key TPM, and the bursts) are checked and
consumed by ONE Lua script (``ratelimit.lua``), all or nothing: a request refused by one limit
consumes nothing from the others. Keys are ``{prefix}:{<tenant>}:tenant:rpm:log`` (the entries)
and ``...:rpm:meta`` (total, entry counter, burst state), ``{prefix}:{<tenant>}:key:<key>:tpm:log``
and so on; the hash tag keeps one tenant's keys in one Redis Cluster slot, which a multi-key script
requires, and every write sets a 60 s expiry so idle keys vanish. The ``key`` argument identifies an
API key (its id or public prefix), never the secret itself. Entry ids are Redis time plus a
per-limit counter, unique even for simultaneous requests from different processes.

Redis unreachable: FAIL OPEN. The limiter guards fairness and cost between tenants, not security,
and a Redis outage must not take every tenant's inference down with it; the engines bound what
runs at once (``max_concurrent_requests``), so the GPUs stay protected. Calls never hang: the
client has socket timeouts of a few hundred milliseconds and no retries (see ``redis_client``),
each call also runs under a hard ``asyncio.timeout``, and after a failure this process skips
Redis for ``cooldown`` seconds so requests do not each pay the timeout. Such decisions carry
``degraded=True`` (log it, count it, alert on it). A per-process local fallback limiter was left
out: without knowing the replica count it would enforce the wrong limit, which is the bug we are
avoiding.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

PERIOD_SECONDS = 60.0
_PERIOD_US = int(PERIOD_SECONDS * 1_000_000)

SCRIPT = (Path(__file__).with_name("ratelimit.lua")).read_text()
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()

DEFAULT_TIMEOUT_SECONDS = 0.25

_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)


def redis_client(url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Redis:
    """A client suitable for the limiter: short socket timeouts and no retries, so a dead or
    blackholed Redis costs at most ``timeout`` before the limiter fails open."""
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


class LimitName(StrEnum):
    TENANT_RPM = "tenant_rpm"
    TENANT_TPM = "tenant_tpm"
    KEY_RPM = "key_rpm"
    KEY_TPM = "key_tpm"


_REQUESTS = (LimitName.TENANT_RPM, LimitName.KEY_RPM)


@dataclass(frozen=True)
class Limits:
    """Per-minute limits for one request's tenant and API key. 0 or None means unlimited.

    A ``*_rpm_burst`` caps how many requests arrive at once (refilling at rpm/60 per second) on
    top of the window; None means none, so the whole minute may arrive at once. It applies only
    with its ``*_rpm``."""

    tenant_rpm: int | None = None
    tenant_tpm: int | None = None
    key_rpm: int | None = None
    key_tpm: int | None = None
    tenant_rpm_burst: int | None = None
    key_rpm_burst: int | None = None

    def applicable(self) -> list[tuple[LimitName, int]]:
        return [
            (name, value)
            for name, value in (
                (LimitName.TENANT_RPM, self.tenant_rpm),
                (LimitName.TENANT_TPM, self.tenant_tpm),
                (LimitName.KEY_RPM, self.key_rpm),
                (LimitName.KEY_TPM, self.key_tpm),
            )
            if value
        ]

    def burst(self, name: LimitName) -> int:
        """The burst of a limit, 0 for none."""
        if name is LimitName.TENANT_RPM:
            return self.tenant_rpm_burst or 0
        if name is LimitName.KEY_RPM:
            return self.key_rpm_burst or 0
        return 0


@dataclass(frozen=True)
class Reservation:
    """Tokens charged by an admitted ``reserve``; hand it to ``settle`` after the response.
    ``entries`` are the token entries it added, per TPM limit (their ids in the window log)."""

    tenant: str
    key: str
    tokens: int
    entries: tuple[tuple[LimitName, str], ...] = ()
    degraded: bool = False


@dataclass(frozen=True)
class Decision:
    """The outcome of ``reserve``. The ``*_requests`` / ``*_tokens`` values describe the most
    constraining applicable limit of that kind (None when that kind is unlimited)."""

    allowed: bool
    refused_by: LimitName | None = None
    retry_after_seconds: float = 0.0
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_seconds: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_seconds: float | None = None
    # The request alone needs more tokens than the limit allows per minute; retrying cannot help.
    too_large: bool = False
    # Redis was unreachable and the request was admitted without being counted (fail open).
    degraded: bool = False
    reservation: Reservation | None = None

    def headers(self) -> dict[str, str]:
        """OpenAI's rate-limit response headers, plus Retry-After (whole seconds, rounded up)
        when refused and waiting can help."""
        headers: dict[str, str] = {}
        for kind, limit, remaining, reset in (
            ("requests", self.limit_requests, self.remaining_requests, self.reset_requests_seconds),
            ("tokens", self.limit_tokens, self.remaining_tokens, self.reset_tokens_seconds),
        ):
            if limit is None or remaining is None or reset is None:
                continue
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            headers[f"x-ratelimit-reset-{kind}"] = format_duration(reset)
        if not self.allowed and not self.too_large:
            headers["retry-after"] = str(max(1, math.ceil(self.retry_after_seconds)))
        return headers


def format_duration(seconds: float) -> str:
    """Durations the way OpenAI writes them in x-ratelimit-reset-*: "20ms", "1s", "6m0s"."""
    ms = math.ceil(seconds * 1000 - 1e-6)
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def state_key(prefix: str, tenant: str, key: str, name: LimitName) -> str:
    """The base of one limit's Redis keys (``key`` is ignored for tenant limits); the limit
    lives in ``<base>:log`` and ``<base>:meta`` (see ``window_keys``)."""
    scope = "tenant" if name in (LimitName.TENANT_RPM, LimitName.TENANT_TPM) else f"key:{key}"
    unit = "rpm" if name in _REQUESTS else "tpm"
    return f"{prefix}:{{{tenant}}}:{scope}:{unit}"


def window_keys(prefix: str, tenant: str, key: str, name: LimitName) -> list[str]:
    """The sorted set of admitted entries and the hash beside it (total, counter, burst)."""
    base = state_key(prefix, tenant, key, name)
    return [f"{base}:log", f"{base}:meta"]


@dataclass(frozen=True)
class LimitState:
    """One limit as the limiter sees it now: ``used`` in the last 60 s, ``remaining`` admissible
    at once (window and burst), ``reset_seconds`` until it is back to its initial state."""

    used: int
    remaining: int
    reset_seconds: float


def _parse(result: list[Any], count: int) -> tuple[int, int, int, list[LimitState], list[str]]:
    allowed, refused_index, retry_us = (int(x) for x in result[:3])
    states, ids = [], []
    for i in range(count):
        used, remaining, reset_us, entry = result[3 + 4 * i : 7 + 4 * i]
        states.append(LimitState(int(used), int(remaining), max(0, int(reset_us)) / 1_000_000))
        ids.append(entry.decode() if isinstance(entry, bytes) else str(entry))
    return allowed, refused_index, retry_us, states, ids


def _script_args(
    mode: str, triples: list[tuple[int | str, int, int]], window_us: int = _PERIOD_US
) -> list[int | str]:
    args: list[int | str] = [mode, window_us]
    for triple in triples:
        args += triple
    return args


def read_states(
    client: SyncRedis, prefix: str, tenant: str, limits: list[tuple[str, LimitName, int, int]]
) -> list[LimitState]:
    """What each limit (API key, name, limit, burst) has used and would admit right now, read
    by the same script as the gateway (changing nothing), for the portal's Gateway page.
    Raises ``redis.RedisError`` when Redis cannot answer."""
    keys = [k for key, name, _, _ in limits for k in window_keys(prefix, tenant, key, name)]
    args = _script_args("peek", [(limit, 0, burst) for _, _, limit, burst in limits])
    try:
        result = client.evalsha(SCRIPT_SHA, len(keys), *keys, *args)
    except NoScriptError:
        result = client.eval(SCRIPT, len(keys), *keys, *args)
    return _parse(list(result), len(limits))[3]


class RateLimiter:
    """Checks and consumes RPM and TPM limits atomically in Redis, shared by every process."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "rl",
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        cooldown: float = 1.0,
        window_seconds: float = PERIOD_SECONDS,
    ) -> None:
        """``window_seconds`` is for tests that cannot wait a minute; limits are per minute."""
        self._redis = redis
        self._window_us = int(window_seconds * 1_000_000)
        self._prefix = prefix
        self._timeout = timeout
        self._cooldown = cooldown
        self._skip_redis_until = 0.0

    def _keys(self, tenant: str, key: str, names: list[LimitName]) -> list[str]:
        return [k for name in names for k in window_keys(self._prefix, tenant, key, name)]

    async def reserve(
        self, tenant: str, key: str, limits: Limits, estimated_tokens: int
    ) -> Decision:
        """Admit one request costing ``estimated_tokens`` against every applicable limit, or
        refuse it and consume nothing."""
        applicable = limits.applicable()
        tokens = max(0, estimated_tokens)
        if not applicable:
            return Decision(allowed=True, reservation=Reservation(tenant, key, tokens))
        costs = [1 if name in _REQUESTS else tokens for name, _ in applicable]
        for (name, limit), cost in zip(applicable, costs, strict=True):
            if cost > limit:
                return Decision(allowed=False, refused_by=name, too_large=True)

        keys = self._keys(tenant, key, [name for name, _ in applicable])
        args = _script_args(
            "reserve",
            [
                (limit, cost, limits.burst(name))
                for (name, limit), cost in zip(applicable, costs, strict=True)
            ],
            self._window_us,
        )
        result = await self._run(keys, args)
        if result is None:
            degraded = Reservation(tenant, key, tokens, degraded=True)
            return Decision(allowed=True, degraded=True, reservation=degraded)

        allowed, refused_index, retry_us, states, ids = _parse(result, len(applicable))
        values: dict[str, tuple[int, int, float]] = {}
        for (name, limit), state in zip(applicable, states, strict=True):
            kind = "requests" if name in _REQUESTS else "tokens"
            candidate = (limit, state.remaining, state.reset_seconds)
            current = values.get(kind)
            # The most constraining: fewest remaining, then the longest until reset.
            if current is None or (candidate[1], -candidate[2]) < (current[1], -current[2]):
                values[kind] = candidate
        req = values.get("requests", (None, None, None))
        tok = values.get("tokens", (None, None, None))
        entries = tuple(
            (name, entry)
            for (name, _), entry in zip(applicable, ids, strict=True)
            if name not in _REQUESTS
        )
        return Decision(
            allowed=bool(allowed),
            refused_by=applicable[refused_index - 1][0] if refused_index else None,
            retry_after_seconds=retry_us / 1_000_000,
            limit_requests=req[0],
            remaining_requests=req[1],
            reset_requests_seconds=req[2],
            limit_tokens=tok[0],
            remaining_tokens=tok[1],
            reset_tokens_seconds=tok[2],
            reservation=Reservation(tenant, key, tokens, entries) if allowed else None,
        )

    async def settle(self, reservation: Reservation, actual_tokens: int) -> int:
        """Correct a reservation to the tokens actually used, in every TPM window that still
        holds its entry. Returns the tokens given back (negative when the request used more than
        reserved, which is charged anyway: the work is done)."""
        actual = max(0, actual_tokens)
        refund = reservation.tokens - actual
        if refund == 0 or not reservation.entries or reservation.degraded:
            return refund
        keys = self._keys(
            reservation.tenant, reservation.key, [name for name, _ in reservation.entries]
        )
        args = _script_args(
            "adjust",
            [(entry, reservation.tokens, actual) for _, entry in reservation.entries],
            self._window_us,
        )
        await self._run(keys, args)
        return refund

    async def _run(self, keys: list[str], args: list[int | str]) -> list[Any] | None:
        """Run the script (EVALSHA, falling back to EVAL when Redis lacks it); None when Redis is
        unreachable."""
        if time.monotonic() < self._skip_redis_until:
            return None
        try:
            async with asyncio.timeout(self._timeout):
                try:
                    result = await self._redis.evalsha(SCRIPT_SHA, len(keys), *keys, *args)
                except NoScriptError:
                    result = await self._redis.eval(SCRIPT, len(keys), *keys, *args)
        except _UNREACHABLE as exc:
            self._skip_redis_until = time.monotonic() + self._cooldown
            logger.warning("rate limiter: Redis unreachable, failing open: %r", exc)
            return None
        return list(result)

"""Per-tenant and per-API-key rate limits (requests and tokens per minute), shared through Redis.

Algorithm: GCRA (the generic cell rate algorithm, i.e. a token bucket stored as one timestamp).
Each limit keeps a single value, its "theoretical arrival time" (TAT). Consuming ``n`` units moves
the TAT forward by ``n * 60s / limit``; a request is admitted while ``TAT - now`` stays within one
period, so a fresh limit of 60 RPM admits a burst of exactly 60 and then one more per second.
Chosen over a sliding window because:

* one key and O(1) work per limit, whatever the traffic (a sliding-window log stores one entry per
  request, and for tokens would need weighted entries or one per token);
* a weighted cost (tokens) and a refund (``settle`` returning unused tokens) are plain arithmetic
  on the TAT, where a sliding window would have to find and shrink an earlier entry;
* no double burst at window edges (unlike fixed windows), and Retry-After falls out exactly.

All applicable limits (tenant RPM, tenant TPM, key RPM, key TPM) are checked and consumed by ONE
Lua script (``ratelimit.lua``), all or nothing: a request refused by one limit consumes nothing
from the others. The clock is Redis' ``TIME``, so every gateway process agrees on "now". Keys are
``{prefix}:{<tenant>}:tenant:rpm`` and ``{prefix}:{<tenant>}:key:<key>:tpm`` and so on; the hash
tag keeps one tenant's keys in one Redis Cluster slot, which a multi-key script requires. The
``key`` argument identifies an API key (its id or public prefix), never the secret itself.

Tokens are charged in two phases: ``reserve`` charges an estimate before the request is forwarded
(prompt tokens + ``max_tokens``), ``settle`` corrects it to the actual usage afterwards, returning
the unused part (or charging the excess without refusing, since the work is already done).

Redis unreachable: FAIL OPEN. The limiter guards fairness and cost between tenants, not security,
and a Redis outage must not take every tenant's inference down with it; TGI bounds its own queue
(``max_concurrent_requests``), so the GPUs stay protected. Calls never hang: the client has socket
timeouts of a few hundred milliseconds and no retries (see ``redis_client``), each call also runs
under a hard ``asyncio.timeout``, and after a failure this process skips Redis for ``cooldown``
seconds so requests do not each pay the timeout. Such decisions carry ``degraded=True`` (log it,
count it, alert on it). A per-process local fallback limiter was left out: without knowing the
replica count it would enforce the wrong limit, which is the bug we are avoiding.
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

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

PERIOD_SECONDS = 60.0
_PERIOD_US = int(PERIOD_SECONDS * 1_000_000)
# Matches the Lua script's slack: float rounding must not refuse a request exactly at the limit.
_SLACK_US = 1000

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


@dataclass(frozen=True)
class Limits:
    """Per-minute limits for one request's tenant and API key. 0 or None means unlimited."""

    tenant_rpm: int | None = None
    tenant_tpm: int | None = None
    key_rpm: int | None = None
    key_tpm: int | None = None

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


@dataclass(frozen=True)
class Reservation:
    """Tokens charged by an admitted ``reserve``; hand it to ``settle`` after the response."""

    tenant: str
    key: str
    tokens: int
    tenant_tpm: int | None
    key_tpm: int | None
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


def _remaining(limit: int, tat_minus_now_us: int) -> int:
    interval = _PERIOD_US / limit
    return max(0, math.floor((_PERIOD_US - tat_minus_now_us + _SLACK_US) / interval))


def state_key(prefix: str, tenant: str, key: str, name: LimitName) -> str:
    """The Redis key holding one limit's TAT (``key`` is ignored for tenant limits)."""
    scope = "tenant" if name in (LimitName.TENANT_RPM, LimitName.TENANT_TPM) else f"key:{key}"
    unit = "rpm" if name in (LimitName.TENANT_RPM, LimitName.KEY_RPM) else "tpm"
    return f"{prefix}:{{{tenant}}}:{scope}:{unit}"


def used_units(tat_us: float | None, now_us: float, limit: int) -> int:
    """Units consumed within the last period by a limit whose TAT is ``tat_us``: the inverse
    of GCRA's bookkeeping (each unit moved the TAT by ``period / limit``)."""
    if not tat_us or tat_us <= now_us or limit <= 0:
        return 0
    return min(limit, math.ceil((tat_us - now_us) * limit / _PERIOD_US - 1e-9))


class RateLimiter:
    """Checks and consumes RPM and TPM limits atomically in Redis, shared by every process."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "rl",
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        cooldown: float = 1.0,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._timeout = timeout
        self._cooldown = cooldown
        self._skip_redis_until = 0.0

    def _state_key(self, tenant: str, key: str, name: LimitName) -> str:
        return state_key(self._prefix, tenant, key, name)

    async def reserve(
        self, tenant: str, key: str, limits: Limits, estimated_tokens: int
    ) -> Decision:
        """Admit one request costing ``estimated_tokens`` against every applicable limit, or
        refuse it and consume nothing."""
        applicable = limits.applicable()
        tokens = max(0, estimated_tokens)
        reservation = Reservation(tenant, key, tokens, limits.tenant_tpm, limits.key_tpm)
        if not applicable:
            return Decision(allowed=True, reservation=reservation)
        costs = [
            1 if name in (LimitName.TENANT_RPM, LimitName.KEY_RPM) else tokens
            for name, _ in applicable
        ]
        for (name, limit), cost in zip(applicable, costs, strict=True):
            if cost > limit:
                return Decision(allowed=False, refused_by=name, too_large=True)

        keys = [self._state_key(tenant, key, name) for name, _ in applicable]
        args: list[int | str] = ["reserve", _PERIOD_US]
        for (_, limit), cost in zip(applicable, costs, strict=True):
            args += [limit, cost]
        result = await self._run(keys, args)
        if result is None:
            degraded = Reservation(tenant, key, tokens, limits.tenant_tpm, limits.key_tpm, True)
            return Decision(allowed=True, degraded=True, reservation=degraded)

        allowed, refused_index, retry_us, *tats = (int(x) for x in result)
        values: dict[str, tuple[int, int, float]] = {}
        for (name, limit), tat in zip(applicable, tats, strict=True):
            kind = "requests" if name in (LimitName.TENANT_RPM, LimitName.KEY_RPM) else "tokens"
            candidate = (limit, _remaining(limit, tat), max(0, tat) / 1_000_000)
            current = values.get(kind)
            # The most constraining: fewest remaining, then the longest until reset.
            if current is None or (candidate[1], -candidate[2]) < (current[1], -current[2]):
                values[kind] = candidate
        req = values.get("requests", (None, None, None))
        tok = values.get("tokens", (None, None, None))
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
            reservation=reservation if allowed else None,
        )

    async def settle(self, reservation: Reservation, actual_tokens: int) -> int:
        """Correct a reservation to the tokens actually used. Returns the tokens given back to the
        TPM limits (negative when the request used more than reserved, which is charged anyway)."""
        refund = reservation.tokens - max(0, actual_tokens)
        names = [
            (name, limit)
            for name, limit in (
                (LimitName.TENANT_TPM, reservation.tenant_tpm),
                (LimitName.KEY_TPM, reservation.key_tpm),
            )
            if limit
        ]
        if refund == 0 or not names or reservation.degraded:
            return refund
        keys = [self._state_key(reservation.tenant, reservation.key, name) for name, _ in names]
        args: list[int | str] = ["adjust", _PERIOD_US]
        for _, limit in names:
            args += [limit, -refund]
        await self._run(keys, args)
        return refund

    async def _run(self, keys: list[str], args: list[int | str]) -> list[int] | None:
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

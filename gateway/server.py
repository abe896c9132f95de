"""Wiring: the gateway application with its config follower, EndpointSlice watch, Redis limiter
and upstream HTTP session (``python -m gateway`` serves it with uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from django.conf import settings
from django.db import close_old_connections
from redis.asyncio import Redis

from gateway import metering
from gateway.app import Gateway
from gateway.endpoints import EndpointWatcher, Upstreams
from gateway.ratelimit import RateLimiter, redis_client
from gateway.snapshot import Snapshot, load_snapshot
from tenants import gateway_sync

logger = logging.getLogger(__name__)

VERSION_POLL_SECONDS = 0.2
"""How often the config version in Redis is read; bounds how long a revoked key still works."""
FULL_RELOAD_SECONDS = 5.0
"""Reload regardless of the version, so a missed bump (Redis was down) heals quickly."""
UPSTREAM_CONNECT_TIMEOUT_SECONDS = 2.0
UPSTREAM_READ_TIMEOUT_SECONDS = 600.0  # a long generation may pause between tokens


def _load_snapshot() -> Snapshot:
    # Worker threads keep no connection between reloads (a restarted database must not leave
    # a dead one behind).
    close_old_connections()
    try:
        return load_snapshot()
    finally:
        close_old_connections()


class ConfigFollower:
    """Reloads the snapshot when the portal bumps the config version, and periodically."""

    def __init__(self, gateway: Gateway, redis: Redis) -> None:
        self._gateway = gateway
        self._redis = redis
        self._version: bytes | None = None
        self._task: asyncio.Task[None] | None = None

    async def reload(self) -> None:
        snapshot = await asyncio.to_thread(_load_snapshot)
        metering.prime(snapshot)
        self._gateway.snapshot = snapshot
        self._gateway.snapshot_loaded = True

    async def start(self) -> None:
        self._version = await self._read_version()
        await self.reload()
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _read_version(self) -> bytes | None:
        try:
            async with asyncio.timeout(0.5):
                value = await self._redis.get(gateway_sync.CONFIG_VERSION_KEY)
                return value if isinstance(value, bytes) or value is None else value.encode()
        except Exception:  # Redis away: the periodic reload covers it
            return self._version

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        last_reload = loop.time()
        while True:
            await asyncio.sleep(VERSION_POLL_SECONDS)
            version = await self._read_version()
            due = loop.time() - last_reload >= FULL_RELOAD_SECONDS
            if version != self._version or due:
                try:
                    await self.reload()
                except Exception:
                    logger.exception("gateway config reload failed; keeping the last one")
                    continue
                self._version = version
                last_reload = loop.time()


def build_app() -> Gateway:
    redis = redis_client(settings.REDIS_URL)
    upstreams = Upstreams()
    state: dict[str, object] = {}

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, enable_cleanup_closed=True)
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=UPSTREAM_CONNECT_TIMEOUT_SECONDS,
            sock_read=UPSTREAM_READ_TIMEOUT_SECONDS,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )

    async def startup(gateway: Gateway) -> None:
        follower = ConfigFollower(gateway, redis)
        await follower.start()
        watcher = EndpointWatcher(upstreams, asyncio.get_running_loop())
        watcher.start()
        state.update(follower=follower, watcher=watcher)

    async def shutdown(gateway: Gateway) -> None:
        follower = state.get("follower")
        if isinstance(follower, ConfigFollower):
            await follower.stop()
        watcher = state.get("watcher")
        if isinstance(watcher, EndpointWatcher):
            watcher.stop()
        await redis.aclose()

    return Gateway(
        limiter=RateLimiter(redis, prefix=settings.GATEWAY_RATELIMIT_PREFIX),
        upstreams=upstreams,
        session_factory=session,
        on_startup=startup,
        on_shutdown=shutdown,
    )

"""How the portal tells running gateways that keys, limits or deployments changed.

The gateway keeps everything it needs per request (keys, limits, deployments) in memory and
reloads it from PostgreSQL when a version number in Redis moves; it polls that number a few
times a second, so a revoked key stops working well within a second without a database round
trip per request. The portal bumps the version after each committing change. If Redis is
unreachable the bump is lost, and the gateway's periodic full reload (every few seconds)
catches up instead.

This is the publishing side, kept low (tenants, deployments and the admin all publish; none may
import the gateway); the gateway's config follower (``gateway/server.py``) reads the same key.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import redis
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

CONFIG_VERSION_KEY = "gateway:config-version"
_TIMEOUT_SECONDS = 0.25


@lru_cache(maxsize=1)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=_TIMEOUT_SECONDS, socket_connect_timeout=_TIMEOUT_SECONDS
    )


def _bump() -> None:
    try:
        _client(settings.REDIS_URL).incr(CONFIG_VERSION_KEY)
    except redis.RedisError as exc:
        logger.warning("gateway config version not bumped (gateways catch up on reload): %r", exc)


def config_changed() -> None:
    """Call inside the transaction that changed gateway-visible state; the bump happens after
    it commits (immediately when there is no transaction)."""
    transaction.on_commit(_bump)

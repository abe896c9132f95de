"""Redis (the Celery broker and the gateway's rate-limit store) SIGKILLed and restarted empty
during a rollout and under gateway traffic."""

from __future__ import annotations

import time
from typing import Any

import pytest

from deployments import services
from deployments.choices import RolloutState as S
from tenants import services as tenant_services
from tenants.audit import Actor
from tests.faults.conftest import (
    Fleet,
    PrivateRedis,
    assert_events_consistent,
    assert_nothing_left,
    celery_broker,
    chat,
    restart_worker,
    second_rollout_in_progress,
)
from tests.gateway.conftest import Gateways

pytestmark = [pytest.mark.cluster, pytest.mark.worker, pytest.mark.slow]

OUTAGE_SECONDS = 4


def test_redis_killed_mid_rollout_under_traffic(
    fleet: Fleet, private_redis: PrivateRedis, gateways: Gateways, settings: Any
) -> None:
    """Expected: the gateway keeps serving without limits while Redis is gone (fail open) and
    limits again once it is back; the rollout, whose messages died with Redis, is re-driven by
    the reconciler and completes; nothing is duplicated or left behind."""
    settings.REDIS_URL = private_redis.url  # the gateways and the config-version bumps
    with celery_broker(private_redis.url):
        restart_worker(fleet, REDIS_URL=private_redis.url)
        promotion = services.Promotion(scale_down_delay_seconds=1)
        deployment, first = fleet.deploy(promotion=promotion)
        fleet.wait_state(first, S.COMPLETED, timeout=180)
        owner = Actor(fleet.world.users["owner_a"], "api")
        key = tenant_services.create_gateway_key(
            owner, fleet.tenant, name="limited", requests_per_minute=3
        ).plaintext
        gateway = gateways.start()
        assert [chat(gateway.url, key).status_code for _ in range(4)] == [200, 200, 200, 429]

        rollout = second_rollout_in_progress(fleet, deployment, promotion)
        private_redis.kill()
        killed_at = time.monotonic()
        during = [chat(gateway.url, key) for _ in range(6)]
        assert [r.status_code for r in during] == [200] * 6, [r.text for r in during]
        # Degraded decisions carry no rate-limit headers: nothing was counted.
        assert all("x-ratelimit-remaining-requests" not in r.headers for r in during)
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - killed_at)))
        private_redis.start()  # same port, empty: queued and unacked messages are lost

        rollout = fleet.wait_state(rollout, S.COMPLETED, timeout=180)
        assert_events_consistent(rollout)
        deployment.refresh_from_db()
        assert deployment.active_revision_id == rollout.revision_id
        assert deployment.active_colour == rollout.colour

        # Limits hold again: the restarted Redis starts from an empty bucket of 3.
        started = time.monotonic()
        limited: list[int] = []
        for _ in range(40):
            response = chat(gateway.url, key)
            if response.status_code == 429:
                break
            assert response.status_code == 200, response.text
            if "x-ratelimit-remaining-requests" in response.headers:
                limited.append(int(response.headers["x-ratelimit-remaining-requests"]))
            time.sleep(0.1)
        else:
            pytest.fail("the gateway never limited again after Redis came back")
        assert time.monotonic() - started < 15  # well inside one refill (20 s at 3 RPM)
        assert limited == [2, 1, 0], limited

        fleet.delete(deployment)
    assert_nothing_left(fleet)

"""The Celery broker transport: kombu's Redis transport, surviving a Redis that goes away.

Celery 5.7.0's consumer, on losing the broker, ``collect()``s the connection (which detaches
the transport and its channels from it), closes it, and reconnects. Two things then still use
a detached channel: closing it restores the unacknowledged messages, and a task that was
running meanwhile acknowledges its message (``acks_late``) on it. Both reach
``Channel._connparams`` with no connection and raise ``AttributeError``, which Celery takes for
an unrecoverable error: the worker exits. So a Redis restart killed every worker that held a
message (found by ``tests/faults/test_redis.py``).

Here a detached channel raises a connection error instead, which Celery and kombu already
handle: the restore is skipped and the late ack is logged as failed. Nothing is lost: such
messages stay in Redis' unacked hash (if Redis kept them) and are re-delivered after the
visibility timeout; tasks are idempotent, and rollouts are re-driven from PostgreSQL by the
reconciler anyway.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise RedisConnectionError("the broker connection of this channel was closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]  # not in stubs


class Transport(redis.Transport):
    Channel = Channel

"""The broker transport's fix for a Redis that went away (portal/broker.py), without a worker."""

from __future__ import annotations

import pytest

from portal.broker import Channel, Transport


def test_a_channel_whose_connection_was_collected_raises_a_connection_error() -> None:
    """Celery and kombu handle connection errors (skip the restore, log the failed ack); the
    AttributeError kombu raised instead made the worker exit."""
    channel = Channel.__new__(Channel)  # the state a collected connection leaves behind
    channel.connection = None  # type: ignore[assignment]
    with pytest.raises(Transport.connection_errors, match="connection of this channel was closed"):
        channel._connparams()


def test_the_portal_uses_this_transport() -> None:
    from portal.celery import app

    with app.connection_for_write() as connection:
        assert connection.transport_cls == "portal.broker:Transport"
        assert isinstance(connection.transport, Transport)

"""The server's Redis listener outlives subscriptions made while it reconnects.

Found by the chaos run (`python -m chaos`): after Redis came back, a socket's
SUBSCRIBE (or a last socket's UNSUBSCRIBE) reconnected the pub/sub connection
while the listener was reconnecting and reading it too. Both read the same
stream: redis-py raised RuntimeError ("readuntil() called while another
coroutine is already waiting for incoming data") or handed one of them the
other's reply, and the listener task ended for good. That process sent no
live value again, and every new socket waited 10 s for a subscription that
was never confirmed, then closed with 1013.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from common.events import Revocation, channels_for, encode_revocation
from common.redisconn import connect_redis
from server.live.hub import Hub
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(90)


async def test_sockets_joining_while_the_subscription_reconnects_leave_the_listener_alive(settings):
    client = connect_redis(settings.redis_url, max_connections=32, health_check_interval=30)
    channels = channels_for(settings.redis_url)
    hub = Hub(client, channels)
    heard: list[Revocation] = []
    hub.on_control(heard.append)
    listener = asyncio.create_task(hub.run())
    failures: list[BaseException] = []

    async def hears(announcement: Revocation) -> bool:
        await client.publish(channels.control, encode_revocation(announcement))
        return announcement in heard

    try:
        await eventually(lambda: hears(Revocation("logout", user_id=6)), 10, "the listener has joined")
        for i in range(60):
            # What a Redis restart does to the subscription, then a socket
            # arriving for a dashboard this process does not watch yet.
            await hub._pubsub.connection.disconnect()
            await asyncio.sleep(0.05 * (i % 5) / 5)  # not a wait: meets the reconnect at varied points
            try:
                await hub._join(f"{channels.prefix}dashboard:{i}:values")
            except Exception as exc:
                failures.append(exc)
            assert not listener.done(), f"the listener ended after {i} rounds: {listener.exception()!r}"
        assert failures == []
        await eventually(lambda: hears(Revocation("logout", user_id=7)), 5, "the listener still hears Redis")
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await hub.close()
        await client.aclose()

"""Fan-out: routing by subscription, the channel lifecycle, slow clients."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from common import db
from common.events import Channels, Revocation, channels_for, encode_revocation, encode_values
from server.app import create_app
from server.keys import HUB_KEY
from server.live.frames import text_frame
from tests.helpers import log_in
from tests.servers import servers
from tests.wsclient import expect_only_barrier, publish_many, read_connect_sequence, receive


def test_text_frame_encodes_every_length_form():
    assert text_frame("hi") == b"\x81\x02hi"
    medium = text_frame("x" * 300)
    assert medium[:4] == b"\x81\x7e\x01\x2c" and len(medium) == 304
    large = text_frame("y" * 70_000)
    assert large[:2] == b"\x81\x7f" and int.from_bytes(large[2:10], "big") == 70_000


async def test_updates_reach_only_the_connections_subscribed_to_that_metric(
    client, new_client, pool, make_user, make_dashboard, make_metric
):
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    cpu, mem = await make_metric(ops, "cpu"), await make_metric(ops, "mem")
    await log_in(client, "alice")
    second = await new_client()
    await log_in(second, "alice")
    only_cpu = await client.ws_connect(f"/ws/dashboard/{ops.id}/")
    everything = await second.ws_connect(f"/ws/dashboard/{ops.id}/")
    for ws in (only_cpu, everything):
        await read_connect_sequence(ws, 2)
    await only_cpu.send_json({"action": "unsubscribe", "payload": {"metric_ids": [mem.id]}})
    assert await receive(only_cpu) == {"action": "complete"}

    await publish_many(pool, mem, 1)
    await publish_many(pool, cpu, 1)
    assert [(await receive(everything))["payload"]["metric_id"] for _ in range(2)] == [mem.id, cpu.id]
    assert (await receive(only_cpu))["payload"]["metric_id"] == cpu.id
    await expect_only_barrier(pool, cpu, only_cpu)


async def test_channel_is_left_after_the_last_local_connection(
    client, app, make_user, make_dashboard, make_metric
):
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    await make_metric(ops, "cpu")
    await log_in(client, "alice")
    channel = servers().channels.dashboard(ops.id)

    async def subscribers() -> int:
        async with Redis.from_url(servers().redis_url) as redis_client:
            return dict(await redis_client.pubsub_numsub(channel))[channel.encode()]

    ws = await client.ws_connect(f"/ws/dashboard/{ops.id}/")
    await read_connect_sequence(ws, 1)
    assert await subscribers() == 1
    assert app[HUB_KEY].connection_count() == 1
    await ws.close()
    for _ in range(50):
        if await subscribers() == 0:
            break
        await asyncio.sleep(0.05)
    assert await subscribers() == 0
    assert app[HUB_KEY].connection_count() == 0


async def _open_raw_socket(port: int, path: str, cookie: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(raw, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nCookie: dashboard_session={cookie}\r\n\r\n"
    )
    await loop.sock_sendall(raw, request.encode())
    response = await loop.sock_recv(raw, 1024)
    assert response.startswith(b"HTTP/1.1 101"), response
    return raw


@pytest.mark.timeout(60)
async def test_a_client_that_stops_reading_is_closed_and_others_keep_up(
    aiohttp_client, settings, pool, make_user, make_dashboard, make_metric
):
    app = create_app(replace(settings, client_buffer_bytes=64 * 1024))
    client = await aiohttp_client(app)
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    # The longest name makes each update frame about 330 bytes.
    metric = await make_metric(ops, "m" * 200)
    await log_in(client, "alice")
    reader = await client.ws_connect(f"/ws/dashboard/{ops.id}/")
    await read_connect_sequence(reader, 1)
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["dashboard_session"].value
    stalled = await _open_raw_socket(client.port, f"/ws/dashboard/{ops.id}/", cookie)
    hub = app[HUB_KEY]
    for _ in range(100):
        if hub.connection_count() == 2:
            break
        await asyncio.sleep(0.05)
    assert hub.connection_count() == 2

    # ~13 MB for the stalled client, far beyond every buffer on the way, sent
    # in bursts the reading client keeps up with.
    batch, total = 100, 40_000
    for first in range(0, total, batch):
        await publish_many(pool, metric, batch, first)
        for expected in range(first, first + batch):
            message = await receive(reader, within=20)
            assert message["action"] == "metric_update"
            assert message["payload"]["value"] == float(expected)  # in order, none lost
    for _ in range(100):
        if hub.connection_count() == 1:
            break
        await asyncio.sleep(0.05)
    assert hub.connection_count() == 1  # the stalled one was closed
    stalled.close()
    # ...and /metrics says so: one slow-client close, its waiting frames dropped.
    scraped = await (await client.get("/metrics")).text()
    assert "dashboard_slow_client_closes_total 1.0" in scraped
    dropped = re.search(r"^dashboard_messages_dropped_total (\S+)$", scraped, re.M)
    assert dropped and float(dropped[1]) > 0


def test_channel_names_follow_the_redis_database_or_the_given_prefix():
    assert (
        channels_for("redis://cache:6379/0").dashboard(7) == "dashboard:7:values"
    )  # earlier releases' names
    assert channels_for("redis://cache:6379").control == "dashboard:control"
    assert channels_for("redis://cache:6379/3").dashboard(7) == "db3:dashboard:7:values"
    assert channels_for("unix:///run/redis.sock?db=2").control == "db2:dashboard:control"
    assert channels_for("redis+sentinel://s1:26379/main/4").dashboard(1) == "db4:dashboard:1:values"
    assert channels_for("redis+cluster://n1:6379", "staging:").dashboard(1) == "staging:dashboard:1:values"
    assert channels_for("redis://cache:6379/3", "").dashboard(1) == "dashboard:1:values"


async def test_another_deployment_on_the_same_redis_is_never_heard(
    client, pool, make_user, make_dashboard, make_metric
):
    """Pub/sub ignores database numbers: only the channel prefix keeps two deployments
    (say staging on /1 and production on /0) from showing each other's dashboard 1."""
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    cpu = await make_metric(ops, "cpu")
    await log_in(client, "alice")
    ws = await client.ws_connect(f"/ws/dashboard/{ops.id}/")
    await read_connect_sequence(ws, 1)
    foreign = Channels("other-deployment:") if servers().channels.prefix == "" else Channels("")
    stranger = db.MetricValue(99_999_999, cpu.id, 666.0, datetime.now(UTC))
    async with Redis.from_url(servers().redis_url) as redis_client:
        await redis_client.publish(foreign.dashboard(ops.id), encode_values(ops.id, [(cpu, stranger)]))
        revocation = Revocation("dashboard_deleted", dashboard_id=ops.id)
        await redis_client.publish(foreign.control, encode_revocation(revocation))
    await expect_only_barrier(pool, cpu, ws)
    assert not ws.closed
    await publish_many(pool, cpu, 1)  # this deployment's own values still arrive
    assert (await receive(ws))["payload"]["metric_id"] == cpu.id

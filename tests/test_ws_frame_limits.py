"""Frames outside the limits, sent from raw TCP clients to the real app: ping
floods, endless fragments, a client that never reads, and a refused socket
that keeps talking. Each must leave the server's memory for the offender
bounded, end its socket with the documented code, and leave others served."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from server.app import create_app
from server.keys import SOCKETS_KEY
from server.live import connection
from server.live.closecodes import CloseCode
from server.live.history import MAX_RAW
from server.live.transport import WebSocket
from tests.helpers import log_in, store_last_seconds
from tests.wsclient import RawClient, client_frame, publish_many

PING, PONG, CLOSE = 0x9, 0xA, 0x8


def server_side(app, raw: RawClient) -> WebSocket:
    """The app's socket for `raw`'s connection."""
    ours = raw.writer.get_extra_info("sockname")
    for candidate in app[SOCKETS_KEY]:
        if candidate.transport is not None and candidate.transport.get_extra_info("peername") == ours:
            return candidate
    raise AssertionError("no server socket for this client")


async def close_code_after(raw: RawClient, within: float = 5.0) -> tuple[int, list[int]]:
    """Read to the close frame: its code, and the opcodes of the frames before it."""
    seen = []
    while True:
        opcode, payload = await raw.frame(within)
        if opcode == CLOSE:
            return int.from_bytes(payload[:2], "big"), seen
        seen.append(opcode)


async def gone(raw: RawClient, within: float) -> bool:
    """The server ended the TCP connection (EOF, or a reset) within `within` seconds."""
    try:
        return await raw.hung_up(within)
    except ConnectionResetError:
        return True


async def answered(raw: RawClient) -> bool:
    raw.send_text('{"action":"ping"}')
    return await raw.until("complete") == [{"action": "pong"}, {"action": "complete"}]


async def test_pings_never_read_do_not_grow_the_send_buffer_and_the_client_is_cut_off(
    aiohttp_client, settings, make_user, make_dashboard, make_metric, pool
):
    # No rate limit to hide behind: only the send buffer bounds what the pongs may take.
    limits = replace(settings, message_rate=1e9, message_burst=10**9, client_buffer_bytes=64 * 1024)
    app = create_app(limits)
    client = await aiohttp_client(app)
    alice = await make_user("alice")
    dashboard = await make_dashboard("ops", members=(alice,))
    cpu = await make_metric(dashboard, "cpu")
    await log_in(client, "alice")
    path = f"/ws/dashboard/{dashboard.id}/"
    bystander, _ = await RawClient.connect(client, path)
    await bystander.until("alerts")
    flooder, _ = await RawClient.connect(client, path, receive_buffer=4096)
    await flooder.until("alerts")
    flooded = server_side(app, flooder)
    # A client on a slow link: little of what is sent to it fits on the way.
    assert flooded.transport is not None
    flooded.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while flooded.transport is not None:
            peak = max(peak, flooded.transport.get_write_buffer_size())
            await asyncio.sleep(0.002)

    async def flood() -> bool:
        """Send 100,000 pings, each asking for a 127-byte pong; True if the server stopped reading."""
        chunk = client_frame(PING, b"p" * 125) * 1000
        for _ in range(100):
            flooder.send(chunk)
            try:
                await asyncio.wait_for(flooder.writer.drain(), 2)
            except TimeoutError:
                return True
        return False

    async def values_seen() -> set[int]:
        seen: set[int] = set()
        while len(seen) < 3000:
            message = await bystander.message()
            if message["action"] == "metric_update":
                seen.add(int(message["payload"]["value"]))
        return seen

    watching = asyncio.create_task(watch())
    flooding = asyncio.create_task(flood())
    reading = asyncio.create_task(values_seen())
    await publish_many(pool, cpu, 3000)
    assert await asyncio.wait_for(reading, 20) == set(range(3000))
    # Before: every ping's pong was queued, megabytes for a client that never reads.
    assert await flooding, "the server kept reading a client that does not read"
    assert peak < 512 * 1024
    # The values it did not read pile up beyond its buffer: closed as a slow consumer.
    code, _ = await close_code_after(flooder)
    assert code == CloseCode.SLOW_CONSUMER
    watching.cancel()
    assert await answered(bystander)
    for raw in (flooder, bystander):
        raw.writer.close()


async def test_a_burst_of_pings_counts_against_the_message_rate_limit(app, socket_of):
    bystander = await socket_of()
    raw = await socket_of()
    raw.send(client_frame(PING, b"") * 100_000)
    # Before: 100,000 pongs, and the limit never applied to pings.
    code, before = await close_code_after(raw)
    assert code == CloseCode.RATE_LIMITED
    assert before.count(PONG) <= 1  # one read's pings get one pong (RFC 6455 §5.5.3)
    assert await gone(raw, within=2)
    assert await answered(bystander)


async def test_empty_continuation_frames_end_at_the_fragment_cap(socket_of):
    bystander = await socket_of()
    raw = await socket_of()
    fragments = client_frame(0x1, b"{", fin=False) + client_frame(0x0, b"", fin=False) * 100_000
    raw.send(fragments)
    # Before: each one grew the server's list of fragments, and no close came.
    opcode, payload = await raw.frame()
    assert (opcode, int.from_bytes(payload[:2], "big")) == (CLOSE, CloseCode.MESSAGE_TOO_BIG)
    assert payload[2:] == b"message in more than 128 fragments"
    assert await gone(raw, within=2)
    assert await answered(bystander)


@pytest.mark.parametrize("keeps_talking", [False, True], ids=["answering", "pumping"])
async def test_a_refused_socket_is_not_parsed_and_hung_up_on_at_once(app, new_client, setup, keeps_talking):
    anonymous = await new_client()
    raw, _ = await RawClient.connect(anonymous, f"/ws/dashboard/{setup['ops'].id}/")
    assert (await raw.message())["payload"]["status_code"] == 401
    opcode, payload = await raw.frame()
    assert (opcode, int.from_bytes(payload[:2], "big")) == (CLOSE, CloseCode.UNAUTHENTICATED)
    started = time.monotonic()
    if keeps_talking:
        # Frames the server would parse if it still read them, a megabyte of them.
        # Before: parsed, and the socket held open for 5 s waiting for a close frame.
        raw.send(client_frame(PING, b"x" * 125) * 8000)
    else:
        raw.send(client_frame(CLOSE, CloseCode.UNAUTHENTICATED.to_bytes(2, "big")))
    assert await gone(raw, within=2)
    assert time.monotonic() - started < 1
    for _ in range(50):  # the server's side is gone too, without the client closing
        if not app[SOCKETS_KEY]:
            break
        await asyncio.sleep(0.02)
    assert not app[SOCKETS_KEY]
    raw.writer.close()


@pytest.fixture
async def socket_of(client, setup):
    """Opens raw sockets on the set-up dashboard as alice, past the opening sequence."""
    await log_in(client, "alice")
    opened: list[RawClient] = []

    async def open_one() -> RawClient:
        raw, _ = await RawClient.connect(client, f"/ws/dashboard/{setup['ops'].id}/")
        opened.append(raw)
        await raw.until("alerts")
        return raw

    yield open_one
    for raw in opened:
        raw.writer.close()


async def test_a_history_read_slowly_arrives_whole_and_one_never_read_is_cut_off(
    aiohttp_client, settings, make_user, make_dashboard, make_metric, pool, monkeypatch
):
    """A history several times the send buffer is written as its client reads it
    (not refused as a slow consumer's backlog); a client that stops reading is
    closed as a slow consumer once its buffer stops shrinking, and others are served."""
    monkeypatch.setattr(connection, "STALL_SECONDS", 1.0)
    limits = replace(settings, client_buffer_bytes=256 * 1024)
    app = create_app(limits)
    client = await aiohttp_client(app)
    alice = await make_user("alice")
    dashboard = await make_dashboard("ops", members=(alice,))
    metrics = [await make_metric(dashboard, f"m{n}") for n in range(10)]
    now = await store_last_seconds(pool, metrics, MAX_RAW)
    await log_in(client, "alice")
    path = f"/ws/dashboard/{dashboard.id}/?subscribe=none"
    ask = json.dumps(
        {
            "action": "history",
            "payload": {
                "metric_ids": [m.id for m in metrics],
                "from": (now - timedelta(hours=1)).isoformat(),
            },
        }
    )
    bystander, _ = await RawClient.connect(client, path)
    await bystander.until("alerts")

    # A slow reader: a small window, read a little at a time.
    slow, _ = await RawClient.connect(client, path, receive_buffer=4096)
    await slow.until("alerts")
    slow.send_text(ask)
    histories = []
    while len(histories) < len(metrics):
        message = await slow.message()
        if message["action"] == "metric_history":
            histories.append(message["payload"])
        await asyncio.sleep(0.001)
    assert [len(h["values"]) for h in histories] == [MAX_RAW] * len(metrics)
    assert sum(len(json.dumps(h)) for h in histories) > 2 * limits.client_buffer_bytes
    assert await slow.until("complete") == [{"action": "complete"}]

    # One that never reads: cut off, and only it.
    stuck, _ = await RawClient.connect(client, path, receive_buffer=4096)
    await stuck.until("alerts")
    stuck_side = server_side(app, stuck)
    assert stuck_side.transport is not None
    stuck_side.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    stuck.send_text(ask)
    await asyncio.sleep(3)  # more than STALL_SECONDS of not reading
    assert await answered(bystander)
    code, _ = await close_code_after(stuck, within=10)
    assert code == CloseCode.SLOW_CONSUMER
    for raw in (slow, stuck, bystander):
        raw.writer.close()


async def test_a_history_read_slowly_is_not_taken_for_a_dead_peer(
    aiohttp_client, settings, make_user, make_dashboard, make_metric, pool
):
    """While an answer waits for its client, the server reads nothing from it
    (its send buffer is full), so the client's pongs wait unread: the client's
    reading is its sign of life, or the heartbeat would cut every answer that
    takes longer than two beats to read (a large history on a slow link)."""
    # Beats of 1 s; an answer of 30 frames of ~70 KB over a link that takes one
    # frame per 0.1 s: 3 s and more. Like a browser, the client answers a ping as
    # soon as it reads it, and reads through a small window.
    app = create_app(replace(settings, heartbeat_seconds=1.0))
    client = await aiohttp_client(app)
    alice = await make_user("alice")
    dashboard = await make_dashboard("ops", members=(alice,))
    metrics = [await make_metric(dashboard, f"m{n}") for n in range(30)]
    now = await store_last_seconds(pool, metrics, MAX_RAW)
    await log_in(client, "alice")
    raw, _ = await RawClient.connect(
        client, f"/ws/dashboard/{dashboard.id}/?subscribe=none", receive_buffer=4096
    )
    await raw.until("alerts")
    server_side(app, raw).transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
    )
    started = time.monotonic()
    ask = {"metric_ids": [m.id for m in metrics], "from": (now - timedelta(hours=1)).isoformat()}
    raw.send_text(json.dumps({"action": "history", "payload": ask}))
    actions = []
    while not actions or actions[-1] != "complete":
        opcode, payload = await raw.frame(within=10)
        if opcode == PING:
            raw.send(client_frame(PONG, payload))
            continue
        assert opcode != CLOSE, payload
        actions.append(json.loads(payload)["action"])
        await asyncio.sleep(0.1)  # the slow link
    assert actions == ["metric_history"] * len(metrics) + ["complete"]
    assert time.monotonic() - started > 2.5  # it took several beats
    assert await answered(raw)
    raw.writer.close()

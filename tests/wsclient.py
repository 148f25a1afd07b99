"""Small helpers for talking the dashboard protocol in tests."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from datetime import UTC, datetime
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from common import db
from common.events import encode_values
from common.schemas import SERVER_PAYLOAD_SCHEMAS
from tests.servers import servers


async def receive(ws: ClientWebSocketResponse, within: float = 5.0) -> dict[str, Any]:
    """The next JSON message; fails the test on close or silence."""
    message = await asyncio.wait_for(ws.receive(), within)
    assert message.type == WSMsgType.TEXT, f"expected a text frame, got {message.type} {message.data!r}"
    return json.loads(message.data)


async def receive_until(
    ws: ClientWebSocketResponse, action: str, within: float = 5.0
) -> list[dict[str, Any]]:
    """Messages up to and including the first with `action`."""
    seen = []
    while True:
        message = await receive(ws, within)
        seen.append(message)
        if message["action"] == action:
            return seen


async def read_connect_sequence(ws: ClientWebSocketResponse, metric_count: int) -> list[dict[str, Any]]:
    """authentication, dashboard_config, one metric_history per metric, then alerts."""
    return [await receive(ws) for _ in range(3 + metric_count)]


async def open_socket(client: TestClient, dashboard: db.Dashboard, metric_count: int):
    ws = await client.ws_connect(f"/ws/dashboard/{dashboard.id}/")
    await read_connect_sequence(ws, metric_count)
    return ws


async def next_config(ws) -> dict:
    """The next pushed config, and the `alerts` that always follows it."""
    messages = await receive_until(ws, "dashboard_config", within=3)
    config = messages[-1]["payload"]
    assert not SERVER_PAYLOAD_SCHEMAS["dashboard_config"].validate(config)
    alerts = await receive(ws)
    assert alerts["action"] == "alerts" and not SERVER_PAYLOAD_SCHEMAS["alerts"].validate(alerts["payload"])
    return config


async def connect(client, dashboard_id: int, **kwargs):
    return await client.ws_connect(f"/ws/dashboard/{dashboard_id}/", **kwargs)


async def publish(pool, metric, value: float, when: datetime | None = None) -> db.MetricValue:
    """Store a value and publish it the way the worker does (after the commit)."""
    (stored,) = await db.insert_values(pool, [(metric.id, value, when or datetime.now(UTC))])
    client = Redis.from_url(servers().redis_url)
    try:
        await client.publish(
            servers().channels.dashboard(metric.dashboard_id),
            encode_values(metric.dashboard_id, [(metric, stored)]),
        )
    finally:
        await client.aclose()
    return stored


async def publish_many(pool, metric, count: int, first: int = 0) -> None:
    """Store and publish values first..first+count-1 of one metric, in batches like the worker."""
    now = datetime.now(UTC)
    async with Redis.from_url(servers().redis_url) as client:
        for start in range(first, first + count, 1000):
            rows = [(metric.id, float(i), now) for i in range(start, min(first + count, start + 1000))]
            stored = await db.insert_values(pool, rows)
            message = encode_values(metric.dashboard_id, [(metric, item) for item in stored])
            await client.publish(servers().channels.dashboard(metric.dashboard_id), message)


async def connect_bare(client, dashboard_id: int):
    """A socket opened with `?subscribe=none`, past authentication, config and alerts."""
    ws = await client.ws_connect(f"/ws/dashboard/{dashboard_id}/?subscribe=none")
    assert [(await receive(ws))["action"] for _ in range(3)] == [
        "authentication",
        "dashboard_config",
        "alerts",
    ]
    return ws


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    """A frame as a client sends it: masked with a random key."""
    first = (0x80 if fin else 0) | rsv | opcode
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        header = bytes((first, mask_bit | size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawClient:
    """A WebSocket client with nothing between the test and the bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handshake: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.handshake = handshake

    @classmethod
    async def connect(
        cls, client, path: str, extra_headers: str = "", *, receive_buffer: int | None = None
    ) -> tuple[RawClient, str]:
        """Upgrade with `client`'s session cookie, if it has one. With
        `receive_buffer`, the kernel and the reader hold about that many unread bytes."""
        if receive_buffer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        else:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", client.port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=receive_buffer)
        key = base64.b64encode(os.urandom(16)).decode()
        cookies = client.session.cookie_jar.filter_cookies(client.make_url("/"))
        if "dashboard_session" in cookies:
            extra_headers += f"Cookie: dashboard_session={cookies['dashboard_session'].value}\r\n"
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{client.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"{extra_headers}\r\n"
            ).encode()
        )
        handshake = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        return cls(reader, writer, handshake), key

    def send(self, frame: bytes) -> None:
        self.writer.write(frame)

    def send_text(self, text: str) -> None:
        self.send(client_frame(0x1, text.encode()))

    async def frame(self, within: float = 5.0) -> tuple[int, bytes]:
        """The next server frame: (opcode, payload). Server frames are never masked."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), within)
        assert not second & 0x80, "server frames must not be masked"
        assert not first & 0x70, "no extension was negotiated: RSV bits must be clear"
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0x0F, await self.reader.readexactly(size)

    async def message(self) -> dict:
        """The next text message, skipping nothing: fails on anything else."""
        opcode, payload = await self.frame()
        assert opcode == 0x1, (opcode, payload)
        return json.loads(payload)

    async def until(self, action: str) -> list[dict]:
        seen = []
        while True:
            seen.append(await self.message())
            if seen[-1]["action"] == action:
                return seen

    async def close_code(self) -> int:
        """Read past text frames to the close frame; its code."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big")
            assert opcode == 0x1, (opcode, payload)

    async def hung_up(self, within: float = 5.0) -> bool:
        """The server closed the TCP connection (after whatever it still sent)."""
        while True:
            data = await asyncio.wait_for(self.reader.read(65536), within)
            if not data:
                return True

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def unpacked_updates(message: dict) -> list[list]:
    """[metric_id, id, value, timestamp] of each value of a metric_updates message."""
    assert message["action"] == "metric_updates", message
    return [
        [*item, entry["timestamp"]] for entry in message["payload"]["updates"] for item in entry["values"]
    ]


async def expect_only_barrier(pool, metric: db.Metric, *sockets: ClientWebSocketResponse) -> None:
    """Decisive silence: nothing was sent to the sockets that they have not read yet.

    Stores and publishes a new value of `metric` (one every socket is
    subscribed to) and asserts that it is the next and only value each socket
    gets. The hub hands a process's values over in the order Redis delivered
    them, so anything wrongly sent before it (a duplicate, a value of an
    unsubscribed or foreign metric) would arrive first; a wait of fixed length
    would pass when such a message is merely late.
    """
    barrier = await publish(pool, metric, -1.0)
    for ws in sockets:
        message = await receive(ws)
        if message["action"] == "metric_updates":
            got = [(metric_id, value_id) for metric_id, value_id, *_ in unpacked_updates(message)]
        else:
            assert message["action"] == "metric_update", f"before the barrier: {message}"
            got = [(message["payload"]["metric_id"], message["payload"]["id"])]
        assert got == [(metric.id, barrier.id)], f"before the barrier: {message}"

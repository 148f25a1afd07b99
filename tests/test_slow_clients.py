"""Slow clients against a real server process on loopback: half-sent requests
are cut off by the header and body deadlines, pages are served while many
hang, connections beyond the per-process cap are refused at once, and an
established WebSocket outlives every HTTP deadline."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import aiohttp
import pytest

from tests.helpers import browser_log_in, eventually
from tests.processes import child, free_port, wait_for_http
from tests.wsclient import read_connect_sequence, receive


@pytest.fixture
def start_server(settings) -> Iterator:
    """Start a server process with extra flags; the base URL and port."""
    started = []

    def _start(*flags: str) -> tuple[str, int]:
        port = free_port()
        urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
        context = child(["-m", "server", *urls, "run", "--port", str(port), *flags])
        process = context.__enter__()
        started.append(context)
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process)
        return f"http://127.0.0.1:{port}", port

    yield _start
    for context in started:
        context.__exit__(None, None, None)


async def drip(port: int, head: bytes, rest: bytes) -> tuple[asyncio.StreamReader, asyncio.Task]:
    """A slow loris: send `head` at once, then `rest` a byte a second."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)

    async def trickle() -> None:
        try:
            for byte in rest:
                await asyncio.sleep(1)
                writer.write(bytes([byte]))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return reader, asyncio.create_task(trickle())


async def closed_after(reader: asyncio.StreamReader, within: float) -> tuple[bytes, float]:
    """Read until the server closes; (what it sent, seconds it took)."""
    started = time.monotonic()
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(4096), within):
            received += chunk
    except ConnectionResetError:
        pass
    return received, time.monotonic() - started


async def _probe(port: int, expected: bytes) -> tuple[bytes, float] | None:
    """GET /healthz on a new connection: (the answer, its seconds) if it starts with `expected`."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    received, _ = await closed_after(reader, within=3)
    writer.close()
    return (received, time.monotonic() - started) if received.startswith(expected) else None


SLOW_HEADERS = (b"GET /login HTTP/1.1\r\nHost: x\r\n", b"X-Slow: " + b"a" * 60)


async def test_a_half_sent_request_is_closed_by_the_header_deadline(start_server):
    _, port = start_server("--header-timeout", "2")
    reader, trickle = await drip(port, *SLOW_HEADERS)
    received, seconds = await closed_after(reader, within=8)  # before: open for an hour (keep-alive)
    trickle.cancel()
    assert received == b"" and 1.5 < seconds < 4


async def test_a_slow_body_is_closed_by_the_body_deadline(start_server):
    _, port = start_server("--body-timeout", "2")
    head = (
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 100\r\n\r\nusername="
    )
    reader, trickle = await drip(port, head, b"b" * 60)
    _, seconds = await closed_after(reader, within=8)
    trickle.cancel()
    assert 1.5 < seconds < 4


async def test_pages_are_served_while_200_slow_lorises_hang(start_server):
    base, port = start_server("--header-timeout", "4")
    lorises = [await drip(port, *SLOW_HEADERS) for _ in range(200)]
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/login"):
            started = time.monotonic()
            async with session.get(f"{base}{path}") as response:
                assert response.status == 200
            assert time.monotonic() - started < 0.5
    # ... and every one of them is cut off by the deadline.
    closes = await asyncio.gather(*(closed_after(reader, within=8) for reader, _ in lorises))
    for _, trickle in lorises:
        trickle.cancel()
    assert max(seconds for _, seconds in closes) < 7


async def test_beyond_the_cap_new_connections_are_refused_at_once(start_server):
    _, port = start_server("--max-connections-per-process", "20")
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
    # Until the server has taken all 20, a probe may still be served (and give its place back).
    received, seconds = await eventually(lambda: _probe(port, b"HTTP/1.1 503"), 5, "the 21st refused")
    assert seconds < 1, received
    for _, held_writer in held:
        held_writer.close()
    await eventually(lambda: _probe(port, b"HTTP/1.1 200"), 5, "the places given back")


async def test_an_open_websocket_outlives_the_deadlines_and_holds_its_place(
    start_server, make_user, make_dashboard
):
    alice = await make_user("alice")
    dashboard = await make_dashboard("ops", members=(alice,))
    base, port = start_server(
        "--header-timeout", "1.5", "--body-timeout", "0.5", "--keepalive-timeout", "0.5",
        "--max-connections-per-process", "3",
    )  # fmt: skip
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await browser_log_in(session, base, "alice", "secret-pw")
        ws = await session.ws_connect(f"{base}/ws/dashboard/{dashboard.id}/", origin=base)
        await read_connect_sequence(ws, 0)
        await asyncio.sleep(1.7)  # a window past every deadline; the page's HTTP connection is gone
        await ws.send_json({"action": "ping"})
        assert (await receive(ws))["action"] == "pong"
        # The socket holds one of the three places: two more fit, the third is refused.
        others = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        received, _ = await closed_after(reader, within=3)
        writer.close()
        assert received.startswith(b"HTTP/1.1 503")
        await ws.close()
        await eventually(lambda: _probe(port, b"HTTP/1.1 200"), 5, "its place given back")
        for _, other in others:
            other.close()


async def test_a_client_that_never_reads_its_answers_is_dropped_and_gives_its_place_back(start_server):
    """Thirty pipelined requests for a 51 KB file, from a client with a tiny
    window that never reads: the server's writes (and sendfile) stall. After
    --send-timeout of no progress the connection is dropped, its place in the
    cap is free again, and others were served meanwhile."""
    _, port = start_server(
        "--send-timeout", "2", "--keepalive-timeout", "600", "--max-connections-per-process", "3"
    )
    request = b"GET /static/vendor/uPlot-1.6.32.iife.min.js HTTP/1.1\r\nHost: x\r\n\r\n"
    stalled = []
    for _ in range(2):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        sock.sendall(request * 30)  # small enough for the server's receive buffer
        stalled.append(sock)
    # The two hold two of the three places while they stall: a page is still served.
    assert await _probe(port, b"HTTP/1.1 200") is not None
    await asyncio.sleep(5)  # more than --send-timeout without reading
    for sock in stalled:
        # What the window let through, then the end: not 30 answers (1.5 MB) on a live connection.
        reader, writer = await asyncio.open_connection(sock=sock)
        received, _ = await closed_after(reader, within=5)
        writer.close()
        assert received.count(b"HTTP/1.1 200") < 30
    # Both places given back: three connections fit again.
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    assert await _probe(port, b"HTTP/1.1 200") is not None
    for _, writer in held:
        writer.close()

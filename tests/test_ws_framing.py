"""RFC 6455 on the server's own socket (server/live/transport.py), spoken byte by
byte from a raw TCP client: the handshake, fragments, control frames, the
closing handshake, and what a client must not send. Message-level behaviour
is in test_ws_protocol.py; abuse limits in test_bad_input.py."""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from server.keys import HUB_KEY, REGISTRY_KEY, SOCKETS_KEY
from server.live.closecodes import CloseCode
from server.live.frames import FrameError, FrameReader
from tests.helpers import log_in
from tests.wsclient import RawClient, client_frame

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@pytest.fixture
async def socket_of(client, setup):
    """Opens raw sockets on the set-up dashboard as alice, past the opening sequence."""
    await log_in(client, "alice")
    opened: list[RawClient] = []

    async def open_one(extra_headers: str = "") -> RawClient:
        raw, _ = await RawClient.connect(client, f"/ws/dashboard/{setup['ops'].id}/", extra_headers)
        opened.append(raw)
        await raw.until("alerts")
        return raw

    yield open_one
    for raw in opened:
        await raw.close()


async def test_handshake_answers_the_key_and_negotiates_no_compression(client, setup):
    await log_in(client, "alice")
    # Browsers offer permessage-deflate; accepting it would cost every socket a
    # compressor and decompressor (hundreds of KB), for frames of ~150 bytes.
    raw, key = await RawClient.connect(
        client,
        f"/ws/dashboard/{setup['ops'].id}/",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    status, *header_lines = raw.handshake.decode().split("\r\n")
    headers = {
        name.lower(): value for name, _, value in (line.partition(": ") for line in header_lines if line)
    }
    assert status == "HTTP/1.1 101 Switching Protocols"
    assert (
        headers["sec-websocket-accept"]
        == base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    )
    assert headers["upgrade"].lower() == "websocket"
    assert "sec-websocket-extensions" not in headers
    assert (await raw.message())["payload"]["status_code"] == 200
    await raw.close()


async def test_a_plain_request_to_the_socket_address_is_refused(client, setup):
    await log_in(client, "alice")
    response = await client.get(f"/ws/dashboard/{setup['ops'].id}/")
    assert response.status == 400
    assert "WebSocket" in await response.text()


async def test_aiohttp_lets_go_of_upgraded_connections(client, app, socket_of):
    """What keeps an idle socket small: no request, parser or task of aiohttp's per socket."""
    http_connections = client.server.runner.server.connections
    kept_alive = len(http_connections)  # the test client's, from logging in
    sockets = [await socket_of() for _ in range(3)]
    assert app[HUB_KEY].connection_count() == 3
    assert len(http_connections) == kept_alive
    sockets[0].send_text('{"action":"ping"}')
    assert await sockets[0].until("complete") == [{"action": "pong"}, {"action": "complete"}]


async def test_a_fragmented_message_with_a_ping_in_between_is_one_message(socket_of):
    raw = await socket_of()
    text = b'{"action":"ping","payload":{"n":1}}'
    raw.send(client_frame(0x1, text[:10], fin=False))
    raw.send(client_frame(0x9, b"are you there"))
    raw.send(client_frame(0x0, text[10:20], fin=False))
    raw.send(client_frame(0x0, text[20:]))
    assert await raw.frame() == (0xA, b"are you there")
    assert await raw.until("complete") == [{"action": "pong", "payload": {"n": 1}}, {"action": "complete"}]


async def test_frames_split_across_reads_and_joined_in_one_read_are_read_alike(socket_of):
    raw = await socket_of()
    frames = client_frame(0x1, b'{"action":"ping"}') * 3
    for byte in frames[:20]:
        raw.send(bytes((byte,)))
        await raw.writer.drain()
        await asyncio.sleep(0)
    raw.send(frames[20:])
    for _ in range(3):
        assert await raw.until("complete") == [{"action": "pong"}, {"action": "complete"}]


async def test_the_client_closing_gets_its_code_echoed_then_the_server_hangs_up(socket_of):
    raw = await socket_of()
    raw.send(client_frame(0x8, (1000).to_bytes(2, "big") + b"bye"))
    assert await raw.frame() == (0x8, (1000).to_bytes(2, "big"))
    assert await raw.hung_up()


PROTOCOL_ERRORS = [
    ("unmasked frame", client_frame(0x1, b'{"action":"ping"}', masked=False), CloseCode.PROTOCOL_ERROR),
    ("RSV1 without an extension", client_frame(0x1, b"{}", rsv=0x40), CloseCode.PROTOCOL_ERROR),
    ("reserved opcode", client_frame(0x3, b"x"), CloseCode.PROTOCOL_ERROR),
    ("fragmented ping", client_frame(0x9, b"x", fin=False), CloseCode.PROTOCOL_ERROR),
    ("ping above 125 bytes", client_frame(0x9, b"x" * 126), CloseCode.PROTOCOL_ERROR),
    ("continuation of nothing", client_frame(0x0, b"x"), CloseCode.PROTOCOL_ERROR),
    (
        "new message inside a fragmented one",
        client_frame(0x1, b"{", fin=False) + client_frame(0x1, b"{}"),
        CloseCode.PROTOCOL_ERROR,
    ),
    ("text that is not UTF-8", client_frame(0x1, b'{"action":"\xff"}'), CloseCode.INVALID_TEXT),
    ("message above 64 KiB", client_frame(0x1, b" " * 70_000), CloseCode.MESSAGE_TOO_BIG),
    (
        "fragments adding up to above 64 KiB",
        client_frame(0x1, b" " * 40_000, fin=False) + client_frame(0x0, b" " * 40_000),
        CloseCode.MESSAGE_TOO_BIG,
    ),
    ("close code nobody may send", client_frame(0x8, (1005).to_bytes(2, "big")), CloseCode.PROTOCOL_ERROR),
]


@pytest.mark.parametrize(
    ("data", "code"), [case[1:] for case in PROTOCOL_ERRORS], ids=[case[0] for case in PROTOCOL_ERRORS]
)
async def test_a_protocol_error_closes_with_its_code_and_others_carry_on(socket_of, data, code):
    other = await socket_of()
    raw = await socket_of()
    raw.send(data)
    assert await raw.close_code() == code
    raw.send(client_frame(0x8, code.to_bytes(2, "big")))
    assert await raw.hung_up()
    other.send_text('{"action":"ping"}')
    assert await other.until("complete") == [{"action": "pong"}, {"action": "complete"}]


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(
        st.tuples(
            st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB]),
            st.binary(max_size=300),
            st.booleans(),
            st.booleans(),
        ),
        max_size=8,
    ),
    split=st.integers(min_value=1, max_value=64),
)
def test_the_frame_reader_reads_whatever_arrives_or_names_the_protocol_error(frames, split):
    """However frames are cut into reads, the reader returns the same messages or one FrameError."""
    data = b"".join(
        client_frame(opcode, payload, fin=fin, masked=masked) for opcode, payload, fin, masked in frames
    )
    whole, in_pieces = FrameReader(1024), FrameReader(1024)

    def read(reader: FrameReader, chunks: list[bytes]) -> list | int:
        messages: list = []
        try:
            for chunk in chunks:
                messages += reader.feed(chunk)
        except FrameError as exc:
            assert exc.code in (1002, 1007, 1009) and exc.reason
            return exc.code
        return messages

    at_once = read(whole, [data])
    assert read(in_pieces, [data[i : i + split] for i in range(0, len(data), split)]) == at_once
    if isinstance(at_once, list):
        expected = [(opcode, payload) for opcode, payload, fin, masked in frames if opcode >= 0x8]
        assert [m for m in at_once if m[0] >= 0x8] == expected


def test_a_large_frame_arriving_a_byte_at_a_time_is_read_whole():
    """A frame's bytes are joined once, when all are here (not once per read), and the
    header is checked as soon as it is whole: a frame above the limit is refused
    before its body arrives."""
    payload = bytes(range(256)) * 240  # 60 KB, under the 64 KB limit
    data = client_frame(0x1, payload) + client_frame(0x9, b"ping")
    for piece in (1, 3, 7, 4096):
        reader = FrameReader(64 * 1024)
        messages: list = []
        for i in range(0, len(data), piece):
            messages += reader.feed(data[i : i + piece])
        assert messages == [(0x1, payload), (0x9, b"ping")], piece
    too_big = client_frame(0x1, b"x" * (64 * 1024 + 1))
    reader = FrameReader(64 * 1024)
    reader.feed(too_big[:8])
    with pytest.raises(FrameError) as refused:
        reader.feed(too_big[8:14])  # the extended length and the mask: the header is whole
    assert refused.value.code == 1009


async def test_a_closed_socket_leaves_nothing_behind_without_a_garbage_collection(app, setup, socket_of):
    """No reference cycle keeps a closed socket alive until the collector runs."""
    other = await socket_of()
    raw = await socket_of()
    assert len(app[SOCKETS_KEY]) == 2
    gc.disable()
    try:
        raw.send(client_frame(0x8, (1000).to_bytes(2, "big")))
        assert await raw.hung_up()
        for _ in range(50):
            if len(app[SOCKETS_KEY]) == 1:
                break
            await asyncio.sleep(0.02)
        assert len(app[SOCKETS_KEY]) == 1  # a WeakSet: the closed one was freed by reference counting
        assert app[HUB_KEY].connection_count() == 1
        assert app[REGISTRY_KEY].count_for_user(setup["user"].id) == 1
    finally:
        gc.enable()
    other.send_text('{"action":"ping"}')
    assert await other.until("complete") == [{"action": "pong"}, {"action": "complete"}]


async def test_a_socket_upgraded_after_the_stop_told_the_others_to_go_is_told_too(
    app, client, setup, socket_of
):
    """The stop closes the sockets it finds with 1001. An upgrade under way at that
    moment (still reading its session) completes later: it must not stay open,
    unseen, while the resources it needs are closed under it."""
    first = await socket_of()
    stopping = asyncio.ensure_future(app[SOCKETS_KEY].close_all(wait=5))
    assert await first.close_code() == CloseCode.GOING_AWAY
    first.send(client_frame(0x8, CloseCode.GOING_AWAY.to_bytes(2, "big")))
    await asyncio.wait_for(stopping, 5)  # the answer ended the wait
    late, _ = await RawClient.connect(client, f"/ws/dashboard/{setup['ops'].id}/")
    assert await late.close_code() == CloseCode.GOING_AWAY
    late.send(client_frame(0x8, CloseCode.GOING_AWAY.to_bytes(2, "big")))
    assert await late.hung_up()
    await late.close()
    # Nothing of it was set up: not live, not counted against its user.
    assert app[HUB_KEY].connection_count() == 0
    assert app[REGISTRY_KEY].count_for_user(setup["user"].id) == 0

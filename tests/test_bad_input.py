"""Misbehaving clients: each gets a clear error or close code, and the server
and other clients carry on. Message-level errors are tabled in
test_ws_protocol.py (BAD_INPUT); slow readers in test_fanout.py."""

from __future__ import annotations

import asyncio
import json
from contextlib import closing
from dataclasses import replace

import psycopg2
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from common.passwords import hash_password
from common.schemas import CLIENT_ACTIONS, ProtocolError, error_message, parse_client_message
from server.app import create_app
from server.closecodes import CloseCode
from tests.conftest import REDIS_URL, log_in
from tests.wsclient import read_connect_sequence, receive, receive_until


@pytest.fixture
async def ops(make_user, make_dashboard, make_metric):
    alice, bob = await make_user("alice"), await make_user("bob")
    dashboard = await make_dashboard("ops", members=(alice, bob))
    await make_metric(dashboard, "cpu")
    return dashboard


async def close_code_of(ws, within: float = 5) -> int:
    """Read past any messages to the close frame; the code it carried."""
    while True:
        message = await asyncio.wait_for(ws.receive(), within)
        if message.type == WSMsgType.CLOSE:
            return message.data
        assert message.type == WSMsgType.TEXT, message


async def still_served(client: TestClient, dashboard) -> None:
    """A well-behaved client connects and gets answers."""
    ws = await client.ws_connect(f"/ws/dashboard/{dashboard.id}/")
    await read_connect_sequence(ws, 1)
    await ws.send_json({"action": "ping"})
    assert await receive_until(ws, "complete") == [{"action": "pong"}, {"action": "complete"}]
    await ws.close()


# Abuse that ends the offender's socket (and only that one) -----------------------


async def flood(client, dashboard):
    ws = await client.ws_connect(f"/ws/dashboard/{dashboard.id}/")
    await read_connect_sequence(ws, 1)
    for _ in range(200):
        await ws.send_str('{"action":"ping"}')
    return await close_code_of(ws)


async def too_many_sockets(client, dashboard):
    kept = [await client.ws_connect(f"/ws/dashboard/{dashboard.id}/") for _ in range(3)]
    for ws in kept:
        await read_connect_sequence(ws, 1)
    extra = await client.ws_connect(f"/ws/dashboard/{dashboard.id}/")
    assert await receive(extra) == {
        "action": "authentication",
        "payload": {"status_code": 429, "status_text": "Too many connections", "data": None},
    }
    code = await close_code_of(extra)
    await kept[0].close()
    await asyncio.sleep(0.1)
    await still_served(client, dashboard)  # room again once one closed
    return code


async def oversized_frame(client, dashboard):
    ws = await client.ws_connect(f"/ws/dashboard/{dashboard.id}/")
    await read_connect_sequence(ws, 1)
    await ws.send_str("[" + " " * 70_000 + "]")
    return await close_code_of(ws)


ABUSE = [
    ("message flood", flood, CloseCode.RATE_LIMITED),
    ("too many sockets for one user", too_many_sockets, CloseCode.TOO_MANY_CONNECTIONS),
    ("frame above 64 KiB", oversized_frame, 1009),
]


@pytest.mark.parametrize(("abuse", "code"), [case[1:] for case in ABUSE], ids=[case[0] for case in ABUSE])
async def test_abuse_closes_only_the_offenders_socket(aiohttp_client, settings, ops, abuse, code):
    limits = replace(settings, message_rate=5.0, message_burst=20, max_connections_per_user=3)
    client = await aiohttp_client(create_app(limits))
    await log_in(client, "alice")
    bobs = TestClient(client.server)
    await bobs.start_server()
    try:
        await log_in(bobs, "bob")
        bystander = await bobs.ws_connect(f"/ws/dashboard/{ops.id}/")
        await read_connect_sequence(bystander, 1)
        assert await abuse(client, ops) == code
        await bystander.send_json({"action": "ping"})
        assert await receive_until(bystander, "complete") == [{"action": "pong"}, {"action": "complete"}]
        await still_served(bobs, ops)
    finally:
        await bobs.close()


# Malformed cookies and session ids -------------------------------------------------

MALFORMED_COOKIES = [
    ("empty", ""),
    ("garbage", "not-a-session"),
    ("unknown well-formed id", "0123456789abcdef0123456789abcdef"),
    ("path characters", "../../etc/passwd"),
    ("redis glob", "*"),
    ("quoted", '"abc"'),
    ("very long", "a" * 4000),
    ("control characters", "%00%0d%0a"),
    ("stored but not JSON", "stored-junk"),
    ("stored with a string user id", "stored-string-id"),
    ("stored for a deleted user", "stored-ghost"),
]
STORED = {
    "stored-junk": "{{{",
    "stored-string-id": json.dumps({"created": 2_000_000_000, "session": {"user_id": "1"}}),
    "stored-ghost": json.dumps({"created": 2_000_000_000, "session": {"user_id": 987654}}),
}


@pytest.mark.parametrize(
    "cookie", [case[1] for case in MALFORMED_COOKIES], ids=[case[0] for case in MALFORMED_COOKIES]
)
async def test_malformed_session_cookies_are_just_not_logged_in(client, new_client, ops, cookie):
    async with Redis.from_url(REDIS_URL) as redis_client:
        for key, data in STORED.items():
            await redis_client.set(f"dashboard_session_{key}", data)
    stranger = await new_client()
    headers = {"Cookie": f"dashboard_session={cookie}"}
    page = await stranger.get("/dashboards/", headers=headers, allow_redirects=False)
    assert page.status == 302
    assert page.headers["Location"].startswith("/login")
    ws = await stranger.ws_connect(f"/ws/dashboard/{ops.id}/", headers=headers)
    assert (await receive(ws))["payload"]["status_code"] == 401
    assert await close_code_of(ws) == CloseCode.UNAUTHENTICATED
    await log_in(client, "alice")
    await still_served(client, ops)


# Fuzzing the message handler ---------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
# Messages near the valid ones find more than random bytes do.
ACTIONS = st.sampled_from([*CLIENT_ACTIONS, "", "Subscribe", "error", "complete"]) | st.text(max_size=10)
PAYLOADS = JSON_VALUES | st.fixed_dictionaries(
    {"metric_ids": st.lists(st.integers(min_value=-(2**70), max_value=2**70) | JSON_VALUES, max_size=8)}
)
MESSAGES = (
    st.fixed_dictionaries({"action": ACTIONS}, optional={"payload": PAYLOADS}).map(json.dumps)
    | JSON_VALUES.map(json.dumps)
    | st.text(max_size=200)
)


def _strict_json(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(name)

    return json.loads(text, parse_constant=refuse)


@hypothesis_settings(max_examples=500, deadline=None)
@given(MESSAGES)
def test_the_parser_accepts_or_explains_never_crashes(text):
    try:
        action, _ = parse_client_message(text)
    except ProtocolError as exc:
        answer = _strict_json(error_message(exc))
        assert answer["action"] == "error" and answer["payload"]["message"]
    else:
        assert action in CLIENT_ACTIONS


def test_nesting_too_deep_to_parse_is_an_error_not_a_crash():
    with pytest.raises(ProtocolError, match="not valid JSON"):
        parse_client_message("[" * 50_000 + "]" * 50_000)


@hypothesis_settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frames=st.lists(MESSAGES | st.binary(max_size=50), min_size=1, max_size=10))
def test_any_frames_get_answers_and_leave_the_socket_usable(settings, frames):
    """Through the real socket: every frame is answered, ending in `complete`."""
    with closing(psycopg2.connect(settings.database_url)) as conn, conn, conn.cursor() as cur:
        cur.execute("TRUNCATE users, dashboards RESTART IDENTITY CASCADE")
        cur.execute(
            "INSERT INTO users (username, password_hash) VALUES ('alice', %s)", (hash_password("pw"),)
        )
        cur.execute("INSERT INTO dashboards (name, slug) VALUES ('Ops', 'ops')")
        cur.execute("INSERT INTO dashboard_members VALUES (1, 1)")
        cur.execute("INSERT INTO metrics (dashboard_id, name, type) VALUES (1, 'cpu', 'gauge')")
    asyncio.run(_send_frames(settings, frames))


async def _send_frames(settings, frames) -> None:
    async with TestClient(TestServer(create_app(settings))) as client:
        await log_in(client, "alice", "pw")
        ws = await client.ws_connect("/ws/dashboard/1/")
        await read_connect_sequence(ws, 1)
        for frame in frames:
            await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
            for message in await receive_until(ws, "complete"):
                assert message["action"] in ("error", "pong", "metric_history", "complete"), message
        await ws.send_json({"action": "ping"})
        assert await receive_until(ws, "complete") == [{"action": "pong"}, {"action": "complete"}]

"""Open sockets follow access: logout, expiry, removals and deletions close
them on every server process; dead peers are dropped."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import WSMsgType
from redis.asyncio import Redis

from common import db
from common.events import Revocation
from server.app import create_app
from server.auth import session_redis_key
from server.keys import HUB_KEY
from server.live.closecodes import CloseCode
from server.live.registry import session_digest
from server.live.revocation import revoke
from tests.helpers import browser_log_in, closed_within, csrf_from, eventually, log_in, run_cli
from tests.processes import child, free_port, wait_for_http
from tests.servers import servers
from tests.wsclient import read_connect_sequence, receive


async def open_dashboard(client, dashboard, metric_count: int = 1):
    ws = await client.ws_connect(f"/ws/dashboard/{dashboard.id}/")
    await read_connect_sequence(ws, metric_count)
    return ws


def cookie_of(client) -> str:
    return client.session.cookie_jar.filter_cookies(client.make_url("/"))["dashboard_session"].value


@pytest.fixture
async def two_servers(aiohttp_client, settings):
    """Two server processes' worth of app (own hub, own Redis subscription) on one Redis."""
    return [await aiohttp_client(create_app(settings)) for _ in range(2)]


@pytest.fixture
async def alice_and_bob(make_user, make_dashboard, make_metric):
    alice, bob = await make_user("alice"), await make_user("bob")
    ops = await make_dashboard("ops", members=(alice, bob))
    await make_metric(ops, "cpu")
    return alice, bob, ops


# Revocations reach every process within a second -------------------------------


async def test_logout_closes_that_sessions_sockets_on_every_server(two_servers, new_client, alice_and_bob):
    first, second = two_servers
    _, _, ops = alice_and_bob
    await log_in(first, "alice")
    # The same browser session on the other server process.
    second.session.cookie_jar.update_cookies({"dashboard_session": cookie_of(first)})
    bobs = await new_client()
    await log_in(bobs, "bob")
    mine = [await open_dashboard(first, ops), await open_dashboard(second, ops)]
    other = await open_dashboard(bobs, ops)

    token = await csrf_from(first, "/dashboards/")
    await first.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    for ws in mine:
        code, took = await closed_within(ws, 2)
        assert (code, took < 1) == (CloseCode.UNAUTHENTICATED, True)
    await other.send_json({"action": "ping"})
    assert (await receive(other))["action"] == "pong"


@pytest.mark.parametrize(
    ("command", "closed", "code"),
    [
        (("member", "remove", "ops", "alice"), "alice", CloseCode.FORBIDDEN),
        (("dashboard", "delete", "ops", "--yes"), "both", CloseCode.FORBIDDEN),
        (("user", "delete", "alice", "--yes"), "alice", CloseCode.UNAUTHENTICATED),
    ],
    ids=["member-remove", "dashboard-delete", "user-delete"],
)
async def test_cli_changes_close_the_sockets_they_affect_on_every_server(
    two_servers, settings, alice_and_bob, command, closed, code
):
    first, second = two_servers
    _, _, ops = alice_and_bob
    await log_in(first, "alice")
    alices = [await open_dashboard(first, ops)]
    second.session.cookie_jar.update_cookies({"dashboard_session": cookie_of(first)})
    alices.append(await open_dashboard(second, ops))  # alice on the other process too
    second.session.cookie_jar.clear()
    await log_in(second, "bob")
    bobs = await open_dashboard(second, ops)

    await run_cli(settings, *command)
    for ws in alices + ([bobs] if closed == "both" else []):
        got, took = await closed_within(ws, 2)
        assert (got, took < 1) == (code, True)
    if closed == "alice":
        await bobs.send_json({"action": "ping"})
        assert (await receive(bobs))["action"] == "pong"


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [("user", "set-password", "alice", "--password", "new-secret"), ("user", "logout-everywhere", "alice")],
    ids=["set-password", "logout-everywhere"],
)
async def test_ending_a_users_sessions_closes_them_on_every_server_process(settings, alice_and_bob, command):
    """Real server processes: every session of alice (two browsers) ends, her sockets
    on both processes close within a second, and her old cookies open no page."""
    _, _, ops = alice_and_bob
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    jars = [aiohttp.CookieJar(unsafe=True) for _ in range(3)]
    with (
        child(["-m", "server", *urls, "run", "--port", str(ports[0])]) as first,
        child(["-m", "server", *urls, "run", "--port", str(ports[1])]) as second,
    ):
        for base, process in zip(bases, (first, second), strict=True):
            await asyncio.to_thread(wait_for_http, f"{base}/healthz", process)
        async with (
            aiohttp.ClientSession(cookie_jar=jars[0]) as laptop,
            aiohttp.ClientSession(cookie_jar=jars[1]) as phone,
            aiohttp.ClientSession(cookie_jar=jars[2]) as bobs,
        ):
            await browser_log_in(laptop, bases[0], "alice", "secret-pw")
            await browser_log_in(phone, bases[1], "alice", "secret-pw")
            await browser_log_in(bobs, bases[1], "bob", "secret-pw")
            # The laptop's one session on both processes, the phone's on the second.
            alices = [
                await laptop.ws_connect(f"{bases[0]}/ws/dashboard/{ops.id}/"),
                await laptop.ws_connect(f"{bases[1]}/ws/dashboard/{ops.id}/"),
                await phone.ws_connect(f"{bases[1]}/ws/dashboard/{ops.id}/"),
            ]
            bob = await bobs.ws_connect(f"{bases[1]}/ws/dashboard/{ops.id}/")
            for ws in [*alices, bob]:
                await read_connect_sequence(ws, 1)

            await run_cli(settings, *command)
            for ws in alices:
                got, took = await closed_within(ws, 2)
                assert (got, took < 1.5) == (CloseCode.UNAUTHENTICATED, True)
            for browser, base in ((laptop, bases[0]), (laptop, bases[1]), (phone, bases[1])):
                async with browser.get(f"{base}/dashboards/", allow_redirects=False) as page:
                    assert (page.status, page.headers["Location"]) == (302, "/login?next=/dashboards/")
            await bob.send_json({"action": "ping"})
            assert (await receive(bob))["action"] == "pong"
            async with bobs.get(f"{bases[0]}/dashboards/", allow_redirects=False) as page:
                assert page.status == 200
            password = command[-1] if "set-password" in command else "secret-pw"
            await browser_log_in(laptop, bases[0], "alice", password)


@pytest.mark.parametrize(
    "reason, code", [("logout", CloseCode.UNAUTHENTICATED), ("member_removed", CloseCode.FORBIDDEN)]
)
async def test_a_revocation_announced_while_a_socket_opens_closes_it(
    two_servers, pool, alice_and_bob, monkeypatch, reason, code
):
    """The socket's access was checked, then the revocation arrives from the other
    process before the socket is registered: it must not slip through."""
    first, second = two_servers
    alice, _, ops = alice_and_bob
    await log_in(first, "alice")
    seen = asyncio.Event()
    first.app[HUB_KEY].on_control(lambda _: seen.set())
    list_metrics = db.list_metrics

    async def revoked_meanwhile(pool_, dashboard_id):
        # Between the membership check and `registry.add` in server/live/endpoint.py::_open.
        if reason == "member_removed":
            await db.remove_member(pool, ops.id, alice.id)
            revocation = Revocation(reason, user_id=alice.id, dashboard_id=ops.id)
        else:
            revocation = Revocation(reason, session=session_digest(cookie_of(first)))
        await revoke(second.app, revocation)
        await asyncio.wait_for(seen.wait(), 5)  # it reached this process's registry
        return await list_metrics(pool_, dashboard_id)

    monkeypatch.setattr(db, "list_metrics", revoked_meanwhile)
    ws = await first.ws_connect(f"/ws/dashboard/{ops.id}/")
    got, took = await closed_within(ws, 2)
    assert (got, took < 1) == (code, True)


async def test_a_revocation_older_than_the_check_spares_a_new_socket(client, pool, alice_and_bob):
    """Removed and added again before connecting: the old removal does not apply."""
    alice, _, ops = alice_and_bob
    await log_in(client, "alice")
    await db.remove_member(pool, ops.id, alice.id)
    await revoke(client.app, Revocation("member_removed", user_id=alice.id, dashboard_id=ops.id))
    await db.add_member(pool, ops.id, alice.id)
    ws = await open_dashboard(client, ops)
    await ws.send_json({"action": "ping"})
    assert (await receive(ws))["action"] == "pong"


async def test_an_unknown_control_message_is_ignored(client, alice_and_bob):
    _, _, ops = alice_and_bob
    await log_in(client, "alice")
    ws = await open_dashboard(client, ops)
    async with Redis.from_url(servers().redis_url) as redis_client:
        for junk in ("not json", '{"type":"revoke","v":1,"reason":"nope"}', '{"type":"future-kind"}'):
            await redis_client.publish("dashboard:control", junk)
    await ws.send_json({"action": "ping"})
    assert (await receive(ws))["action"] == "pong"


# The periodic check: expiry, and what nobody announced ----------------------------


async def test_a_session_that_expires_closes_its_socket_within_the_check_interval(
    aiohttp_client, settings, alice_and_bob
):
    _, _, ops = alice_and_bob
    client = await aiohttp_client(
        create_app(replace(settings, session_max_age=2, session_check_interval=0.2))
    )
    before = time.monotonic()
    await log_in(client, "alice")
    logged_in = time.monotonic()
    ws = await open_dashboard(client, ops)
    code, _ = await closed_within(ws, 5)
    closed = time.monotonic()
    assert code == CloseCode.UNAUTHENTICATED
    # Not before the session's 2 s are up (counted from its creation time in
    # whole seconds, so up to 1 s early), and within about one check after.
    assert closed - before > 1.0
    assert closed - logged_in < 2.9


async def test_a_session_deleted_behind_the_servers_back_closes_its_socket(
    aiohttp_client, settings, alice_and_bob
):
    _, _, ops = alice_and_bob
    client = await aiohttp_client(create_app(replace(settings, session_check_interval=0.2)))
    await log_in(client, "alice")
    ws = await open_dashboard(client, ops)
    async with Redis.from_url(servers().redis_url) as redis_client:
        assert await redis_client.delete(session_redis_key(cookie_of(client))) == 1
    code, took = await closed_within(ws, 2)
    assert (code, took < 1) == (CloseCode.UNAUTHENTICATED, True)


async def test_a_membership_removed_without_announcement_is_caught_by_the_check(
    aiohttp_client, settings, pool, alice_and_bob
):
    alice, _, ops = alice_and_bob
    client = await aiohttp_client(create_app(replace(settings, session_check_interval=0.2)))
    await log_in(client, "alice")
    ws = await open_dashboard(client, ops)
    await db.remove_member(pool, ops.id, alice.id)
    code, took = await closed_within(ws, 2)
    assert (code, took < 1) == (CloseCode.FORBIDDEN, True)


# Heartbeat --------------------------------------------------------------------------


async def test_a_peer_that_stops_answering_pings_is_dropped(aiohttp_client, settings, alice_and_bob):
    _, _, ops = alice_and_bob
    client = await aiohttp_client(create_app(replace(settings, heartbeat_seconds=0.3)))
    await log_in(client, "alice")
    silent = await client.ws_connect(f"/ws/dashboard/{ops.id}/", autoping=False)
    answering = await client.ws_connect(f"/ws/dashboard/{ops.id}/", autoping=False)
    await read_connect_sequence(silent, 1)
    await read_connect_sequence(answering, 1)
    replies: asyncio.Queue = asyncio.Queue()
    pings: list[float] = []
    reader = asyncio.create_task(_answer_pings(answering, replies, pings))
    started = time.monotonic()
    while True:  # the silent peer sees pings, then the end
        message = await asyncio.wait_for(silent.receive(), 3)
        if message.type != WSMsgType.PING:
            break
    assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)
    assert time.monotonic() - started < 1.5
    # Two heartbeats later, the answering peer is still served.
    answered = len(pings)
    await eventually(lambda: len(pings) >= answered + 2, 5, "two more heartbeats")
    await answering.send_json({"action": "ping"})
    assert (await asyncio.wait_for(replies.get(), 2))["action"] == "pong"
    reader.cancel()


async def _answer_pings(ws, queue: asyncio.Queue, pings: list[float]) -> None:
    """Answer the server's pings (noting when each came) and queue the messages."""
    async for message in ws:
        if message.type == WSMsgType.PING:
            await ws.pong(message.data)
            pings.append(time.monotonic())
        else:
            queue.put_nowait(message.json())

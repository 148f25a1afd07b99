"""Property: no connection ever receives a config, history or update of a
dashboard it is not a member of, whatever users, dashboards, memberships,
subscribes, publishes and removals hypothesis comes up with."""

from __future__ import annotations

import asyncio
import time
from contextlib import closing
from datetime import UTC, datetime

import psycopg2
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from common import db
from common.events import Revocation, announce_revocation, encode_values
from common.passwords import hash_password
from server.app import create_app
from server.live.closecodes import CloseCode
from tests.helpers import eventually, log_in
from tests.servers import TABLES, servers
from tests.wsclient import receive, receive_until

USERS, DASHBOARDS, METRICS_PER_DASHBOARD = 3, 3, 2
METRIC_IDS = range(1, DASHBOARDS * METRICS_PER_DASHBOARD + 1)  # metric m is on dashboard (m-1)//2 + 1
PASSWORD_HASH = hash_password("pw")

user_index = st.integers(0, USERS - 1)
dashboard_index = st.integers(0, DASHBOARDS - 1)
# Ids of any dashboard, and some of none.
some_ids = st.lists(st.integers(1, DASHBOARDS * METRICS_PER_DASHBOARD + 2), min_size=1, max_size=4)
STEPS = st.one_of(
    st.tuples(st.just("connect"), user_index, dashboard_index),
    # The ids as {"metric_ids": [...]} or, as the Chanx example's client sends them, a bare list.
    st.tuples(st.just("subscribe"), st.integers(0, 20), some_ids, st.booleans()),
    st.tuples(st.just("unsubscribe"), st.integers(0, 20), some_ids, st.booleans()),
    st.tuples(st.just("publish"), st.sampled_from(list(METRIC_IDS))),
    st.tuples(st.just("remove"), user_index, dashboard_index),
)
MEMBERSHIPS = st.sets(st.tuples(user_index, dashboard_index))


def dashboard_of(metric_id: int) -> int:
    return (metric_id - 1) // METRICS_PER_DASHBOARD + 1


class Watched:
    """One socket and everything it received."""

    def __init__(self, ws, user: int, dashboard: int, member_at_connect: bool) -> None:
        self.ws, self.user, self.dashboard = ws, user, dashboard
        self.member_at_connect = member_at_connect
        self.messages: list[dict] = []
        self.close_code: int | None = None
        self.reader = asyncio.create_task(self._read())

    def saw(self, *actions: str) -> int:
        """How many messages with one of these actions arrived so far."""
        return sum(message["action"] in actions for message in self.messages)

    async def ask(self, message: dict, *answers: str) -> None:
        """Send `message`; return once one of `answers` arrived after it (and so
        all the server queued before it) or the socket is closed."""
        before = self.saw(*answers)
        await self.ws.send_json(message)
        await eventually(lambda: self.saw(*answers) > before or self.reader.done(), 5, f"{answers}")

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == WSMsgType.TEXT:
                self.messages.append(message.json())
        self.close_code = self.ws.close_code


@hypothesis_settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(memberships=MEMBERSHIPS, steps=st.lists(STEPS, min_size=1, max_size=15))
def test_no_connection_sees_a_dashboard_it_is_not_a_member_of(settings, memberships, steps):
    with closing(psycopg2.connect(settings.database_url)) as conn, conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        for u in range(USERS):
            cur.execute(
                "INSERT INTO users (username, password_hash) VALUES (%s, %s)", (f"u{u}", PASSWORD_HASH)
            )
        for d in range(DASHBOARDS):
            cur.execute("INSERT INTO dashboards (name, slug) VALUES (%s, %s)", (f"D{d}", f"d{d}"))
            for m in range(METRICS_PER_DASHBOARD):
                cur.execute(
                    "INSERT INTO metrics (dashboard_id, name, type) VALUES (%s, %s, 'gauge')",
                    (d + 1, f"m{m}"),
                )
        for u, d in memberships:
            cur.execute("INSERT INTO dashboard_members VALUES (%s, %s)", (d + 1, u + 1))
    asyncio.run(_play(settings, set(memberships), steps))


async def _play(settings, members: set[tuple[int, int]], steps) -> None:
    async with (
        TestClient(TestServer(create_app(settings))) as first,
        db.create_pool(settings.database_url or "", maxsize=2) as pool,
        Redis.from_url(servers().redis_url) as redis_client,
    ):
        browsers = [first]
        for _ in range(USERS - 1):
            browser = TestClient(first.server)
            await browser.start_server()
            browsers.append(browser)
        for index, browser in enumerate(browsers):
            await log_in(browser, f"u{index}", "pw")
        sockets: list[Watched] = []
        try:
            for step in steps:
                await _do(step, browsers, sockets, members, pool, redis_client)
            await _delivered(browsers[0], sockets, pool, redis_client)
        finally:
            for watched in sockets:
                await watched.ws.close()
                await watched.reader
            for browser in browsers[1:]:
                await browser.close()
    for watched in sockets:
        _check(watched)


async def _do(step, browsers, sockets, members, pool, redis_client) -> None:
    kind = step[0]
    if kind == "connect":
        _, u, d = step
        ws = await browsers[u].ws_connect(f"/ws/dashboard/{d + 1}/")
        watched = Watched(ws, u, d + 1, (u, d) in members)
        sockets.append(watched)
        await eventually(lambda: watched.saw("alerts") or watched.reader.done(), 5, "set up or refused")
    elif kind in ("subscribe", "unsubscribe") and sockets:
        _, which, ids, bare = step
        watched = sockets[which % len(sockets)]
        if not watched.ws.closed:
            await watched.ask(
                {"action": kind, "payload": ids if bare else {"metric_ids": ids}}, "complete", "error"
            )
    elif kind == "publish":
        await _publish(pool, redis_client, step[1])
    elif kind == "remove":
        _, u, d = step
        if (u, d) in members:
            members.discard((u, d))
            await db.remove_member(pool, d + 1, u + 1)
            await announce_revocation(
                redis_client,
                servers().channels,
                Revocation("member_removed", user_id=u + 1, dashboard_id=d + 1),
            )
            # Every socket of that user on that dashboard closes within a second.
            deadline = time.monotonic() + 1
            for watched in sockets:
                if (watched.user, watched.dashboard) == (u, d + 1):
                    while not watched.reader.done():
                        assert time.monotonic() < deadline, "a removed member's socket stayed open"
                        await asyncio.sleep(0.02)
                    assert watched.close_code in (CloseCode.FORBIDDEN, CloseCode.UNAUTHENTICATED)


async def _publish(pool, redis_client, metric_id: int) -> db.MetricValue:
    metric = (await db.list_metrics(pool, dashboard_of(metric_id)))[(metric_id - 1) % METRICS_PER_DASHBOARD]
    (stored,) = await db.insert_values(pool, [(metric.id, 1.0, datetime.now(UTC))])
    await redis_client.publish(
        servers().channels.dashboard(metric.dashboard_id),
        encode_values(metric.dashboard_id, [(metric, stored)]),
    )
    return stored


async def _delivered(browser: TestClient, sockets: list[Watched], pool, redis_client) -> None:
    """Everything published has reached the sockets' readers.

    The server hands values over in the order its one subscription received
    them: once a value published now reaches a socket opened for it, every
    earlier one was queued for its sockets; a ping answered on each open
    socket then comes after whatever was queued for it.
    """
    async with pool.acquire() as conn, conn.cursor() as cur:  # `browser` is u0, user 1
        await cur.execute("INSERT INTO dashboard_members VALUES (1, 1) ON CONFLICT DO NOTHING")
    barrier_socket = await browser.ws_connect("/ws/dashboard/1/")
    await receive_until(barrier_socket, "alerts")
    barrier = await _publish(pool, redis_client, 1)
    while (await receive(barrier_socket)).get("payload", {}).get("id") != barrier.id:
        pass
    await barrier_socket.close()
    for watched in sockets:
        if not watched.ws.closed:
            await watched.ask({"action": "ping"}, "pong")


def _check(watched: Watched) -> None:
    """Only its own dashboard's data, and none at all unless a member."""
    for message in watched.messages:
        action, payload = message["action"], message.get("payload")
        if action == "authentication":
            assert payload["status_code"] == (200 if watched.member_at_connect else 403)
        elif action == "dashboard_config":
            assert watched.member_at_connect and payload["id"] == watched.dashboard
            assert all(dashboard_of(m["id"]) == watched.dashboard for m in payload["metrics"])
        elif action in ("metric_history", "metric_update"):
            assert watched.member_at_connect, message
            assert dashboard_of(payload["metric_id"]) == watched.dashboard, message
        elif action == "alerts":
            assert watched.member_at_connect, message
            for item in payload["rules"] + payload["events"]:
                assert dashboard_of(item["metric_id"]) == watched.dashboard, message
        else:
            assert action in ("error", "complete", "pong"), message

"""Requests that cost one client little must not cost the server work in
proportion to everyone else: a logout looks only at its own session's
sockets (and an anonymous one at none), and edits of one dashboard never
make another dashboard's sockets re-read their config."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

from redis.asyncio import Redis

import server.live.registry
from common import db
from common.events import DashboardChanged, Revocation, announce_dashboard_changed, announce_revocation
from server.app import create_app
from server.keys import HUB_KEY
from server.live.closecodes import CloseCode
from tests.helpers import csrf_from, eventually, log_in, waiting_on_locks
from tests.servers import servers
from tests.wsclient import RawClient

SOCKETS = 1000


async def open_sockets(client, dashboard_id: int, count: int) -> list[RawClient]:
    """`count` sockets of `client`'s user, past their opening sequence, 50 at a time."""

    async def one() -> RawClient:
        raw, _ = await RawClient.connect(client, f"/ws/dashboard/{dashboard_id}/?subscribe=none")
        await raw.until("alerts")
        return raw

    opened: list[RawClient] = []
    for start in range(0, count, 50):
        opened += await asyncio.gather(*(one() for _ in range(min(50, count - start))))
    return opened


async def test_logouts_look_only_at_their_own_sockets(
    aiohttp_client, settings, make_user, make_dashboard, new_client, monkeypatch
):
    app = create_app(replace(settings, max_connections_per_user=SOCKETS))
    client = await aiohttp_client(app)
    alice, bob, carol = await make_user("alice"), await make_user("bob"), await make_user("carol")
    ops = await make_dashboard("ops", members=(alice, bob, carol))
    hashed = 0
    digest = server.live.registry.session_digest

    def counting_digest(session_key: str) -> str:
        nonlocal hashed
        hashed += 1
        return digest(session_key)

    monkeypatch.setattr(server.live.registry, "session_digest", counting_digest)
    await log_in(client, "alice")
    sockets = await open_sockets(client, ops.id, SOCKETS)
    bobs = await new_client()
    await log_in(bobs, "bob")
    (bobs_socket,) = await open_sockets(bobs, ops.id, 1)
    carols = await new_client()
    await log_in(carols, "carol")
    (carols_socket,) = await open_sockets(carols, ops.id, 1)
    assert hashed == SOCKETS + 2  # once each, when registered

    hashed = 0
    anonymous = await new_client()
    for _ in range(100):
        token = await csrf_from(anonymous)  # a fresh anonymous session each time
        response = await anonymous.post("/logout", data={"csrf_token": token}, allow_redirects=False)
        assert response.status == 302
    # Before: each one was announced, and every process hashed every socket's session.
    assert hashed == 0

    token = await csrf_from(bobs, "/dashboards/")
    response = await bobs.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    assert response.status == 302
    code, reason = await close_frame(bobs_socket)
    assert (code, reason) == (CloseCode.UNAUTHENTICATED, b"logout")
    # Its announcement, echoed back by Redis, is handled too: the control
    # channel is ordered, so once a later one closes carol's socket, it was.
    async with Redis.from_url(servers().redis_url) as redis:
        removed = Revocation("member_removed", user_id=carol.id, dashboard_id=ops.id)
        await announce_revocation(redis, servers().channels, removed)
    assert (await close_frame(carols_socket))[0] == CloseCode.FORBIDDEN
    assert hashed == 0  # found by its digest, not by hashing the others
    assert app[HUB_KEY].connection_count() == SOCKETS
    for raw in [*sockets, bobs_socket, carols_socket]:
        raw.writer.close()


async def close_frame(raw: RawClient) -> tuple[int, bytes]:
    while True:
        opcode, payload = await raw.frame()
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big"), payload[2:]


async def config_reads(client) -> float:
    text = await (await client.get("/metrics")).text()
    return float(re.search(r"^dashboard_config_reads_total (\S+)$", text, re.MULTILINE)[1])


async def test_edits_of_one_dashboard_do_not_make_another_re_read_its_config(
    client, make_user, make_dashboard, make_metric, pool
):
    ed = await make_user("ed")
    a, b, c = [await make_dashboard(slug, members=(ed,)) for slug in ("a", "b", "c")]
    await make_metric(b, "cpu")
    await log_in(client, "ed")
    (watcher,) = await open_sockets(client, c.id, 1)
    before = await config_reads(client)
    async with pool.acquire() as conn, conn.cursor() as cur, Redis.from_url(servers().redis_url) as redis:
        # B's config read is held open while the edits of A are heard.
        await cur.execute("BEGIN")
        await cur.execute("LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE")
        opening = asyncio.create_task(open_sockets(client, b.id, 1))
        await eventually(lambda: waiting_on_locks(pool), 10, "B's config read waits for the lock")
        # The editor saves A 200 times: each save commits, then is announced to every process.
        for i in range(200):
            await db.update_dashboard(pool, a.id, f"A, take {i}", "")
            await announce_dashboard_changed(redis, servers().channels, DashboardChanged(a.id))
        # The control channel is ordered: once this closes the watcher, all 200 were heard.
        await announce_revocation(
            redis, servers().channels, Revocation("member_removed", user_id=ed.id, dashboard_id=c.id)
        )
        assert (await close_frame(watcher))[0] == CloseCode.FORBIDDEN
        await cur.execute("ROLLBACK")
    (first,) = await opening
    # Before: every change of A made B's read start over.
    assert await config_reads(client) - before == 1
    more = await open_sockets(client, b.id, 20)
    assert await config_reads(client) - before == 1
    for raw in [watcher, first, *more]:
        raw.writer.close()

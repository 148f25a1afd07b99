"""Faults with nothing lost: Redis and PostgreSQL really stop and restart (own
instances, tests/faultservers.py) under a running worker, server and client.

The no-gap property: what a client ends up showing for a metric is exactly
the stored values between its first and last, in order, none twice, and
every value it was ever shown is stored.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from common import db
from common.migrate import migrate
from server.live.closecodes import CloseCode
from tests.faultservers import Viewer, assert_no_gaps, make_world, postgres_server, redis_server
from tests.helpers import browser_log_in, eventually
from tests.processes import child, free_port, wait_for_http

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def started(database_url: str, redis_url: str, port: int):
    urls = ["--database-url", database_url, "--redis-url", redis_url]
    server = child(["-m", "server", *urls, "run", "--port", str(port), "--history-limit", "5000"])
    worker = child(["-m", "worker", *urls, "run", "--interval", "0.1"])
    return server, worker


async def test_redis_restart_clients_resync_and_nothing_is_lost(settings, pool, tmp_path):
    dashboard_id, metric_ids = await make_world(pool)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with redis_server(tmp_path) as own_redis:
        server_cm, worker_cm = started(settings.database_url, own_redis.url, port)
        with server_cm as server, worker_cm as worker:
            await asyncio.to_thread(wait_for_http, f"{base}/healthz", server)
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
                await browser_log_in(session, base, "alice", "secret-pw")
                viewer = Viewer(session, base, dashboard_id)
                watching = asyncio.create_task(viewer.run())
                await viewer.wait_for_updates(6)
                own_redis.kill()
                stored_before = await _stored(pool, metric_ids[0])

                async def stored_more() -> bool:
                    return await _stored(pool, metric_ids[0]) >= stored_before + 5

                await eventually(stored_more, 10, "the worker goes on writing while Redis is down")
                own_redis.start()
                await eventually(lambda: CloseCode.RESYNC in viewer.closes, 15, "clients are told to resync")
                await viewer.wait_for_updates(6)
                worker.terminate()
                assert await asyncio.to_thread(worker.wait, 10) == 0
                await viewer.wait_until_caught_up(pool, metric_ids)
                watching.cancel()
                with suppress(asyncio.CancelledError):
                    await watching
    await assert_no_gaps(pool, viewer, metric_ids)


async def test_postgres_restart_worker_keeps_values_server_answers_then_recovers(tmp_path):
    with postgres_server() as own_pg, redis_server(tmp_path) as own_redis:
        async with db.create_pool(own_pg.url, maxsize=2) as pool:
            await migrate(pool)
            dashboard_id, metric_ids = await make_world(pool)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            server_cm, worker_cm = started(own_pg.url, own_redis.url, port)
            with server_cm as server, worker_cm as worker:
                await asyncio.to_thread(wait_for_http, f"{base}/healthz", server)
                async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
                    await browser_log_in(session, base, "alice", "secret-pw")
                    viewer = Viewer(session, base, dashboard_id)
                    watching = asyncio.create_task(viewer.run())
                    probe = await session.ws_connect(f"{base}/ws/dashboard/{dashboard_id}/", origin=base)
                    await _drain_until(probe, "metric_history", count=2)
                    await probe.send_json(
                        {"action": "unsubscribe", "payload": {"metric_ids": metric_ids[:1]}}
                    )
                    await viewer.wait_for_updates(6)

                    await asyncio.to_thread(own_pg.stop)
                    down_at = datetime.now(UTC)
                    # History: a prompt error, not a hang; the socket stays usable.
                    await probe.send_json({"action": "subscribe", "payload": {"metric_ids": metric_ids[:1]}})
                    answered = time.monotonic()
                    error = await _drain_until(probe, "error")
                    assert "history unavailable" in error["payload"]["message"]
                    assert time.monotonic() - answered < 3
                    async with session.get(f"{base}/readyz") as response:
                        assert response.status == 503
                    # A page: the site's "try again shortly" page, not a traceback or a hang.
                    async with session.get(
                        f"{base}/dashboards/", headers={"Accept": "text/html"}
                    ) as response:
                        assert (response.status, response.headers.get("Retry-After")) == (503, "5")
                        assert "temporarily unavailable" in await response.text()
                    # A new connection is told to come back later.
                    refused = await session.ws_connect(f"{base}/ws/dashboard/{dashboard_id}/", origin=base)
                    await refused.receive(timeout=5)
                    assert refused.close_code == CloseCode.TRY_AGAIN_LATER
                    # The worker keeps what it produces meanwhile: ten ticks' worth at least.
                    await eventually(
                        lambda: worker.output().count("database unavailable") >= 10, 15, "ten ticks kept"
                    )

                    await asyncio.to_thread(own_pg.start)
                    await viewer.wait_for_updates(20)  # the kept values, then new ones
                    await _subscribe_until_it_works(probe, metric_ids[:1])
                    worker.terminate()
                    assert await asyncio.to_thread(worker.wait, 10) == 0
                    await viewer.wait_until_caught_up(pool, metric_ids)
                    watching.cancel()
                    with suppress(asyncio.CancelledError):
                        await watching
            assert viewer.closes == [], "the viewer should not have needed to reconnect"
            await assert_no_gaps(pool, viewer, metric_ids)
            kept = await db.latest_values(pool, metric_ids[:1], 100_000)
            during = [v for v in kept[metric_ids[0]] if down_at < v.ts < down_at + timedelta(seconds=1.4)]
            assert len(during) >= 10, "values produced while the database was down were not stored"


async def _stored(pool, metric_id: int) -> int:
    return len((await db.latest_values(pool, [metric_id], 100_000))[metric_id])


async def _drain_until(ws, action: str, count: int = 1) -> dict:
    """Messages up to the `count`-th with `action`; returns that one."""
    seen = 0
    while True:
        message = (await ws.receive(timeout=10)).json()
        if message["action"] == action:
            seen += 1
            if seen == count:
                return message


async def _subscribe_until_it_works(ws, metric_ids: list[int]) -> None:
    """After the restart the server's pool may hand out a dead connection once or twice."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        await ws.send_json({"action": "subscribe", "payload": {"metric_ids": metric_ids}})
        while True:
            message = (await ws.receive(timeout=10)).json()
            if message["action"] == "metric_history":
                return
            if message["action"] == "error":
                break
        await asyncio.sleep(0.3)
    raise AssertionError("history did not come back after the database did")

"""A lost or late publish never costs an open socket a value, and `resume`,
histories and live values all go by one order, the value id (issue 14)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from common import db
from common.events import encode_values
from common.sources import RANDOM
from tests.helpers import api_token, browser_log_in, eventually
from tests.processes import child, free_port, wait_for_http
from tests.servers import servers
from tests.tcpproxy import cuttable_redis
from tests.wsclient import expect_only_barrier, read_connect_sequence, receive


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_a_publish_lost_for_real_is_filled_in_on_the_open_socket(
    settings, pool, make_user, make_dashboard, make_metric
):
    alice = await make_user("alice")
    dashboard = await make_dashboard("ops", members=(alice,))
    cpu = await make_metric(dashboard, "cpu", "gauge", source=RANDOM)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    database = ["--database-url", settings.database_url]
    server_args = ["-m", "server", *database, "--redis-url", settings.redis_url, "run", "--port", str(port)]
    with child(server_args) as server:
        await asyncio.to_thread(wait_for_http, f"{base}/login", server)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            await browser_log_in(session, base, "alice", "secret-pw")
            ws = await session.ws_connect(f"{base}/ws/dashboard/{dashboard.id}/", origin=base)
            history = (await read_connect_sequence(ws, 1))[2]["payload"]
            received: list[dict] = []

            async def read() -> None:
                while True:
                    message = await receive(ws, within=30)
                    received.append(message)

            reader = asyncio.create_task(read())
            async with cuttable_redis(settings.redis_url) as (proxy, proxied_url):
                worker_args = ["-m", "worker", *database, "--redis-url", proxied_url]
                with child([*worker_args, "--log-level", "debug", "run", "--interval", "0.3"]) as worker:
                    await eventually(lambda: len(received) >= 2, 20, "live values before the cut")
                    # The worker's Redis is unreachable until one of its publishes failed.
                    await proxy.cut()
                    await eventually(lambda: "could not publish" in worker.output(), 30, "a lost publish")
                    await proxy.start()
                    lost_at = len(received)
                    await eventually(lambda: len(received) >= lost_at + 3, 20, "live values after the cut")
                    worker.terminate()
                    await asyncio.to_thread(worker.wait, 15)

                    async def has_the_newest() -> bool:
                        newest = (await db.latest_values(pool, [cpu.id], 1))[cpu.id]
                        return bool(received) and received[-1]["payload"]["id"] == newest[-1].id

                    await eventually(has_the_newest, 15, "the last stored value arrives")
            reader.cancel()
            assert not ws.closed, "the socket was closed: recovery must not need a reconnect"
            await ws.close()
    assert {m["action"] for m in received} == {"metric_update"}, received
    live_ids = [m["payload"]["id"] for m in received]
    assert history["values"] == []
    stored = (await db.latest_values(pool, [cpu.id], 10_000))[cpu.id]
    # Every value stored after the history, the one whose publish was lost included,
    # exactly once and in the order stored, on the socket that stayed open.
    assert live_ids == [v.id for v in stored] and len(stored) >= 5
    assert [m["payload"]["value"] for m in received] == [v.value for v in stored]


async def _publish(redis_client, metric: db.Metric, stored: list[db.MetricValue]) -> None:
    await redis_client.publish(
        servers().channels.dashboard(metric.dashboard_id),
        encode_values(metric.dashboard_id, [(metric, v) for v in stored]),
    )


async def test_a_late_publish_is_neither_lost_nor_repeated_and_order_is_kept(
    client, setup, pool, redis_client
):
    cpu = setup["cpu"]
    ws = await client.ws_connect(f"/ws/dashboard/{setup['ops'].id}/")
    await read_connect_sequence(ws, 2)
    now = datetime.now(UTC)
    first = await db.insert_values(pool, [(cpu.id, 1.0, now)])
    second = await db.insert_values(pool, [(cpu.id, 2.0, now + timedelta(seconds=1))])
    third = await db.insert_values(pool, [(cpu.id, 3.0, now + timedelta(seconds=2))])
    # Two publishers: the second batch is published before the first.
    await _publish(redis_client, cpu, second)
    await _publish(redis_client, cpu, first)
    await _publish(redis_client, cpu, third)
    ids = [(await receive(ws))["payload"]["id"] for _ in range(3)]
    assert ids == [first[0].id, second[0].id, third[0].id]
    await expect_only_barrier(pool, cpu, ws)


async def test_values_stored_while_the_channel_is_joined_are_not_lost(client, setup, pool, redis_client):
    cpu = setup["cpu"]
    ws = await client.ws_connect(f"/ws/dashboard/{setup['ops'].id}/")
    history = (await read_connect_sequence(ws, 2))[2]["payload"]
    # Stored after the socket opened, never published; the next batch shows the gap.
    unpublished = await db.insert_values(pool, [(cpu.id, 1.0, datetime.now(UTC))])
    published = await db.insert_values(pool, [(cpu.id, 2.0, datetime.now(UTC))])
    await _publish(redis_client, cpu, published)
    ids = [(await receive(ws))["payload"]["id"] for _ in range(2)]
    assert history["last_id"] is None
    assert ids == [unpublished[0].id, published[0].id]
    await expect_only_barrier(pool, cpu, ws)


@pytest.fixture
async def redis_client(app):
    from redis.asyncio import Redis

    created = Redis.from_url(servers().redis_url)
    yield created
    await created.aclose()


async def _push(client, auth, metric_id: int, value: float, ts: datetime) -> int:
    response = await client.post(
        "/api/v1/values",
        json={"values": [{"metric_id": metric_id, "value": value, "timestamp": ts.isoformat()}]},
        headers=auth,
    )
    assert response.status == 201, await response.text()
    return (await response.json())["values"][0]["id"]


async def test_back_dated_pushes_resume_without_gap_or_duplicate(client, pool, setup):
    ops, cpu = setup["ops"], setup["cpu"]
    secret = await api_token(pool, ops.id)
    auth = {"Authorization": f"Bearer {secret}"}
    now = datetime.now(UTC)
    # Interleaved: live stamps and stamps minutes back, some before what the client last saw.
    stamps = [now, now - timedelta(minutes=4), now + timedelta(seconds=1), now - timedelta(minutes=2)]
    later = [now - timedelta(minutes=3), now + timedelta(seconds=2), now - timedelta(seconds=30)]
    await _push(client, auth, cpu.id, 0.5, now - timedelta(minutes=1))  # before the socket: history
    ws = await client.ws_connect(f"/ws/dashboard/{ops.id}/")
    history = (await read_connect_sequence(ws, 2))[2]["payload"]
    held = {v["id"]: v["value"] for v in history["values"]}
    for i, ts in enumerate(stamps):
        await _push(client, auth, cpu.id, float(i), ts)
        update = (await receive(ws))["payload"]
        held[update["id"]] = update["value"]
    position = max(held)
    await ws.close()
    for i, ts in enumerate(later):
        await _push(client, auth, cpu.id, 10.0 + i, ts)
    ws = await client.ws_connect(f"/ws/dashboard/{ops.id}/?subscribe=none")
    for _ in range(3):
        await receive(ws)  # authentication, config, alerts
    await ws.send_json(
        {"action": "resume", "payload": {"positions": [{"metric_id": cpu.id, "after_id": position}]}}
    )
    resumed = (await receive(ws))["payload"]
    assert resumed["recovered"] is True
    resumed_ids = [v["id"] for v in resumed["values"]]
    assert resumed_ids == sorted(resumed_ids) and not set(resumed_ids) & set(held)
    held.update({v["id"]: v["value"] for v in resumed["values"]})
    stored = (await db.latest_values(pool, [cpu.id], 1000))[cpu.id]
    assert held == {v.id: v.value for v in stored}
    assert len(stored) == 1 + len(stamps) + len(later)
    assert resumed["last_id"] == max(held)
    assert await receive(ws) == {"action": "complete"}
    # A history read now holds the same values in the same order, and its last_id is the newest stored.
    await ws.send_json({"action": "history", "payload": {"metric_ids": [cpu.id], "range": "5m"}})
    ranged = (await receive(ws))["payload"]
    assert [v["id"] for v in ranged["values"]] == sorted(held)
    assert ranged["last_id"] == max(held)


async def test_a_history_s_last_id_is_its_newest_stored_value(client, pool, setup):
    cpu = setup["cpu"]
    now = datetime.now(UTC)
    await db.insert_values(pool, [(cpu.id, 1.0, now)])
    (back_dated,) = await db.insert_values(pool, [(cpu.id, 2.0, now - timedelta(minutes=3))])
    ws = await client.ws_connect(f"/ws/dashboard/{setup['ops'].id}/")
    history = (await read_connect_sequence(ws, 2))[2]["payload"]
    assert history["last_id"] == back_dated.id
    assert [v["value"] for v in history["values"]] == [1.0, 2.0]

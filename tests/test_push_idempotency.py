"""A push sent again with its Idempotency-Key is answered, not stored twice.

A script whose push failed mid-way (its answer lost to a broken connection,
a timeout) cannot tell whether the values were stored: sent again with the
same key, they are stored once, whatever happened to the first attempt.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import psycopg2.extensions
import pytest
from redis.asyncio import Redis

from common import db
from common.events import channels_for
from tests.helpers import api_token, eventually
from tests.processes import child, free_port, wait_for_http
from tests.tcpproxy import TO_CLIENT, TcpProxy, cuttable_redis
from worker.retention import delete_expired_push_keys

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def board(pool, make_dashboard, make_metric):
    ops = await make_dashboard("ops")
    secret = await api_token(pool, ops.id)
    return {
        "ops": ops,
        "gauge": await make_metric(ops, "temp", "gauge", "C"),
        "counter": await make_metric(ops, "jobs", "counter", "jobs"),
        "auth": {"Authorization": f"Bearer {secret}"},
    }


async def stored(pool, metric) -> list[float]:
    return [v.value for v in (await db.latest_values(pool, [metric.id], 1000))[metric.id]]


def keyed(board, key: str) -> dict[str, str]:
    return {**board["auth"], "Idempotency-Key": key}


async def test_a_push_sent_again_with_its_key_gets_the_same_answer_and_is_stored_once(client, pool, board):
    path = "/api/v1/values"
    # 1e16: read back from jsonb without an exponent, it must still be answered as a float.
    body = {
        "values": [
            {"metric_id": board["gauge"].id, "value": 1e16},
            {"metric_id": board["gauge"].id, "value": -0.0},  # jsonb's numeric has no -0.0
            {"metric_id": board["counter"].id, "value": 7},
        ]
    }
    first = await client.post(path, json=body, headers=keyed(board, "run-42"))
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    again = await client.post(path, json=body, headers=keyed(board, '"run-42"'))  # the draft's quoted form
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.text() == await first.text()
    assert await stored(pool, board["gauge"]) == [1e16, -0.0]
    assert await stored(pool, board["counter"]) == [7]
    # Without a key, the same body is a new push.
    plain = await client.post(path, json=body, headers=board["auth"])
    assert plain.status == 201 and len(await stored(pool, board["gauge"])) == 4


async def test_a_key_used_with_another_request_is_refused_and_stores_nothing(client, pool, board):
    gauge = f"/api/v1/metrics/{board['gauge'].id}/values"
    assert (await client.post(gauge, json={"value": 1}, headers=keyed(board, "k1"))).status == 201
    for path, body in [
        (gauge, {"value": 2}),  # other values
        (f"/api/v1/metrics/{board['counter'].id}/values", {"value": 1}),  # another metric
    ]:
        response = await client.post(path, json=body, headers=keyed(board, "k1"))
        assert response.status == 422
        answer = await response.json()
        assert "another request" in answer["error"] and "Idempotency-Key" in answer["errors"]
    assert await stored(pool, board["gauge"]) == [1.0]
    assert await stored(pool, board["counter"]) == []


async def test_keys_are_per_dashboard(client, pool, board, make_dashboard, make_metric):
    other = await make_dashboard("other")
    theirs = await make_metric(other, "theirs", "gauge")
    secret = await api_token(pool, other.id)
    headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": "nightly"}
    assert (await client.post(f"/api/v1/metrics/{board['gauge'].id}/values", json={"value": 1},
                              headers=keyed(board, "nightly"))).status == 201  # fmt: skip
    response = await client.post(f"/api/v1/metrics/{theirs.id}/values", json={"value": 2}, headers=headers)
    assert response.status == 201 and "Idempotent-Replayed" not in response.headers
    assert await stored(pool, theirs) == [2.0]


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "caf\u00e9", '"unterminated'])
async def test_a_malformed_key_is_refused_before_anything_is_stored(client, pool, board, key):
    response = await client.post(
        f"/api/v1/metrics/{board['gauge'].id}/values", json={"value": 1}, headers=keyed(board, key)
    )
    assert response.status == 400
    assert "Idempotency-Key" in (await response.json())["errors"]
    assert await stored(pool, board["gauge"]) == []


async def test_a_refused_push_leaves_its_key_free(client, pool, board):
    path = f"/api/v1/metrics/{board['gauge'].id}/values"
    far = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    refused = await client.post(path, json={"value": 1, "timestamp": far}, headers=keyed(board, "fix-me"))
    assert refused.status == 422
    fixed = await client.post(path, json={"value": 1}, headers=keyed(board, "fix-me"))
    assert fixed.status == 201 and "Idempotent-Replayed" not in fixed.headers
    assert await stored(pool, board["gauge"]) == [1.0]


async def test_a_retry_is_answered_even_when_the_push_would_now_be_refused(client, pool, board):
    """The key is looked up before the checks: a metric handed to the worker
    since (it would refuse pushes now) still answers the retry of a push it took."""
    path = f"/api/v1/metrics/{board['gauge'].id}/values"
    first = await client.post(path, json={"value": 3}, headers=keyed(board, "before-switch"))
    assert first.status == 201
    gauge = board["gauge"]
    await db.update_metric(
        pool, board["ops"].id, gauge.id, gauge.name, gauge.unit, gauge.description, "random"
    )
    again = await client.post(path, json={"value": 3}, headers=keyed(board, "before-switch"))
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == await first.json()
    unkeyed = await client.post(path, json={"value": 3}, headers=board["auth"])
    assert unkeyed.status == 422


async def test_the_same_push_sent_many_times_at_once_is_stored_once(client, pool, board):
    """Twelve copies race: one stores, the others wait for its transaction and answer with its values."""
    path = f"/api/v1/metrics/{board['counter'].id}/values"
    responses = await asyncio.gather(
        *(client.post(path, json={"values": [{"value": 5}, {"value": 6}]}, headers=keyed(board, "race"))
          for _ in range(12))
    )  # fmt: skip
    assert [r.status for r in responses] == [201] * 12
    answers = [await r.json() for r in responses]
    assert all(answer == answers[0] for answer in answers)
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    assert await stored(pool, board["counter"]) == [5.0, 6.0]


async def test_a_push_whose_commit_answer_was_lost_is_stored_once_when_sent_again(settings, pool, board):
    """A real server whose connections to PostgreSQL pass through a proxy that
    drops the one carrying the push's COMMIT answer: the push fails (503)
    though it was stored, and was not published; sent again with its key, it
    is answered with the stored values, published then, and stored once."""
    dsn = psycopg2.extensions.parse_dsn(settings.database_url or "")
    host, pg_port = dsn.get("host") or "127.0.0.1", int(dsn.get("port") or 5432)
    proxy = TcpProxy(f"{host}/.s.PGSQL.{pg_port}" if host.startswith("/") else (host, pg_port))
    await proxy.start()
    user = f"{dsn['user']}@" if dsn.get("user") else ""
    proxied = f"postgresql://{user}127.0.0.1:{proxy.port}/{dsn['dbname']}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = [
        "-m",
        "server",
        "--database-url",
        proxied,
        "--redis-url",
        settings.redis_url,
        "run",
        "--port",
        str(port),
    ]
    try:
        with child(server) as process:
            await asyncio.to_thread(wait_for_http, f"{base}/login", process)
            url = f"{base}/api/v1/metrics/{board['gauge'].id}/values"
            async with (
                aiohttp.ClientSession() as session,
                Redis.from_url(settings.redis_url) as redis_client,
                redis_client.pubsub() as channel,
            ):
                await channel.subscribe(channels_for(settings.redis_url).dashboard(board["ops"].id))
                proxy.arm(TO_CLIENT, b"COMMIT\x00")
                async with session.post(url, json={"value": 9.5}, headers=keyed(board, "lost")) as lost:
                    assert lost.status == 503, await lost.text()
                assert proxy.cuts == 1
                assert await stored(pool, board["gauge"]) == [9.5], "the lost push was committed"
                async with session.post(url, json={"value": 9.5}, headers=keyed(board, "lost")) as again:
                    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
                    answer = await again.json()
                assert answer["stored"] == 1 and answer["values"][0]["value"] == 9.5
                published = await eventually(lambda: _published(channel), 10, "the value published")
                assert [v["id"] for v in published] == [answer["values"][0]["id"]]
    finally:
        await proxy.cut()
    assert await stored(pool, board["gauge"]) == [9.5]
    row = (await db.latest_values(pool, [board["gauge"].id], 1))[board["gauge"].id][0]
    assert answer["values"][0]["id"] == row.id


async def test_a_push_whose_publish_failed_is_published_when_sent_again(settings, pool, board):
    """A real server whose Redis is cut: the push is stored and answered, its
    publish fails; sent again with its key once Redis is back, it is published."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/api/v1/metrics/{board['gauge'].id}/values"
    async with (
        cuttable_redis(settings.redis_url) as (proxy, proxied_url),
        Redis.from_url(settings.redis_url) as redis_client,
        redis_client.pubsub() as channel,
        aiohttp.ClientSession() as session,
    ):
        await channel.subscribe(channels_for(settings.redis_url).dashboard(board["ops"].id))
        server = ["-m", "server", "--database-url", settings.database_url, "--redis-url", proxied_url]
        with child([*server, "run", "--port", str(port)]) as process:
            await asyncio.to_thread(wait_for_http, f"{base}/login", process)
            await proxy.cut()
            async with session.post(url, json={"value": 4.5}, headers=keyed(board, "no-redis")) as first:
                assert first.status == 201, await first.text()
                answer = await first.json()
            assert await _published(channel) is None
            await proxy.start()
            async with session.post(url, json={"value": 4.5}, headers=keyed(board, "no-redis")) as again:
                assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
                assert await again.json() == answer
            published = await eventually(lambda: _published(channel), 10, "the value published")
            assert [v["id"] for v in published] == [answer["values"][0]["id"]]
    assert await stored(pool, board["gauge"]) == [4.5]


async def _published(channel) -> list[dict] | None:
    """The values of a message on the dashboard's channel, if one came."""
    message = await channel.get_message(ignore_subscribe_messages=True, timeout=0.2)
    return json.loads(message["data"])["values"] if message else None


async def test_a_key_older_than_a_day_is_a_new_key(client, pool, board):
    path = f"/api/v1/metrics/{board['gauge'].id}/values"
    assert (await client.post(path, json={"value": 1}, headers=keyed(board, "weekly"))).status == 201
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("UPDATE push_keys SET created_at = now() - interval '25 hours'")
    # Even with another request: the old one is forgotten, whether or not the worker deleted it yet.
    response = await client.post(path, json={"value": 2}, headers=keyed(board, "weekly"))
    assert response.status == 201 and "Idempotent-Replayed" not in response.headers
    again = await client.post(path, json={"value": 2}, headers=keyed(board, "weekly"))
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await stored(pool, board["gauge"]) == [1.0, 2.0]


async def test_the_worker_forgets_keys_after_a_day(pool, board, client):
    path = f"/api/v1/metrics/{board['gauge'].id}/values"
    assert (await client.post(path, json={"value": 1}, headers=keyed(board, "old"))).status == 201
    assert (await client.post(path, json={"value": 2}, headers=keyed(board, "new"))).status == 201
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "UPDATE push_keys SET created_at = now() - interval '25 hours' WHERE idempotency_key = 'old'"
        )
    assert await delete_expired_push_keys(pool) == 1
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT idempotency_key FROM push_keys")
        assert [row[0] for row in await cur.fetchall()] == ["new"]
    # A key forgotten is a new push again.
    response = await client.post(path, json={"value": 1}, headers=keyed(board, "old"))
    assert response.status == 201 and "Idempotent-Replayed" not in response.headers
    assert await stored(pool, board["gauge"]) == [1.0, 2.0, 1.0]

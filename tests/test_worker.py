"""The worker's tick: values per metric type, one batch, published after commit."""

from __future__ import annotations

import asyncio
import itertools
import random

import psycopg2
from redis.asyncio import Redis

from common import db
from common.events import decode_values
from common.sources import RANDOM
from tests.servers import servers
from worker.sources import next_value
from worker.tick import Producer


def _series(metric_type: str, unit: str, n: int, rng: random.Random) -> list[float]:
    values = [next_value(metric_type, None, rng, unit)]
    for _ in range(n - 1):
        values.append(next_value(metric_type, values[-1], rng, unit))
    return values


def test_demo_values_are_plausible_for_their_type_and_unit():
    rng = random.Random(7)
    requests, errors, sent = (_series("counter", unit, 3000, rng) for unit in ("req", "err", "bytes"))
    for counter in (requests, errors, sent):
        # Whole events, never a decrease.
        assert all(v == int(v) for v in counter)
        assert all(b >= a for a, b in itertools.pairwise(counter))
    assert 4.5 < requests[-1] / 3000 < 6.5  # about 5.5 a tick
    assert 0.002 < errors[-1] / requests[-1] < 0.03  # about 1 % of requests, not as many
    assert sent[-1] / requests[-1] > 2000  # bytes, not kilobytes
    latency = _series("histogram", "ms", 5000, rng)
    assert min(latency) > 0
    assert 35 < sorted(latency)[2500] < 45  # median about 40 ms
    memory = _series("gauge", "bytes", 500, rng)
    assert all(abs(b / a - 1) < 0.02 for a, b in itertools.pairwise(memory))  # drifts, never jumps
    assert 100 * 1024**2 < memory[-1] < 4 * 1024**3
    cpu = _series("gauge", "%", 500, rng)
    assert all(0 <= v <= 100 for v in cpu)
    assert max(abs(b - a) for a, b in itertools.pairwise(cpu)) < 10
    jobs = _series("gauge", "jobs", 500, rng)
    assert all(v >= 0 and v == int(v) for v in jobs)


async def test_tick_stores_one_value_per_metric_of_every_dashboard(pool, make_dashboard, make_metric):
    first, second = await make_dashboard("first"), await make_dashboard("second")
    metrics = [
        await make_metric(first, "a", "counter", source=RANDOM),
        await make_metric(second, "b", "histogram", source=RANDOM),
    ]
    async with Redis.from_url(servers().redis_url) as client:
        producer = Producer(pool, client, servers().channels)
        assert await producer.tick() == 2
        assert await producer.tick() == 2
    history = await db.latest_values(pool, [m.id for m in metrics], 10)
    assert [len(history[m.id]) for m in metrics] == [2, 2]


async def test_counters_continue_from_the_stored_value_after_a_restart(pool, make_dashboard, make_metric):
    counter = await make_metric(await make_dashboard("d"), "hits", "counter", source=RANDOM)
    async with Redis.from_url(servers().redis_url) as client:
        for _ in range(3):
            await Producer(pool, client, servers().channels).tick()  # a new worker process each time
    values = [v.value for v in (await db.latest_values(pool, [counter.id], 10))[counter.id]]
    assert values == sorted(values) and len(set(values)) == 3


async def test_published_values_are_already_committed(pool, settings, make_dashboard, make_metric):
    dashboard = await make_dashboard("d")
    metrics = [await make_metric(dashboard, name, source=RANDOM) for name in ("x", "y", "z")]
    async with Redis.from_url(servers().redis_url) as client:
        pubsub = client.pubsub()
        await pubsub.subscribe(servers().channels.dashboard(dashboard.id))
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        await Producer(pool, client, servers().channels).tick()
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        await pubsub.aclose()
    assert message is not None
    dashboard_id, values = decode_values(message["data"])
    assert dashboard_id == dashboard.id
    assert sorted(v.metric_id for v in values) == [m.id for m in metrics]
    # Read through a separate connection: what was published is visible there.
    conn = await asyncio.to_thread(psycopg2.connect, settings.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM metric_values WHERE id = ANY(%s)", ([v.id for v in values],))
            assert len(cur.fetchall()) == 3
    finally:
        conn.close()

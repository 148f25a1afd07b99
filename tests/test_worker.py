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
from tests.conftest import CHANNELS, REDIS_URL
from worker.sources import next_value
from worker.tick import Producer


def test_values_follow_their_metric_type():
    rng = random.Random(7)
    counter = [0.0]
    for _ in range(200):
        counter.append(next_value("counter", counter[-1], rng))
    steps = [b - a for a, b in itertools.pairwise(counter)]
    assert all(1 <= step <= 10 for step in steps)
    gauges = [next_value("gauge", None, rng) for _ in range(500)]
    assert all(10 <= g <= 100 for g in gauges)
    histogram = [next_value("histogram", None, rng) for _ in range(5000)]
    mean = sum(histogram) / len(histogram)
    spread = (sum((h - mean) ** 2 for h in histogram) / len(histogram)) ** 0.5
    assert abs(mean - 50) < 1.5 and abs(spread - 15) < 1.5


async def test_tick_stores_one_value_per_metric_of_every_dashboard(pool, make_dashboard, make_metric):
    first, second = await make_dashboard("first"), await make_dashboard("second")
    metrics = [
        await make_metric(first, "a", "counter", source=RANDOM),
        await make_metric(second, "b", "histogram", source=RANDOM),
    ]
    async with Redis.from_url(REDIS_URL) as client:
        producer = Producer(pool, client, CHANNELS)
        assert await producer.tick() == 2
        assert await producer.tick() == 2
    history = await db.latest_values(pool, [m.id for m in metrics], 10)
    assert [len(history[m.id]) for m in metrics] == [2, 2]


async def test_counters_continue_from_the_stored_value_after_a_restart(pool, make_dashboard, make_metric):
    counter = await make_metric(await make_dashboard("d"), "hits", "counter", source=RANDOM)
    async with Redis.from_url(REDIS_URL) as client:
        for _ in range(3):
            await Producer(pool, client, CHANNELS).tick()  # a new worker process each time
    values = [v.value for v in (await db.latest_values(pool, [counter.id], 10))[counter.id]]
    assert values == sorted(values) and len(set(values)) == 3


async def test_published_values_are_already_committed(pool, settings, make_dashboard, make_metric):
    dashboard = await make_dashboard("d")
    metrics = [await make_metric(dashboard, name, source=RANDOM) for name in ("x", "y", "z")]
    async with Redis.from_url(REDIS_URL) as client:
        pubsub = client.pubsub()
        await pubsub.subscribe(CHANNELS.dashboard(dashboard.id))
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        await Producer(pool, client, CHANNELS).tick()
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

"""The worker never throws away good values: a metric deleted mid-tick, a long
backlog after an outage, a stalled worker whose dashboards were taken over."""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
import time
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from redis.asyncio import Redis

from common import db
from common.db.core import CLIENT_TIMEOUT
from common.sources import RANDOM
from tests.helpers import assert_one_producer, each_stored_since, eventually, waiting_on_locks
from tests.processes import child
from tests.servers import servers
from worker.leases import Leases
from worker.tick import Producer


def _worker(settings, *args: str) -> list[str]:
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    return ["-m", "worker", *urls, "--log-level", "debug", "run", *args]


# A tick's debug line in the worker's log.
TICK = r" tick: \d+ values"


async def _churn(pool, dashboard: db.Dashboard, stop: asyncio.Event) -> int:
    """Create and delete a metric on `dashboard` as fast as the database allows."""
    rounds = 0
    while not stop.is_set():
        metric = await db.create_metric(pool, dashboard.id, f"m{rounds}", "gauge", "u", "", RANDOM)
        await db.delete_metric(pool, dashboard.id, metric.id)
        rounds += 1
    return rounds


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_metrics_deleted_mid_tick_cost_no_other_dashboard_a_tick(settings, pool):
    victim = await db.create_dashboard(pool, "Churned", "churned")
    steady = await db.create_dashboard(pool, "Steady", "steady")
    metrics = [await db.create_metric(pool, steady.id, name, "counter", "req", "", RANDOM) for name in "abc"]
    stop = asyncio.Event()
    with child(_worker(settings, "--interval", "0.1")) as worker:
        churning = asyncio.create_task(_churn(pool, victim, stop))
        await eventually(
            lambda: len(re.findall(TICK, worker.output())) >= 30, 30, "30 ticks during the churn"
        )
        stop.set()
        rounds = await churning
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 15) == 0
        output = worker.output()
    ticks = len(re.findall(TICK, output))
    assert rounds > 100 and ticks > 20, (rounds, ticks)
    stored = await db.latest_values(pool, [m.id for m in metrics], 100_000)
    stamps = [[v.ts for v in stored[m.id]] for m in metrics]
    # Every tick stored every steady metric's value: none dropped, none twice.
    assert all(len(s) == len(set(s)) == ticks for s in stamps), (ticks, [len(s) for s in stamps])
    assert stamps[0] == stamps[1] == stamps[2]
    assert "tick failed" not in output and "dropping" not in output


async def _stored(pool, since: datetime, until: datetime) -> int:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT count(*) FROM metric_values WHERE ts >= %s AND ts < %s", (since, until))
        return (await cur.fetchone())[0]


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_million_kept_values_drain_in_chunks_while_live_ticks_go_on(pool):
    dashboards = [await db.create_dashboard(pool, f"D{i}", f"d{i}") for i in range(10)]
    metrics = [
        await db.create_metric(pool, dashboard.id, f"m{j}", "gauge", "u", "", RANDOM)
        for dashboard in dashboards
        for j in range(100)
    ]
    ticks, chunk = 1000, 50_000
    # A long outage's backlog, kept as the worker keeps it: 1,000 ticks of 1,000 metrics.
    start = datetime.now(UTC) - timedelta(seconds=2 * ticks)
    async with Redis.from_url(servers().redis_url) as client:
        producer = Producer(
            pool, client, servers().channels, max_unsaved_ticks=ticks + 100, backlog_chunk=chunk
        )
        for i in range(ticks):
            ts = start + timedelta(seconds=i)
            producer._keep([(metric.id, float(i), ts) for metric in metrics])
        live_since = datetime.now(UTC)
        drained = 0
        while producer.unsaved_values:
            stored = await producer.tick()
            drained += 1
            # Each tick: its own values and the next chunk of the backlog, oldest first.
            assert stored == chunk + len(metrics)
            assert await _stored(pool, live_since, datetime.now(UTC)) == drained * len(metrics)
            assert await _stored(pool, start, live_since) == drained * chunk
    assert drained == ticks * len(metrics) // chunk
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT count(*), count(DISTINCT (metric_id, ts)) FROM metric_values WHERE ts < %s", (live_since,)
        )
        assert await cur.fetchone() == (ticks * len(metrics), ticks * len(metrics))
        # Stored oldest first: in id order, no kept value is older than the one before it.
        await cur.execute(
            "SELECT count(*) FROM (SELECT ts < lag(ts) OVER (ORDER BY id) AS back FROM metric_values"
            " WHERE ts < %s) v WHERE back",
            (live_since,),
        )
        assert await cur.fetchone() == (0,)


async def test_a_stale_lease_token_stores_nothing_after_a_takeover(settings, pool):
    dashboard = await db.create_dashboard(pool, "D", "d")
    metric = await db.create_metric(pool, dashboard.id, "hits", "gauge", "u", "", RANDOM)
    stale, fresh = Leases(settings.database_url, 0.1), Leases(settings.database_url, 0.1)
    try:
        await stale.refresh()
        async with stale.hold() as before:
            assert before.dashboards == {dashboard.id}

        # `stale` stops renewing (paused); its lease expires and `fresh` takes it.
        async def taken_over() -> bool:
            await fresh.refresh()
            return fresh.held == {dashboard.id}

        await eventually(taken_over, stale.lease_seconds + 5, "the expired lease is taken over")
        now = datetime.now(UTC)
        assert await db.insert_values(pool, [(metric.id, 1.0, now)], fence=before.tokens) == []
        async with fresh.hold() as after:
            stored = await db.insert_values(pool, [(metric.id, 2.0, now)], fence=after.tokens)
        assert [v.value for v in stored] == [2.0]
        # Waking up, `stale` finds the lease gone rather than renewing it.
        await stale.refresh()
        assert stale.held == set()
    finally:
        await stale.close()
        await fresh.close()


async def _holders(pool) -> dict[str, set[int]]:
    by_worker: dict[str, set[int]] = {}
    for dashboard_id, worker in (await db.dashboard_leases(pool)).items():
        by_worker.setdefault(worker, set()).add(dashboard_id)
    return by_worker


async def _until(pool, condition, within: float) -> dict[str, set[int]]:
    """The leases by holder once `condition` holds for them."""

    async def held_if_settled() -> dict[str, set[int]] | None:
        held = await _holders(pool)
        return held if condition(held) else None

    return await eventually(held_if_settled, within, "leases settle")


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_a_paused_worker_stores_nothing_after_its_dashboards_were_taken_over(settings, pool):
    interval = 0.2
    dashboards = [await db.create_dashboard(pool, f"D{i}", f"d{i}") for i in range(4)]
    metrics = [await db.create_metric(pool, d.id, "hits", "counter", "req", "", RANDOM) for d in dashboards]
    command = _worker(settings, "--interval", str(interval), "--lease-interval", "0.5")
    with child(command) as first, child(command) as second:
        balanced = await _until(pool, lambda held: sorted(map(len, held.values())) == [2, 2], within=20)
        await each_stored_since(pool, metrics, datetime.now(UTC), 3, "three ticks of each before the pause")
        first.send_signal(signal.SIGSTOP)
        paused_at = datetime.now(UTC)
        # Past its lease (5 x 0.5 s): the other worker takes all four.
        taken = await _until(pool, lambda held: sorted(map(len, held.values())) == [4], within=15)
        taken_at = datetime.now(UTC)
        await each_stored_since(pool, metrics, taken_at, 3, "three ticks of each by the other worker")
        noticed = first.output().count("taken over")
        first.send_signal(signal.SIGCONT)
        resumed_at = datetime.now(UTC)
        # Woken, the first worker finds its leases gone; a paused tick would land
        # at once, and a worker still producing would show in the next ticks.
        # Not longer: the workers then rebalance, and a hand-over between two
        # producers' ticks may fall anywhere within a tick.
        await eventually(lambda: first.output().count("taken over") > noticed, 10, "the loss noticed")
        await each_stored_since(pool, metrics, datetime.now(UTC), 2, "two ticks of each after that")
        for worker in (first, second):
            worker.terminate()
            assert await asyncio.to_thread(worker.wait, 15) == 0
    assert set(taken) <= set(balanced)
    stored = await db.latest_values(pool, [m.id for m in metrics], 100_000)
    for metric in metrics:
        values = stored[metric.id]  # in id order, the order of their commits per metric
        stamps = [v.ts for v in values]
        assert_one_producer(
            metric.id, [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)], interval
        )
        # Nothing committed late: a paused tick's values landing after the
        # takeover would be older than the values stored before them.
        assert stamps == sorted(stamps)
        assert all(b.value > a.value for a, b in itertools.pairwise(values))
        # Taken over while the first was paused, and produced after it woke.
        assert any(paused_at < ts < resumed_at and ts > taken_at - timedelta(seconds=1) for ts in stamps)
        assert stamps[-1] > resumed_at


@pytest.mark.timeout(60)
async def test_a_store_held_past_its_lock_limit_fails_whole_and_never_lands_late(pool):
    dashboard = await db.create_dashboard(pool, "Held", "held")
    metric = await db.create_metric(pool, dashboard.id, "hits", "gauge", "u", "", RANDOM)
    async with pool.acquire() as blocker, blocker.cursor() as cur:
        # An editor's long transaction on the metric: the store waits for its lock.
        await cur.execute("BEGIN")
        await cur.execute("SELECT id FROM metrics WHERE id = %s FOR UPDATE", (metric.id,))
        started = time.monotonic()
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            await db.insert_values(pool, [(metric.id, 1.0, datetime.now(UTC))])
        # PostgreSQL gave up first: the worker knows the store failed and keeps the values.
        assert time.monotonic() - started < CLIENT_TIMEOUT
        # And no statement still waits for the lock on the server, to commit once it is gone.
        assert await waiting_on_locks(pool) == 0
        await cur.execute("ROLLBACK")
    # Nothing committed: a retry will not store the value twice.
    assert (await db.latest_values(pool, [metric.id], 10))[metric.id] == []

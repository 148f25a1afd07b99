"""Several workers share the dashboards through PostgreSQL leases, and take over
a dead worker's dashboards within the stated time, with no value produced twice."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from datetime import datetime

import pytest

from common import db
from common.sources import RANDOM
from tests.helpers import (
    FAILOVER_SECONDS,
    assert_one_producer,
    each_stored_since,
    eventually,
    wait_for_leases,
)
from tests.processes import child
from worker.leases import LEASE_SESSION_NAME, Leases


async def _dashboards(pool, count: int) -> list[db.Metric]:
    """`count` dashboards with one counter each."""
    metrics = []
    for i in range(count):
        dashboard = await db.create_dashboard(pool, f"D{i}", f"d{i}")
        metrics.append(await db.create_metric(pool, dashboard.id, "hits", "counter", "req", "", RANDOM))
    return metrics


async def test_leases_are_shared_fairly_and_freed_when_a_worker_goes(settings, pool):
    metrics = await _dashboards(pool, 5)
    everything = {m.dashboard_id for m in metrics}
    first, second = Leases(settings.database_url), Leases(settings.database_url)
    try:
        await first.refresh()
        assert first.held == everything  # alone: all of them
        await second.refresh()
        assert second.held == set()  # all taken; the first gives some up at its next check
        await first.refresh()
        await second.refresh()
        assert len(first.held) == 3 and len(second.held) == 2
        assert first.held | second.held == everything
        holders = await db.dashboard_leases(pool)
        assert set(holders) == everything and len(set(holders.values())) == 2
        async with first.hold() as ownership:
            assert ownership.confirmed and ownership.dashboards == first.held
        await first.close()
        # The closed session may show in pg_stat_activity a moment longer.
        deadline = time.monotonic() + 5
        while second.held != everything and time.monotonic() < deadline:
            await second.refresh()
            await asyncio.sleep(0.05)
        assert second.held == everything
        # A dashboard deleted meanwhile is let go.
        await db.delete_dashboard(pool, metrics[0].dashboard_id)
        await second.refresh()
        assert second.held == everything - {metrics[0].dashboard_id}
    finally:
        await first.close()
        await second.close()


async def test_a_lost_lease_session_keeps_values_but_stores_none_until_it_is_back(settings, pool):
    metrics = await _dashboards(pool, 2)
    leases = Leases(settings.database_url)
    try:
        await leases.refresh()
        async with leases.hold() as before:
            assert before.confirmed and before.gained == {m.dashboard_id for m in metrics}
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND datname = current_database()",
                (LEASE_SESSION_NAME,),
            )
        async with leases.hold() as during:
            # Still producing for the same dashboards, but storing nothing.
            assert not during.confirmed and during.dashboards == before.dashboards
        await leases.refresh()
        async with leases.hold() as after:
            assert after.confirmed and after.dashboards == before.dashboards
            assert after.gained == set()  # counters go on from the kept values
    finally:
        await leases.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_killed_worker_dashboards_move_to_the_other_within_the_stated_time(settings, pool):
    interval = 0.2
    metrics = await _dashboards(pool, 4)
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    command = ["-m", "worker", *urls, "run", "--interval", str(interval)]
    with child(command) as first, child(command) as second:
        await wait_for_leases(pool, lambda held: sorted(map(len, held.values())) == [2, 2], within=20)
        balanced_at = datetime.now().astimezone()
        await each_stored_since(pool, metrics, balanced_at, 5, "five ticks of each by its worker")
        first.send_signal(signal.SIGKILL)
        killed_at = datetime.now().astimezone()
        moved_in = await wait_for_leases(pool, lambda held: sorted(map(len, held.values())) == [4], within=30)
        moved_at = datetime.now().astimezone()
        await each_stored_since(pool, metrics, moved_at, 5, "five ticks of each by the other worker")
        second.terminate()
        assert await asyncio.to_thread(second.wait, 10) == 0
    assert moved_in < FAILOVER_SECONDS
    stored = await db.latest_values(pool, [m.id for m in metrics], 100_000)
    for metric in metrics:
        values = [v for v in stored[metric.id] if v.ts >= balanced_at]
        stamps = [v.ts.timestamp() for v in values]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert_one_producer(metric.id, gaps, interval)
        # A counter taken over continues from the stored value.
        assert all(b.value > a.value for a, b in itertools.pairwise(values))
        # Beyond the hand-over, a tick is never missed.
        long_gaps = [(a, gap) for a, gap in zip(stamps, gaps, strict=False) if gap > interval * 2.5]
        assert len(long_gaps) <= 1, f"metric {metric.id}: ticks missing at {long_gaps}"
        for start, gap in long_gaps:
            assert abs(start - killed_at.timestamp()) < 1.5 and gap < moved_in + 1
        assert stamps[-1] > killed_at.timestamp() + 1, "nobody produced after the kill"


async def test_a_session_lost_between_reconnecting_and_rebalancing_is_tried_again(settings, pool):
    """Found by the chaos run: the lease check opened a new session, a tick took
    the lock first and found that session dead (PostgreSQL stalled again), and
    the check then rebalanced on no session at all. Its task died silently:
    the worker never held a dashboard again while its ticks went on."""
    metrics = await _dashboards(pool, 2)
    leases = Leases(settings.database_url)
    try:
        async with leases.hold():
            # The check reconnects while a tick holds the leases...
            checking = asyncio.create_task(leases.refresh())
            await eventually(lambda: _lease_sessions(pool), 5, "the check's new session")
            # ...and the next tick, queued behind it, finds the new session gone.
            next_tick = asyncio.create_task(_tick(leases))
            await asyncio.sleep(0)  # one loop turn, not a wait: the task starts and queues for the lock
            await _terminate_lease_sessions(pool)
        await next_tick
        await checking  # raised AttributeError: no session to rebalance on
        await leases.refresh()
        assert leases.held == {m.dashboard_id for m in metrics}
    finally:
        await leases.close()


async def _tick(leases: Leases) -> None:
    async with leases.hold():
        pass


async def _lease_sessions(pool) -> int:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
            (LEASE_SESSION_NAME,),
        )
        return (await cur.fetchone())[0]


async def _terminate_lease_sessions(pool) -> None:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            (LEASE_SESSION_NAME,),
        )

"""metric_values partitioned by day: the default partition, creating ahead, dropping expired days."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import aiopg
import pytest

from common import db
from worker.maintenance import RetentionPolicy, maintain_once
from worker.partitions import PARTITIONS_AHEAD, maintain_partitions


async def _where(pool: aiopg.Pool, ids: list[int]) -> dict[int, str]:
    """The partition holding each value."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT id, tableoid::regclass::text FROM metric_values WHERE id = ANY(%s)", (ids,))
        return dict(await cur.fetchall())


async def _all_values(pool: aiopg.Pool) -> set[tuple[int, int, float, datetime]]:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT id, metric_id, value, ts FROM metric_values")
        return set(await cur.fetchall())


@pytest.fixture
async def old_days(pool: aiopg.Pool) -> AsyncIterator[list[date]]:
    """Days far in the past to give partitions to. Every partition of 2001 is dropped
    afterwards (with "now" set in 2001, maintenance creates some ahead of it too), so
    other tests find those days without one."""
    yield [date(2001, 3, 1) + timedelta(days=i) for i in range(4)]
    for partition in await db.list_value_partitions(pool):
        if partition.day.year == 2001:
            await db.drop_value_partition(pool, partition)


async def test_a_value_of_a_day_without_partition_lands_in_the_default_one_then_moves(
    pool, make_dashboard, make_metric, old_days
):
    metric = await make_metric(await make_dashboard("ops"), "cpu")
    stamp = datetime.combine(old_days[0], datetime.min.time(), UTC) + timedelta(hours=5)
    [stored] = await db.insert_values(pool, [(metric.id, 4.5, stamp)])
    assert await _where(pool, [stored.id]) == {stored.id: db.DEFAULT_PARTITION}

    changes = await maintain_partitions(pool, None)

    name = db.partition_name(old_days[0])
    assert name in changes.created
    assert await _where(pool, [stored.id]) == {stored.id: name}  # moved, same id
    assert (await db.latest_values(pool, [metric.id], 10))[metric.id] == [stored]
    assert await maintain_partitions(pool, None) == type(changes)([], [])  # nothing left to do


async def test_partitions_exist_for_today_and_the_days_ahead(pool):
    await maintain_partitions(pool, None)
    today = datetime.now(UTC).date()
    days = {p.day for p in await db.list_value_partitions(pool)}
    assert {today + timedelta(days=ahead) for ahead in range(PARTITIONS_AHEAD + 1)} <= days


async def test_new_values_go_to_their_days_partition_not_the_default(pool, make_dashboard, make_metric):
    await maintain_partitions(pool, None)
    metric = await make_metric(await make_dashboard("ops"), "cpu")
    now = datetime.now(UTC)
    [stored] = await db.insert_values(pool, [(metric.id, 1.0, now)])
    assert await _where(pool, [stored.id]) == {stored.id: db.partition_name(now.date())}


async def test_dropping_expired_partitions_removes_exactly_the_old_values(
    pool, make_dashboard, make_metric, old_days
):
    metric = await make_metric(await make_dashboard("ops"), "cpu")
    first = datetime.combine(old_days[0], datetime.min.time(), UTC)
    # Every 6 hours over four days, each day given its partition.
    rows = [(metric.id, float(i), first + timedelta(hours=6 * i)) for i in range(16)]
    await db.insert_values(pool, rows)
    await maintain_partitions(pool, None)
    before = await _all_values(pool)
    # "Now" such that the cutoff falls on the third day at 09:00.
    cutoff = first + timedelta(days=2, hours=9)
    now = cutoff + timedelta(days=30)

    report = await maintain_once(pool, RetentionPolicy(raw_days=30), now=now)

    assert report.dropped == [db.partition_name(old_days[0]), db.partition_name(old_days[1])]
    assert report.deleted == 2  # 00:00 and 06:00 of the third day, from its partition
    assert await _all_values(pool) == {row for row in before if row[3] >= cutoff}
    days = {p.day for p in await db.list_value_partitions(pool)}
    assert old_days[0] not in days and old_days[1] not in days and old_days[2] in days


async def test_an_expired_day_in_the_default_partition_gets_no_partition_and_is_deleted(
    pool, make_dashboard, make_metric, old_days
):
    metric = await make_metric(await make_dashboard("ops"), "cpu")
    stamp = datetime.combine(old_days[0], datetime.min.time(), UTC)
    await db.insert_values(pool, [(metric.id, 1.0, stamp)])
    report = await maintain_once(pool, RetentionPolicy(raw_days=1), now=stamp + timedelta(days=3))
    assert db.partition_name(old_days[0]) not in report.created
    assert report.deleted == 1
    assert await _all_values(pool) == set()


async def test_newest_values_and_resume_reach_past_the_recent_span_when_needed(
    pool, make_dashboard, make_metric
):
    """Reads look at the last day first (pruning older partitions), then further back."""
    board = await make_dashboard("ops")
    sparse, busy = await make_metric(board, "sparse"), await make_metric(board, "busy")
    now = datetime.now(UTC)
    old = await db.insert_values(pool, [(sparse.id, float(d), now - timedelta(days=d)) for d in (4, 3, 2)])
    recent = await db.insert_values(
        pool, [(sparse.id, float(-s), now - timedelta(seconds=s)) for s in (30, 20, 10)]
    )
    await db.insert_values(pool, [(busy.id, float(s), now - timedelta(seconds=s)) for s in range(100, 0, -1)])

    latest = await db.latest_values(pool, [sparse.id, busy.id], 5)
    assert latest[sparse.id] == [*old[1:], *recent]
    assert [v.value for v in latest[busy.id]] == [5.0, 4.0, 3.0, 2.0, 1.0]
    after = await db.values_after(pool, {sparse.id: old[0].id, busy.id: latest[busy.id][2].id}, 10)
    assert after[sparse.id] == [*old[1:], *recent]
    assert after[busy.id] == latest[busy.id][3:]

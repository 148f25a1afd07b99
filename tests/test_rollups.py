"""Per-minute rollups: equal to the raw values' aggregates, late values included, and
what long ranges show once raw values are gone."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import aiopg
import pytest

from common import db
from server.live.history import range_bucket_seconds
from worker.retention import delete_expired, delete_expired_rollups
from worker.rollups import roll_up


def _minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def _expected_rollups(values: list[db.MetricValue]) -> dict[tuple[int, datetime], tuple]:
    """(metric, minute) -> (min, max, sum, count, last_id), computed here from the raw values."""
    groups: dict[tuple[int, datetime], list[db.MetricValue]] = defaultdict(list)
    for value in values:
        groups[(value.metric_id, _minute(value.ts))].append(value)
    return {
        key: (
            min(v.value for v in group),
            max(v.value for v in group),
            pytest.approx(sum(v.value for v in group)),
            len(group),
            max(v.id for v in group),
        )
        for key, group in groups.items()
    }


async def _stored_rollups(pool: aiopg.Pool, metric_ids: list[int]) -> dict[tuple[int, datetime], tuple]:
    far = datetime(1970, 1, 2, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
    found = {}
    for metric_id in metric_ids:
        for r in await db.list_rollups(pool, metric_id, *far):
            found[(r.metric_id, r.minute)] = (r.min, r.max, r.sum, r.count, r.last_id)
    return found


async def _two_metrics(make_dashboard, make_metric) -> list[db.Metric]:
    board = await make_dashboard("ops")
    return [await make_metric(board, "cpu"), await make_metric(board, "load")]


async def test_rollups_equal_the_aggregates_of_the_raw_values_late_ones_included(
    pool, make_dashboard, make_metric
):
    metrics = await _two_metrics(make_dashboard, make_metric)
    rng = random.Random(3)
    start = _minute(datetime.now(UTC)) - timedelta(minutes=30)
    rows = [
        (m.id, rng.uniform(-50, 50), start + timedelta(seconds=rng.uniform(0, 600)))
        for m in metrics
        for _ in range(300)
    ]
    stored = await db.insert_values(pool, rows)
    assert await roll_up(pool) > 0
    ids = [m.id for m in metrics]
    assert await _stored_rollups(pool, ids) == _expected_rollups(stored)

    # A late value (pushed with an older timestamp) changes its own minute at the next pass.
    late = await db.insert_values(pool, [(metrics[0].id, 1000.0, start + timedelta(seconds=61))])
    await roll_up(pool)
    rollups = await _stored_rollups(pool, ids)
    assert rollups == _expected_rollups(stored + late)
    assert rollups[(metrics[0].id, start + timedelta(minutes=1))][1] == 1000.0


async def test_a_pass_that_found_nothing_new_changes_nothing(pool, make_dashboard, make_metric):
    metrics = await _two_metrics(make_dashboard, make_metric)
    now = datetime.now(UTC)
    await db.insert_values(pool, [(metrics[0].id, 1.0, now - timedelta(minutes=5))])
    await roll_up(pool)
    before = await _stored_rollups(pool, [m.id for m in metrics])
    await roll_up(pool)
    await roll_up(pool)
    assert await _stored_rollups(pool, [m.id for m in metrics]) == before


async def test_a_long_catch_up_goes_in_several_passes(pool, make_dashboard, make_metric):
    metrics = await _two_metrics(make_dashboard, make_metric)
    start = _minute(datetime.now(UTC)) - timedelta(hours=2)
    stored = await db.insert_values(
        pool, [(m.id, float(i), start + timedelta(seconds=7 * i)) for m in metrics for i in range(500)]
    )
    passes = []
    while True:
        done = await db.roll_up_values(pool, max_ids=150)
        passes.append(done)
        if done.caught_up:
            break
    assert len(passes) == 7  # 1000 ids, 150 at a time
    assert await _stored_rollups(pool, [m.id for m in metrics]) == _expected_rollups(stored)


def _buckets_from_raw(values: list[db.MetricValue], since: datetime, size: int) -> dict[datetime, tuple]:
    groups: dict[datetime, list[float]] = defaultdict(list)
    for value in values:
        if value.ts >= since:
            epoch = value.ts.timestamp()
            groups[datetime.fromtimestamp(epoch - epoch % size, UTC)].append(value.value)
    return {
        start: (min(group), max(group), pytest.approx(sum(group) / len(group)), len(group))
        for start, group in sorted(groups.items())
    }


def _as_tuples(buckets: list[db.Bucket]) -> dict[datetime, tuple]:
    return {b.start: (b.min, b.max, b.avg, b.count) for b in buckets}


async def test_long_ranges_read_rollups_and_still_show_values_older_than_raw_retention(
    pool, make_dashboard, make_metric
):
    [cpu, load] = await _two_metrics(make_dashboard, make_metric)
    now = datetime.now(UTC)
    rng = random.Random(5)
    # Six days of values, one every ~10 minutes, then the last hour densely.
    rows = [(cpu.id, rng.uniform(0, 100), now - timedelta(minutes=10 * i + 3)) for i in range(1, 860)]
    rows += [(cpu.id, rng.uniform(0, 100), now - timedelta(seconds=s)) for s in range(30, 3600, 17)]
    stored = await db.insert_values(pool, rows)
    await roll_up(pool)
    # Stored after the pass: the raw tail the rollups do not cover yet.
    tail = await db.insert_values(
        pool, [(cpu.id, 500.0, datetime.now(UTC)), (load.id, 7.0, datetime.now(UTC))]
    )
    size = range_bucket_seconds("7d")
    assert size % 60 == 0
    since = now - timedelta(days=7)
    expected = _buckets_from_raw(stored + tail[:1], since, size)

    assert _as_tuples((await db.bucketed_values(pool, [cpu.id], since, size))[cpu.id]) == expected

    # Raw values older than a day are gone; the week still shows from the rollups.
    assert await delete_expired(pool, 1) > 700
    history = await db.bucketed_values(pool, [cpu.id, load.id], since, size)
    assert _as_tuples(history[cpu.id]) == expected
    assert min(b.start for b in history[cpu.id]) < now - timedelta(days=5)
    assert max(b.last_id for b in history[cpu.id]) == tail[0].id
    assert [(b.min, b.count) for b in history[load.id]] == [(7.0, 1)]


async def test_a_range_starting_mid_minute_counts_only_the_values_after_its_start(
    pool, make_dashboard, make_metric
):
    [cpu, _] = await _two_metrics(make_dashboard, make_metric)
    minute = _minute(datetime.now(UTC)) - timedelta(hours=1)
    stored = await db.insert_values(
        pool, [(cpu.id, float(s), minute + timedelta(seconds=s)) for s in range(0, 180, 5)]
    )
    await roll_up(pool)
    since = minute + timedelta(seconds=20)  # values at 0..15 s are before the range
    found = (await db.bucketed_values(pool, [cpu.id], since, 60))[cpu.id]
    assert _as_tuples(found) == _buckets_from_raw(stored, since, 60)
    assert found[0].count == 8  # 20..55 s


async def test_rollups_older_than_their_retention_are_deleted(pool, make_dashboard, make_metric):
    [cpu, _] = await _two_metrics(make_dashboard, make_metric)
    now = datetime.now(UTC)
    await db.insert_values(pool, [(cpu.id, 1.0, now - timedelta(days=d, minutes=1)) for d in (1, 3, 5)])
    await roll_up(pool)
    assert await delete_expired_rollups(pool, 4) == 1
    kept = await db.list_rollups(pool, cpu.id, now - timedelta(days=30), now)
    assert [r.minute for r in kept] == [_minute(now - timedelta(days=d, minutes=1)) for d in (3, 1)]


async def test_a_stopping_worker_ends_its_catch_up_early_and_the_next_round_finishes_it(
    pool, make_dashboard, make_metric
):
    [cpu, _] = await _two_metrics(make_dashboard, make_metric)
    now = datetime.now(UTC)
    stored = await db.insert_values(
        pool, [(cpu.id, float(i), now - timedelta(minutes=i)) for i in range(1, 50)]
    )
    stop = asyncio.Event()
    stop.set()
    assert await roll_up(pool, stop=stop) == 0
    assert await delete_expired(pool, 0.01, stop=stop) == 0
    assert await _stored_rollups(pool, [cpu.id]) == {}
    assert await roll_up(pool) == 49
    assert await _stored_rollups(pool, [cpu.id]) == _expected_rollups(stored)

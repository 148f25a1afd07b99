"""Numbers on long ranges are true: what each rollup minute keeps (common/stats.py)."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from common import db, stats
from worker.rollups import roll_up


async def test_each_rollup_minute_keeps_first_last_increase_and_distribution(
    pool, make_dashboard, make_metric
):
    board = await make_dashboard("ops")
    latency = await make_metric(board, "latency", "histogram", "ms")
    jobs = await make_metric(board, "jobs", "counter", "")
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    rng = random.Random(1)
    latencies = [
        (latency.id, rng.lognormvariate(3, 1), minute + timedelta(seconds=s / 2)) for s in range(240)
    ]
    # A reset inside a minute: 10, 20, 30, then 4 and 9 (an increase of 20 + 4 + 5).
    counts = [(jobs.id, v, minute + timedelta(seconds=10 * i)) for i, v in enumerate([10, 20, 30, 4, 9])]
    await db.insert_values(pool, latencies + counts)
    # A late value, stored after the first pass, belongs to its own minute.
    await roll_up(pool)
    (late,) = await db.insert_values(pool, [(latency.id, -0.5, minute + timedelta(seconds=30))])
    await roll_up(pool)

    [counter_minute] = await db.list_rollups(pool, jobs.id, minute, minute + timedelta(minutes=1))
    assert (counter_minute.first, counter_minute.last, counter_minute.increase) == (10, 9, 29)
    assert counter_minute.sketch is None  # only histograms keep one

    by_minute: dict[datetime, list[float]] = defaultdict(list)
    for _, value, ts in [*latencies, (latency.id, late.value, late.ts)]:
        by_minute[ts.replace(second=0, microsecond=0)].append(value)
    rollups = await db.list_rollups(pool, latency.id, minute, minute + timedelta(minutes=5))
    assert {r.minute: r.sketch for r in rollups} == {m: stats.make_sketch(v) for m, v in by_minute.items()}
    # Bounded: at most one entry per value, fewer where values are close.
    assert all(len(r.sketch) <= r.count for r in rollups)

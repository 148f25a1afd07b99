"""PostgreSQL-side benchmarks: worker ingest rate and latest-100 history latency."""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import aiopg

from common import db


async def ingest(pool: aiopg.Pool, metric_ids: list[int], ticks: int) -> dict:
    """Insert one value per metric per tick the way the worker does; rows/s."""
    now = datetime.now(UTC)
    rng = random.Random(1)
    started = time.perf_counter()
    for tick in range(ticks):
        stamp = now + timedelta(seconds=tick)
        await db.insert_values(pool, [(metric_id, rng.random(), stamp) for metric_id in metric_ids])
    seconds = time.perf_counter() - started
    rows = ticks * len(metric_ids)
    return {
        "rows": rows,
        "rows_per_tick": len(metric_ids),
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds),
    }


async def fill(pool: aiopg.Pool, metric_ids: list[int], per_metric: int) -> float:
    """Bulk-load per_metric values for each metric (server-side generate_series)."""
    started = time.perf_counter()
    async with pool.acquire() as conn, conn.cursor(timeout=3600) as cur:
        await cur.execute(
            "INSERT INTO metric_values (metric_id, value, ts)"
            " SELECT m, random() * 100, now() - make_interval(secs => s)"
            " FROM unnest(%s::bigint[]) AS m, generate_series(1, %s) AS s",
            (metric_ids, per_metric),
        )
        await cur.execute("ANALYZE metric_values")
    return time.perf_counter() - started


async def history_latency(pool: aiopg.Pool, metric_ids: list[int], queries: int) -> dict:
    """Latency of db.latest_values(…, 100) for one random metric at a time."""
    rng = random.Random(2)
    timings = []
    for _ in range(queries):
        metric_id = rng.choice(metric_ids)
        started = time.perf_counter()
        values = await db.latest_values(pool, [metric_id], 100)
        timings.append(time.perf_counter() - started)
        if len(values[metric_id]) != 100:
            raise RuntimeError("history query returned fewer than 100 values")
    timings.sort()
    return {
        "queries": queries,
        "p50_ms": round(statistics.median(timings) * 1000, 3),
        "p99_ms": round(timings[int(0.99 * len(timings)) - 1] * 1000, 3),
        "max_ms": round(timings[-1] * 1000, 3),
    }

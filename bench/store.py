"""PostgreSQL-side benchmarks: worker ingest rate and latest-100 history latency."""

from __future__ import annotations

import asyncio
import io
import random
import statistics
import struct
import time
from datetime import UTC, datetime, timedelta

import aiopg
import psycopg2

from common import db


async def ingest(
    pool: aiopg.Pool, metric_ids: list[int], ticks: int, copier: db.Copier | None = None
) -> dict:
    """Store one value per metric per tick the way the worker does (by COPY with
    a `copier`, as `dashboard-worker run`; by INSERT without); rows/s."""
    now = datetime.now(UTC)
    rng = random.Random(1)
    started = time.perf_counter()
    for tick in range(ticks):
        stamp = now + timedelta(seconds=tick)
        rows = [(metric_id, rng.random(), stamp) for metric_id in metric_ids]
        await (copier.store(rows) if copier is not None else db.insert_values(pool, rows))
    seconds = time.perf_counter() - started
    rows = ticks * len(metric_ids)
    return {
        "rows": rows,
        "rows_per_tick": len(metric_ids),
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds),
    }


async def compare_ingest(
    pool: aiopg.Pool, database_url: str, metric_ids: list[int], ticks: int, copier: db.Copier
) -> dict[str, dict]:
    """The same rows stored three ways, one tick of each in turn: the worker's
    COPY (`copier`), the INSERT (pushes, small ticks) and a raw binary COPY
    into the same table (one COPY and commit per tick, no numbering, no
    locks): the ceiling the first is compared with.

    Tick by tick, in an order that rotates, so that the machine's drift and
    the table's growth weigh on the three alike (runs of 50 ticks each way
    gave shares from 0.65 to 0.81 on a quiet machine). The raw COPY, as the
    worker's, runs in a thread of its own. Per way: rows, seconds, rows/s,
    and the median tick in ms."""
    now = datetime.now(UTC)
    rng = random.Random(1)
    raw = psycopg2.connect(database_url)
    spent: dict[str, list[float]] = {"copy": [], "insert": [], "raw": []}
    order = list(spent)
    try:
        for tick in range(ticks):
            stamp = now + timedelta(seconds=tick)
            for way in order[tick % 3 :] + order[: tick % 3]:
                rows = [(metric_id, rng.random(), stamp) for metric_id in metric_ids]
                started = time.perf_counter()
                if way == "copy":
                    await copier.store(rows)
                elif way == "insert":
                    await db.insert_values(pool, rows)
                else:
                    await asyncio.to_thread(_raw_copy, raw, rows)
                spent[way].append(time.perf_counter() - started)
    finally:
        raw.close()
    stored = ticks * len(metric_ids)
    return {
        way: {
            "rows": stored,
            "seconds": round(sum(times), 3),
            "rows_per_second": round(stored / sum(times)),
            "median_tick_ms": round(statistics.median(times) * 1000, 3),
        }
        for way, times in spent.items()
    }


def _raw_copy(conn: psycopg2.extensions.connection, rows: list[tuple[int, float, datetime]]) -> None:
    data = io.BytesIO()
    data.write(_COPY_HEADER)
    micros = {ts: _pg_micros(ts) for ts in {ts for _, _, ts in rows}}
    for metric_id, value, ts in rows:
        data.write(_COPY_ROW.pack(3, 8, metric_id, 8, value, 8, micros[ts]))
    data.write(_COPY_TRAILER)
    data.seek(0)
    with conn.cursor() as cur:
        cur.copy_expert("COPY metric_values (metric_id, value, ts) FROM STDIN (FORMAT binary)", data)
    conn.commit()


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)
# Per row: field count, then each field's length and value (bigint, float8, timestamptz).
_COPY_ROW = struct.Struct("!hiqidiq")
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _pg_micros(ts: datetime) -> int:
    delta = ts - _PG_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


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

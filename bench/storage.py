"""Storage benchmark: the partitioned values table, rollups and reads over many partitions.

    python -m bench.storage [--values-per-metric 10000] [--extra-partitions 365]

Fills the benchmark database (dropped and recreated) with 1,000 metrics'
values, then measures: ingest rows/s, the first rollup pass, bytes per value
and per rollup, newest-100 and 7-day history latency, resume latency; and the
newest-100 and resume latency again once the table has a year of (empty)
daily partitions. Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import aiopg
import click
import psycopg2

from bench import store
from common import db
from common.migrate import migrate
from server.live.history import range_bucket_seconds
from worker.rollups import roll_up

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/dashboard_bench"


def _recreate(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or name == "postgres":
        raise click.BadParameter(f"refusing to recreate database {name!r}")
    admin = psycopg2.connect(urlunsplit(urlsplit(url)._replace(path="/postgres")))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {name}")
    admin.close()


async def _p50_ms(call: Callable[[int], Awaitable[object]], ids: list[int]) -> float:
    timings = []
    for metric_id in ids:
        started = time.perf_counter()
        await call(metric_id)
        timings.append(time.perf_counter() - started)
    return round(statistics.median(timings) * 1000, 3)


async def _sizes(pool: aiopg.Pool) -> dict[str, float]:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT (SELECT count(*) FROM metric_values),"
            " (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
            "  WHERE inhparent = 'metric_values'::regclass),"
            " (SELECT count(*) FROM metric_rollups), pg_total_relation_size('metric_rollups')"
        )
        values, value_bytes, rollups, rollup_bytes = await cur.fetchone()
    return {
        "values": values,
        "bytes_per_value": round(float(value_bytes) / values, 1),
        "rollups": rollups,
        "bytes_per_rollup": round(float(rollup_bytes) / max(rollups, 1), 1),
    }


async def run(url: str, per_metric: int, extra_partitions: int) -> dict:
    _recreate(url)
    results: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count()}
    async with db.create_pool(url) as pool:
        await migrate(pool)
        board = await db.create_dashboard(pool, "Storage bench", "storage-bench")
        ids = [(await db.create_metric(pool, board.id, f"m{i}", "gauge")).id for i in range(1000)]
        results["ingest"] = await store.ingest(pool, ids, ticks=100)
        results["fill_seconds"] = round(await store.fill(pool, ids, per_metric), 1)
        started = time.perf_counter()
        await roll_up(pool, pause=0)
        results["first_rollup_seconds"] = round(time.perf_counter() - started, 1)
        results.update(await _sizes(pool))
        results["latest_100"] = await store.history_latency(pool, ids, 500)
        since, size = datetime.now(UTC) - timedelta(days=7), range_bucket_seconds("7d")
        sample = ids[:50]
        results["history_7d_p50_ms"] = await _p50_ms(
            lambda m: db.bucketed_values(pool, [m], since, size), sample
        )
        anchors = {m: values[0].id for m, values in (await db.latest_values(pool, sample, 20)).items()}
        results["resume_p50_ms"] = await _p50_ms(
            lambda m: db.values_after(pool, {m: anchors[m]}, 1000), sample
        )
        today = datetime.now(UTC).date()
        for days_ago in range(10, 10 + extra_partitions):
            await db.create_value_partition(pool, today - timedelta(days=days_ago))
        results["partitions"] = len(await db.list_value_partitions(pool))
        results["latest_100_many_partitions"] = await store.history_latency(pool, ids, 500)
        results["resume_many_partitions_p50_ms"] = await _p50_ms(
            lambda m: db.values_after(pool, {m: anchors[m]}, 1000), sample
        )
    return results


@click.command()
@click.option("--database-url", envvar="DASHBOARD_BENCH_DATABASE_URL", default=DEFAULT_URL, show_default=True)
@click.option(
    "--values-per-metric", default=10_000, show_default=True, help="Values of each of 1,000 metrics."
)
@click.option(
    "--extra-partitions", default=365, show_default=True, help="Empty daily partitions added at the end."
)
def main(database_url: str, values_per_metric: int, extra_partitions: int) -> None:
    """Measure the storage layer; print the results as JSON."""
    click.echo(json.dumps(asyncio.run(run(database_url, values_per_metric, extra_partitions)), indent=2))


if __name__ == "__main__":
    main()

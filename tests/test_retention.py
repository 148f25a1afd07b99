"""Retention: the worker deletes values older than N days in small batches."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from common import db
from tests.test_cli import _invoker, _ok
from worker.cli import main as worker_main
from worker.retention import delete_expired, enforce_retention


async def _seed(pool, make_dashboard, make_metric, old: int, recent: int) -> db.Metric:
    board = await make_dashboard("ops")
    metric = await make_metric(board, "cpu")
    now = datetime.now(UTC)
    rows = [(metric.id, float(i), now - timedelta(days=10, seconds=i)) for i in range(old)]
    rows += [(metric.id, float(i), now - timedelta(days=2, seconds=i)) for i in range(recent)]
    await db.insert_values(pool, rows)
    return metric


async def _remaining(pool, metric) -> list[datetime]:
    return [v.ts for v in (await db.latest_values(pool, [metric.id], 100_000))[metric.id]]


async def test_old_values_go_in_batches_recent_ones_stay(pool, make_dashboard, make_metric, monkeypatch):
    metric = await _seed(pool, make_dashboard, make_metric, old=2500, recent=300)
    batches = []
    delete = db.delete_values_before

    async def counted(*args: object) -> int:
        batches.append(await delete(*args))
        return batches[-1]

    monkeypatch.setattr(db, "delete_values_before", counted)
    assert await delete_expired(pool, 7, batch_size=1000, pause=0) == 2500
    assert batches == [1000, 1000, 500]  # never more than one batch per statement
    remaining = await _remaining(pool, metric)
    assert len(remaining) == 300
    assert min(remaining) > datetime.now(UTC) - timedelta(days=7)
    assert await delete_expired(pool, 7) == 0  # nothing left to do


async def test_the_worker_task_runs_at_start_and_stops_on_request(pool, make_dashboard, make_metric):
    metric = await _seed(pool, make_dashboard, make_metric, old=50, recent=5)
    stop = asyncio.Event()
    task = asyncio.create_task(enforce_retention(pool, 7, stop, every=3600))
    for _ in range(100):
        if len(await _remaining(pool, metric)) == 5:
            break
        await asyncio.sleep(0.05)
    assert len(await _remaining(pool, metric)) == 5
    stop.set()
    await asyncio.wait_for(task, 5)


def test_prune_command(database_url, clean_state):
    asyncio.run(_seed_for_cli(database_url))
    prune = _invoker(worker_main, database_url)
    assert _ok(prune("prune", "--retention-days", "7")) == "deleted 40 value(s) older than 7 day(s)\n"
    assert _ok(prune("prune", "--retention-days", "7")) == "deleted 0 value(s) older than 7 day(s)\n"


async def _seed_for_cli(database_url: str) -> None:
    """40 values eight days old and one new (the CLI test has no event loop of its own)."""
    async with db.create_pool(database_url) as pool:
        board = await db.create_dashboard(pool, "Ops", "ops")
        metric = await db.create_metric(pool, board.id, "cpu", "gauge")
        now = datetime.now(UTC)
        old = [(metric.id, 1.0, now - timedelta(days=8, seconds=i)) for i in range(40)]
        await db.insert_values(pool, [*old, (metric.id, 2.0, now)])

"""Retention: the worker deletes values older than N days (globally or per dashboard) in small
batches, and, as a real process, keeps partitions and rollups up to date."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from common import db
from common.sources import RANDOM
from tests.helpers import expect_ok, invoker
from tests.processes import child
from worker.cli import main as worker_main
from worker.maintenance import RetentionPolicy, maintain
from worker.retention import delete_expired, delete_expired_alert_events, delete_expired_of_dashboards


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
    task = asyncio.create_task(maintain(pool, RetentionPolicy(raw_days=7), stop, every=3600))
    for _ in range(100):
        if len(await _remaining(pool, metric)) == 5:
            break
        await asyncio.sleep(0.05)
    assert len(await _remaining(pool, metric)) == 5
    stop.set()
    await asyncio.wait_for(task, 5)


def test_prune_command(database_url, clean_state):
    asyncio.run(_seed_for_cli(database_url))
    prune = invoker(worker_main, database_url)
    first, again = (expect_ok(prune("prune", "--retention-days", "7")) for _ in range(2))
    assert first.startswith(
        "deleted 40 value(s) older than 7 day(s), 0 of dashboards with a shorter retention;"
    )
    assert again.startswith("deleted 0 value(s) older than 7 day(s), 0 of")


async def _seed_for_cli(database_url: str) -> None:
    """40 values eight days old and one new (the CLI test has no event loop of its own)."""
    async with db.create_pool(database_url) as pool:
        board = await db.create_dashboard(pool, "Ops", "ops")
        metric = await db.create_metric(pool, board.id, "cpu", "gauge")
        now = datetime.now(UTC)
        old = [(metric.id, 1.0, now - timedelta(days=8, seconds=i)) for i in range(40)]
        await db.insert_values(pool, [*old, (metric.id, 2.0, now)])


async def test_a_dashboards_own_retention_removes_only_its_old_values(pool, make_dashboard, make_metric):
    now = datetime.now(UTC)
    short, other = await make_dashboard("short"), await make_dashboard("other")
    metrics = [await make_metric(short, "a"), await make_metric(short, "b"), await make_metric(other, "a")]
    ages = (1, 3, 5)  # days
    await db.insert_values(pool, [(m.id, float(d), now - timedelta(days=d)) for m in metrics for d in ages])
    await db.set_dashboard_retention(pool, short.id, 2)

    assert await delete_expired_of_dashboards(pool, None, batch_size=1, pause=0) == 4
    kept = await db.latest_values(pool, [m.id for m in metrics], 10)
    assert [sorted(v.value for v in kept[m.id]) for m in metrics] == [[1.0], [1.0], [1.0, 3.0, 5.0]]

    # A global retention shorter than the dashboard's own leaves it to the global one.
    await db.set_dashboard_retention(pool, other.id, 4)
    assert await delete_expired_of_dashboards(pool, 3) == 0
    assert await delete_expired_of_dashboards(pool, 30) == 1  # other's 5-day-old value


async def _seed_for_worker(pool) -> dict[str, object]:
    """Values 10 and 3 days old on two dashboards; `short` keeps 2 days of them."""
    now = datetime.now(UTC)
    short, kept = (
        await db.create_dashboard(pool, "Short", "short"),
        await db.create_dashboard(pool, "Kept", "kept"),
    )
    # Generated, so that the worker writes new values to them.
    a = await db.create_metric(pool, short.id, "a", "gauge", source=RANDOM)
    b = await db.create_metric(pool, kept.id, "b", "gauge", source=RANDOM)
    await db.set_dashboard_retention(pool, short.id, 2)
    # Days the worker must give partitions: the 3-day-old values' (which then
    # start in the default partition) and the last day ahead.
    for partition in await db.list_value_partitions(pool):
        if partition.day in {(now - timedelta(days=3)).date(), (now + timedelta(days=3)).date()}:
            assert await db.drop_value_partition(pool, partition)
    old = await db.insert_values(
        pool, [(m.id, 1.0, now - timedelta(days=d)) for m in (a, b) for d in (10, 3)]
    )
    return {"a": a, "b": b, "old": old}


async def test_the_worker_process_keeps_partitions_rollups_and_retention(settings, pool):
    seeded = await _seed_for_worker(pool)
    a, b = seeded["a"], seeded["b"]
    three_days_ago = seeded["old"][1].ts
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    args = ["-m", "worker", *urls, "run", "--interval", "0.2", "--maintenance-interval", "0.5"]
    with child([*args, "--retention-days", "5"]) as worker:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = await _worker_state(pool, a, b, three_days_ago)
            if state == {"a": ["new"], "b": ["3d", "new"], "rolled_up": True, "partition": True}:
                break
            assert worker.poll() is None, worker.output()
            await asyncio.sleep(0.3)
        else:
            raise AssertionError(f"worker did not get there: {state}")
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT count(*) FROM metric_values_default")
        assert await cur.fetchone() == (0,)


async def _worker_state(pool, a: db.Metric, b: db.Metric, three_days_ago: datetime) -> dict[str, object]:
    now = datetime.now(UTC)

    def age(v: db.MetricValue) -> str:
        return "new" if v.ts > now - timedelta(minutes=1) else f"{(now - v.ts).days}d"

    values = await db.latest_values(pool, [a.id, b.id], 1000)
    rollups = await db.list_rollups(pool, b.id, three_days_ago - timedelta(minutes=1), now)
    partitions = await db.list_value_partitions(pool)
    return {
        "a": sorted({age(v) for v in values[a.id]}),
        "b": sorted({age(v) for v in values[b.id]}),
        # The 3-day-old value and the worker's own, rolled up.
        "rolled_up": len(rollups) >= 2 and rollups[0].count == 1,
        # The 3-day-old values moved out of the default partition into their day's.
        "partition": three_days_ago.date() in {p.day for p in partitions}
        and (now + timedelta(days=3)).date() in {p.day for p in partitions},
    }


async def test_old_alert_events_go_but_each_rule_keeps_its_newest(pool, make_dashboard, make_metric):
    metric = await make_metric(await make_dashboard("ops"), "cpu")
    busy = await db.create_alert_rule(pool, metric.id, "above", 90.0)
    quiet = await db.create_alert_rule(pool, metric.id, "above", 50.0)
    now = datetime.now(UTC)
    events = [
        (busy.id, "firing", 400),
        (busy.id, "resolved", 399),
        (busy.id, "firing", 10),
        (quiet.id, "firing", 500),
    ]
    async with pool.acquire() as conn, conn.cursor() as cur:
        for rule_id, state, days in events:
            await cur.execute(
                "INSERT INTO alert_events (rule_id, state, value, at) VALUES (%s, %s, 1.0, %s)",
                (rule_id, state, now - timedelta(days=days)),
            )

    assert await delete_expired_alert_events(pool, 365, batch_size=1, pause=0) == 2
    assert [(e.state, (now - e.at).days) for e in await db.list_alert_events(pool, busy.id)] == [
        ("firing", 10)
    ]
    # The quiet rule's only event is when its current state began: it stays, however old.
    assert [(now - e.at).days for e in await db.list_alert_events(pool, quiet.id)] == [500]
    assert await delete_expired_alert_events(pool, 365) == 0

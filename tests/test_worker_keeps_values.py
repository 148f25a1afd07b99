"""The worker never throws away good values: a metric deleted mid-tick, a long
backlog after an outage, a stalled worker whose dashboards were taken over."""

from __future__ import annotations

import asyncio
import re
import signal

import pytest

from common import db
from tests.processes import child


def _worker(settings, *args: str) -> list[str]:
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    return ["-m", "worker", *urls, "--log-level", "debug", "run", *args]


async def _churn(pool, dashboard: db.Dashboard, stop: asyncio.Event) -> int:
    """Create and delete a metric on `dashboard` as fast as the database allows."""
    rounds = 0
    while not stop.is_set():
        metric = await db.create_metric(pool, dashboard.id, f"m{rounds}", "gauge", "u", "")
        await db.delete_metric(pool, dashboard.id, metric.id)
        rounds += 1
    return rounds


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_metrics_deleted_mid_tick_cost_no_other_dashboard_a_tick(settings, pool):
    victim = await db.create_dashboard(pool, "Churned", "churned")
    steady = await db.create_dashboard(pool, "Steady", "steady")
    metrics = [await db.create_metric(pool, steady.id, name, "counter", "req", "") for name in "abc"]
    stop = asyncio.Event()
    with child(_worker(settings, "--interval", "0.1")) as worker:
        churning = asyncio.create_task(_churn(pool, victim, stop))
        await asyncio.sleep(6)
        stop.set()
        rounds = await churning
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 15) == 0
        output = worker.output()
    ticks = len(re.findall(r" tick: \d+ values", output))
    assert rounds > 100 and ticks > 20, (rounds, ticks)
    stored = await db.latest_values(pool, [m.id for m in metrics], 100_000)
    stamps = [[v.ts for v in stored[m.id]] for m in metrics]
    # Every tick stored every steady metric's value: none dropped, none twice.
    assert all(len(s) == len(set(s)) == ticks for s in stamps), (ticks, [len(s) for s in stamps])
    assert stamps[0] == stamps[1] == stamps[2]
    assert "tick failed" not in output and "dropping" not in output

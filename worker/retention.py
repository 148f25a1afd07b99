"""Retention: values older than N days go, globally and per dashboard, a batch at a time.

Whole days older than the global retention go with their partitions
(worker/partitions.py); what remains (the cutoff's own day, the default
partition, dashboards with a shorter retention of their own, old rollups) is
deleted here. Each batch is one short DELETE in its own transaction, with a
pause between batches, so a large backlog never holds long locks or starves
the ticks sharing the pool.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import aiopg

from common import db

log = logging.getLogger(__name__)

RETENTION_BATCH = 5000
# Between batches: lets ticks and other queries in; 5000 rows take milliseconds.
BATCH_PAUSE = 0.05


async def _in_batches(
    delete: Callable[[int], Awaitable[int]], batch_size: int, pause: float, stop: asyncio.Event | None
) -> int:
    """Batch after batch until one deletes fewer than `batch_size` rows, or `stop` is set."""
    total = 0
    while stop is None or not stop.is_set():
        deleted = await delete(batch_size)
        total += deleted
        if deleted < batch_size:
            break
        await asyncio.sleep(pause)
    return total


async def _delete_before(
    what: str,
    delete: Callable[[aiopg.Pool, datetime, int], Awaitable[int]],
    pool: aiopg.Pool,
    days: float,
    batch_size: int,
    pause: float,
    now: datetime | None,
    stop: asyncio.Event | None,
) -> int:
    """Delete `what` from before `days` days ago with `delete(pool, cutoff, limit)`, in batches."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    total = await _in_batches(lambda limit: delete(pool, cutoff, limit), batch_size, pause, stop)
    if total:
        log.info("retention: deleted %d %s from before %s", total, what, cutoff.isoformat(timespec="seconds"))
    return total


async def delete_expired(
    pool: aiopg.Pool,
    days: float,
    *,
    batch_size: int = RETENTION_BATCH,
    pause: float = BATCH_PAUSE,
    now: datetime | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Delete every value older than `days` days, in batches; returns how many."""
    return await _delete_before("value(s)", db.delete_values_before, pool, days, batch_size, pause, now, stop)


async def delete_expired_of_dashboards(
    pool: aiopg.Pool,
    global_days: float | None,
    *,
    batch_size: int = RETENTION_BATCH,
    pause: float = BATCH_PAUSE,
    now: datetime | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Delete the values of dashboards whose own retention is shorter than the global one
    (or of every dashboard with one, when values are kept forever); returns how many."""
    now = now or datetime.now(UTC)
    total = 0
    for dashboard_id, days in (await db.dashboard_retentions(pool)).items():
        if global_days is not None and days >= global_days:
            continue  # the global retention removes more, by whole partitions
        cutoff = now - timedelta(days=days)
        deleted = await _in_batches(
            functools.partial(db.delete_dashboard_values_before, pool, dashboard_id, cutoff),
            batch_size,
            pause,
            stop,
        )
        if deleted:
            log.info(
                "retention: deleted %d value(s) of dashboard %d (kept %d days)", deleted, dashboard_id, days
            )
        total += deleted
    return total


async def delete_expired_rollups(
    pool: aiopg.Pool,
    days: float,
    *,
    batch_size: int = RETENTION_BATCH,
    pause: float = BATCH_PAUSE,
    now: datetime | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Delete the rollups of minutes older than `days` days, in batches; returns how many."""
    return await _delete_before(
        "rollup(s)", db.delete_rollups_before, pool, days, batch_size, pause, now, stop
    )


async def delete_expired_alert_events(
    pool: aiopg.Pool,
    days: float,
    *,
    batch_size: int = RETENTION_BATCH,
    pause: float = BATCH_PAUSE,
    now: datetime | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Delete alert events older than `days` days (each rule's newest stays), in batches."""
    return await _delete_before(
        "alert event(s)", db.delete_alert_events_before, pool, days, batch_size, pause, now, stop
    )


async def delete_expired_notifications(
    pool: aiopg.Pool,
    days: float,
    *,
    batch_size: int = RETENTION_BATCH,
    pause: float = BATCH_PAUSE,
    now: datetime | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Delete sent or failed notifications (and their attempts) older than `days` days, in batches."""
    return await _delete_before(
        "notification(s)", db.delete_notifications_before, pool, days, batch_size, pause, now, stop
    )


async def delete_expired_push_keys(
    pool: aiopg.Pool,
    *,
    batch_size: int = RETENTION_BATCH,
    pause: float = BATCH_PAUSE,
    now: datetime | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Forget the pushes' idempotency keys older than db.KEY_HOURS, in batches."""
    return await _delete_before(
        "push idempotency key(s)",
        db.delete_push_keys_before,
        pool,
        db.KEY_HOURS / 24,
        batch_size,
        pause,
        now,
        stop,
    )

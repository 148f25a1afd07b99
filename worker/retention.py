"""Retention: values older than N days are deleted by the worker, a batch at a time.

Each batch is one short DELETE in its own transaction, with a pause between
batches, so a large backlog (the first run on an old database) never holds
long locks or starves the ticks sharing the pool.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from datetime import UTC, datetime, timedelta

import aiopg

from common import db

log = logging.getLogger(__name__)

RETENTION_BATCH = 5000
# Between batches: lets ticks and other queries in; 5000 rows take milliseconds.
BATCH_PAUSE = 0.05
# How often the worker looks for expired values; the first look is at start-up.
RETENTION_EVERY = 3600.0


async def delete_expired(
    pool: aiopg.Pool,
    days: float,
    *,
    batch_size: int = RETENTION_BATCH,
    pause: float = BATCH_PAUSE,
    now: datetime | None = None,
) -> int:
    """Delete every value older than `days` days, in batches; returns how many."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    total = 0
    while True:
        deleted = await db.delete_values_before(pool, cutoff, batch_size)
        total += deleted
        if deleted < batch_size:
            break
        await asyncio.sleep(pause)
    if total:
        log.info(
            "retention: deleted %d value(s) stored before %s", total, cutoff.isoformat(timespec="seconds")
        )
    return total


async def enforce_retention(
    pool: aiopg.Pool, days: float, stop: asyncio.Event, every: float = RETENTION_EVERY
) -> None:
    """Delete expired values now and then every `every` seconds until `stop` is set."""
    while not stop.is_set():
        try:
            await delete_expired(pool, days)
        except db.UNAVAILABLE as exc:
            # Nothing is lost by waiting: the values are deleted next time.
            log.warning("retention skipped, database unavailable: %s", exc)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)

"""Per-minute rollups, brought up to date pass by pass (common/db/rollups.py)."""

from __future__ import annotations

import asyncio
import logging

import aiopg

from common import db

log = logging.getLogger(__name__)

# Between passes of a long catch-up (the first run on a big table): lets
# ticks and other queries in.
PASS_PAUSE = 0.05
# Passes one call runs at most; the rest waits for the next round.
MAX_PASSES = 1000


async def roll_up(pool: aiopg.Pool, *, pause: float = PASS_PAUSE, stop: asyncio.Event | None = None) -> int:
    """Roll up every value stored since the last pass; returns the (metric, minute) rollups written.

    A long catch-up ends early once `stop` is set (the worker is stopping); the
    next call carries on where it ended.
    """
    written = 0
    for _ in range(MAX_PASSES):
        if stop is not None and stop.is_set():
            break
        done = await db.roll_up_values(pool)
        if done is None:  # another worker is rolling up, or a metric went: next round
            break
        written += done.minutes
        if done.caught_up:
            break
        await asyncio.sleep(pause)
    log.debug("rollups: wrote %d minute(s)", written)
    return written

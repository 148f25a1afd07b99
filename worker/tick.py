"""One tick: a value for every metric, stored in one statement, then published
(common/ingest.py: only after PostgreSQL committed them).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from contextlib import suppress
from datetime import UTC, datetime

import aiopg
import psycopg2
from redis.asyncio import Redis

from common import db
from common.ingest import store_and_publish
from worker.sources import next_value

log = logging.getLogger(__name__)


class Producer:
    """Produces values tick after tick, remembering each counter's last value."""

    def __init__(self, pool: aiopg.Pool, redis_client: Redis, rng: random.Random | None = None) -> None:
        self._pool = pool
        self._redis = redis_client
        self._rng = rng or random.Random()
        self._last: dict[int, float] = {}

    async def tick(self) -> int:
        """Produce, store and publish one value per metric; returns how many."""
        # Re-read every tick so metrics added from the CLI start at once.
        metrics = await db.list_all_metrics(self._pool)
        unknown = [m.id for m in metrics if m.type == "counter" and m.id not in self._last]
        if unknown:
            # Counters continue from their stored value across worker restarts.
            self._last.update(await db.last_values(self._pool, unknown))
        now = datetime.now(UTC)
        rows = []
        for metric in metrics:
            value = next_value(metric.type, self._last.get(metric.id), self._rng)
            rows.append((metric.id, value, now))
        stored = await store_and_publish(self._pool, self._redis, {m.id: m for m in metrics}, rows)
        for item in stored:
            self._last[item.metric_id] = item.value
        return len(stored)


async def run_forever(producer: Producer, interval: float, stop: asyncio.Event) -> None:
    """Tick every `interval` seconds without drift until `stop` is set."""
    next_at = time.monotonic()
    while not stop.is_set():
        started = time.monotonic()
        try:
            count = await producer.tick()
            log.debug("tick: %d values in %.1f ms", count, (time.monotonic() - started) * 1000)
        except (psycopg2.Error, OSError, TimeoutError) as exc:
            log.error("tick failed, values of this tick not stored: %s", exc)
        next_at += interval
        delay = next_at - time.monotonic()
        if delay < 0:
            log.warning(
                "tick took %.2fs, longer than the %.2fs interval", time.monotonic() - started, interval
            )
            next_at = time.monotonic()
            delay = 0
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)

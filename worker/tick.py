"""One tick: a value for every generated metric (never a pushed one), stored in
one statement, then published (common/ingest.py: only after PostgreSQL committed
them). While PostgreSQL is away the values wait in a bounded buffer; when it is
back, each tick stores its own values with at most one chunk of that backlog,
oldest first, until it is empty.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from contextlib import suppress
from datetime import UTC, datetime

import aiopg

from common import db
from common.events import Channels
from common.ingest import store_and_publish
from common.redisconn import RedisClient
from worker.leases import Leases, Ownership
from worker.sources import Sources
from worker.telemetry import WorkerTelemetry

log = logging.getLogger(__name__)

# One hour of values at the default 5 s interval.
DEFAULT_UNSAVED_TICKS = 720
# Backlog rows stored with one tick: one INSERT of them takes well under the
# pool's 10 s timeout, so a long outage's backlog drains instead of timing out
# (and being retried, or committed after the worker gave up, forever).
BACKLOG_CHUNK = 50_000

Row = tuple[int, float, datetime]


class Producer:
    """Produces values tick after tick, remembering each counter's last value.

    While the database is unreachable, each tick's values are kept (up to
    `max_unsaved_ticks` ticks, the oldest dropped first). Once it is back,
    every tick stores, then publishes, its own values and the oldest
    `backlog_chunk` kept ones, in one transaction, until none are left: live
    values never wait behind the backlog.
    """

    def __init__(
        self,
        pool: aiopg.Pool,
        redis_client: RedisClient,
        channels: Channels,
        rng: random.Random | None = None,
        max_unsaved_ticks: int = DEFAULT_UNSAVED_TICKS,
        leases: Leases | None = None,
        telemetry: WorkerTelemetry | None = None,
        backlog_chunk: int = BACKLOG_CHUNK,
        copier: db.Copier | None = None,
    ) -> None:
        self.telemetry = telemetry or WorkerTelemetry()
        self._pool = pool
        self._copier = copier
        self._redis = redis_client
        self._channels = channels
        self._sources = Sources(rng or random.Random())
        self._last: dict[int, float] = {}
        self._metrics: list[db.Metric] = []
        # Oldest tick first; the newest is the tick in progress.
        self._unsaved: deque[list[Row]] = deque()
        self._max_unsaved = max_unsaved_ticks
        self._backlog_chunk = backlog_chunk
        # None: every dashboard is this worker's (a one-off `tick`).
        self._leases = leases

    @property
    def pool(self) -> aiopg.Pool:
        return self._pool

    @property
    def unsaved_values(self) -> int:
        """Values produced but not yet in the database."""
        return sum(len(rows) for rows in self._unsaved)

    async def tick(self) -> int:
        """Produce one value per metric, store it with the oldest kept ones, publish them.

        Returns how many values were stored (0 while the database is down).
        """
        if self._leases is None:
            return await self._tick(None)
        # This worker's leases do not change while this tick stores and publishes;
        # another worker's takeover is fenced off in the INSERT itself.
        async with self._leases.hold() as ownership:
            return await self._tick(ownership)

    async def _tick(self, ownership: Ownership | None) -> int:
        if ownership is not None:
            for metric_id in [m.id for m in self._metrics if m.dashboard_id in ownership.gained]:
                self._last.pop(metric_id, None)  # another worker produced it meanwhile
        await self._list_metrics(ownership)
        self._keep(self._produce(self._mine(ownership)))
        backlog = self._oldest_backlog()
        listed = {metric.id for metric in self._metrics}
        # A metric switched to `push` since its values were kept gets none of them.
        pending = [row for row in backlog + self._unsaved[-1] if row[0] in listed]
        if ownership is not None:
            if not ownership.confirmed:
                return 0  # kept until this worker holds its leases again
            pending = ownership.rows(pending, {metric.id: metric for metric in self._metrics})
        stored = await self._store(pending, ownership)
        if stored is None:
            return 0
        if len(stored) < len(pending):
            log.info(
                "%d value(s) not stored: their metric was deleted or their dashboard taken over meanwhile",
                len(pending) - len(stored),
            )
        self._forget(len(backlog))
        if self._unsaved:
            log.info("stored %d kept value(s), %d still to store", len(backlog), self.unsaved_values)
        self.telemetry.unsaved_values.set(self.unsaved_values)
        self.telemetry.values_stored.inc(len(stored))
        return len(stored)

    def _mine(self, ownership: Ownership | None) -> list[db.Metric]:
        """The listed metrics this worker produces: all, or its leased dashboards'."""
        return self._metrics if ownership is None else ownership.metrics(self._metrics)

    async def _list_metrics(self, ownership: Ownership | None) -> None:
        """Re-read the generated metrics and the counters' last stored values;
        while the database is down, keep producing for the metrics known."""
        try:
            # Re-read every tick so metrics added from the CLI start at once.
            # Pushed metrics are not listed: the worker never writes to them.
            self._metrics = await db.list_generated_metrics(self._pool)
            self._forget_unlisted()
            unknown = [m.id for m in self._mine(ownership) if m.type == "counter" and m.id not in self._last]
            if unknown:
                # Counters continue from their stored value across worker restarts.
                self._last.update(await db.last_values(self._pool, unknown))
        except db.UNAVAILABLE as exc:
            self.telemetry.backend_error(exc)
            if not self._metrics:
                raise  # nothing known to produce values for

    async def _store(self, pending: list[Row], ownership: Ownership | None) -> list[db.MetricValue] | None:
        """Store and publish `pending`; None, with everything kept, while the database is down."""
        try:
            # Published only after the commit: a client never sees an unstored value.
            return await store_and_publish(
                self._pool,
                self._redis,
                self._channels,
                {metric.id: metric for metric in self._metrics},
                pending,
                on_publish_error=self.telemetry.backend_error,
                fence=None if ownership is None else ownership.tokens,
                copier=self._copier,
            )
        except db.UNAVAILABLE as exc:
            log.warning("database unavailable, %d value(s) kept for later: %s", self.unsaved_values, exc)
            self.telemetry.backend_error(exc)
            self.telemetry.unsaved_values.set(self.unsaved_values)
            return None

    def _forget_unlisted(self) -> None:
        """Drop the counter state of metrics no longer generated: should one be
        switched back later, it continues from its stored value, not a stale one."""
        listed = {metric.id for metric in self._metrics}
        self._last = {metric_id: value for metric_id, value in self._last.items() if metric_id in listed}

    def _oldest_backlog(self) -> list[Row]:
        """The oldest kept rows before the tick in progress, at most `backlog_chunk`."""
        chunk: list[Row] = []
        for index in range(len(self._unsaved) - 1):
            chunk.extend(self._unsaved[index][: self._backlog_chunk - len(chunk)])
            if len(chunk) >= self._backlog_chunk:
                break
        return chunk

    def _forget(self, backlog_rows: int) -> None:
        """Drop the tick in progress and the oldest `backlog_rows` kept rows: stored."""
        self._unsaved.pop()
        while backlog_rows:
            oldest = self._unsaved[0]
            if len(oldest) > backlog_rows:
                self._unsaved[0] = oldest[backlog_rows:]
                return
            backlog_rows -= len(self._unsaved.popleft())

    def _produce(self, metrics: list[db.Metric]) -> list[Row]:
        now = datetime.now(UTC)
        values = self._sources.produce(metrics, self._last)
        self._last.update(values)
        return [(metric_id, value, now) for metric_id, value in values.items()]

    def _keep(self, rows: list[Row]) -> None:
        if len(self._unsaved) >= self._max_unsaved:
            dropped = self._unsaved.popleft()
            log.error("unsaved buffer full: dropped the oldest tick's %d value(s)", len(dropped))
        self._unsaved.append(rows)


async def run_forever(producer: Producer, interval: float, stop: asyncio.Event) -> None:
    """Tick every `interval` seconds without drift until `stop` is set."""
    next_at = time.monotonic()
    while not stop.is_set():
        started = time.monotonic()
        producer.telemetry.tick_lag.set(max(0.0, started - next_at))
        try:
            count = await producer.tick()
            log.debug("tick: %d values in %.1f ms", count, (time.monotonic() - started) * 1000)
        except db.UNAVAILABLE as exc:
            log.error("tick failed, values of this tick not stored: %s", exc)
            producer.telemetry.backend_error(exc)
        producer.telemetry.tick_duration.observe(time.monotonic() - started)
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

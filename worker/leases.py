"""Which dashboards this worker produces values for, shared out through PostgreSQL.

Each dashboard has a lease: a session-level advisory lock held on a dedicated
connection named `dashboard-worker`. Every `check_interval` seconds a worker
counts the lease sessions on its database (pg_stat_activity), gives up leases
beyond its fair share (ceil(dashboards / workers)) and takes free ones up to
it. When a worker dies its session ends, PostgreSQL frees its locks at once
(or, if its host vanished, after the session's TCP keepalives give up: 8 s),
and the others take them at their next check.

A worker stores a dashboard's values only in a tick that began by confirming
its lease session is alive, and lease changes wait for the tick in progress:
two workers never store values for the same dashboard at once. While the lease
session is lost (PostgreSQL restarting), the worker keeps producing for what
it held and stores those values once it holds the leases again; values of a
dashboard that another worker took meanwhile are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime

import aiopg

from common import db

log = logging.getLogger(__name__)

# The lease sessions' application_name: workers count each other by it.
LEASE_SESSION_NAME = "dashboard-worker"
# Seconds between lease checks: a dead worker's dashboards move within this
# (plus 8 s of keepalives when its whole host vanished).
DEFAULT_CHECK_INTERVAL = 2.0

Row = tuple[int, float, datetime]


@dataclass(frozen=True)
class Ownership:
    """What one tick may do: produce values for `dashboards`; store them only if `confirmed`."""

    dashboards: frozenset[int]
    confirmed: bool
    # Taken over since the previous tick: its counters continue from the stored values.
    gained: frozenset[int]

    def metrics(self, metrics: Iterable[db.Metric]) -> list[db.Metric]:
        return [metric for metric in metrics if metric.dashboard_id in self.dashboards]

    def rows(self, rows: Sequence[Row], metrics: dict[int, db.Metric]) -> list[Row]:
        """The rows of this worker's dashboards (values of lost ones are dropped)."""
        return [row for row in rows if row[0] in metrics and metrics[row[0]].dashboard_id in self.dashboards]


class Leases:
    """This worker's dashboard leases; `run()` keeps them at a fair share."""

    def __init__(self, dsn: str, check_interval: float = DEFAULT_CHECK_INTERVAL) -> None:
        self._dsn = dsn
        self.check_interval = check_interval
        self._session: aiopg.Connection | None = None
        self._held: set[int] = set()
        # What was held when the session was lost: produced for meanwhile, taken back first.
        self._remembered: frozenset[int] = frozenset()
        self._handed_out: frozenset[int] = frozenset()
        # Lease changes and ticks exclude each other (see hold()).
        self._lock = asyncio.Lock()
        self._rng = random.Random()

    @property
    def held(self) -> frozenset[int]:
        return frozenset(self._held)

    async def run(self) -> None:
        """Check the leases every `check_interval` seconds until cancelled."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.check_interval)

    async def refresh(self) -> None:
        """Reconnect if needed, then give up or take leases to reach a fair share."""
        if self._session is None:
            try:
                # Outside the lock: a database that is down must not hold up ticks.
                session = await db.open_lease_session(self._dsn, LEASE_SESSION_NAME)
            except db.UNAVAILABLE as exc:
                log.debug("lease session not available: %s", exc)
                return
            async with self._lock:
                self._session = session
        async with self._lock:
            try:
                await self._rebalance(self._session)
            except db.UNAVAILABLE as exc:
                await self._lost(exc)

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[Ownership]:
        """The ownership for one tick; leases do not change until the block ends."""
        async with self._lock:
            if self._session is not None:
                try:
                    await db.ping_session(self._session)
                except db.UNAVAILABLE as exc:
                    await self._lost(exc)
            confirmed = self._session is not None
            dashboards = frozenset(self._held) if confirmed else self._remembered
            gained = dashboards - self._handed_out
            self._handed_out = dashboards
            yield Ownership(dashboards, confirmed, gained)

    async def close(self) -> None:
        """End the lease session: the other workers take its dashboards at their next check."""
        async with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None
            self._held.clear()

    async def _rebalance(self, session: aiopg.Connection) -> None:
        workers, dashboards = await db.lease_census(session, LEASE_SESSION_NAME)
        share = math.ceil(len(dashboards) / max(workers, 1))
        existing = set(dashboards)
        kept = sorted(self._held & existing)
        # Deleted dashboards, then the newest beyond the share, go back.
        release = (self._held - existing) | set(kept[share:])
        if release:
            await db.release_dashboards(session, sorted(release))
            self._held -= release
        wanted = share - len(self._held)
        if wanted > 0:
            free = [d for d in dashboards if d not in self._held]
            # What was held before a lost session first, then the rest from a
            # random point, so workers starting together do not all race for
            # the same ids (a lost race only costs a try).
            start = self._rng.randrange(len(free))
            candidates = sorted(free[start:] + free[:start], key=lambda d: d not in self._remembered)
            self._held |= await db.try_lease_dashboards(session, candidates, wanted)
        if release or wanted > 0:
            log.debug("leases: %d of %d dashboards, %d worker(s)", len(self._held), len(dashboards), workers)
        self._remembered = frozenset(self._held)

    async def _lost(self, exc: BaseException) -> None:
        log.warning(
            "lease session lost (%s): values of %d dashboard(s) are kept until the leases are back",
            exc,
            len(self._held),
        )
        if self._session is not None:
            with suppress(Exception):
                self._session.close()
        self._session = None
        self._held.clear()

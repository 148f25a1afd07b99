"""Which dashboards this worker produces values for, shared out through PostgreSQL.

Each dashboard has a lease: a row in `dashboard_leases` naming its worker, a
fencing token and when it expires (LEASE_CHECKS check intervals after its last
renewal). Every `check_interval` seconds a worker, on a dedicated connection
named `dashboard-worker`, renews its leases, counts the lease sessions on its
database (pg_stat_activity), gives up leases beyond its fair share
(ceil(dashboards / workers)) and takes free or expired ones up to it, each
with a new token. A worker that stops renewing (dead, paused, frozen) loses
its dashboards to the others once its leases expire; a lease session silent
for as long is no longer counted either.

The token is the fence: a tick stores values only where the lease row still
carries the token this worker got, checked and locked in the INSERT itself
(common/db/values.py), so a worker that wakes up after a takeover stores
nothing for the dashboards it lost, and a takeover waits for an INSERT that
holds the old token. While the lease session is lost (PostgreSQL restarting),
the worker keeps producing for what it held and stores those values once it
holds the leases again; values of a dashboard that another worker took
meanwhile are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime

import aiopg

from common import db

log = logging.getLogger(__name__)

# The lease sessions' application_name: workers count each other by it.
LEASE_SESSION_NAME = "dashboard-worker"
# Seconds between lease checks.
DEFAULT_CHECK_INTERVAL = 2.0
# A lease lasts this many check intervals past its last renewal: a worker may
# miss a few checks (a slow tick holds them up) before another takes over; a
# dead worker's dashboards move within this many plus one.
LEASE_CHECKS = 5

Row = tuple[int, float, datetime]


@dataclass(frozen=True)
class Ownership:
    """What one tick may do: produce values for `dashboards`; store them only if
    `confirmed`, and only where the lease still has the token in `tokens`."""

    dashboards: frozenset[int]
    confirmed: bool
    # Taken over since the previous tick: its counters continue from the stored values.
    gained: frozenset[int]
    # {dashboard id: fencing token} of the leases held (empty unless confirmed).
    tokens: Mapping[int, int]

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
        self.lease_seconds = check_interval * LEASE_CHECKS
        # Names this worker's lease rows; a new one each run.
        self._worker = str(uuid.uuid4())
        self._session: aiopg.Connection | None = None
        self._held: dict[int, int] = {}
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
            try:
                await self.refresh()
            except Exception:
                # Ending here would leave the worker ticking with no dashboards, for good.
                log.exception("lease check failed; trying again at the next one")
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
            if self._session is None:
                return  # a tick found it dead meanwhile (hold()): the next check reconnects
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
            yield Ownership(dashboards, confirmed, gained, dict(self._held) if confirmed else {})

    async def close(self) -> None:
        """Give up the leases and end the session: the other workers take the
        dashboards at their next check."""
        async with self._lock:
            if self._session is not None:
                with suppress(*db.UNAVAILABLE):
                    await db.release_dashboards(self._session, self._worker, list(self._held))
                self._session.close()
                self._session = None
            self._held.clear()

    async def _rebalance(self, session: aiopg.Connection) -> None:
        renewed = await db.renew_leases(session, self._worker, self.lease_seconds)
        if lost := self._held.keys() - renewed.keys():
            log.warning("leases of %d dashboard(s) taken over or deleted: %s", len(lost), sorted(lost))
        self._held = renewed
        workers, dashboards = await db.lease_census(session, LEASE_SESSION_NAME, self.lease_seconds)
        share = math.ceil(len(dashboards) / max(workers, 1))
        # The newest beyond the share go back.
        release = set(sorted(self._held)[share:])
        if release:
            await db.release_dashboards(session, self._worker, sorted(release))
            for dashboard_id in release:
                del self._held[dashboard_id]
        wanted = share - len(self._held)
        if wanted > 0:
            free = [d for d in dashboards if d not in self._held]
            # What was held before a lost session first, then the rest from a
            # random point, so workers starting together do not all race for
            # the same ids (a lost race only costs a try).
            start = self._rng.randrange(len(free))
            candidates = sorted(free[start:] + free[:start], key=lambda d: d not in self._remembered)
            self._held.update(
                await db.try_lease_dashboards(session, self._worker, candidates, wanted, self.lease_seconds)
            )
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

"""The worker's upkeep of stored values, every round: rollups, partitions, retention.

Rollups come first, so values are rolled up before retention removes them.
Every step is safe to run from several workers at once: rollup passes and
partition changes take turns (row lock, advisory lock), deletions are
idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

import aiopg

from common import db
from worker.partitions import maintain_partitions
from worker.retention import (
    delete_expired,
    delete_expired_alert_events,
    delete_expired_notifications,
    delete_expired_of_dashboards,
    delete_expired_push_keys,
    delete_expired_rollups,
)
from worker.rollups import roll_up

log = logging.getLogger(__name__)

# Seconds between rounds: how far behind the newest values the rollups may be.
MAINTENANCE_EVERY = 60.0
DEFAULT_ROLLUP_RETENTION_DAYS = 365.0


@dataclass(frozen=True)
class RetentionPolicy:
    """Days of raw values (None: keep all) and of per-minute rollups (and of alert events
    and the notifications' delivery log, which, like rollups, tell what happened over the
    long ranges)."""

    raw_days: float | None = None
    rollup_days: float = DEFAULT_ROLLUP_RETENTION_DAYS


@dataclass(frozen=True)
class MaintenanceReport:
    rollups: int
    created: list[str]
    dropped: list[str]
    deleted: int
    deleted_of_dashboards: int
    deleted_rollups: int
    deleted_alert_events: int
    deleted_notifications: int
    deleted_push_keys: int


async def maintain_once(
    pool: aiopg.Pool,
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
    stop: asyncio.Event | None = None,
) -> MaintenanceReport:
    """One round: roll up, create and drop partitions, delete what retention leaves.

    Once `stop` is set, long steps end early; the next round finishes them.
    """
    now = now or datetime.now(UTC)
    rollups = await roll_up(pool, stop=stop)
    partitions = await maintain_partitions(pool, policy.raw_days, now=now)
    deleted = 0
    if policy.raw_days is not None:
        deleted = await delete_expired(pool, policy.raw_days, now=now, stop=stop)
    return MaintenanceReport(
        rollups=rollups,
        created=partitions.created,
        dropped=partitions.dropped,
        deleted=deleted,
        deleted_of_dashboards=await delete_expired_of_dashboards(pool, policy.raw_days, now=now, stop=stop),
        deleted_rollups=await delete_expired_rollups(pool, policy.rollup_days, now=now, stop=stop),
        deleted_alert_events=await delete_expired_alert_events(pool, policy.rollup_days, now=now, stop=stop),
        deleted_notifications=await delete_expired_notifications(
            pool, policy.rollup_days, now=now, stop=stop
        ),
        deleted_push_keys=await delete_expired_push_keys(pool, now=now, stop=stop),
    )


async def maintain(
    pool: aiopg.Pool, policy: RetentionPolicy, stop: asyncio.Event, every: float = MAINTENANCE_EVERY
) -> None:
    """Run a round now and then every `every` seconds until `stop` is set."""
    while not stop.is_set():
        try:
            await maintain_once(pool, policy, stop=stop)
        except db.UNAVAILABLE as exc:
            # Nothing is lost by waiting: the next round does it all.
            log.warning("maintenance skipped, database unavailable: %s", exc)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)

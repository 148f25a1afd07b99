"""Daily partitions of metric_values: created days ahead, dropped whole once expired.

Dropping a partition removes a day of values without a DELETE: no row locks,
no dead rows for vacuum, and only a brief catalog lock (given up after a
couple of seconds if queries are in its way, and retried the next round).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiopg

from common import db

log = logging.getLogger(__name__)

# Days after today that get their partition in advance, so values of a new
# day never start in the default partition, even if the worker was down.
PARTITIONS_AHEAD = 3


@dataclass(frozen=True)
class PartitionChanges:
    created: list[str]
    dropped: list[str]


async def maintain_partitions(
    pool: aiopg.Pool, retention_days: float | None, *, now: datetime | None = None
) -> PartitionChanges:
    """Create the partitions of today, the next days and the days whose values sit in
    the default partition; drop those wholly older than `retention_days` (None: keep all)."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days) if retention_days is not None else None
    today = now.astimezone(UTC).date()
    wanted = {today + timedelta(days=ahead) for ahead in range(PARTITIONS_AHEAD + 1)}
    wanted.update(await db.default_partition_days(pool))
    existing = await db.list_value_partitions(pool)
    have = {partition.day for partition in existing}
    # An expired day in the default partition gets none: batched deletes remove it.
    fresh = [db.Partition(db.partition_name(day), day) for day in sorted(wanted - have)]
    created = [
        p.name
        for p in fresh
        if (cutoff is None or p.end > cutoff) and await db.create_value_partition(pool, p.day)
    ]
    expired = [p for p in existing if cutoff is not None and p.end <= cutoff]
    dropped = [p.name for p in expired if await db.drop_value_partition(pool, p)]
    if created or dropped:
        log.info("partitions: created %s; dropped %s", created or "none", dropped or "none")
    return PartitionChanges(created, dropped)

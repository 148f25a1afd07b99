"""The daily partitions of metric_values: list, create ahead, drop when expired.

Partitions are named `metric_values_pYYYYMMDD` and hold one UTC day each
(migrations/0007_partitions_and_rollups.sql); values of a day without a
partition land in `metric_values_default`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import aiopg
import psycopg2.errors
from psycopg2 import sql

from common.db.core import transaction

DEFAULT_PARTITION = "metric_values_default"
_NAME = re.compile(r"^metric_values_p(\d{8})$")
# Any bigint naming "partition maintenance" for pg_try_advisory_xact_lock: two
# workers never attach or detach at the same time.
PARTITION_LOCK_ID = 0x70617274_76616C73
# DDL on a partition briefly takes a lock that queues every later query of
# metric_values behind it. Never wait long for it: give up, try next round.
LOCK_TIMEOUT = "2s"


@dataclass(frozen=True)
class Partition:
    name: str
    day: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.day, time(), UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=1)


def partition_name(day: date) -> str:
    return f"metric_values_p{day:%Y%m%d}"


async def list_value_partitions(pool: aiopg.Pool) -> list[Partition]:
    """The daily partitions of metric_values, oldest first (the default one is not listed)."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'metric_values'::regclass"
        )
        names = [row[0] for row in await cur.fetchall()]
    found = [
        Partition(name, datetime.strptime(match[1], "%Y%m%d").date())
        for name in names
        if (match := _NAME.match(name))
    ]
    return sorted(found, key=lambda p: p.day)


async def default_partition_days(pool: aiopg.Pool) -> list[date]:
    """The UTC days that have values in the default partition (which a new partition takes over)."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        # One index probe per day, hopping along the ts index, instead of a scan.
        await cur.execute(
            "WITH RECURSIVE days(day) AS ("
            "  SELECT date_trunc('day', min(ts), 'UTC') FROM metric_values_default"
            "  UNION ALL"
            "  SELECT (SELECT date_trunc('day', min(ts), 'UTC') FROM metric_values_default"
            "          WHERE ts >= days.day + interval '1 day')"
            "  FROM days WHERE days.day IS NOT NULL"
            ") SELECT day FROM days WHERE day IS NOT NULL"
        )
        return [row[0].astimezone(UTC).date() for row in await cur.fetchall()]


async def create_value_partition(pool: aiopg.Pool, day: date) -> bool:
    """Create the partition of this UTC day, taking over its values from the default partition.

    False when it exists already, or another worker is changing partitions,
    or a lock was not granted in time (try again later).

    Built as a plain table, then attached: ATTACH takes a lighter lock on
    metric_values than CREATE TABLE ... PARTITION OF, and the CHECK
    constraint spares it a scan of the new table.
    """
    partition = Partition(partition_name(day), day)
    table = sql.Identifier(partition.name)
    bounds = sql.Identifier(f"{partition.name}_bounds")
    span = {"start": partition.start, "end": partition.end}
    try:
        async with transaction(pool) as cur:
            await cur.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            await cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (PARTITION_LOCK_ID,))
            (locked,) = await cur.fetchone()
            await cur.execute("SELECT to_regclass(%s) IS NOT NULL", (partition.name,))
            (exists,) = await cur.fetchone()
            if not locked or exists:
                return False  # commits what read only: as good as a rollback
            await _execute(
                cur, sql.SQL("CREATE TABLE {} (LIKE metric_values INCLUDING DEFAULTS)").format(table)
            )
            await _execute(
                cur,
                sql.SQL(
                    "WITH moved AS (DELETE FROM metric_values_default WHERE ts >= %(start)s AND ts < %(end)s"
                    " RETURNING id, metric_id, value, ts) INSERT INTO {} SELECT * FROM moved"
                ).format(table),
                span,
            )
            await _execute(
                cur,
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (ts >= %(start)s AND ts < %(end)s)").format(
                    table, bounds
                ),
                span,
            )
            await _execute(
                cur,
                sql.SQL(
                    "ALTER TABLE metric_values ATTACH PARTITION {} FOR VALUES FROM (%(start)s) TO (%(end)s)"
                ).format(table),
                span,
            )
            await _execute(cur, sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, bounds))
    except psycopg2.errors.LockNotAvailable:
        return False
    return True


async def drop_value_partition(pool: aiopg.Pool, partition: Partition) -> bool:
    """Detach and drop one partition with all its values; False if a lock was not granted in time."""
    table = sql.Identifier(partition.name)
    try:
        async with transaction(pool) as cur:
            await cur.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            await cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (PARTITION_LOCK_ID,))
            (locked,) = await cur.fetchone()
            if not locked:
                return False
            # Not CONCURRENTLY: PostgreSQL refuses that while a default
            # partition exists. The lock is held for a catalog change only.
            await _execute(cur, sql.SQL("ALTER TABLE metric_values DETACH PARTITION {}").format(table))
            await _execute(cur, sql.SQL("DROP TABLE {}").format(table))
    except (psycopg2.errors.LockNotAvailable, psycopg2.errors.UndefinedTable):
        return False
    return True


async def _execute(
    cur: aiopg.Cursor, statement: sql.Composable, params: dict[str, Any] | None = None
) -> None:
    # Composed as psycopg2's own execute would; aiopg's signature takes text only.
    await cur.execute(statement.as_string(cur.raw), params)

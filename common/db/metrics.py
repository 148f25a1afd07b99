"""The metrics of a dashboard: their definitions and order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiopg
import psycopg2.errors

from common.config import Quotas
from common.db.core import AlreadyExists, NotFound, change_one, transaction
from common.db.quotas import check_quota, lock_dashboard
from common.sources import DEFAULT_SOURCE, PUSH, check_source
from common.vocabulary import METRIC_TYPES


@dataclass(frozen=True)
class Metric:
    id: int
    dashboard_id: int
    name: str
    description: str
    type: str
    unit: str
    # Where its values come from: "push", "random" or "system:<reading>" (common/sources.py).
    source: str = DEFAULT_SOURCE


_METRIC_COLUMNS = "id, dashboard_id, name, description, type, unit, source"
# How a dashboard's metrics are shown: as its editors ordered them.
_METRIC_ORDER = "position, id"


async def create_metric(
    pool: aiopg.Pool,
    dashboard_id: int,
    name: str,
    metric_type: str,
    unit: str = "",
    description: str = "",
    source: str = DEFAULT_SOURCE,
    *,
    quotas: Quotas | None = None,
) -> Metric:
    """Add a metric; ValueError for an unknown type or a source that cannot feed it,
    AlreadyExists for a name taken, QuotaExceeded, NotFound if the dashboard is gone."""
    if metric_type not in METRIC_TYPES:
        raise ValueError(f"metric type must be one of {', '.join(METRIC_TYPES)}")
    check_source(source, metric_type)
    try:
        async with transaction(pool) as cur:
            await lock_dashboard(cur, dashboard_id)
            await check_quota(cur, quotas, "max_metrics_per_dashboard", dashboard_id)
            await cur.execute(
                # `position` comes from its sequence: last in the dashboard's order.
                "INSERT INTO metrics (dashboard_id, name, description, type, unit, source)"
                f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_METRIC_COLUMNS}",
                (dashboard_id, name, description, metric_type, unit, source),
            )
            return Metric(*await cur.fetchone())
    except psycopg2.errors.UniqueViolation:
        raise AlreadyExists(f"metric {name!r} already exists on this dashboard") from None


async def list_metrics(pool: aiopg.Pool, dashboard_id: int) -> list[Metric]:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"SELECT {_METRIC_COLUMNS} FROM metrics WHERE dashboard_id = %s ORDER BY {_METRIC_ORDER}",
            (dashboard_id,),
        )
        return [Metric(*row) for row in await cur.fetchall()]


async def update_metric(
    pool: aiopg.Pool,
    dashboard_id: int,
    metric_id: int,
    name: str,
    unit: str,
    description: str,
    source: str | None = None,
) -> Metric:
    """Rename or re-describe a metric of this dashboard, or change its source
    (None: keep it). Its type stays: its stored values were made for it.

    NotFound if the dashboard has no such metric; AlreadyExists if the name is
    taken; ValueError if `source` cannot feed a metric of its type.
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        if source is not None:
            # Checked against the type in the row, not one read earlier by the caller.
            await cur.execute(
                "SELECT type FROM metrics WHERE id = %s AND dashboard_id = %s", (metric_id, dashboard_id)
            )
            found = await cur.fetchone()
            if found is None:
                raise NotFound(f"no metric {metric_id} on this dashboard")
            check_source(source, found[0])
        try:
            await cur.execute(
                "UPDATE metrics SET name = %s, unit = %s, description = %s, source = COALESCE(%s, source)"
                f" WHERE id = %s AND dashboard_id = %s RETURNING {_METRIC_COLUMNS}",
                (name, unit, description, source, metric_id, dashboard_id),
            )
        except psycopg2.errors.UniqueViolation:
            raise AlreadyExists(f"metric {name!r} already exists on this dashboard") from None
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no metric {metric_id} on this dashboard")
    return Metric(*row)


async def delete_metric(pool: aiopg.Pool, dashboard_id: int, metric_id: int) -> bool:
    """Delete a metric of this dashboard with its values; False if it has no such metric."""
    return await change_one(
        pool, "DELETE FROM metrics WHERE id = %s AND dashboard_id = %s", (metric_id, dashboard_id)
    )


async def reorder_metrics(pool: aiopg.Pool, dashboard_id: int, metric_ids: Sequence[int]) -> None:
    """Show the dashboard's metrics in this order.

    `metric_ids` must be exactly the dashboard's metrics (ValueError otherwise),
    so an order made from a stale list is refused rather than half applied.
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        # One statement: the check and the update see the same metrics.
        await cur.execute(
            "WITH wanted AS (SELECT id, n FROM unnest(%(ids)s::bigint[]) WITH ORDINALITY AS w(id, n)),"
            " current AS (SELECT id FROM metrics WHERE dashboard_id = %(d)s),"
            " valid AS (SELECT (SELECT array_agg(id ORDER BY id) FROM current)"
            "   IS NOT DISTINCT FROM (SELECT array_agg(DISTINCT id ORDER BY id) FROM wanted)"
            "   AND (SELECT count(*) FROM wanted) = (SELECT count(*) FROM current) AS ok)"
            " UPDATE metrics m SET position = wanted.n FROM wanted, valid"
            " WHERE m.id = wanted.id AND m.dashboard_id = %(d)s AND valid.ok",
            {"ids": list(metric_ids), "d": dashboard_id},
        )
        if cur.rowcount == len(metric_ids) and metric_ids:
            return
    raise ValueError("the order must list every metric of the dashboard exactly once")


async def list_generated_metrics(pool: aiopg.Pool) -> list[Metric]:
    """Every metric of every dashboard the worker produces values for: all but the pushed ones."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(f"SELECT {_METRIC_COLUMNS} FROM metrics WHERE source <> %s ORDER BY id", (PUSH,))
        return [Metric(*row) for row in await cur.fetchall()]

"""Per-minute rollups of metric values (min, max, sum, count), kept longer than raw values.

A pass re-aggregates, from the raw values, every (metric, minute) that values
stored since the previous pass fall in: late values (pushed with an older
timestamp, or kept by a worker while the database was away) update their own
minute, and a minute is final once its last value has been rolled up.
Where passes have got to lives in `rollup_progress`
(migrations/0007_partitions_and_rollups.sql says how the id range overlaps).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiopg
import psycopg2.errors

from common import stats
from common.db.core import transaction

# Value ids one pass covers at most: the first pass over a large existing
# table is a series of transactions of a second or so, not one long one.
ROLLUP_PASS_IDS = 100_000


@dataclass(frozen=True)
class RollupPass:
    """What one pass did: `minutes` (metric, minute) rollups written; `caught_up` when
    it reached the newest value (otherwise another pass should follow at once)."""

    minutes: int
    caught_up: bool


@dataclass(frozen=True)
class Rollup:
    metric_id: int
    minute: datetime
    min: float
    max: float
    sum: float
    count: int
    last_id: int
    # None in minutes rolled up before these were kept (migrations/0012_stats.sql).
    first: float | None
    last: float | None
    increase: float | None
    # A histogram's {sketch key: count} (common/stats.py); None for other types.
    sketch: dict[int, int] | None


async def roll_up_values(pool: aiopg.Pool, max_ids: int = ROLLUP_PASS_IDS) -> RollupPass | None:
    """One rollup pass in one transaction; None when another worker's pass is running
    or a metric was deleted under it (nothing was written; try again later)."""
    try:
        async with transaction(pool) as cur:
            return await _pass(cur, max_ids)
    except psycopg2.errors.ForeignKeyViolation:
        # A metric deleted meanwhile: its values are gone too, so the
        # next pass no longer sees them.
        return None


async def _pass(cur: aiopg.Cursor, max_ids: int) -> RollupPass | None:
    # Recreated if someone emptied the table; SKIP LOCKED: one pass at a time.
    await cur.execute("INSERT INTO rollup_progress DEFAULT VALUES ON CONFLICT DO NOTHING")
    await cur.execute("SELECT from_id, last_hi FROM rollup_progress FOR UPDATE SKIP LOCKED")
    row = await cur.fetchone()
    if row is None:
        return None
    from_id, last_hi = row
    # The highest id handed out so far, committed or not (a later pass gets the rest).
    await cur.execute("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM metric_values_id_seq")
    (highest,) = await cur.fetchone()
    if highest < max(from_id, last_hi):  # the sequence was reset (the table emptied)
        from_id = last_hi = 0
    until_id = min(highest, from_id + max_ids)
    await cur.execute(_ROLL_UP, {"from": from_id, "until": until_id, **SKETCH_PARAMS})
    minutes = cur.rowcount
    caught_up = until_id == highest
    if caught_up:
        # The next pass starts again at this one's predecessor's highest id.
        await cur.execute(
            "UPDATE rollup_progress SET from_id = greatest(%s, %s), last_hi = %s, covered_until = now()",
            (last_hi, from_id, highest),
        )
    else:
        await cur.execute("UPDATE rollup_progress SET from_id = %s", (until_id,))
    return RollupPass(minutes, caught_up)


# The sketch key of `value` (common/stats.py::sketch_key), in SQL; with SKETCH_PARAMS.
SKETCH_KEY = (
    "CASE WHEN abs({value}) < %(min_magnitude)s THEN 0"
    " ELSE sign({value})::integer * (ceil(ln(least(abs({value}), %(max_magnitude)s)) / %(ln_gamma)s)::integer"
    " + %(key_offset)s) END"
)
SKETCH_PARAMS = {
    "min_magnitude": stats.MIN_MAGNITUDE,
    "max_magnitude": stats.MAX_MAGNITUDE,
    "ln_gamma": stats.LN_GAMMA,
    "key_offset": stats.KEY_OFFSET,
    "histogram": "histogram",
}
# A counter's increase from the previous row's `last` to this row's `first`
# (common/stats.py::rise), for rows with a `prev` column from lag().
RISE = "CASE WHEN prev IS NULL THEN 0 WHEN first >= prev THEN first - prev ELSE first END"

# Each (metric, minute) touched by the ids in (from, until], aggregated afresh
# from all of the minute's values.
_ROLL_UP = (
    "INSERT INTO metric_rollups AS r (metric_id, minute, min, max, sum, count, last_id,"
    " first, last, increase, sketch_keys, sketch_counts)"
    " SELECT t.metric_id, t.minute, a.lo, a.hi, a.total, a.n, a.last_id,"
    " a.first, a.last, a.increase, s.keys, s.counts FROM ("
    "   SELECT DISTINCT metric_id, date_trunc('minute', ts) AS minute FROM metric_values"
    "   WHERE id > %(from)s AND id <= %(until)s"
    " ) t JOIN metrics m ON m.id = t.metric_id CROSS JOIN LATERAL ("
    "   SELECT min(value) AS lo, max(value) AS hi, sum(value) AS total, count(*) AS n, max(id) AS last_id,"
    "   (array_agg(value ORDER BY ts, id))[1] AS first,"
    "   (array_agg(value ORDER BY ts DESC, id DESC))[1] AS last, sum(" + RISE + ") AS increase"
    "   FROM (SELECT id, ts, value, value AS first, lag(value) OVER (ORDER BY ts, id) AS prev"
    "     FROM metric_values v"
    "     WHERE v.metric_id = t.metric_id AND v.ts >= t.minute AND v.ts < t.minute + interval '1 minute'"
    "   ) minute_values"
    " ) a CROSS JOIN LATERAL ("
    # Histograms only; array_agg of no rows is NULL.
    "   SELECT array_agg(key ORDER BY key) AS keys, array_agg(n ORDER BY key) AS counts FROM ("
    "     SELECT " + SKETCH_KEY.format(value="value") + " AS key, count(*)::integer AS n"
    "     FROM metric_values v WHERE m.type = %(histogram)s AND v.metric_id = t.metric_id"
    "     AND v.ts >= t.minute AND v.ts < t.minute + interval '1 minute' GROUP BY 1"
    "   ) k"
    " ) s WHERE a.n > 0"
    # One order for every pass: concurrent writers never deadlock on rollup rows.
    " ORDER BY t.metric_id, t.minute"
    " ON CONFLICT (metric_id, minute) DO UPDATE SET min = excluded.min, max = excluded.max,"
    " sum = excluded.sum, count = excluded.count, last_id = excluded.last_id, first = excluded.first,"
    " last = excluded.last, increase = excluded.increase, sketch_keys = excluded.sketch_keys,"
    " sketch_counts = excluded.sketch_counts"
)


async def rollups_covered_until(pool: aiopg.Pool) -> datetime | None:
    """When the last complete rollup pass started (its minutes before are rolled up); None before any."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT covered_until FROM rollup_progress")
        row = await cur.fetchone()
    return row[0] if row else None


async def list_rollups(pool: aiopg.Pool, metric_id: int, since: datetime, until: datetime) -> list[Rollup]:
    """A metric's rollups of the minutes in [since, until), oldest first."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT metric_id, minute, min, max, sum, count, last_id, first, last, increase,"
            " sketch_keys, sketch_counts FROM metric_rollups"
            " WHERE metric_id = %s AND minute >= %s AND minute < %s ORDER BY minute",
            (metric_id, since, until),
        )
        return [_rollup(row) for row in await cur.fetchall()]


def _rollup(row: tuple[Any, ...]) -> Rollup:
    metric_id, minute, low, high, total, count, last_id, first, last, increase, keys, counts = row
    sketch = None if keys is None else dict(zip(keys, counts, strict=True))
    return Rollup(metric_id, minute, low, high, total, count, last_id, first, last, increase, sketch)


async def delete_rollups_before(pool: aiopg.Pool, cutoff: datetime, limit: int) -> int:
    """Delete at most `limit` rollups of minutes before `cutoff`, in one short transaction."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "DELETE FROM metric_rollups WHERE (metric_id, minute) IN"
            " (SELECT metric_id, minute FROM metric_rollups WHERE minute < %s ORDER BY minute LIMIT %s)",
            (cutoff, limit),
        )
        return cur.rowcount

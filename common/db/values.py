"""Stored metric values: insert, newest-N, ranges, buckets, export, retention."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiopg

from common.counters import Decrease, find_decreases
from common.db import pushkeys
from common.db.core import STORE_LOCK_TIMEOUT_MS, transaction
from common.db.rollups import RISE, SKETCH_KEY, SKETCH_PARAMS


# Read-only by type (Final), not frozen: a frozen dataclass's __init__ sets
# each field through object.__setattr__, five times the cost of slots
# (0.42 against 0.08 ms per thousand), paid on every read and every store.
@dataclass(slots=True)
class MetricValue:
    """A stored value. Ids grow in the order values were stored (per
    dashboard, in commit order: migrations/0011_gaps.sql); `ts` is when it
    was measured, which a push may back-date."""

    id: Final[int]
    metric_id: Final[int]
    value: Final[float]
    ts: Final[datetime]
    # The number of the batch that stored it, per dashboard (insert_values); None when read back.
    # Delivery bookkeeping, not part of the value: equal values compare equal with or without it.
    seq: Final[int | None] = field(default=None, compare=False)


# Reads of "the newest values" first look at this recent span only: its lower
# bound reaches PostgreSQL as a constant (psycopg2 interpolates parameters),
# so the planner prunes older partitions before planning them; planning one
# index scan per partition of a year of days would cost more than the scans.
# Metrics with too few values in it are read again without the bound.
RECENT = timedelta(days=1)


async def latest_values(
    pool: aiopg.Pool,
    metric_ids: Sequence[int],
    limit: int,
    *,
    since: datetime | None = None,
    by_time: bool = False,
) -> dict[int, list[MetricValue]]:
    """The `limit` values of each metric stored last (measured at or after
    `since`, when given), in the order they were stored (by id).

    By id, not by timestamp: a client holding them holds every value after
    the first one's id, so that `values_after` the last one continues it
    without gap or duplicate even when pushes were back-dated.
    With `by_time`, the newest `limit` by timestamp instead, oldest first.
    """
    result: dict[int, list[MetricValue]] = {metric_id: [] for metric_id in metric_ids}
    if not metric_ids:
        return result
    recent = datetime.now(UTC) - RECENT
    bound = recent if since is None else max(since, recent)
    async with pool.acquire() as conn, conn.cursor() as cur:
        rows = await _newest(cur, metric_ids, limit, bound, by_time)
        if bound != since:
            counts = Counter(row[1] for row in rows)
            fewer = [metric_id for metric_id in metric_ids if counts[metric_id] < limit]
            if fewer:
                rows = [row for row in rows if counts[row[1]] == limit] + await _newest(
                    cur, fewer, limit, since, by_time
                )
    # Each metric's rows come newest first.
    for row in reversed(rows):
        result[row[1]].append(MetricValue(*row))
    return result


async def _newest(
    cur: aiopg.Cursor, metric_ids: Sequence[int], limit: int, since: datetime | None, by_time: bool
) -> list[tuple[Any, ...]]:
    # A fixed choice of four statement texts; the values are parameters.
    since_clause = " AND ts >= %(since)s" if since is not None else ""
    order = "ts DESC, id DESC" if by_time else "id DESC"
    # LATERAL runs the per-metric "newest N" as an index scan for each id
    # (metric_values_latest_idx by time, metric_values_stored_idx by id).
    await cur.execute(
        "SELECT v.id, m.id, v.value, v.ts"
        " FROM unnest(%(ids)s::bigint[]) AS m(id)"
        " CROSS JOIN LATERAL ("
        "   SELECT id, value, ts FROM metric_values"
        f"   WHERE metric_id = m.id{since_clause} ORDER BY {order} LIMIT %(limit)s"
        " ) v",
        {"ids": list(metric_ids), "limit": limit, "since": since},
    )
    return await cur.fetchall()


async def last_values(pool: aiopg.Pool, metric_ids: Sequence[int]) -> dict[int, float]:
    """The newest value of each metric that has one (the worker's counter state)."""
    latest = await latest_values(pool, metric_ids, 1, by_time=True)
    return {metric_id: values[-1].value for metric_id, values in latest.items() if values}


async def insert_values(
    pool: aiopg.Pool,
    values: Sequence[tuple[int, float, datetime]],
    *,
    fence: Mapping[int, int] | None = None,
) -> list[MetricValue]:
    """Store (metric_id, value, ts) rows in one statement and one transaction.

    Rows whose metric no longer exists are left out (deleted meanwhile: its
    values would go with it anyway). With a `fence` ({dashboard id: lease
    token}, a worker's), so are the rows of dashboards whose lease no longer
    carries that token (worker/leases.py). Returns the stored rows once
    committed, in the order given, each with its dashboard's batch number
    (`seq`, see `_insert`).
    """
    if not values:
        return []
    async with pool.acquire() as conn, conn.cursor() as cur:
        return await _insert(cur, values, fence)


class CounterDecreases(ValueError):
    """Pushed values would make counters decrease; nothing was stored."""

    def __init__(self, decreases: list[Decrease]) -> None:
        super().__init__(f"{len(decreases)} value(s) would make a counter decrease")
        self.decreases = decreases


async def insert_pushed_values(
    pool: aiopg.Pool,
    values: Sequence[tuple[int, float, datetime | None]],
    counter_ids: Collection[int],
    key: pushkeys.PushKey | None = None,
) -> list[MetricValue]:
    """Store pushed (metric_id, value, ts) rows in one transaction; a ts of None
    is stamped with the clock once the counters are locked.

    The metrics in `counter_ids` are counters: their rows are locked, their
    stored neighbours read and the values inserted in that one transaction,
    so concurrent pushes to a counter are checked one after the other and it
    never decreases in time order. CounterDecreases, with nothing stored, if
    any value would make one decrease.

    With `key` (an Idempotency-Key), the key is claimed first and what was
    stored recorded with it (common/db/pushkeys.py); PushKeyTaken, with
    nothing stored, if a push with that key committed meanwhile.
    """
    if not values:
        return []
    counters = sorted(set(counter_ids) & {metric_id for metric_id, _, _ in values})
    async with transaction(pool) as cur:
        if key is not None:
            await pushkeys.claim(cur, key)
        if counters:
            # NO KEY UPDATE: excludes other pushes to these counters (and
            # edits of the metric) but not the foreign-key checks of
            # inserts, which take KEY SHARE. In id order: no deadlocks.
            # Waited for as long as the store's other locks at most.
            await cur.execute(
                f"{_STORE_TIMEOUT};"
                " SELECT id FROM metrics WHERE id = ANY(%s::bigint[]) ORDER BY id FOR NO KEY UPDATE",
                (counters,),
            )
        # After the lock: a later push gets a later timestamp.
        now = datetime.now(UTC)
        stamped = [(metric_id, value, ts or now) for metric_id, value, ts in values]
        decreases = await _counter_decreases(cur, stamped, counters) if counters else []
        if decreases:
            raise CounterDecreases(decreases)
        stored = await _insert(cur, stamped)
        if key is not None:
            await pushkeys.record(cur, key, [(v.id, v.metric_id, v.value, v.ts, v.seq) for v in stored])
    return stored


async def _counter_decreases(
    cur: aiopg.Cursor, values: Sequence[tuple[int, float, datetime]], counters: Sequence[int]
) -> list[Decrease]:
    pushed: dict[int, list[tuple[int, datetime, float]]] = {metric_id: [] for metric_id in counters}
    for index, (metric_id, value, ts) in enumerate(values):
        if metric_id in pushed:
            pushed[metric_id].append((index, ts, value))
    spans = {
        metric_id: (min(p[1] for p in rows), max(p[1] for p in rows)) for metric_id, rows in pushed.items()
    }
    stored = await _neighbours(cur, spans)
    found = []
    for metric_id, rows in pushed.items():
        found += find_decreases(metric_id, stored[metric_id], rows)
    return sorted(found, key=lambda decrease: decrease.index)


async def _neighbours(
    cur: aiopg.Cursor, spans: Mapping[int, tuple[datetime, datetime]]
) -> dict[int, list[tuple[datetime, int, float]]]:
    """Per metric, its stored (ts, id, value) rows in [first, last] of its span,
    with the last one before and the first one after."""
    ids = list(spans)
    firsts = [spans[metric_id][0] for metric_id in ids]
    lasts = [spans[metric_id][1] for metric_id in ids]
    # The one before is looked for in the recent span first (partitions pruned,
    # as in latest_values), then, for counters with none there, in all.
    bound = min(firsts) - RECENT
    await cur.execute(_NEIGHBOURS, {"ids": ids, "first": firsts, "last": lasts, "bound": bound})
    rows = await cur.fetchall()
    with_earlier = {metric_id for metric_id, ts, _, _ in rows if ts < spans[metric_id][0]}
    older = [metric_id for metric_id in ids if metric_id not in with_earlier]
    if older:
        await cur.execute(_EARLIER, {"ids": older, "first": [spans[metric_id][0] for metric_id in older]})
        rows += await cur.fetchall()
    result: dict[int, list[tuple[datetime, int, float]]] = {metric_id: [] for metric_id in ids}
    for metric_id, ts, value_id, value in rows:
        result[metric_id].append((ts, value_id, value))
    return result


_SPANS = "unnest(%(ids)s::bigint[], %(first)s::timestamptz[], %(last)s::timestamptz[]) AS s(id, first, last)"
_NEIGHBOURS = (
    f"SELECT s.id, v.ts, v.id, v.value FROM {_SPANS} CROSS JOIN LATERAL ("
    " (SELECT ts, id, value FROM metric_values WHERE metric_id = s.id AND ts < s.first AND ts >= %(bound)s"
    "  ORDER BY ts DESC, id DESC LIMIT 1)"
    " UNION ALL"
    " SELECT ts, id, value FROM metric_values WHERE metric_id = s.id AND ts >= s.first AND ts <= s.last"
    " UNION ALL"
    " (SELECT ts, id, value FROM metric_values WHERE metric_id = s.id AND ts > s.last ORDER BY ts, id LIMIT 1)"
    ") v"
)
_EARLIER = (
    "SELECT s.id, v.ts, v.id, v.value FROM unnest(%(ids)s::bigint[], %(first)s::timestamptz[]) AS s(id, first)"
    " CROSS JOIN LATERAL (SELECT ts, id, value FROM metric_values WHERE metric_id = s.id AND ts < s.first"
    " ORDER BY ts DESC, id DESC LIMIT 1) v"
)


async def _insert(
    cur: aiopg.Cursor, values: Sequence[tuple[int, float, datetime]], fence: Mapping[int, int] | None = None
) -> list[MetricValue]:
    # Each column goes as ONE array literal ('{1,2,3}'), still a parameter:
    # psycopg2 interpolates parameters client-side, and a Python list becomes
    # ARRAY[...] with a cast per element that PostgreSQL then parses one by
    # one. With 1,000 rows a tick the literals store 1.4x the rows per second
    # (bench/RESULTS.md). They hold only what int(), float() and isoformat()
    # write: nothing from the caller is spliced in as text.
    metric_ids = bigint_array(metric_id for metric_id, _, _ in values)
    numbers = "{" + ",".join([repr(float(value)) for _, value, _ in values]) + "}"
    # A tick's values share one timestamp: written once.
    texts: dict[datetime, str] = {}
    for _, _, ts in values:
        if ts not in texts:
            texts[ts] = f'"{ts.isoformat()}"'
    stamps = "{" + ",".join([texts[ts] for _, _, ts in values]) + "}"
    params = {
        "metrics": bigint_array(sorted({int(metric_id) for metric_id, _, _ in values})),
        "ids": metric_ids,
        "values": numbers,
        "ts": stamps,
        "dashboards": list(fence or {}),
        "tokens": list((fence or {}).values()),
    }
    # Statements in one round trip, which PostgreSQL runs as one transaction
    # (or inside the caller's): the lock wait limit first (core.STORE_LOCK_TIMEOUT_MS),
    # then the batch numbers, so that their row locks are held before any
    # value id is drawn. That is what makes a dashboard's ids grow in commit order.
    numbering, inserting = (NUMBER_BATCHES, _INSERT_VALUES) if fence is None else _FENCED
    await cur.execute(f"{_STORE_TIMEOUT}; {numbering}; {inserting}", params)
    rows = await cur.fetchall()
    rows.sort(key=lambda row: row[0])
    return [MetricValue(*row) for row in rows]


_STORE_TIMEOUT = f"SET LOCAL lock_timeout = {STORE_LOCK_TIMEOUT_MS}"


def bigint_array(numbers: Iterable[int]) -> str:
    """A bigint[] parameter as one array literal ('{1,2,3}'), not the ARRAY[...]
    psycopg2 makes of a list: PostgreSQL parses and plans a thousand-element
    ARRAY[...] element by element, which took 1.9 of the 3.8 ms of a COPY
    tick's first statement (bench/RESULTS.md). Only what int() writes."""
    return "{" + ",".join([str(int(number)) for number in numbers]) + "}"


# Each dashboard with values in the batch gets its next number, its row
# locked until commit: batches of one dashboard commit one after the other.
# In dashboard id order, so that two batches of several dashboards never
# deadlock. A dashboard whose values all vanish before the INSERT (metric
# deleted, lease taken over) skips a number: a reader then looks for the
# values of that number and finds none, which is harmless.
NUMBER_BATCHES = (
    "INSERT INTO dashboard_seqs (dashboard_id, seq, last_value_id)"
    " SELECT DISTINCT dashboard_id, 1, 0 FROM metrics WHERE id = ANY(%(metrics)s::bigint[])"
    " ORDER BY dashboard_id"
    " ON CONFLICT (dashboard_id) DO UPDATE SET seq = dashboard_seqs.seq + 1"
)
NUMBER_FENCED_BATCHES = (
    "INSERT INTO dashboard_seqs (dashboard_id, seq, last_value_id)"
    " SELECT DISTINCT m.dashboard_id, 1, 0 FROM metrics m"
    " JOIN unnest(%(dashboards)s::bigint[], %(tokens)s::bigint[]) AS f(dashboard_id, token)"
    "  ON f.dashboard_id = m.dashboard_id"
    " JOIN dashboard_leases l ON l.dashboard_id = f.dashboard_id AND l.token = f.token"
    " WHERE m.id = ANY(%(metrics)s::bigint[]) ORDER BY m.dashboard_id"
    " ON CONFLICT (dashboard_id) DO UPDATE SET seq = dashboard_seqs.seq + 1"
)


# `live` locks the named metrics that exist (FOR KEY SHARE, what the foreign
# key check takes too): a DELETE committed before the lock drops its rows here
# instead of failing the foreign key, and one coming after waits for this
# commit, then takes the new values with it. Locked in id order, as a
# dashboard's DELETE cascades, so the two rarely deadlock. The ordinality
# keeps the rows, and so their ids, in the order given.
_LIVE_METRICS = "SELECT id FROM metrics WHERE id = ANY(%(metrics)s::bigint[]) ORDER BY id FOR KEY SHARE"
# Fenced, `live` also locks the lease rows (FOR SHARE, which a takeover's
# UPDATE waits for) and keeps only the metrics whose lease still has the
# token given: a takeover committed first leaves these rows out, one coming
# later waits for this commit. Either way no value lands after a takeover.
_FENCED_LIVE_METRICS = (
    "SELECT m.id FROM metrics m"
    " JOIN dashboard_leases l ON l.dashboard_id = m.dashboard_id"
    " JOIN unnest(%(dashboards)s::bigint[], %(tokens)s::bigint[]) AS f(dashboard_id, token)"
    "  ON f.dashboard_id = l.dashboard_id AND f.token = l.token"
    " WHERE m.id = ANY(%(metrics)s::bigint[]) ORDER BY m.id FOR KEY SHARE OF m FOR SHARE OF l"
)
# Then the values go in, each dashboard's row records its newest value id
# (where a server that joins its channel starts counting: dashboard_position),
# and each value comes back with its batch's number.
_INSERT_LIVE = (
    ", stored AS (INSERT INTO metric_values (metric_id, value, ts)"
    " SELECT r.metric_id, r.value, r.ts"
    " FROM unnest(%(ids)s::bigint[], %(values)s::double precision[], %(ts)s::timestamptz[])"
    "  WITH ORDINALITY AS r(metric_id, value, ts, n)"
    " WHERE r.metric_id IN (SELECT id FROM live) ORDER BY r.n"
    " RETURNING id, metric_id, value, ts)"
    ", numbered AS (UPDATE dashboard_seqs q SET last_value_id = b.last_id"
    "  FROM (SELECT m.dashboard_id, max(s.id) AS last_id FROM stored s JOIN metrics m ON m.id = s.metric_id"
    "   GROUP BY m.dashboard_id) b"
    "  WHERE q.dashboard_id = b.dashboard_id RETURNING q.dashboard_id, q.seq)"
    " SELECT s.id, s.metric_id, s.value, s.ts, n.seq FROM stored s"
    " JOIN metrics m ON m.id = s.metric_id JOIN numbered n ON n.dashboard_id = m.dashboard_id"
)
_INSERT_VALUES = f"WITH live AS MATERIALIZED ({_LIVE_METRICS}){_INSERT_LIVE}"
_INSERT_FENCED_VALUES = f"WITH live AS MATERIALIZED ({_FENCED_LIVE_METRICS}){_INSERT_LIVE}"
_FENCED = (NUMBER_FENCED_BATCHES, _INSERT_FENCED_VALUES)


# Rows per export query: a few hundred kilobytes in memory at a time.
EXPORT_BATCH = 5000


async def export_batches(
    pool: aiopg.Pool,
    metric_ids: Sequence[int],
    since: datetime,
    until: datetime,
    batch_size: int = EXPORT_BATCH,
) -> AsyncIterator[list[MetricValue]]:
    """The values of each metric in [since, until), metric by metric, oldest first, in batches.

    Keyset pagination on (ts, id) along the per-metric index: each batch is
    one short query on a pooled connection, so an export of millions of rows
    holds neither a connection, a snapshot nor more than one batch in memory.
    """
    for metric_id in metric_ids:
        # (since, 0) sorts before every stored (ts, id) with ts >= since.
        after: tuple[datetime, int] = (since, 0)
        while True:
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute(
                    "SELECT id, metric_id, value, ts FROM metric_values"
                    " WHERE metric_id = %s AND (ts, id) > (%s, %s) AND ts < %s"
                    " ORDER BY ts, id LIMIT %s",
                    (metric_id, after[0], after[1], until, batch_size),
                )
                rows = await cur.fetchall()
            if rows:
                yield [MetricValue(*row) for row in rows]
            if len(rows) < batch_size:
                break
            after = (rows[-1][3], rows[-1][0])


async def delete_values_before(pool: aiopg.Pool, cutoff: datetime, limit: int) -> int:
    """Delete at most `limit` values stored before `cutoff`, in one short transaction.

    Returns how many went. Small batches keep each statement's row locks and
    WAL burst small, so ticks and pushes never wait long behind retention.
    Whole days go faster by dropping their partitions (common/db/partitions.py):
    this is for what remains, the cutoff's own day and the default partition.
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        # (id, ts) is the key; `ts < cutoff` outside too lets the planner
        # skip the partitions that hold nothing older.
        await cur.execute(
            "DELETE FROM metric_values WHERE ts < %(cutoff)s AND (id, ts) IN"
            " (SELECT id, ts FROM metric_values WHERE ts < %(cutoff)s ORDER BY ts LIMIT %(limit)s)",
            {"cutoff": cutoff, "limit": limit},
        )
        return cur.rowcount


async def delete_dashboard_values_before(
    pool: aiopg.Pool, dashboard_id: int, cutoff: datetime, limit: int
) -> int:
    """Delete at most `limit` values of this dashboard's metrics stored before `cutoff`.

    One short transaction, like delete_values_before; each metric's oldest
    values are found along its own index.
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "DELETE FROM metric_values WHERE ts < %(cutoff)s AND (id, ts) IN ("
            " SELECT v.id, v.ts FROM metrics m CROSS JOIN LATERAL ("
            "   SELECT id, ts FROM metric_values WHERE metric_id = m.id AND ts < %(cutoff)s"
            "   ORDER BY ts LIMIT %(limit)s) v"
            " WHERE m.dashboard_id = %(dashboard)s LIMIT %(limit)s)",
            {"cutoff": cutoff, "limit": limit, "dashboard": dashboard_id},
        )
        return cur.rowcount


@dataclass(frozen=True)
class Bucket:
    """The values of one metric in one time bucket, summarised."""

    metric_id: int
    start: datetime
    min: float
    max: float
    avg: float
    count: int
    last_id: int
    # The newest value, and a counter's increase since the value before the
    # bucket (common/stats.py::rise; resets included).
    last: float
    increase: float
    # When its first and newest values were stored (a rolled-up minute's: the minute's start).
    first_ts: datetime
    last_ts: datetime


async def bucketed_values(
    pool: aiopg.Pool,
    metric_ids: Sequence[int],
    since: datetime,
    bucket_seconds: int,
    until: datetime | None = None,
) -> dict[int, list[Bucket]]:
    """Each metric's values in [since, until) (until: None, up to now), as min/max/avg
    per bucket, oldest bucket first.

    Buckets start at multiples of `bucket_seconds` since the Unix epoch, so a
    client can add live values to the newest bucket by the same rule. For
    buckets of whole minutes the span the per-minute rollups cover is read
    from them (fast, and older than the raw values' retention); raw values
    fill in the minutes `since` and `until` fall in and the tail not rolled up yet.
    """
    result: dict[int, list[Bucket]] = {metric_id: [] for metric_id in metric_ids}
    if not metric_ids:
        return result
    params: dict[str, object] = {"ids": list(metric_ids), "since": since, "size": bucket_seconds}
    async with pool.acquire() as conn, conn.cursor() as cur:
        span = (since, until, bucket_seconds)
        query = await _bucket_query(cur, params, span, _BUCKETS_FROM_ROLLUPS, _BUCKETS_FROM_VALUES)
        # Aggregated in PostgreSQL: only a few hundred rows per metric cross the wire.
        await cur.execute(query, params)
        for row in await cur.fetchall():
            result[row[0]].append(Bucket(*row))
    return result


async def values_between(
    pool: aiopg.Pool, metric_ids: Sequence[int], since: datetime, until: datetime | None, limit: int
) -> dict[int, list[MetricValue]]:
    """Each metric's first `limit` values measured in [since, until) (until: None, up to now),
    oldest first (by time, then id)."""
    result: dict[int, list[MetricValue]] = {metric_id: [] for metric_id in metric_ids}
    if not metric_ids:
        return result
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT v.id, m.id, v.value, v.ts FROM unnest(%(ids)s::bigint[]) AS m(id)"
            " CROSS JOIN LATERAL ("
            "   SELECT id, value, ts FROM metric_values"
            "   WHERE metric_id = m.id AND ts >= %(since)s AND ts < %(until)s ORDER BY ts, id LIMIT %(limit)s"
            " ) v",
            {"ids": list(metric_ids), "since": since, "until": until or END_OF_TIME, "limit": limit},
        )
        for row in await cur.fetchall():
            result[row[1]].append(MetricValue(*row))
    return result


# The `until` of a range that ends now: later than any value stored (pushes may be stamped ahead).
END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)


async def bucket_sketches(
    pool: aiopg.Pool,
    metric_ids: Sequence[int],
    since: datetime,
    bucket_seconds: int,
    until: datetime | None = None,
) -> dict[int, dict[datetime, dict[int, int]]]:
    """Each metric's distribution per bucket in [since, until) (until: None, up to now):
    {bucket start: {sketch key: count}}, the buckets of bucketed_values (whole minutes
    read from the rollups, as it does)."""
    result: dict[int, dict[datetime, dict[int, int]]] = {metric_id: {} for metric_id in metric_ids}
    if not metric_ids:
        return result
    params: dict[str, object] = {
        "ids": list(metric_ids),
        "since": since,
        "size": bucket_seconds,
        **SKETCH_PARAMS,
    }
    async with pool.acquire() as conn, conn.cursor() as cur:
        span = (since, until, bucket_seconds)
        query = await _bucket_query(
            cur, params, span, _BUCKET_SKETCHES_FROM_ROLLUPS, _BUCKET_SKETCHES_FROM_VALUES
        )
        await cur.execute(query, params)
        for metric_id, start, key, count in await cur.fetchall():
            result[metric_id].setdefault(start, {})[key] = count
    return result


async def _bucket_query(
    cur: aiopg.Cursor,
    params: dict[str, object],
    span: tuple[datetime, datetime | None, int],
    from_rollups: str,
    from_values: str,
) -> str:
    """Which of the two queries reads the buckets of `span` (since, until, bucket
    seconds), with the bounds it needs added to `params`: buckets of whole
    minutes come from the rollups where they cover the span, others from the raw values."""
    since, until, bucket_seconds = span
    if bucket_seconds % 60 == 0:
        params.update(await _rollup_span(cur, since, until))
        return from_rollups
    params["until"] = until or END_OF_TIME
    return from_values


async def _rollup_span(cur: aiopg.Cursor, since: datetime, until: datetime | None) -> dict[str, datetime]:
    """`head_end`, `boundary` and `until`: rollup minutes in [head_end, boundary) stand for the
    raw values there; raw values are read in [since, head_end) and [boundary, until)."""
    await cur.execute("SELECT covered_until FROM rollup_progress")
    row = await cur.fetchone()
    head_end = _next_minute(since)
    end = until or END_OF_TIME
    covered = row[0] if row and row[0] is not None else head_end
    # Minutes rolled up and wholly before `until`; never before head_end.
    boundary = max(min(covered, end).replace(second=0, microsecond=0), head_end)
    return {"head_end": head_end, "boundary": boundary, "until": end}


def _next_minute(moment: datetime) -> datetime:
    """The first whole minute at or after `moment`."""
    start = moment.replace(second=0, microsecond=0)
    return start if start == moment else start + timedelta(minutes=1)


def _bucket_of(column: str) -> str:
    return f"to_timestamp(floor(extract(epoch FROM {column}) / %(size)s) * %(size)s)"


# Raw values as parts of buckets: (metric_id, ts, last_id, lo, hi, total, n, first, last, inc).
_RAW_PARTS = (
    "SELECT metric_id, ts, id AS last_id, value AS lo, value AS hi, value AS total, 1 AS n,"
    " value AS first, value AS last, 0::double precision AS inc FROM metric_values"
    " WHERE metric_id = ANY(%(ids)s::bigint[])"
)
# Rollup minutes in [head_end, boundary); raw values in [since, head_end) and
# from boundary on. A bucket may draw on both; sum/count keep its average
# exact. Minutes rolled up before first/last/increase were kept count as a
# counter's min and max with no increase inside (migrations/0012_stats.sql).
_ROLLUP_PARTS = (
    "SELECT metric_id, minute, last_id, min, max, sum, count, coalesce(first, min), coalesce(last, max),"
    " coalesce(increase, 0) FROM metric_rollups"
    " WHERE metric_id = ANY(%(ids)s::bigint[]) AND minute >= %(head_end)s AND minute < %(boundary)s"
    f" UNION ALL {_RAW_PARTS} AND ts >= %(since)s AND ts < %(head_end)s AND ts < %(until)s"
    f" UNION ALL {_RAW_PARTS} AND ts >= %(boundary)s AND ts < %(until)s"
)


def _buckets(parts: str) -> str:
    # `prev`: the part before in time, whose last value a counter's increase starts from.
    return (
        f"WITH parts (metric_id, ts, last_id, lo, hi, total, n, first, last, inc) AS ({parts}), stepped AS ("
        f" SELECT *, inc + {RISE} AS rise FROM ("
        "  SELECT *, lag(last) OVER (PARTITION BY metric_id ORDER BY ts, last_id) AS prev FROM parts) p)"
        f" SELECT metric_id, {_bucket_of('ts')} AS start, min(lo), max(hi), sum(total) / sum(n), sum(n),"
        " max(last_id), (array_agg(last ORDER BY ts DESC, last_id DESC))[1], sum(rise), min(ts), max(ts)"
        " FROM stepped GROUP BY metric_id, start ORDER BY metric_id, start"
    )


_BUCKETS_FROM_VALUES = _buckets(f"{_RAW_PARTS} AND ts >= %(since)s AND ts < %(until)s")
_BUCKETS_FROM_ROLLUPS = _buckets(_ROLLUP_PARTS)


# Per bucket, as (metric_id, bucket start, sketch key, count): the spans of _ROLLUP_PARTS.
_RAW_TS_KEYS = (
    f"SELECT metric_id, ts, {SKETCH_KEY.format(value='value')}, 1 FROM metric_values"
    " WHERE metric_id = ANY(%(ids)s::bigint[])"
)
_BUCKET_SKETCHES_FROM_ROLLUPS = (
    f"SELECT metric_id, {_bucket_of('ts')}, key, sum(n)::bigint FROM ("
    " SELECT r.metric_id, r.minute, s.key, s.n FROM metric_rollups r"
    "  CROSS JOIN LATERAL unnest(r.sketch_keys, r.sketch_counts) AS s(key, n)"
    "  WHERE r.metric_id = ANY(%(ids)s::bigint[]) AND r.minute >= %(head_end)s AND r.minute < %(boundary)s"
    f" UNION ALL {_RAW_TS_KEYS} AND ts >= %(since)s AND ts < %(head_end)s AND ts < %(until)s"
    f" UNION ALL {_RAW_TS_KEYS} AND ts >= %(boundary)s AND ts < %(until)s"
    ") parts (metric_id, ts, key, n) GROUP BY 1, 2, 3"
)
_BUCKET_SKETCHES_FROM_VALUES = (
    f"SELECT metric_id, {_bucket_of('ts')}, {SKETCH_KEY.format(value='value')}, count(*)::bigint"
    " FROM metric_values WHERE metric_id = ANY(%(ids)s::bigint[]) AND ts >= %(since)s AND ts < %(until)s"
    " GROUP BY 1, 2, 3"
)


async def values_after(
    pool: aiopg.Pool, positions: Mapping[int, int], limit: int
) -> dict[int, list[MetricValue] | None]:
    """Per metric, the values stored after the value whose id is
    `positions[metric_id]`, in the order they were stored (by id, whatever
    their timestamps: a back-dated push stored later comes later).

    None for a metric when that value is not stored for it (deleted, or another
    database) or more than `limit` values follow it: the gap cannot be filled.
    """
    if not positions:
        return {}
    metric_ids = list(positions)
    async with pool.acquire() as conn, conn.cursor() as cur:
        # A reconnecting client's position is nearly always recent.
        rows = await _after(cur, positions, limit, datetime.now(UTC) - RECENT)
        unanchored = {row[0] for row in rows if not row[1]}
        if unanchored:
            rows = [row for row in rows if row[0] not in unanchored]
            rows += await _after(cur, {i: positions[i] for i in unanchored}, limit, None)
    found: dict[int, list[MetricValue] | None] = {metric_id: [] for metric_id in metric_ids}
    for metric_id, anchored, value_id, value, ts in rows:
        values = found[metric_id]
        if not anchored:
            found[metric_id] = None
        elif values is not None and value_id is not None:
            values.append(MetricValue(value_id, metric_id, value, ts))
    return {
        metric_id: None if values is None or len(values) > limit else values
        for metric_id, values in found.items()
    }


async def _after(
    cur: aiopg.Cursor, positions: Mapping[int, int], limit: int, since: datetime | None
) -> list[tuple[Any, ...]]:
    """(metric_id, anchor found, id, value, ts) rows: the values after each anchor, by id."""
    # A fixed choice of two statement texts; the values are parameters. The
    # bound prunes partitions: it leaves out only values stored after the
    # anchor yet measured over RECENT ago (a worker's backlog of a day-long
    # outage), which the client's next history holds.
    anchor_since, since_clause = (" AND a.ts >= %(since)s", " AND ts >= %(since)s") if since else ("", "")
    # The anchor must be the metric's own; the LATERAL scan then walks
    # metric_values_stored_idx from its id.
    await cur.execute(
        "SELECT m.id, a.id IS NOT NULL, v.id, v.value, v.ts"
        " FROM unnest(%(ids)s::bigint[], %(after)s::bigint[]) AS m(id, after_id)"
        f" LEFT JOIN metric_values a ON a.id = m.after_id AND a.metric_id = m.id{anchor_since}"
        " LEFT JOIN LATERAL ("
        "   SELECT id, value, ts FROM metric_values"
        f"   WHERE metric_id = m.id AND id > a.id{since_clause} ORDER BY id LIMIT %(limit)s"
        " ) v ON true",
        {"ids": list(positions), "after": list(positions.values()), "limit": limit + 1, "since": since},
    )
    return await cur.fetchall()


# A dashboard's live stream (server/live/gaps.py) --------------------------------


@dataclass(frozen=True)
class StreamPosition:
    """Where a dashboard's stored batches stand: the number of the last one
    and the id of the newest value stored (0 and 0 before any)."""

    seq: int
    last_value_id: int


async def dashboard_position(pool: aiopg.Pool, dashboard_id: int) -> StreamPosition:
    """The dashboard's batch number and newest value id, as last committed."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT seq, last_value_id FROM dashboard_seqs WHERE dashboard_id = %s", (dashboard_id,)
        )
        row = await cur.fetchone()
    return StreamPosition(*row) if row else StreamPosition(0, 0)


@dataclass(frozen=True)
class StoredValue:
    """A stored value with what a client is shown of its metric."""

    value: MetricValue
    metric_name: str
    unit: str


async def dashboard_values_between(
    pool: aiopg.Pool, dashboard_id: int, after_id: int, before_id: int, limit: int
) -> list[StoredValue] | None:
    """The values of the dashboard's metrics with after_id < id < before_id, by id;
    None when there are more than `limit`."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT v.id, m.id, v.value, v.ts, m.name, m.unit FROM metrics m CROSS JOIN LATERAL ("
            "  SELECT id, value, ts FROM metric_values"
            "  WHERE metric_id = m.id AND id > %(after)s AND id < %(before)s ORDER BY id LIMIT %(limit)s"
            " ) v WHERE m.dashboard_id = %(dashboard)s ORDER BY v.id LIMIT %(limit)s",
            {"dashboard": dashboard_id, "after": after_id, "before": before_id, "limit": limit + 1},
        )
        rows = await cur.fetchall()
    if len(rows) > limit:
        return None
    return [StoredValue(MetricValue(*row[:4]), row[4], row[5]) for row in rows]

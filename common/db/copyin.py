"""Storing a worker's batch of values by binary COPY, with insert_values' guarantees.

An INSERT of a thousand rows from array parameters is planned every time,
locks the rows it reads, returns every row for the client to parse, and
stored about two thirds of what a raw COPY of the same rows stores on the
benchmark machine (bench/RESULTS.md, "Store"). Here the rows go by COPY
(FORMAT binary: nothing to parse on either side) inside one transaction
that keeps what `values._insert` promises:

1. `lock_timeout` first (core.STORE_LOCK_TIMEOUT_MS): a batch waiting on an
   editor's lock is refused by PostgreSQL before the client gives up;
2. each dashboard's batch number (`dashboard_seqs`), its row locked until
   commit, before any id is drawn: per dashboard, ids grow in commit order;
3. the metrics still there locked FOR KEY SHARE (with a `fence`, only those
   whose lease still carries the token, the lease rows locked FOR SHARE):
   rows of the others are left out;
4. ids drawn from the table's own sequence after the numbering, one per row
   in the order given: ids still grow per metric (those drawn for rows of a
   vanished metric stay unused);
5. each dashboard's newest id recorded (known once the ids are drawn), the
   rows written by COPY with their ids, then COMMIT; the caller publishes
   after that (common/ingest.py).

Should the connection break while that last message is under way, the batch
may or may not have been committed, and the caller would store it again (a
second copy) or drop it (a loss). The Copier settles it first: it ends the
old session for certain and looks for the batch's first row, whose id and
time it knows (`Copier._committed`).

aiopg's connections are asynchronous and cannot COPY, so a `Copier` holds one
synchronous connection of its own and runs each batch in a thread, one at a
time.
"""

from __future__ import annotations

import asyncio
import io
import logging
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from datetime import UTC, datetime

import psycopg2

from common.db.core import CLIENT_TIMEOUT, STORE_LOCK_TIMEOUT_MS, UNAVAILABLE

# The same numbering as the INSERT path's, so both number batches alike.
from common.db.values import NUMBER_BATCHES, NUMBER_FENCED_BATCHES, MetricValue, bigint_array

log = logging.getLogger(__name__)

# The live metrics (locked), their dashboards and those dashboards' batch numbers
# (their rows locked by the numbering just before), and as many ids as rows
# given, drawn after that numbering (a dead metric's rows leave theirs
# unused): one row of arrays, so the ids travel once. The three arrays of the
# live metrics are filled from the same rows in one pass, so they line up in
# whatever order: sorting each (ORDER BY in the aggregate) cost 0.3 ms a batch.
# The ids are sorted: they are handed out in the order the rows were given.
_IDS = (
    "(SELECT array_agg(id ORDER BY id)"
    " FROM (SELECT nextval('metric_values_id_seq') AS id FROM generate_series(1, %(rows)s)) drawn)"
)
_LIVE_ROWS = (
    f"SELECT array_agg(l.id), array_agg(l.dashboard_id), array_agg(q.seq), {_IDS}"
    " FROM live l JOIN dashboard_seqs q ON q.dashboard_id = l.dashboard_id"
)
_LIVE = (
    "WITH live AS MATERIALIZED (SELECT m.id, m.dashboard_id FROM metrics m"
    "  WHERE m.id = ANY(%(metrics)s::bigint[]) ORDER BY m.id FOR KEY SHARE OF m) " + _LIVE_ROWS
)
_LIVE_FENCED = (
    "WITH live AS MATERIALIZED (SELECT m.id, m.dashboard_id FROM metrics m"
    "  JOIN dashboard_leases l ON l.dashboard_id = m.dashboard_id"
    "  JOIN unnest(%(dashboards)s::bigint[], %(tokens)s::bigint[]) AS f(dashboard_id, token)"
    "   ON f.dashboard_id = l.dashboard_id AND f.token = l.token"
    "  WHERE m.id = ANY(%(metrics)s::bigint[]) ORDER BY m.id FOR KEY SHARE OF m FOR SHARE OF l) " + _LIVE_ROWS
)
# Each dashboard's newest id is known once the ids are drawn: it is recorded,
# the rows copied and the transaction committed in one message (the server
# runs its statements in turn, the COPY taking the rows sent once it is ready
# for them; an error skips the rest, COMMIT included). The caller publishes
# after this returns.
_RECORD = (
    "UPDATE dashboard_seqs q SET last_value_id = b.last_id"
    " FROM unnest(%s::bigint[], %s::bigint[]) AS b(dashboard_id, last_id)"
    " WHERE q.dashboard_id = b.dashboard_id"
)
_COPY = "COPY metric_values (id, metric_id, value, ts) FROM STDIN (FORMAT binary)"

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_TRAILER = struct.pack("!h", -1)
# A row: 4 fields, each its length then its value (bigint, bigint, float8, timestamptz).
_ROW = struct.Struct("!hiqiqidiq")
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class Copier:
    """One synchronous connection that stores batches by COPY (see the module docstring)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg2.extensions.connection | None = None
        self._lock = asyncio.Lock()

    async def store(
        self, values: Sequence[tuple[int, float, datetime]], fence: Mapping[int, int] | None = None
    ) -> list[MetricValue]:
        """As values.insert_values: the stored rows once committed, in the order given."""
        async with self._lock:
            return await asyncio.to_thread(self._store, values, fence)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg2.extensions.connection:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(
            self._dsn,
            connect_timeout=CLIENT_TIMEOUT,
            # As the pool's: UTC, and no statement waits longer than the pool's clients do.
            options=f"-c timezone=UTC -c statement_timeout={CLIENT_TIMEOUT * 1000}",
        )
        # BEGIN and COMMIT go with the batch's own statements: three round
        # trips in all (the first statement, the COPY's start, its rows),
        # as many as a bare COPY and its COMMIT.
        conn.autocommit = True
        return conn

    def _committed(self, backend_pid: int, value_id: int, ts: datetime) -> bool | None:
        """Whether the batch whose first row is (value_id, ts) was committed by
        the session `backend_pid`, whose connection broke during the batch's
        last message; None if the database cannot tell now.

        The session is ended first (pg_terminate_backend) and gone before the
        row is looked for: a COMMIT still under way there then either has
        finished or never will."""
        try:
            with closing(self._connect()) as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
                deadline = time.monotonic() + CLIENT_TIMEOUT
                while True:
                    cur.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend_pid,))
                    if cur.fetchone() is None:
                        break
                    if time.monotonic() > deadline:
                        return None
                    time.sleep(0.05)
                cur.execute("SELECT 1 FROM metric_values WHERE id = %s AND ts = %s", (value_id, ts))
                return cur.fetchone() is not None
        except UNAVAILABLE:
            return None

    def _store(
        self, values: Sequence[tuple[int, float, datetime]], fence: Mapping[int, int] | None
    ) -> list[MetricValue]:
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                return _copy(cur, values, fence, self._committed)
        except Exception:
            # Any failure, the database's or ours (a row that cannot be packed
            # comes after BEGIN): closing ends the transaction, PostgreSQL rolls
            # it back and frees the dashboards' batch rows at once, and the next
            # batch starts afresh.
            self.close()
            raise


def _copy(
    cur: psycopg2.extensions.cursor,
    values: Sequence[tuple[int, float, datetime]],
    fence: Mapping[int, int] | None,
    committed: Callable[[int, int, datetime], bool | None],
) -> list[MetricValue]:
    params = {
        "metrics": bigint_array(sorted({int(metric_id) for metric_id, _, _ in values})),
        "dashboards": list(fence or {}),
        "tokens": list((fence or {}).values()),
        "rows": len(values),
    }
    number, live = (NUMBER_BATCHES, _LIVE) if fence is None else (NUMBER_FENCED_BATCHES, _LIVE_FENCED)
    cur.execute(f"BEGIN; SET LOCAL lock_timeout = {STORE_LOCK_TIMEOUT_MS}; {number}; {live}", params)
    answer = cur.fetchone()
    assert answer is not None  # the numbering's SELECT always answers one row
    live_ids, dashboards, numbers, drawn = answer
    dashboard_of = dict(zip(live_ids or [], dashboards or [], strict=True))
    seqs = dict(zip(dashboards or [], numbers or [], strict=True))
    kept = [row for row in values if row[0] in dashboard_of]
    if not kept:
        cur.execute("COMMIT")  # the batch numbers taken stay skipped, as values._insert's do
        return []
    ids = drawn[: len(kept)]
    data = io.BytesIO()
    data.write(_HEADER)
    micros: dict[datetime, int] = {}
    last_id: dict[int, int] = {}
    for value_id, (metric_id, value, ts) in zip(ids, kept, strict=True):
        stamp = micros.get(ts)
        if stamp is None:
            stamp = micros[ts] = _pg_micros(ts)
        data.write(_ROW.pack(4, 8, value_id, 8, int(metric_id), 8, float(value), 8, stamp))
        last_id[dashboard_of[metric_id]] = value_id  # ids grow: the last is the newest
    data.write(_TRAILER)
    data.seek(0)
    record = cur.mogrify(_RECORD, (bigint_array(last_id), bigint_array(last_id.values()))).decode()
    backend_pid = cur.connection.get_backend_pid()
    try:
        cur.copy_expert(f"{record}; {_COPY}; COMMIT", data)
    except psycopg2.Error:
        if not cur.connection.closed:
            raise  # the server answered with an error: it skipped the rest, COMMIT included
        outcome = committed(backend_pid, ids[0], kept[0][2])
        if outcome is None:
            log.warning(
                "connection lost as %d value(s) were committed, and whether they were is unknown", len(kept)
            )
            raise
        if not outcome:
            raise
        log.warning(
            "connection lost as %d value(s) were committed; they were, and are not stored again", len(kept)
        )
    return [
        MetricValue(value_id, metric_id, float(value), ts, seqs[dashboard_of[metric_id]])
        for value_id, (metric_id, value, ts) in zip(ids, kept, strict=True)
    ]


def _pg_micros(ts: datetime) -> int:
    """Microseconds since 2000-01-01 UTC: timestamptz's binary form."""
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    delta = ts - _PG_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

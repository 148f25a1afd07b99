"""Worker leases: session-level advisory locks, one per dashboard."""

from __future__ import annotations

from collections.abc import Sequence

import aiopg

# Worker leases: session-level advisory locks, one per dashboard, held on a
# dedicated connection (no schema: PostgreSQL frees them when the session ends).

# The advisory-lock namespace (first key of the two-key form) of dashboard leases.
LEASE_LOCK_CLASS = 0x64617368  # "dash"
# Server-side TCP keepalives on the lease session: PostgreSQL ends the session of
# a worker whose host vanished (and so frees its leases) after 4 + 2 x 2 = 8 s of silence.
_LEASE_SESSION_OPTIONS = "-c tcp_keepalives_idle=4 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=2"
# The second key is an int4: ids beyond 2^31 share a lock with one 2^31 apart.
_LEASE_KEY = "(id %% 2147483648)::int"


async def open_lease_session(dsn: str, application_name: str) -> aiopg.Connection:
    """A connection of its own for holding leases, named so workers can count each other."""
    return await aiopg.connect(
        dsn,
        timeout=5,  # per statement: a lost lease session shows up within a tick
        application_name=application_name,
        options=_LEASE_SESSION_OPTIONS,
        keepalives=1,
        keepalives_idle=4,
        keepalives_interval=2,
        keepalives_count=2,
    )


async def lease_census(conn: aiopg.Connection, application_name: str) -> tuple[int, list[int]]:
    """(lease sessions connected to this database, every dashboard id), in one round trip."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT (SELECT count(*) FROM pg_stat_activity"
            "        WHERE application_name = %s AND datname = current_database()),"
            " ARRAY(SELECT id FROM dashboards ORDER BY id)",
            (application_name,),
        )
        workers, dashboard_ids = await cur.fetchone()
    return workers, list(dashboard_ids)


async def try_lease_dashboards(conn: aiopg.Connection, dashboard_ids: Sequence[int], limit: int) -> set[int]:
    """Take the leases of up to `limit` of these dashboards that nobody holds, in the order given."""
    if limit <= 0 or not dashboard_ids:
        return set()
    async with conn.cursor() as cur:
        # No ORDER BY: LIMIT stops the scan, so no lock is taken beyond `limit`.
        await cur.execute(
            "SELECT id FROM unnest(%s::bigint[]) AS d(id)"
            f" WHERE pg_try_advisory_lock(%s, {_LEASE_KEY}) LIMIT %s",
            (list(dashboard_ids), LEASE_LOCK_CLASS, limit),
        )
        return {row[0] for row in await cur.fetchall()}


async def release_dashboards(conn: aiopg.Connection, dashboard_ids: Sequence[int]) -> None:
    """Give up the leases of these dashboards (held by this session)."""
    async with conn.cursor() as cur:
        await cur.execute(
            f"SELECT pg_advisory_unlock(%s, {_LEASE_KEY}) FROM unnest(%s::bigint[]) AS d(id)",
            (LEASE_LOCK_CLASS, list(dashboard_ids)),
        )


async def ping_session(conn: aiopg.Connection) -> None:
    """Raise unless this connection's session is alive."""
    async with conn.cursor() as cur:
        await cur.execute("SELECT 1")


async def dashboard_leases(pool: aiopg.Pool) -> dict[int, int]:
    """Who holds which dashboard's lease now: {dashboard id: backend pid} (operators, tests)."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT d.id, l.pid FROM pg_locks l JOIN dashboards d ON l.objid::bigint = d.id %% 2147483648"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = %s AND l.objsubid = 2"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (LEASE_LOCK_CLASS,),
        )
        return {row[0]: row[1] for row in await cur.fetchall()}

"""Worker leases: one row per leased dashboard, with a fencing token (migration 0009)."""

from __future__ import annotations

from collections.abc import Sequence

import aiopg

# Server-side TCP keepalives on the lease session: PostgreSQL ends the session of
# a worker whose host vanished after 4 + 2 x 2 = 8 s of silence.
_LEASE_SESSION_OPTIONS = "-c tcp_keepalives_idle=4 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=2"


async def open_lease_session(dsn: str, application_name: str) -> aiopg.Connection:
    """A connection of its own for the worker's leases, named so workers can count each other."""
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


async def lease_census(
    conn: aiopg.Connection, application_name: str, seconds: float
) -> tuple[int, list[int]]:
    """(lease sessions on this database that ran a statement in the last `seconds`,
    every dashboard id), in one round trip.

    A stalled worker's session stays open (its kernel still answers the
    keepalives) but goes quiet: it stops being counted, so the others' fair
    shares grow to take its dashboards once their leases expire.
    """
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT (SELECT count(*) FROM pg_stat_activity"
            "        WHERE application_name = %s AND datname = current_database()"
            "        AND state_change > now() - %s * interval '1 second'),"
            " ARRAY(SELECT id FROM dashboards ORDER BY id)",
            (application_name, seconds),
        )
        workers, dashboard_ids = await cur.fetchone()
    return workers, list(dashboard_ids)


async def renew_leases(conn: aiopg.Connection, worker: str, seconds: float) -> dict[int, int]:
    """Extend every lease this worker still holds by `seconds`: {dashboard id: token}.

    One that expired but nobody took is still this worker's: its token never
    changed, so no one else stored values for it meanwhile.
    """
    async with conn.cursor() as cur:
        await cur.execute(
            "UPDATE dashboard_leases SET expires_at = now() + %s * interval '1 second'"
            " WHERE worker = %s::uuid RETURNING dashboard_id, token",
            (seconds, worker),
        )
        return dict(await cur.fetchall())


async def try_lease_dashboards(
    conn: aiopg.Connection, worker: str, dashboard_ids: Sequence[int], limit: int, seconds: float
) -> dict[int, int]:
    """Take up to `limit` of these dashboards whose lease is free or expired, in the
    order given, for `seconds`: {dashboard id: its new token}."""
    if limit <= 0 or not dashboard_ids:
        return {}
    async with conn.cursor() as cur:
        # A new token on every change of hands: the previous holder's values no
        # longer match it (common/db/values.py). Of two workers taking the same
        # lease at once, the second finds it no longer expired and skips it.
        await cur.execute(
            "WITH free AS ("
            "  SELECT d.id FROM unnest(%(ids)s::bigint[]) WITH ORDINALITY AS d(id, n)"
            "  JOIN dashboards ON dashboards.id = d.id"
            "  LEFT JOIN dashboard_leases l ON l.dashboard_id = d.id"
            "  WHERE l.dashboard_id IS NULL OR l.expires_at < now() ORDER BY d.n LIMIT %(limit)s"
            ")"
            " INSERT INTO dashboard_leases (dashboard_id, worker, token, expires_at)"
            " SELECT id, %(worker)s::uuid, nextval('dashboard_lease_token_seq'),"
            "  now() + %(seconds)s * interval '1 second' FROM free"
            " ON CONFLICT (dashboard_id) DO UPDATE"
            "  SET worker = excluded.worker, token = excluded.token, expires_at = excluded.expires_at"
            "  WHERE dashboard_leases.expires_at < now()"
            " RETURNING dashboard_id, token",
            {"ids": list(dashboard_ids), "limit": limit, "worker": worker, "seconds": seconds},
        )
        return dict(await cur.fetchall())


async def release_dashboards(conn: aiopg.Connection, worker: str, dashboard_ids: Sequence[int]) -> None:
    """Give up these dashboards' leases, where this worker still holds them."""
    async with conn.cursor() as cur:
        await cur.execute(
            "DELETE FROM dashboard_leases WHERE worker = %s::uuid AND dashboard_id = ANY(%s::bigint[])",
            (worker, list(dashboard_ids)),
        )


async def ping_session(conn: aiopg.Connection) -> None:
    """Raise unless this connection's session is alive."""
    async with conn.cursor() as cur:
        await cur.execute("SELECT 1")


async def dashboard_leases(pool: aiopg.Pool) -> dict[int, str]:
    """Who holds which dashboard's lease now: {dashboard id: worker id} (operators, tests)."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT dashboard_id, worker::text FROM dashboard_leases WHERE expires_at >= now()")
        return dict(await cur.fetchall())

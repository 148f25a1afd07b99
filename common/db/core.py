"""What every data-access module shares: the pool, the domain errors, the liveness probe."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import aiopg
import psycopg2

# What a query raises when the database is down, restarting or too slow
# (the pool's timeout): callers answer "try again later" instead of crashing.
UNAVAILABLE = (psycopg2.Error, OSError, TimeoutError)

# Seconds the client waits for any statement (the pool's timeout).
CLIENT_TIMEOUT = 10
# A store of values that waits this long for a lock (an editor's or a
# migration's transaction) is refused by PostgreSQL before the client gives up:
# its outcome is known, so it is retried and never committed behind the
# client's back (then stored twice). lock_timeout, not statement_timeout:
# aiopg turns the latter's QueryCanceled into asyncio.CancelledError.
STORE_LOCK_TIMEOUT_MS = (CLIENT_TIMEOUT - 2) * 1000
# Seconds a closing pool waits for connections in use before closing them
# (twice at worst: a connection being opened holds aiopg's lock meanwhile).
POOL_CLOSE_WAIT = 2.0

log = logging.getLogger(__name__)


class NotFound(LookupError):
    """The named user, dashboard or metric does not exist."""


class AlreadyExists(ValueError):
    """A unique name (username, slug, metric name on a dashboard) is taken."""


class LastEditor(ValueError):
    """The change would leave a dashboard with no editor (no one could manage it from the UI)."""


class NotAnEditor(PermissionError):
    """The user is not (or no longer) an editor of the dashboard."""


# How each quota (a field of common.config.Quotas) names what it counts, and
# who holds it.
_QUOTA_NOUNS = {
    "max_dashboards_per_user": "dashboards as an editor",
    "max_metrics_per_dashboard": "metrics",
    "max_alert_rules_per_dashboard": "alert rules",
    "max_tokens_per_dashboard": "active API tokens",
    "max_members_per_dashboard": "members",
    "max_contact_points_per_dashboard": "contact points",
}


class QuotaExceeded(ValueError):
    """One more row would go over a quota; nothing was added."""

    def __init__(self, quota: str, limit: int, holder: str, count: int) -> None:
        super().__init__(
            f"{holder} has {count} {_QUOTA_NOUNS[quota]}, and {limit} is the most allowed ({quota}):"
            " remove one first, or ask an administrator to raise the limit"
        )
        self.quota = quota  # the setting's name, e.g. "max_metrics_per_dashboard"
        self.limit = limit


@asynccontextmanager
async def transaction(pool: aiopg.Pool) -> AsyncIterator[aiopg.Cursor]:
    """A cursor inside BEGIN ... COMMIT; any exception rolls back and propagates."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("BEGIN")
        try:
            yield cur
            await cur.execute("COMMIT")
        except BaseException:
            # The connection goes back to the pool: never with a transaction open.
            with suppress(*UNAVAILABLE):
                await cur.execute("ROLLBACK")
            raise


async def fetch_one(pool: aiopg.Pool, query: str, params: Sequence[Any], *, missing: str) -> tuple[Any, ...]:
    """The row a one-row statement (a SELECT by key, an UPDATE ... RETURNING)
    gives; NotFound(`missing`) if there is none."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(query, params)
        row = await cur.fetchone()
    if row is None:
        raise NotFound(missing)
    return tuple(row)


async def change_one(pool: aiopg.Pool, query: str, params: Sequence[Any]) -> bool:
    """Run a statement meant to change one row (found by its key); whether it did."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(query, params)
        return bool(cur.rowcount == 1)


@asynccontextmanager
async def create_pool(dsn: str, *, minsize: int = 1, maxsize: int = 10) -> AsyncIterator[aiopg.Pool]:
    """A connection pool whose sessions speak UTC, closed on exit (`close_pool`)."""
    # timeout bounds every statement's wait, so a database that went away
    # surfaces as an error instead of a hung request.
    pool = await aiopg.create_pool(
        dsn, minsize=minsize, maxsize=maxsize, timeout=CLIENT_TIMEOUT, options="-c timezone=UTC"
    )
    try:
        yield pool
    finally:
        await close_pool(pool)


async def close_pool(pool: aiopg.Pool) -> None:
    """Close the pool, giving connections in use `POOL_CLOSE_WAIT` seconds to
    come back, then closing them where they are.

    aiopg alone waits for every connection in use, however long: one held by a
    task that was never cancelled would keep a stopping process alive until
    systemd kills it.
    """
    pool.close()
    try:
        await asyncio.wait_for(pool.wait_closed(), POOL_CLOSE_WAIT)
    except TimeoutError:
        log.warning(
            "closing the database pool: %d connection(s) in use or being opened after %.0f s, closed",
            pool.size - pool.freesize,
            POOL_CLOSE_WAIT,
        )
        pool.terminate()
        with suppress(TimeoutError):  # a connection still being opened ends with its own timeout
            await asyncio.wait_for(pool.wait_closed(), POOL_CLOSE_WAIT)


async def ping(pool: aiopg.Pool) -> None:
    """Raise unless the database answers a trivial query."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT 1")

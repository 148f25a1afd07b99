"""What every data-access module shares: the pool, the domain errors, the liveness probe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiopg
import psycopg2

# What a query raises when the database is down, restarting or too slow
# (the pool's timeout): callers answer "try again later" instead of crashing.
UNAVAILABLE = (psycopg2.Error, OSError, TimeoutError)


class NotFound(LookupError):
    """The named user, dashboard or metric does not exist."""


class AlreadyExists(ValueError):
    """A unique name (username, slug, metric name on a dashboard) is taken."""


class LastEditor(ValueError):
    """The change would leave a dashboard with no editor (no one could manage it from the UI)."""


@asynccontextmanager
async def create_pool(dsn: str, *, minsize: int = 1, maxsize: int = 10) -> AsyncIterator[aiopg.Pool]:
    """A connection pool whose sessions speak UTC, closed on exit."""
    # timeout bounds every statement's wait, so a database that went away
    # surfaces as an error instead of a hung request.
    async with aiopg.create_pool(
        dsn, minsize=minsize, maxsize=maxsize, timeout=10, options="-c timezone=UTC"
    ) as pool:
        yield pool


async def ping(pool: aiopg.Pool) -> None:
    """Raise unless the database answers a trivial query."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT 1")

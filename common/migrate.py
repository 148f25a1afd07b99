"""Apply the SQL files in migrations/ in order, once each.

Each file runs in its own transaction together with the row recording it in
`schema_migrations`. A session-level advisory lock serialises concurrent
runners (two servers starting at once), so running this twice, or from two
processes at the same time, is safe.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import aiopg

log = logging.getLogger(__name__)

# An arbitrary constant naming "the schema migration lock" for pg_advisory_lock.
MIGRATION_LOCK_ID = 0x6C697665_64617368 & 0x7FFFFFFFFFFFFFFF
MIGRATION_TIMEOUT = 3600.0  # seconds
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The database schema is not in a state this code can use."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """The migrations shipped with this code, in version order, gap-free."""
    found = []
    for entry in resources.files("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(f"migration {expected:04d} is missing")
    return found


async def applied_versions(pool: aiopg.Pool) -> list[int]:
    """Versions recorded as applied; empty for a database never migrated."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        return await _applied_versions(cur)


async def pending_migrations(pool: aiopg.Pool) -> list[Migration]:
    """Migrations not yet applied; raises if the database is ahead of the code."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        return _pending(await _applied_versions(cur))


async def _applied_versions(cur: aiopg.Cursor) -> list[int]:
    await cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    (exists,) = await cur.fetchone()
    if not exists:
        return []
    await cur.execute("SELECT version FROM schema_migrations ORDER BY version")
    return [row[0] for row in await cur.fetchall()]


def _pending(applied: list[int]) -> list[Migration]:
    known = available_migrations()
    if applied != list(range(1, len(applied) + 1)):
        raise MigrationError(f"applied migrations are not contiguous: {applied}")
    if len(applied) > len(known):
        raise MigrationError(f"database is at version {len(applied)}, this code knows only {len(known)}")
    return known[len(applied) :]


async def migrate(pool: aiopg.Pool, *, up_to: int | None = None) -> list[Migration]:
    """Apply every pending migration (up to version `up_to`, when given); returns those this call applied."""
    done: list[Migration] = []
    # One connection throughout: it holds the lock. Its statements may wait
    # for another runner's lock or build an index on a big table, so they get
    # MIGRATION_TIMEOUT instead of the pool's short per-statement timeout.
    async with pool.acquire() as conn, conn.cursor(timeout=MIGRATION_TIMEOUT) as cur:
        await cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            await cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY,"
                " name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            # Read under the lock: another runner may have just finished.
            for migration in _pending(await _applied_versions(cur)):
                if up_to is not None and migration.version > up_to:
                    break
                log.info("applying migration %04d_%s", migration.version, migration.name)
                await cur.execute("BEGIN")
                try:
                    await cur.execute(migration.sql)
                    await cur.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                    await cur.execute("COMMIT")
                except BaseException:
                    await cur.execute("ROLLBACK")
                    raise
                done.append(migration)
        finally:
            await cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    return done

"""Idempotency keys of pushes: a push sent again with its key is not stored twice.

The key is claimed in the transaction that stores the push's values
(`insert_pushed_values`), before anything else in it: a second push with the
same key waits for the first's transaction and, if that committed, finds the
key taken and stores nothing. What the first push stored is recorded with the
key, so the second is answered with the same values; and whether they were
published, so that it publishes them if the first died before it could.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiopg
import psycopg2.errors
from psycopg2.extras import Json

from common.db.core import STORE_LOCK_TIMEOUT_MS, NotFound

# How long a key is remembered: an older one is free again, and
# worker/retention.py deletes it.
KEY_HOURS = 24
_FRESH = f"created_at > now() - interval '{KEY_HOURS} hours'"


@dataclass(frozen=True)
class PushKey:
    """A push's Idempotency-Key on its token's dashboard, and the digest of its request."""

    dashboard_id: int
    key: str
    digest: bytes


@dataclass(frozen=True)
class EarlierPush:
    """What the push that used a key stored, as (id, metric_id, value, ts, seq) rows, and
    whether those values were published."""

    stored: list[tuple[int, int, float, datetime, int | None]]
    published: bool


class PushKeyTaken(Exception):
    """Another push with this key was stored while this one was checked: nothing was stored."""


class PushKeyReused(ValueError):
    """The key was used by a push with another request (path or body)."""


async def find_push(pool: aiopg.Pool, key: PushKey) -> EarlierPush | None:
    """What the push that used `key` in the last KEY_HOURS stored, or None if none
    did; PushKeyReused if that push was another request."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"SELECT digest, stored, published FROM push_keys"
            f" WHERE dashboard_id = %s AND idempotency_key = %s AND {_FRESH}",
            (key.dashboard_id, key.key),
        )
        row = await cur.fetchone()
    if row is None:
        return None
    digest, stored, published = row
    if bytes(digest) != key.digest:
        raise PushKeyReused(key.key)
    # Values as their repr: jsonb's numeric has no -0.0 and would give 1e16 back as an int.
    rows = [(i, m, float(v), datetime.fromisoformat(ts), seq) for i, m, v, ts, seq in stored or []]
    return EarlierPush(rows, published)


async def claim(cur: aiopg.Cursor, key: PushKey) -> None:
    """Claim `key` in the caller's transaction (taking over one older than KEY_HOURS);
    PushKeyTaken if a push holding it committed; NotFound if the dashboard is gone.

    The lock wait limit is set first (core.STORE_LOCK_TIMEOUT_MS): a push with
    the same key still under way is waited for that long at most."""
    try:
        await cur.execute(
            f"SET LOCAL lock_timeout = {STORE_LOCK_TIMEOUT_MS};"
            " INSERT INTO push_keys (dashboard_id, idempotency_key, digest) VALUES (%s, %s, %s)"
            " ON CONFLICT (dashboard_id, idempotency_key) DO UPDATE"
            "  SET digest = EXCLUDED.digest, stored = NULL, published = false, created_at = now()"
            f" WHERE NOT push_keys.{_FRESH}"
            " RETURNING 1",
            (key.dashboard_id, key.key, key.digest),
        )
    except psycopg2.errors.ForeignKeyViolation:
        raise NotFound(f"dashboard {key.dashboard_id}") from None
    if await cur.fetchone() is None:
        raise PushKeyTaken(key.key)


async def record(
    cur: aiopg.Cursor, key: PushKey, stored: list[tuple[int, int, float, datetime, int | None]]
) -> None:
    """What the push claiming `key` stored, in the same transaction."""
    rows = [[i, m, repr(float(v)), ts.isoformat(), seq] for i, m, v, ts, seq in stored]
    await cur.execute(
        "UPDATE push_keys SET stored = %s WHERE dashboard_id = %s AND idempotency_key = %s",
        (Json(rows), key.dashboard_id, key.key),
    )


async def mark_published(pool: aiopg.Pool, key: PushKey) -> None:
    """The values stored under `key` were published (and their alert rules stepped)."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "UPDATE push_keys SET published = true WHERE dashboard_id = %s AND idempotency_key = %s",
            (key.dashboard_id, key.key),
        )


async def delete_push_keys_before(pool: aiopg.Pool, cutoff: datetime, limit: int) -> int:
    """Delete at most `limit` keys claimed before `cutoff`; how many went."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "DELETE FROM push_keys WHERE (dashboard_id, idempotency_key) IN"
            " (SELECT dashboard_id, idempotency_key FROM push_keys WHERE created_at < %s"
            "  ORDER BY created_at LIMIT %s)",
            (cutoff, limit),
        )
        return cur.rowcount

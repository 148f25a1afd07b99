"""Idempotency keys of pushes: a push sent again with its key is not stored twice.

The key is claimed in the transaction that stores the push's values
(`insert_pushed_values`), before anything else in it: a second push with the
same key waits for the first's transaction and, if that committed, finds the
key taken and stores nothing. What the first push stored is recorded with the
key, so the second is answered with the same values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import aiopg

from common.db.core import STORE_LOCK_TIMEOUT_MS

# How long a key is remembered (worker/retention.py deletes older ones).
KEY_HOURS = 24


@dataclass(frozen=True)
class PushKey:
    """A push's Idempotency-Key on its token's dashboard, and the digest of its request."""

    dashboard_id: int
    key: str
    digest: bytes


class PushKeyTaken(Exception):
    """Another push with this key was stored while this one was checked: nothing was stored."""


class PushKeyReused(ValueError):
    """The key was used by a push with another request (path or body)."""


async def find_push(pool: aiopg.Pool, key: PushKey) -> list[tuple[int, int, float, datetime]] | None:
    """The (id, metric_id, value, ts) rows stored by the push that used `key`,
    or None if none did; PushKeyReused if that push was another request."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT digest, stored FROM push_keys WHERE dashboard_id = %s AND idempotency_key = %s",
            (key.dashboard_id, key.key),
        )
        row = await cur.fetchone()
    if row is None:
        return None
    digest, stored = row
    if bytes(digest) != key.digest:
        raise PushKeyReused(key.key)
    return [(i, m, v, datetime.fromisoformat(ts)) for i, m, v, ts in stored or []]


async def claim(cur: aiopg.Cursor, key: PushKey) -> None:
    """Claim `key` in the caller's transaction; PushKeyTaken if a push holding it committed.

    The lock wait limit is set first (core.STORE_LOCK_TIMEOUT_MS): a push with
    the same key still under way is waited for that long at most."""
    await cur.execute(
        f"SET LOCAL lock_timeout = {STORE_LOCK_TIMEOUT_MS};"
        " INSERT INTO push_keys (dashboard_id, idempotency_key, digest) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        (key.dashboard_id, key.key, key.digest),
    )
    if await cur.fetchone() is None:
        raise PushKeyTaken(key.key)


async def record(cur: aiopg.Cursor, key: PushKey, stored: list[tuple[int, int, float, datetime]]) -> None:
    """What the push claiming `key` stored, in the same transaction."""
    rows = [[i, m, v, ts.isoformat()] for i, m, v, ts in stored]
    await cur.execute(
        "UPDATE push_keys SET stored = %s::jsonb WHERE dashboard_id = %s AND idempotency_key = %s",
        (json.dumps(rows), key.dashboard_id, key.key),
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

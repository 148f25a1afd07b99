"""Per-dashboard API tokens for the push API (only their hashes are stored)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiopg

from common.config import Quotas
from common.db.core import NotAnEditor, change_one, transaction
from common.db.quotas import check_quota, lock_dashboard


@dataclass(frozen=True)
class ApiToken:
    id: int
    dashboard_id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    # The editor who made it (id, username); None when made from the CLI, before
    # creators were recorded, or once that user is deleted.
    created_by: int | None = None
    created_by_username: str | None = None


_TOKEN_COLUMNS = (
    "t.id, t.dashboard_id, t.name, t.prefix, t.created_at, t.last_used_at, t.revoked_at,"
    " t.created_by, (SELECT username FROM users u WHERE u.id = t.created_by)"
)


async def create_api_token(
    pool: aiopg.Pool,
    dashboard_id: int,
    name: str,
    token_hash: bytes,
    prefix: str,
    *,
    created_by: int | None = None,
    quotas: Quotas | None = None,
) -> ApiToken:
    """Add a token; `created_by` (None: the CLI) must be an editor, checked with the
    dashboard locked, so a token is never made by an editor just demoted.

    NotFound if the dashboard is gone, NotAnEditor, QuotaExceeded.
    """
    async with transaction(pool) as cur:
        await lock_dashboard(cur, dashboard_id)
        if created_by is not None:
            await cur.execute(
                "SELECT 1 FROM dashboard_members WHERE dashboard_id = %s AND user_id = %s AND role = 'editor'",
                (dashboard_id, created_by),
            )
            if await cur.fetchone() is None:
                raise NotAnEditor("only editors may make tokens for this dashboard")
        await check_quota(cur, quotas, "max_tokens_per_dashboard", dashboard_id)
        await cur.execute(
            "INSERT INTO api_tokens AS t (dashboard_id, name, token_hash, prefix, created_by)"
            f" VALUES (%s, %s, %s, %s, %s) RETURNING {_TOKEN_COLUMNS}",
            (dashboard_id, name, token_hash, prefix, created_by),
        )
        return ApiToken(*await cur.fetchone())


async def list_api_tokens(pool: aiopg.Pool, dashboard_id: int) -> list[ApiToken]:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"SELECT {_TOKEN_COLUMNS} FROM api_tokens t WHERE t.dashboard_id = %s ORDER BY t.id",
            (dashboard_id,),
        )
        return [ApiToken(*row) for row in await cur.fetchall()]


async def revoke_api_token(pool: aiopg.Pool, dashboard_id: int, token_id: int) -> bool:
    """Revoke a token of this dashboard; False if there is no such active token."""
    query = (
        "UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND dashboard_id = %s AND revoked_at IS NULL"
    )
    return await change_one(pool, query, (token_id, dashboard_id))


async def delete_revoked_api_token(pool: aiopg.Pool, dashboard_id: int, token_id: int) -> bool:
    """Remove a revoked token of this dashboard from its list; False if there is
    no such revoked token (an active one must be revoked first)."""
    query = "DELETE FROM api_tokens WHERE id = %s AND dashboard_id = %s AND revoked_at IS NOT NULL"
    return await change_one(pool, query, (token_id, dashboard_id))


async def revoke_creator_tokens(cur: aiopg.Cursor, user_id: int, dashboard_id: int | None = None) -> int:
    """Revoke the active tokens this user made (for one dashboard, or all), in the
    caller's transaction: a token lives no longer than its creator's editorship."""
    await cur.execute(
        "UPDATE api_tokens SET revoked_at = now()"
        " WHERE created_by = %s AND (dashboard_id = %s OR %s IS NULL) AND revoked_at IS NULL",
        (user_id, dashboard_id, dashboard_id),
    )
    return cur.rowcount


async def use_api_token(pool: aiopg.Pool, token_hash: bytes) -> int | None:
    """The dashboard an active token is for (recording its use), or None."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "UPDATE api_tokens SET last_used_at = now()"
            " WHERE token_hash = %s AND revoked_at IS NULL RETURNING dashboard_id",
            (token_hash,),
        )
        row = await cur.fetchone()
    return row[0] if row else None

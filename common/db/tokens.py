"""Per-dashboard API tokens for the push API (only their hashes are stored)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiopg


@dataclass(frozen=True)
class ApiToken:
    id: int
    dashboard_id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


_TOKEN_COLUMNS = "id, dashboard_id, name, prefix, created_at, last_used_at, revoked_at"


async def create_api_token(
    pool: aiopg.Pool, dashboard_id: int, name: str, token_hash: bytes, prefix: str
) -> ApiToken:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO api_tokens (dashboard_id, name, token_hash, prefix) VALUES (%s, %s, %s, %s)"
            f" RETURNING {_TOKEN_COLUMNS}",
            (dashboard_id, name, token_hash, prefix),
        )
        return ApiToken(*await cur.fetchone())


async def list_api_tokens(pool: aiopg.Pool, dashboard_id: int) -> list[ApiToken]:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE dashboard_id = %s ORDER BY id", (dashboard_id,)
        )
        return [ApiToken(*row) for row in await cur.fetchall()]


async def revoke_api_token(pool: aiopg.Pool, dashboard_id: int, token_id: int) -> bool:
    """Revoke a token of this dashboard; False if there is no such active token."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "UPDATE api_tokens SET revoked_at = now()"
            " WHERE id = %s AND dashboard_id = %s AND revoked_at IS NULL",
            (token_id, dashboard_id),
        )
        return cur.rowcount == 1


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

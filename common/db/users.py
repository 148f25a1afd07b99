"""Users and their password hashes."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import aiopg
import psycopg2.errors

from common.db.core import AlreadyExists, NotFound, change_one, transaction
from common.db.tokens import revoke_creator_tokens


@dataclass(frozen=True)
class User:
    id: int
    username: str


@dataclass(frozen=True)
class Credentials:
    user: User
    password_hash: str


async def create_user(pool: aiopg.Pool, username: str, password_hash: str) -> User:
    async with pool.acquire() as conn, conn.cursor() as cur:
        try:
            await cur.execute(
                "INSERT INTO users (username, password_hash) VALUES (%s, %s) RETURNING id",
                (username, password_hash),
            )
        except psycopg2.errors.UniqueViolation:
            raise AlreadyExists(f"user {username!r} already exists") from None
        (user_id,) = await cur.fetchone()
    return User(user_id, username)


async def get_credentials(pool: aiopg.Pool, username: str) -> Credentials | None:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT id, username, password_hash FROM users WHERE username = %s", (username,))
        row = await cur.fetchone()
    return Credentials(User(row[0], row[1]), row[2]) if row else None


async def set_password_hash(pool: aiopg.Pool, user_id: int, password_hash: str) -> None:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id))


async def replace_password_hash(pool: aiopg.Pool, user_id: int, old_hash: str, new_hash: str) -> bool:
    """Store `new_hash` only if `old_hash` is still the stored one (a rehash at
    login must not undo a password change made meanwhile); whether it did."""
    query = "UPDATE users SET password_hash = %s WHERE id = %s AND password_hash = %s"
    return await change_one(pool, query, (new_hash, user_id, old_hash))


async def get_user(pool: aiopg.Pool, user_id: int) -> User | None:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT id, username FROM users WHERE id = %s", (user_id,))
        row = await cur.fetchone()
    return User(*row) if row else None


async def get_user_by_username(pool: aiopg.Pool, username: str) -> User:
    credentials = await get_credentials(pool, username)
    if credentials is None:
        raise NotFound(f"no user {username!r}")
    return credentials.user


async def list_users(pool: aiopg.Pool) -> list[User]:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT id, username FROM users ORDER BY username")
        return [User(*row) for row in await cur.fetchall()]


async def count_users_except(pool: aiopg.Pool, usernames: Collection[str]) -> int:
    """How many users are named none of `usernames`; 0 in a database never migrated."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT to_regclass('users') IS NOT NULL")
        (exists,) = await cur.fetchone()
        if not exists:
            return 0
        await cur.execute("SELECT count(*) FROM users WHERE username <> ALL(%s)", (list(usernames),))
        (count,) = await cur.fetchone()
    return int(count)


async def delete_user(pool: aiopg.Pool, user_id: int) -> bool:
    """Delete the user and their memberships, revoking every token they made; False if absent."""
    async with transaction(pool) as cur:
        # Before the delete, which forgets the tokens' creator (ON DELETE SET NULL).
        await revoke_creator_tokens(cur, user_id)
        await cur.execute("DELETE FROM users WHERE id = %s", (user_id,))
        return cur.rowcount == 1

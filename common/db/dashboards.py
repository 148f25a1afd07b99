"""Dashboards and their members (with roles)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

import aiopg
import psycopg2.errors

from common.config import Quotas
from common.db.core import AlreadyExists, LastEditor, NotFound, change_one, fetch_one, transaction
from common.db.quotas import check_quota, lock_dashboard, lock_user
from common.db.tokens import revoke_creator_tokens
from common.db.users import User
from common.vocabulary import EDITOR, MAX_RETENTION_DAYS, MIN_RETENTION_DAYS, ROLES, VIEWER


@dataclass(frozen=True)
class Dashboard:
    id: int
    name: str
    slug: str
    description: str
    created_at: datetime
    # Days of raw values kept; None: the worker's global --retention-days.
    retention_days: int | None = None


@dataclass(frozen=True)
class Membership:
    dashboard: Dashboard
    role: str


@dataclass(frozen=True)
class Member:
    user: User
    role: str


_DASHBOARD_COLUMNS = "d.id, d.name, d.slug, d.description, d.created_at, d.retention_days"
_DASHBOARD_FIELDS = 6


async def create_dashboard(
    pool: aiopg.Pool,
    name: str,
    slug: str,
    description: str = "",
    *,
    owner_id: int | None = None,
    quotas: Quotas | None = None,
) -> Dashboard:
    """Create a dashboard, with `owner_id` (if given) as its first editor, in one transaction.

    AlreadyExists if the slug is taken; NotFound if the owner is gone;
    QuotaExceeded if the owner edits as many dashboards as they may.
    """
    try:
        async with transaction(pool) as cur:
            if owner_id is not None:
                owner = await lock_user(cur, owner_id)
                await check_quota(cur, quotas, "max_dashboards_per_user", owner_id, owner)
            await cur.execute(
                "INSERT INTO dashboards AS d (name, slug, description) VALUES (%s, %s, %s)"
                f" RETURNING {_DASHBOARD_COLUMNS}",
                (name, slug, description),
            )
            created = Dashboard(*await cur.fetchone())
            if owner_id is not None:
                await cur.execute(
                    "INSERT INTO dashboard_members (dashboard_id, user_id, role) VALUES (%s, %s, %s)",
                    (created.id, owner_id, EDITOR),
                )
    except psycopg2.errors.UniqueViolation:
        raise AlreadyExists(f"dashboard {slug!r} already exists") from None
    return created


async def create_owned_dashboard(
    pool: aiopg.Pool, name: str, slug: str, description: str, owner_id: int, quotas: Quotas | None = None
) -> Dashboard:
    """Create a dashboard whose first editor is `owner_id` (as create_dashboard).

    Takes `slug` or, when taken, the first free `slug-2`, `slug-3`, ...: a
    name chosen in the UI never fails for a slug the user did not choose.
    """
    for _ in range(5):  # another creator may take the same free slug first
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT slug FROM dashboards WHERE slug = %(s)s OR slug LIKE %(s)s || '-%%'",
                {"s": slug},
            )
            taken = {row[0] for row in await cur.fetchall()}
        candidate = next(
            c for c in (slug, *(f"{slug}-{n}" for n in range(2, len(taken) + 3))) if c not in taken
        )
        with suppress(AlreadyExists):
            return await create_dashboard(
                pool, name, candidate, description, owner_id=owner_id, quotas=quotas
            )
    raise AlreadyExists(f"no free slug like {slug!r}: try again")


async def get_dashboard_by_slug(pool: aiopg.Pool, slug: str) -> Dashboard:
    query = f"SELECT {_DASHBOARD_COLUMNS} FROM dashboards d WHERE slug = %s"
    return Dashboard(*await fetch_one(pool, query, (slug,), missing=f"no dashboard {slug!r}"))


async def list_dashboards(pool: aiopg.Pool) -> list[Dashboard]:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(f"SELECT {_DASHBOARD_COLUMNS} FROM dashboards d ORDER BY d.name, d.id")
        return [Dashboard(*row) for row in await cur.fetchall()]


async def list_user_dashboards(pool: aiopg.Pool, user_id: int) -> list[Dashboard]:
    """The dashboards this user is a member of, by name."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"SELECT {_DASHBOARD_COLUMNS} FROM dashboards d"
            " JOIN dashboard_members m ON m.dashboard_id = d.id"
            " WHERE m.user_id = %s ORDER BY d.name, d.id",
            (user_id,),
        )
        return [Dashboard(*row) for row in await cur.fetchall()]


async def get_member_dashboard(pool: aiopg.Pool, dashboard_id: int, user_id: int) -> Dashboard | None:
    """The dashboard if the user is its member; None if not, or if it does not exist.

    The two cases are deliberately indistinguishable to callers.
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"SELECT {_DASHBOARD_COLUMNS} FROM dashboards d"
            " JOIN dashboard_members m ON m.dashboard_id = d.id"
            " WHERE d.id = %s AND m.user_id = %s",
            (dashboard_id, user_id),
        )
        row = await cur.fetchone()
    return Dashboard(*row) if row else None


async def get_user_and_membership(
    pool: aiopg.Pool, user_id: int, dashboard_id: int
) -> tuple[User | None, bool]:
    """The user (None if deleted) and whether they are a member of the dashboard
    (False too if it does not exist): a socket's access check in one round trip."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT u.id, u.username, m.user_id IS NOT NULL FROM users u"
            " LEFT JOIN dashboard_members m ON m.user_id = u.id AND m.dashboard_id = %s"
            " WHERE u.id = %s",
            (dashboard_id, user_id),
        )
        row = await cur.fetchone()
    return (User(row[0], row[1]), row[2]) if row else (None, False)


async def get_users_and_memberships(
    pool: aiopg.Pool, pairs: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], tuple[User | None, bool]]:
    """`get_user_and_membership` of many (user id, dashboard id) pairs in one round trip."""
    if not pairs:
        return {}
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT p.user_id, p.dashboard_id, u.username, m.user_id IS NOT NULL"
            " FROM unnest(%s::bigint[], %s::bigint[]) AS p(user_id, dashboard_id)"
            " JOIN users u ON u.id = p.user_id"
            " LEFT JOIN dashboard_members m ON m.user_id = p.user_id AND m.dashboard_id = p.dashboard_id",
            ([user_id for user_id, _ in pairs], [dashboard_id for _, dashboard_id in pairs]),
        )
        rows = await cur.fetchall()
    found: dict[tuple[int, int], tuple[User | None, bool]] = {pair: (None, False) for pair in pairs}
    for user_id, dashboard_id, username, member in rows:
        found[(user_id, dashboard_id)] = (User(user_id, username), member)
    return found


async def get_membership(pool: aiopg.Pool, dashboard_id: int, user_id: int) -> Membership | None:
    """The dashboard and the user's role on it; None if not a member, or no such dashboard."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"SELECT {_DASHBOARD_COLUMNS}, m.role FROM dashboards d"
            " JOIN dashboard_members m ON m.dashboard_id = d.id"
            " WHERE d.id = %s AND m.user_id = %s",
            (dashboard_id, user_id),
        )
        row = await cur.fetchone()
    return Membership(Dashboard(*row[:_DASHBOARD_FIELDS]), row[_DASHBOARD_FIELDS]) if row else None


async def get_dashboard(pool: aiopg.Pool, dashboard_id: int) -> Dashboard | None:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(f"SELECT {_DASHBOARD_COLUMNS} FROM dashboards d WHERE d.id = %s", (dashboard_id,))
        row = await cur.fetchone()
    return Dashboard(*row) if row else None


async def update_dashboard(pool: aiopg.Pool, dashboard_id: int, name: str, description: str) -> Dashboard:
    """Rename and describe a dashboard; NotFound if it is gone."""
    query = (
        f"UPDATE dashboards AS d SET name = %s, description = %s WHERE id = %s RETURNING {_DASHBOARD_COLUMNS}"
    )
    params = (name, description, dashboard_id)
    return Dashboard(*await fetch_one(pool, query, params, missing=f"no dashboard {dashboard_id}"))


async def set_dashboard_retention(pool: aiopg.Pool, dashboard_id: int, days: int | None) -> Dashboard:
    """Keep this dashboard's raw values `days` days (None: the global setting); NotFound if gone."""
    if days is not None and not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
        raise ValueError(f"retention must be {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS} days")
    query = f"UPDATE dashboards AS d SET retention_days = %s WHERE id = %s RETURNING {_DASHBOARD_COLUMNS}"
    return Dashboard(
        *await fetch_one(pool, query, (days, dashboard_id), missing=f"no dashboard {dashboard_id}")
    )


async def dashboard_retentions(pool: aiopg.Pool) -> dict[int, int]:
    """Dashboard id to its own retention in days, for the dashboards that have one."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT id, retention_days FROM dashboards WHERE retention_days IS NOT NULL")
        return {row[0]: row[1] for row in await cur.fetchall()}


async def add_member(
    pool: aiopg.Pool, dashboard_id: int, user_id: int, role: str = VIEWER, *, quotas: Quotas | None = None
) -> bool:
    """Make the user a member with this role; False if they already were (role unchanged).

    QuotaExceeded if the dashboard has as many members as it may, or (for an
    editor) the user edits as many dashboards as they may; NotFound if the
    dashboard or the user is gone.
    """
    _check_role(role)
    async with transaction(pool) as cur:
        await lock_dashboard(cur, dashboard_id)
        if await _role(cur, dashboard_id, user_id) is not None:
            return False
        await check_quota(cur, quotas, "max_members_per_dashboard", dashboard_id)
        if role == EDITOR:
            username = await lock_user(cur, user_id)
            await check_quota(cur, quotas, "max_dashboards_per_user", user_id, username)
        try:
            await cur.execute(
                "INSERT INTO dashboard_members (dashboard_id, user_id, role) VALUES (%s, %s, %s)",
                (dashboard_id, user_id, role),
            )
        except psycopg2.errors.ForeignKeyViolation:
            raise NotFound("no such user: deleted meanwhile?") from None
    return True


async def _role(cur: aiopg.Cursor, dashboard_id: int, user_id: int) -> str | None:
    """The member's role, None if not a member."""
    await cur.execute(
        "SELECT role FROM dashboard_members WHERE dashboard_id = %s AND user_id = %s",
        (dashboard_id, user_id),
    )
    row = await cur.fetchone()
    return row[0] if row else None


async def _another_editor(cur: aiopg.Cursor, dashboard_id: int, user_id: int) -> bool:
    await cur.execute(
        "SELECT 1 FROM dashboard_members WHERE dashboard_id = %s AND user_id <> %s AND role = 'editor'",
        (dashboard_id, user_id),
    )
    return await cur.fetchone() is not None


async def list_members(pool: aiopg.Pool, dashboard_id: int) -> list[Member]:
    """The dashboard's members with their roles, by username."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT u.id, u.username, m.role FROM dashboard_members m JOIN users u ON u.id = m.user_id"
            " WHERE m.dashboard_id = %s ORDER BY u.username",
            (dashboard_id,),
        )
        return [Member(User(row[0], row[1]), row[2]) for row in await cur.fetchall()]


async def set_member_role(
    pool: aiopg.Pool, dashboard_id: int, user_id: int, role: str, *, quotas: Quotas | None = None
) -> None:
    """Change a member's role; NotFound if not a member, LastEditor if it would leave no
    editor, QuotaExceeded if a new editor edits as many dashboards as they may.

    A demoted editor's tokens for this dashboard are revoked with the change.
    """
    _check_role(role)
    async with transaction(pool) as cur:
        # Every role change and removal on this dashboard waits here: two editors
        # demoting each other at once are checked one after the other.
        await lock_dashboard(cur, dashboard_id)
        current = await _role(cur, dashboard_id, user_id)
        if current is None:
            raise NotFound("not a member of this dashboard")
        if current == role:
            return
        if role == EDITOR:
            username = await lock_user(cur, user_id)
            await check_quota(cur, quotas, "max_dashboards_per_user", user_id, username)
        elif not await _another_editor(cur, dashboard_id, user_id):
            raise LastEditor(_LAST_EDITOR)
        await cur.execute(
            "UPDATE dashboard_members SET role = %s WHERE dashboard_id = %s AND user_id = %s",
            (role, dashboard_id, user_id),
        )
        if role != EDITOR:
            await revoke_creator_tokens(cur, user_id, dashboard_id)


_LAST_EDITOR = "a dashboard needs at least one editor: make someone else an editor first"


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")


async def remove_member(
    pool: aiopg.Pool, dashboard_id: int, user_id: int, *, keep_editor: bool = False
) -> bool:
    """End the membership, revoking the tokens they made for it; False if there was none.

    With `keep_editor`, LastEditor instead of removing the dashboard's last
    editor (the UI's rule; administrators may leave a dashboard editor-less).
    """
    async with transaction(pool) as cur:
        try:
            await lock_dashboard(cur, dashboard_id)
        except NotFound:
            return False
        current = await _role(cur, dashboard_id, user_id)
        if current is None:
            return False
        if keep_editor and current == EDITOR and not await _another_editor(cur, dashboard_id, user_id):
            raise LastEditor(_LAST_EDITOR)
        await cur.execute(
            "DELETE FROM dashboard_members WHERE dashboard_id = %s AND user_id = %s", (dashboard_id, user_id)
        )
        await revoke_creator_tokens(cur, user_id, dashboard_id)
    return True


# Access re-checks --------------------------------------------------------------


async def current_memberships(pool: aiopg.Pool, pairs: Sequence[tuple[int, int]]) -> set[tuple[int, int]]:
    """Which of these (dashboard_id, user_id) memberships still exist, in one query."""
    if not pairs:
        return set()
    dashboard_ids, user_ids = (list(column) for column in zip(*pairs, strict=True))
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT m.dashboard_id, m.user_id FROM dashboard_members m"
            " JOIN unnest(%s::bigint[], %s::bigint[]) AS p(dashboard_id, user_id)"
            " USING (dashboard_id, user_id)",
            (dashboard_ids, user_ids),
        )
        return {(row[0], row[1]) for row in await cur.fetchall()}


# Deletions (memberships, metrics and values go with them: ON DELETE CASCADE) ---


async def delete_dashboard(pool: aiopg.Pool, dashboard_id: int) -> bool:
    """Delete the dashboard with its metrics, values and memberships; False if absent."""
    return await change_one(pool, "DELETE FROM dashboards WHERE id = %s", (dashboard_id,))

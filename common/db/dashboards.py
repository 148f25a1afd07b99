"""Dashboards and their members (with roles)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

import aiopg
import psycopg2.errors

from common.db.core import AlreadyExists, LastEditor, NotFound
from common.db.users import User


@dataclass(frozen=True)
class Dashboard:
    id: int
    name: str
    slug: str
    description: str
    created_at: datetime
    # Days of raw values kept; None: the worker's global --retention-days.
    retention_days: int | None = None


# What a member may do: viewers watch; editors also change the dashboard,
# its metrics and its members.
ROLES = ("viewer", "editor")
VIEWER, EDITOR = ROLES
# The bounds of a dashboard's own retention (the CHECK in migrations/0006).
MAX_RETENTION_DAYS = 36500


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


async def create_dashboard(pool: aiopg.Pool, name: str, slug: str, description: str = "") -> Dashboard:
    async with pool.acquire() as conn, conn.cursor() as cur:
        try:
            await cur.execute(
                "INSERT INTO dashboards AS d (name, slug, description) VALUES (%s, %s, %s)"
                f" RETURNING {_DASHBOARD_COLUMNS}",
                (name, slug, description),
            )
        except psycopg2.errors.UniqueViolation:
            raise AlreadyExists(f"dashboard {slug!r} already exists") from None
        return Dashboard(*await cur.fetchone())


async def create_owned_dashboard(
    pool: aiopg.Pool, name: str, slug: str, description: str, owner_id: int
) -> Dashboard:
    """Create a dashboard whose first editor is `owner_id`, in one statement.

    Takes `slug` or, when taken, the first free `slug-2`, `slug-3`, ...: a
    name chosen in the UI never fails for a slug the user did not choose.
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        for _ in range(5):  # another creator may take the same free slug first
            await cur.execute(
                "SELECT slug FROM dashboards WHERE slug = %(s)s OR slug LIKE %(s)s || '-%%'",
                {"s": slug},
            )
            taken = {row[0] for row in await cur.fetchall()}
            candidate = next(
                c for c in (slug, *(f"{slug}-{n}" for n in range(2, len(taken) + 3))) if c not in taken
            )
            try:
                await cur.execute(
                    "WITH d AS (INSERT INTO dashboards (name, slug, description) VALUES (%s, %s, %s)"
                    "           RETURNING id, name, slug, description, created_at, retention_days),"
                    " m AS (INSERT INTO dashboard_members (dashboard_id, user_id, role)"
                    "       SELECT id, %s, 'editor' FROM d)"
                    " SELECT * FROM d",
                    (name, candidate, description, owner_id),
                )
            except psycopg2.errors.UniqueViolation:
                continue
            except psycopg2.errors.ForeignKeyViolation:
                raise NotFound("the owner no longer exists") from None
            return Dashboard(*await cur.fetchone())
    raise AlreadyExists(f"no free slug like {slug!r}: try again")


async def get_dashboard_by_slug(pool: aiopg.Pool, slug: str) -> Dashboard:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(f"SELECT {_DASHBOARD_COLUMNS} FROM dashboards d WHERE slug = %s", (slug,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no dashboard {slug!r}")
    return Dashboard(*row)


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
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "UPDATE dashboards AS d SET name = %s, description = %s WHERE id = %s"
            f" RETURNING {_DASHBOARD_COLUMNS}",
            (name, description, dashboard_id),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no dashboard {dashboard_id}")
    return Dashboard(*row)


async def set_dashboard_retention(pool: aiopg.Pool, dashboard_id: int, days: int | None) -> Dashboard:
    """Keep this dashboard's raw values `days` days (None: the global setting); NotFound if gone."""
    if days is not None and not 1 <= days <= MAX_RETENTION_DAYS:
        raise ValueError(f"retention must be 1 to {MAX_RETENTION_DAYS} days")
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"UPDATE dashboards AS d SET retention_days = %s WHERE id = %s RETURNING {_DASHBOARD_COLUMNS}",
            (days, dashboard_id),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no dashboard {dashboard_id}")
    return Dashboard(*row)


async def dashboard_retentions(pool: aiopg.Pool) -> dict[int, int]:
    """Dashboard id to its own retention in days, for the dashboards that have one."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT id, retention_days FROM dashboards WHERE retention_days IS NOT NULL")
        return {row[0]: row[1] for row in await cur.fetchall()}


async def add_member(pool: aiopg.Pool, dashboard_id: int, user_id: int, role: str = VIEWER) -> bool:
    """Make the user a member with this role; False if they already were (role unchanged)."""
    _check_role(role)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO dashboard_members (dashboard_id, user_id, role) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (dashboard_id, user_id, role),
        )
        return cur.rowcount == 1


async def list_members(pool: aiopg.Pool, dashboard_id: int) -> list[Member]:
    """The dashboard's members with their roles, by username."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT u.id, u.username, m.role FROM dashboard_members m JOIN users u ON u.id = m.user_id"
            " WHERE m.dashboard_id = %s ORDER BY u.username",
            (dashboard_id,),
        )
        return [Member(User(row[0], row[1]), row[2]) for row in await cur.fetchall()]


async def set_member_role(pool: aiopg.Pool, dashboard_id: int, user_id: int, role: str) -> None:
    """Change a member's role; NotFound if not a member, LastEditor if it would leave no editor."""
    _check_role(role)
    async with pool.acquire() as conn, conn.cursor() as cur:
        # One statement: the "another editor remains" check and the change
        # see the same snapshot, and the row lock serialises racing demotions.
        await cur.execute(
            "UPDATE dashboard_members SET role = %(role)s"
            " WHERE dashboard_id = %(d)s AND user_id = %(u)s"
            " AND (%(role)s = 'editor' OR EXISTS (SELECT 1 FROM dashboard_members"
            "      WHERE dashboard_id = %(d)s AND user_id <> %(u)s AND role = 'editor'))"
            " RETURNING user_id",
            {"role": role, "d": dashboard_id, "u": user_id},
        )
        if await cur.fetchone() is not None:
            return
    await _explain_refusal(pool, dashboard_id, user_id)


async def _explain_refusal(pool: aiopg.Pool, dashboard_id: int, user_id: int) -> None:
    """Why a change to a membership matched no row: it is absent, or the last editor's."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT 1 FROM dashboard_members WHERE dashboard_id = %s AND user_id = %s",
            (dashboard_id, user_id),
        )
        if await cur.fetchone() is None:
            raise NotFound("not a member of this dashboard")
    raise LastEditor("a dashboard needs at least one editor: make someone else an editor first")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")


async def remove_member(
    pool: aiopg.Pool, dashboard_id: int, user_id: int, *, keep_editor: bool = False
) -> bool:
    """End the membership; False if there was none.

    With `keep_editor`, LastEditor instead of removing the dashboard's last
    editor (the UI's rule; administrators may leave a dashboard editor-less).
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "DELETE FROM dashboard_members WHERE dashboard_id = %(d)s AND user_id = %(u)s"
            " AND (NOT %(keep)s OR role <> 'editor' OR EXISTS (SELECT 1 FROM dashboard_members"
            "      WHERE dashboard_id = %(d)s AND user_id <> %(u)s AND role = 'editor'))",
            {"d": dashboard_id, "u": user_id, "keep": keep_editor},
        )
        if cur.rowcount == 1 or not keep_editor:
            return cur.rowcount == 1
    with suppress(NotFound):  # no membership: nothing to remove
        await _explain_refusal(pool, dashboard_id, user_id)  # a member: raises LastEditor
    return False


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
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM dashboards WHERE id = %s", (dashboard_id,))
        return cur.rowcount == 1

"""What each user and dashboard holds against the quotas, for administrators
(`dashboard-server usage`); counted as common/db/quotas.py counts them."""

from __future__ import annotations

from dataclasses import dataclass

import aiopg

from common.db.users import User


@dataclass(frozen=True)
class UserUsage:
    user: User
    dashboards: int  # as an editor: what max_dashboards_per_user counts


@dataclass(frozen=True)
class DashboardUsage:
    dashboard_id: int
    slug: str
    metrics: int
    alert_rules: int
    tokens: int  # active ones
    members: int


async def list_user_usage(pool: aiopg.Pool) -> list[UserUsage]:
    """Every user with the number of dashboards they edit, by username."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT u.id, u.username, count(m.dashboard_id) FILTER (WHERE m.role = 'editor')"
            " FROM users u LEFT JOIN dashboard_members m ON m.user_id = u.id"
            " GROUP BY u.id ORDER BY u.username"
        )
        return [UserUsage(User(row[0], row[1]), row[2]) for row in await cur.fetchall()]


async def list_dashboard_usage(pool: aiopg.Pool) -> list[DashboardUsage]:
    """Every dashboard with what its quotas count (as _COUNTS does), by slug."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT d.id, d.slug,"
            " (SELECT count(*) FROM metrics m WHERE m.dashboard_id = d.id),"
            " (SELECT count(*) FROM alert_rules r JOIN metrics m ON m.id = r.metric_id"
            "  WHERE m.dashboard_id = d.id),"
            " (SELECT count(*) FROM api_tokens t WHERE t.dashboard_id = d.id AND t.revoked_at IS NULL),"
            " (SELECT count(*) FROM dashboard_members dm WHERE dm.dashboard_id = d.id)"
            " FROM dashboards d ORDER BY d.slug"
        )
        return [DashboardUsage(*row) for row in await cur.fetchall()]

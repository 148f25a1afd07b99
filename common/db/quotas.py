"""Quotas: what a user or a dashboard holds, counted with its row locked
(common/db/usage.py counts the same for administrators).

A creation under a quota locks the row the quota belongs to (the dashboard, or
the user for their dashboards) in its transaction, then counts, then inserts:
two creations at the limit are serialised by that lock, and the second counts
the first's row. Role changes and removals take the same dashboard lock, so the
"a dashboard keeps an editor" check and a token creator's editorship are read
while no one else can change them.
"""

from __future__ import annotations

import aiopg

from common.config import Quotas
from common.db.core import NotFound, QuotaExceeded

# What each quota counts, for one dashboard (or, the first, one user) id.
_COUNTS = {
    "max_dashboards_per_user": "SELECT count(*) FROM dashboard_members WHERE user_id = %s AND role = 'editor'",
    "max_metrics_per_dashboard": "SELECT count(*) FROM metrics WHERE dashboard_id = %s",
    "max_alert_rules_per_dashboard": "SELECT count(*) FROM alert_rules r"
    " JOIN metrics m ON m.id = r.metric_id WHERE m.dashboard_id = %s",
    "max_tokens_per_dashboard": "SELECT count(*) FROM api_tokens WHERE dashboard_id = %s AND revoked_at IS NULL",
    "max_members_per_dashboard": "SELECT count(*) FROM dashboard_members WHERE dashboard_id = %s",
    "max_contact_points_per_dashboard": "SELECT count(*) FROM contact_points WHERE dashboard_id = %s",
}


async def lock_dashboard(cur: aiopg.Cursor, dashboard_id: int) -> None:
    """Hold the dashboard's row until the transaction ends; NotFound if it is gone.

    NO KEY UPDATE conflicts with itself (other creations, role changes and
    removals on this dashboard wait), not with the KEY SHARE that inserts
    referring to the dashboard take (the worker's leases go on).
    """
    await cur.execute("SELECT 1 FROM dashboards WHERE id = %s FOR NO KEY UPDATE", (dashboard_id,))
    if await cur.fetchone() is None:
        raise NotFound(f"no dashboard {dashboard_id}")


async def lock_metric_dashboard(cur: aiopg.Cursor, metric_id: int) -> int:
    """Lock the dashboard of this metric, as lock_dashboard; its id. NotFound if the metric is gone."""
    await cur.execute(
        "SELECT d.id FROM dashboards d JOIN metrics m ON m.dashboard_id = d.id WHERE m.id = %s"
        " FOR NO KEY UPDATE OF d",
        (metric_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no metric {metric_id}")
    return int(row[0])


async def lock_user(cur: aiopg.Cursor, user_id: int) -> str:
    """Hold the user's row until the transaction ends (their dashboard count stays); their username."""
    await cur.execute("SELECT username FROM users WHERE id = %s FOR NO KEY UPDATE", (user_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("no such user: deleted meanwhile?")
    return str(row[0])


async def check_quota(
    cur: aiopg.Cursor, quotas: Quotas | None, quota: str, holder_id: int, holder: str = "this dashboard"
) -> None:
    """QuotaExceeded if the holder (locked by the caller) has no room for one more; None: no limits."""
    if quotas is None:
        return
    limit = getattr(quotas, quota)
    await cur.execute(_COUNTS[quota], (holder_id,))
    (count,) = await cur.fetchone()
    if count >= limit:
        raise QuotaExceeded(quota, limit, holder, count)

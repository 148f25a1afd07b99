"""Contact points, the rules they serve, and the notification outbox (migrations/0013).

The outbox is filled in the transaction that stores an alert event
(`enqueue_event_notifications`, called by evaluate_alert_rules) and drained by
the workers' delivery loops (worker/notify): `claim_due_notifications` hands
each due row to one worker for a lease, `record_attempt` stores the outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiopg

from common.config import Quotas
from common.db.core import NotFound, change_one, fetch_one, transaction
from common.db.quotas import check_quota, lock_dashboard
from common.vocabulary import CONTACT_KINDS

# How long a message is retried after it was enqueued; then it is marked failed.
DELIVERY_WINDOW = timedelta(hours=1)
_WINDOW_SQL = "now() + %(window)s"


@dataclass(frozen=True)
class ContactPoint:
    id: int
    dashboard_id: int
    name: str
    kind: str  # one of CONTACT_KINDS
    target: str  # URL, or e-mail address
    created_at: datetime


@dataclass(frozen=True)
class Delivery:
    """A claimed notification with all its message needs."""

    id: int
    attempts: int  # including the one about to be made
    claimed_until: datetime  # the claim's token: only its holder records the outcome
    give_up_at: datetime
    kind: str  # "firing", "resolved", "repeat" or "test"
    contact_kind: str
    contact_name: str
    target: str
    secret: str | None
    dashboard_id: int
    dashboard_slug: str
    dashboard_name: str
    # None for a test message.
    rule_id: int | None = None
    metric_name: str | None = None
    condition: str | None = None
    threshold: float | None = None
    value: float | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class DeliveryAttempt:
    """One attempt of one notification, as the page's delivery log shows it."""

    notification_id: int
    contact_point_id: int
    kind: str
    status: str  # the notification's: pending, delivered, failed
    at: datetime
    outcome: str  # the attempt's: delivered, retrying, failed
    detail: str


_CONTACT_COLUMNS = "id, dashboard_id, name, kind, target, created_at"


def _no_contact_point(contact_point_id: int) -> str:
    return f"no contact point {contact_point_id} on this dashboard"


async def create_contact_point(
    pool: aiopg.Pool,
    dashboard_id: int,
    name: str,
    kind: str,
    target: str,
    secret: str | None,
    created_by: int | None = None,
    *,
    quotas: Quotas | None = None,
) -> ContactPoint:
    """Add a contact point; ValueError for an unknown kind, NotFound, QuotaExceeded."""
    if kind not in CONTACT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CONTACT_KINDS)}")
    async with transaction(pool) as cur:
        await lock_dashboard(cur, dashboard_id)
        await check_quota(cur, quotas, "max_contact_points_per_dashboard", dashboard_id)
        await cur.execute(
            "INSERT INTO contact_points (dashboard_id, name, kind, target, secret, created_by)"
            f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_CONTACT_COLUMNS}",
            (dashboard_id, name, kind, target, secret, created_by),
        )
        return ContactPoint(*await cur.fetchone())


async def list_contact_points(pool: aiopg.Pool, dashboard_id: int) -> list[ContactPoint]:
    """The dashboard's contact points, oldest first (never their secrets)."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"SELECT {_CONTACT_COLUMNS} FROM contact_points WHERE dashboard_id = %s ORDER BY id",
            (dashboard_id,),
        )
        return [ContactPoint(*row) for row in await cur.fetchall()]


async def update_contact_point(
    pool: aiopg.Pool, dashboard_id: int, contact_point_id: int, *, name: str | None, target: str | None
) -> ContactPoint:
    """Rename a contact point of this dashboard or change its URL or address (None: kept);
    its kind and secret stay. NotFound if it is not this dashboard's."""
    query = (
        "UPDATE contact_points SET name = COALESCE(%s, name), target = COALESCE(%s, target)"
        f" WHERE id = %s AND dashboard_id = %s RETURNING {_CONTACT_COLUMNS}"
    )
    params = (name, target, contact_point_id, dashboard_id)
    return ContactPoint(*await fetch_one(pool, query, params, missing=_no_contact_point(contact_point_id)))


async def get_contact_point(pool: aiopg.Pool, dashboard_id: int, contact_point_id: int) -> ContactPoint:
    """One contact point of this dashboard; NotFound if it is not this dashboard's."""
    query = f"SELECT {_CONTACT_COLUMNS} FROM contact_points WHERE id = %s AND dashboard_id = %s"
    params = (contact_point_id, dashboard_id)
    return ContactPoint(*await fetch_one(pool, query, params, missing=_no_contact_point(contact_point_id)))


async def delete_contact_point(pool: aiopg.Pool, dashboard_id: int, contact_point_id: int) -> bool:
    """Delete a contact point of this dashboard (with its pending messages); False if none."""
    query = "DELETE FROM contact_points WHERE id = %s AND dashboard_id = %s"
    return await change_one(pool, query, (contact_point_id, dashboard_id))


async def set_rule_notifications(
    pool: aiopg.Pool,
    dashboard_id: int,
    rule_id: int,
    contact_point_ids: Sequence[int],
    repeat_seconds: int | None,
) -> None:
    """Which of the dashboard's contact points the rule notifies, and how often it
    repeats while firing; NotFound for a rule or contact point not of this dashboard."""
    async with transaction(pool) as cur:
        await cur.execute(
            "SELECT r.state FROM alert_rules r JOIN metrics m ON m.id = r.metric_id"
            " WHERE r.id = %s AND m.dashboard_id = %s FOR UPDATE OF r",
            (rule_id, dashboard_id),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no alert rule {rule_id} on this dashboard")
        await cur.execute(
            "SELECT count(*) FROM contact_points WHERE dashboard_id = %s AND id = ANY(%s::bigint[])",
            (dashboard_id, list(set(contact_point_ids))),
        )
        if (await cur.fetchone())[0] != len(set(contact_point_ids)):
            raise NotFound("no such contact point on this dashboard")
        await cur.execute("DELETE FROM alert_rule_contacts WHERE rule_id = %s", (rule_id,))
        await cur.execute(
            "INSERT INTO alert_rule_contacts (rule_id, contact_point_id) SELECT %s, unnest(%s::bigint[])",
            (rule_id, list(set(contact_point_ids))),
        )
        # A rule already firing starts repeating from now.
        await cur.execute(
            "UPDATE alert_rules SET repeat_seconds = %(repeat)s, repeat_due_at ="
            " CASE WHEN state = 'firing' AND %(repeat)s::integer IS NOT NULL"
            " THEN now() + %(repeat)s * interval '1 second' END WHERE id = %(rule)s",
            {"repeat": repeat_seconds, "rule": rule_id},
        )


async def rule_contact_points(pool: aiopg.Pool, rule_id: int) -> list[int]:
    """The ids of the contact points a rule notifies."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT contact_point_id FROM alert_rule_contacts WHERE rule_id = %s ORDER BY 1", (rule_id,)
        )
        return [row[0] for row in await cur.fetchall()]


async def enqueue_event_notifications(cur: aiopg.Cursor, rule_id: int, event_id: int, state: str) -> None:
    """In the caller's transaction (the one storing the event): a message to each of the
    rule's contact points, and the rule's next repeat (firing) or none (resolved)."""
    params = {"rule": rule_id, "event": event_id, "kind": state, "window": DELIVERY_WINDOW}
    await cur.execute(
        "INSERT INTO notifications (contact_point_id, event_id, kind, give_up_at)"
        f" SELECT contact_point_id, %(event)s, %(kind)s, {_WINDOW_SQL}"
        " FROM alert_rule_contacts WHERE rule_id = %(rule)s",
        params,
    )
    await cur.execute(
        "UPDATE alert_rules SET repeat_due_at = CASE WHEN %(kind)s = 'firing'"
        " THEN now() + repeat_seconds * interval '1 second' END WHERE id = %(rule)s",
        params,
    )


async def enqueue_due_repeats(pool: aiopg.Pool) -> int:
    """Enqueue a `repeat` message for each rule still firing past its repeat time; how many.

    The rows are locked (SKIP LOCKED: an evaluator or another worker has them)
    and advanced in the same statement, so each repeat is enqueued once.
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "WITH due AS (SELECT id FROM alert_rules WHERE repeat_due_at <= now() AND state = 'firing'"
            "   FOR UPDATE SKIP LOCKED),"
            " advanced AS (UPDATE alert_rules r SET repeat_due_at = now() + r.repeat_seconds * interval '1 second'"
            "   FROM due WHERE r.id = due.id RETURNING r.id)"
            " INSERT INTO notifications (contact_point_id, event_id, kind, give_up_at)"
            f" SELECT c.contact_point_id, e.id, 'repeat', {_WINDOW_SQL}"
            " FROM advanced a JOIN alert_rule_contacts c ON c.rule_id = a.id"
            " CROSS JOIN LATERAL (SELECT id FROM alert_events WHERE rule_id = a.id"
            "   ORDER BY at DESC, id DESC LIMIT 1) e",
            {"window": DELIVERY_WINDOW},
        )
        return cur.rowcount


async def enqueue_test_notification(pool: aiopg.Pool, dashboard_id: int, contact_point_id: int) -> int:
    """Enqueue a test message to a contact point of this dashboard; its id. NotFound."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO notifications (contact_point_id, kind, give_up_at)"
            f" SELECT id, 'test', {_WINDOW_SQL} FROM contact_points"
            " WHERE id = %(contact)s AND dashboard_id = %(dashboard)s RETURNING id",
            {"contact": contact_point_id, "dashboard": dashboard_id, "window": DELIVERY_WINDOW},
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(_no_contact_point(contact_point_id))
    return int(row[0])


_DELIVERY_SELECT = (
    "SELECT n.id, n.attempts, n.claimed_until, n.give_up_at, n.kind, c.kind, c.name, c.target, c.secret,"
    " d.id, d.slug, d.name, r.id, m.name, r.condition, r.threshold, e.value, e.at"
    " FROM notifications n JOIN contact_points c ON c.id = n.contact_point_id"
    " JOIN dashboards d ON d.id = c.dashboard_id"
    " LEFT JOIN alert_events e ON e.id = n.event_id"
    " LEFT JOIN alert_rules r ON r.id = e.rule_id"
    " LEFT JOIN metrics m ON m.id = r.metric_id"
    " WHERE n.id = ANY(%s::bigint[]) ORDER BY n.id"
)


async def claim_due_notifications(pool: aiopg.Pool, limit: int, lease: timedelta) -> list[Delivery]:
    """Claim up to `limit` due messages for `lease`: no other worker takes them meanwhile.

    SKIP LOCKED lets concurrent claimers pass each other's rows instead of
    waiting and then taking them too; a claim whose lease passed (its worker
    died mid-attempt) is due again.
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "WITH due AS (SELECT id FROM notifications WHERE status = 'pending' AND next_attempt_at <= now()"
            "   AND (claimed_until IS NULL OR claimed_until < now())"
            "   ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE notifications n SET claimed_until = now() + %s, attempts = n.attempts + 1"
            " FROM due WHERE n.id = due.id RETURNING n.id",
            (limit, lease),
        )
        ids = [row[0] for row in await cur.fetchall()]
        if not ids:
            return []
        await cur.execute(_DELIVERY_SELECT, (ids,))
        return [Delivery(*row) for row in await cur.fetchall()]


async def record_attempt(
    pool: aiopg.Pool, delivery: Delivery, outcome: str, detail: str, retry_at: datetime | None = None
) -> bool:
    """Store an attempt's outcome (delivered, retrying at `retry_at`, failed) and end the claim;
    False if the claim had been lost (its lease passed): the attempt is logged, the state kept."""
    status = {"delivered": "delivered", "retrying": "pending", "failed": "failed"}[outcome]
    async with transaction(pool) as cur:
        await cur.execute(
            "INSERT INTO notification_attempts (notification_id, outcome, detail) VALUES (%s, %s, %s)",
            (delivery.id, outcome, detail[:500]),
        )
        await cur.execute(
            "UPDATE notifications SET status = %s, next_attempt_at = coalesce(%s, next_attempt_at),"
            " claimed_until = NULL WHERE id = %s AND claimed_until = %s",
            (status, retry_at, delivery.id, delivery.claimed_until),
        )
        return cur.rowcount == 1


async def list_delivery_attempts(pool: aiopg.Pool, dashboard_id: int, limit: int) -> list[DeliveryAttempt]:
    """The newest `limit` attempts to the dashboard's contact points, newest first."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT n.id, n.contact_point_id, n.kind, n.status, a.at, a.outcome, a.detail"
            " FROM contact_points c JOIN notifications n ON n.contact_point_id = c.id"
            " JOIN notification_attempts a ON a.notification_id = n.id"
            " WHERE c.dashboard_id = %s ORDER BY a.id DESC LIMIT %s",
            (dashboard_id, limit),
        )
        return [DeliveryAttempt(*row) for row in await cur.fetchall()]


@dataclass(frozen=True)
class RuleNotifications:
    """Whom a rule notifies, and how often while it stays firing."""

    rule_id: int
    contact_point_ids: list[int]
    repeat_seconds: int | None


async def list_rule_notifications(pool: aiopg.Pool, dashboard_id: int) -> list[RuleNotifications]:
    """Each of the dashboard's rules with its contact points, oldest rule first."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT r.id, coalesce(array_agg(c.contact_point_id ORDER BY c.contact_point_id)"
            "   FILTER (WHERE c.contact_point_id IS NOT NULL), '{}'), r.repeat_seconds"
            " FROM alert_rules r JOIN metrics m ON m.id = r.metric_id"
            " LEFT JOIN alert_rule_contacts c ON c.rule_id = r.id"
            " WHERE m.dashboard_id = %s GROUP BY r.id ORDER BY r.id",
            (dashboard_id,),
        )
        return [RuleNotifications(*row) for row in await cur.fetchall()]


async def delete_notifications_before(pool: aiopg.Pool, cutoff: datetime, limit: int) -> int:
    """Delete at most `limit` finished messages (with their attempts) enqueued before `cutoff`.

    Pending ones stay, whatever their age: they are still to be sent or given up.
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications"
            "  WHERE created_at < %s AND status <> 'pending' ORDER BY created_at LIMIT %s)",
            (cutoff, limit),
        )
        return cur.rowcount

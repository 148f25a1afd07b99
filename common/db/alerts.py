"""Threshold alert rules, their evaluation state, and their firing/resolving events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import aiopg

from common.config import Quotas
from common.db.core import change_one, transaction
from common.db.notifications import enqueue_event_notifications
from common.db.quotas import check_quota, lock_metric_dashboard
from common.vocabulary import ALERT_CONDITIONS


@dataclass(frozen=True)
class AlertRule:
    id: int
    metric_id: int
    condition: str  # one of ALERT_CONDITIONS
    threshold: float
    for_seconds: int
    created_by: int | None
    # Evaluation state, kept in the row (migrations/0005_alerts.sql says why).
    state: str = "ok"  # "ok" or "firing"
    condition_since: datetime | None = None
    evaluated_ts: datetime | None = None
    # Seconds between repeated notifications while firing; None: notify once.
    repeat_seconds: int | None = None


@dataclass(frozen=True)
class AlertEvent:
    id: int
    rule_id: int
    state: str  # "firing" or "resolved"
    value: float
    at: datetime


_RULE_COLUMNS = (
    "id, metric_id, condition, threshold, for_seconds, created_by, state, condition_since, evaluated_ts,"
    " repeat_seconds"
)


async def create_alert_rule(
    pool: aiopg.Pool,
    metric_id: int,
    condition: str,
    threshold: float,
    for_seconds: int = 0,
    created_by: int | None = None,
    *,
    quotas: Quotas | None = None,
) -> AlertRule:
    """Add a threshold rule to a metric; ValueError for an unknown condition or negative
    duration, NotFound if the metric is gone, QuotaExceeded (rules per dashboard)."""
    if condition not in ALERT_CONDITIONS:
        raise ValueError(f"condition must be one of {', '.join(ALERT_CONDITIONS)}")
    if for_seconds < 0:
        raise ValueError("for_seconds must not be negative")
    async with transaction(pool) as cur:
        dashboard_id = await lock_metric_dashboard(cur, metric_id)
        await check_quota(cur, quotas, "max_alert_rules_per_dashboard", dashboard_id)
        await cur.execute(
            "INSERT INTO alert_rules (metric_id, condition, threshold, for_seconds, created_by)"
            f" VALUES (%s, %s, %s, %s, %s) RETURNING {_RULE_COLUMNS}",
            (metric_id, condition, threshold, for_seconds, created_by),
        )
        return AlertRule(*await cur.fetchone())


async def list_alert_rules(pool: aiopg.Pool, dashboard_id: int) -> list[AlertRule]:
    """The rules on the dashboard's metrics, oldest first."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"SELECT {', '.join('r.' + c for c in _RULE_COLUMNS.split(', '))}"
            " FROM alert_rules r JOIN metrics m ON m.id = r.metric_id"
            " WHERE m.dashboard_id = %s ORDER BY r.id",
            (dashboard_id,),
        )
        return [AlertRule(*row) for row in await cur.fetchall()]


async def delete_alert_rule(pool: aiopg.Pool, dashboard_id: int, rule_id: int) -> bool:
    """Delete a rule (with its events) of this dashboard; False if it has no such rule."""
    query = "DELETE FROM alert_rules r USING metrics m WHERE r.id = %s AND m.id = r.metric_id AND m.dashboard_id = %s"
    return await change_one(pool, query, (rule_id, dashboard_id))


async def list_alert_events(pool: aiopg.Pool, rule_id: int) -> list[AlertEvent]:
    """A rule's firing and resolving events, oldest first."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT id, rule_id, state, value, at FROM alert_events WHERE rule_id = %s ORDER BY at, id",
            (rule_id,),
        )
        return [AlertEvent(*row) for row in await cur.fetchall()]


@dataclass(frozen=True)
class AlertRuleStatus:
    """A rule as a page shows it: with its metric's name and its newest event (if any)."""

    rule: AlertRule
    metric_name: str
    last_event: AlertEvent | None


@dataclass(frozen=True)
class RecentAlertEvent:
    """An event of one of a dashboard's rules, with what is needed to show it."""

    event: AlertEvent
    metric_id: int
    metric_name: str
    condition: str
    threshold: float


async def list_alert_rule_status(pool: aiopg.Pool, dashboard_id: int) -> list[AlertRuleStatus]:
    """The dashboard's rules, oldest first, each with its newest event."""
    rule_columns = ", ".join("r." + c for c in _RULE_COLUMNS.split(", "))
    async with pool.acquire() as conn, conn.cursor() as cur:
        # The lateral lookup reads one row of the (rule_id, at DESC) index per rule.
        await cur.execute(
            f"SELECT {rule_columns}, m.name, e.id, e.rule_id, e.state, e.value, e.at"
            " FROM alert_rules r JOIN metrics m ON m.id = r.metric_id"
            " LEFT JOIN LATERAL (SELECT id, rule_id, state, value, at FROM alert_events"
            "   WHERE rule_id = r.id ORDER BY at DESC, id DESC LIMIT 1) e ON true"
            " WHERE m.dashboard_id = %s ORDER BY r.id",
            (dashboard_id,),
        )
        rows = await cur.fetchall()
    width = len(_RULE_COLUMNS.split(", "))
    return [
        AlertRuleStatus(
            AlertRule(*row[:width]),
            row[width],
            AlertEvent(*row[width + 1 :]) if row[width + 1] is not None else None,
        )
        for row in rows
    ]


async def list_recent_alert_events(pool: aiopg.Pool, dashboard_id: int, limit: int) -> list[RecentAlertEvent]:
    """The newest `limit` firing/resolving events of the dashboard's rules, newest first."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        # At most `limit` events per rule through its index, then the newest of those:
        # the cost is bounded by the number of rules, not by how long events accumulated.
        await cur.execute(
            "SELECT e.id, e.rule_id, e.state, e.value, e.at, r.metric_id, m.name, r.condition, r.threshold"
            " FROM alert_rules r JOIN metrics m ON m.id = r.metric_id"
            " CROSS JOIN LATERAL (SELECT id, rule_id, state, value, at FROM alert_events"
            "   WHERE rule_id = r.id ORDER BY at DESC, id DESC LIMIT %(limit)s) e"
            " WHERE m.dashboard_id = %(dashboard_id)s ORDER BY e.at DESC, e.id DESC LIMIT %(limit)s",
            {"dashboard_id": dashboard_id, "limit": limit},
        )
        return [RecentAlertEvent(AlertEvent(*row[:5]), *row[5:]) for row in await cur.fetchall()]


# What an evaluator returns: the rules' new states and the events to store,
# as (rule_id, state, value, at).
AlertOutcome = tuple[list[AlertRule], list[tuple[int, str, float, datetime]]]


async def evaluate_alert_rules(
    pool: aiopg.Pool, metric_ids: Sequence[int], evaluate: Callable[[list[AlertRule]], AlertOutcome]
) -> list[AlertEvent]:
    """Run `evaluate` over the metrics' rules with the rows locked, then save
    the new states and insert the events, all in one transaction.

    The lock serialises evaluators of the same rules (two workers during a
    lease hand-over, or a worker and the push API), so a transition is
    stored once. Returns the stored events; no query beyond one SELECT when
    the metrics have no rules.
    """
    if not metric_ids:
        return []
    async with transaction(pool) as cur:
        await cur.execute(
            f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE metric_id = ANY(%s::bigint[])"
            " ORDER BY id FOR UPDATE",
            (list(metric_ids),),
        )
        rules = [AlertRule(*row) for row in await cur.fetchall()]
        if not rules:
            return []
        updated, events = evaluate(rules)
        for rule in updated:
            await cur.execute(
                "UPDATE alert_rules SET state = %s, condition_since = %s, evaluated_ts = %s WHERE id = %s",
                (rule.state, rule.condition_since, rule.evaluated_ts, rule.id),
            )
        stored: list[AlertEvent] = []
        for rule_id, state, value, at in events:
            await cur.execute(
                "INSERT INTO alert_events (rule_id, state, value, at) VALUES (%s, %s, %s, %s)"
                " RETURNING id, rule_id, state, value, at",
                (rule_id, state, value, at),
            )
            stored.append(AlertEvent(*await cur.fetchone()))
            # Same transaction: a stored transition always has its messages queued.
            await enqueue_event_notifications(cur, rule_id, stored[-1].id, state)
    return stored


async def delete_alert_events_before(pool: aiopg.Pool, cutoff: datetime, limit: int) -> int:
    """Delete at most `limit` alert events from before `cutoff`, in one short transaction.

    A rule's newest event always stays, however old: it is when and at what
    value the rule's current state began (the `alerts` message's `since`).
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "DELETE FROM alert_events WHERE id IN ("
            "  SELECT e.id FROM alert_events e WHERE e.at < %s AND EXISTS"
            "  (SELECT 1 FROM alert_events newer WHERE newer.rule_id = e.rule_id AND newer.id > e.id)"
            "  ORDER BY e.at LIMIT %s)",
            (cutoff, limit),
        )
        return cur.rowcount

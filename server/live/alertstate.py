"""The `alerts` message: a dashboard's rules with their current state, and its
latest firing/resolving events (docs/protocol.md, "Alerts").

Sent to every new socket after its config and history, and to every open
socket after each change of the dashboard (server/live/configpush.py), so a page
that was away, or just opened, shows what fired and resolved meanwhile.
Live `alert` messages follow; `event_id` orders the two per rule.
"""

from __future__ import annotations

from typing import Any

import aiopg

from common import db
from common.schemas import encode_message
from server.live.frames import text_frame

# Events in the list a page shows (and in each `alerts` message).
RECENT_EVENTS = 20


async def alerts_frame(pool: aiopg.Pool, dashboard_id: int) -> bytes:
    """The finished `alerts` message frame of the dashboard."""
    return text_frame(encode_message("alerts", await alert_state(pool, dashboard_id)))


async def alert_state(pool: aiopg.Pool, dashboard_id: int) -> dict[str, Any]:
    """The `alerts` payload: `{"rules": [...], "events": [...]}` (events newest first)."""
    statuses = await db.list_alert_rule_status(pool, dashboard_id)
    recent = await db.list_recent_alert_events(pool, dashboard_id, RECENT_EVENTS)
    return {"rules": [rule_payload(status) for status in statuses], "events": [_event(e) for e in recent]}


def rule_payload(status: db.AlertRuleStatus) -> dict[str, Any]:
    rule, last = status.rule, status.last_event
    return {
        "rule_id": rule.id,
        "metric_id": rule.metric_id,
        "metric_name": status.metric_name,
        "condition": rule.condition,
        "threshold": rule.threshold,
        "for_seconds": rule.for_seconds,
        "state": rule.state,
        "event_id": last.id if last else None,
        "since": last.at.isoformat() if last else None,
        "value": last.value if last else None,
    }


def _event(recent: db.RecentAlertEvent) -> dict[str, Any]:
    """The same fields as a live `alert` message."""
    event = recent.event
    return {
        "rule_id": event.rule_id,
        "metric_id": recent.metric_id,
        "metric_name": recent.metric_name,
        "state": event.state,
        "value": event.value,
        "threshold": recent.threshold,
        "condition": recent.condition,
        "at": event.at.isoformat(),
        "event_id": event.id,
    }

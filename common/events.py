"""Redis channel names and the format of what the worker publishes on them.

The worker publishes one message per dashboard per tick, after the values are
committed to PostgreSQL, on that dashboard's channel. Each server process
subscribes to the channels of the dashboards its connections watch, and to
the control channel, on which any process (a server, the CLI) announces that
someone's access ended.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from common.db import AlertEvent, AlertRule, Metric, MetricValue
from common.redisconn import RedisClient, publish

EVENT_VERSION = 1


def dashboard_channel(dashboard_id: int) -> str:
    """The channel carrying new values of one dashboard's metrics."""
    return f"dashboard:{dashboard_id}:values"


@dataclass(frozen=True)
class ValueEvent:
    """One stored value, with what a client needs to show it."""

    id: int
    metric_id: int
    metric_name: str
    unit: str
    value: float
    timestamp: str  # ISO 8601 with time zone


_VALUE_FIELDS = tuple(ValueEvent.__dataclass_fields__)


def encode_values(dashboard_id: int, values: Iterable[tuple[Metric, MetricValue]]) -> str:
    """The message published for a batch of committed values of one dashboard."""
    return json.dumps(
        {
            "v": EVENT_VERSION,
            "dashboard_id": dashboard_id,
            "values": [
                {
                    "id": stored.id,
                    "metric_id": metric.id,
                    "metric_name": metric.name,
                    "unit": metric.unit,
                    "value": stored.value,
                    "timestamp": stored.ts.isoformat(),
                }
                for metric, stored in values
            ],
        },
        separators=(",", ":"),
    )


def decode_values(data: bytes | str) -> tuple[int, list[ValueEvent]]:
    """(dashboard_id, values) of a published message; ValueError if malformed."""
    try:
        message = json.loads(data)
        if message.get("v") != EVENT_VERSION:
            raise ValueError(f"unsupported event version {message.get('v')!r}")
        return int(message["dashboard_id"]), [
            # Fields added by a newer worker are ignored, so the format can grow.
            ValueEvent(**{name: item[name] for name in _VALUE_FIELDS})
            for item in message["values"]
        ]
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed values event: {exc}") from None


# Alerts ----------------------------------------------------------------------
# Published on the dashboard's channel too, marked "type": "alert" (a values
# message has no type), so every process already watching it gets them.


@dataclass(frozen=True)
class AlertNotice:
    """A rule of one of the dashboard's metrics fired or resolved."""

    rule_id: int
    metric_id: int
    metric_name: str
    state: str  # "firing" or "resolved"
    value: float
    threshold: float
    condition: str  # "above" or "below"
    at: str  # ISO 8601 with time zone: the timestamp of the value that caused it
    # The stored event's id; None in messages of a publisher older than the field.
    event_id: int | None = None


def encode_alert(dashboard_id: int, metric: Metric, rule: AlertRule, event: AlertEvent) -> str:
    """The message published when a rule of this dashboard fires or resolves."""
    notice = AlertNotice(
        rule_id=rule.id,
        metric_id=metric.id,
        metric_name=metric.name,
        state=event.state,
        value=event.value,
        threshold=rule.threshold,
        condition=rule.condition,
        at=event.at.isoformat(),
        event_id=event.id,
    )
    return json.dumps(
        {"v": EVENT_VERSION, "type": "alert", "dashboard_id": dashboard_id, "alert": notice.__dict__},
        separators=(",", ":"),
    )


def decode_dashboard_event(data: bytes | str) -> tuple[int, list[ValueEvent] | AlertNotice]:
    """(dashboard_id, values or alert) of a message on a dashboard's channel;
    ValueError if malformed."""
    try:
        message = json.loads(data)
        if isinstance(message, dict) and message.get("type") == "alert":
            if message.get("v") != EVENT_VERSION:
                raise ValueError(f"unsupported event version {message.get('v')!r}")
            alert = message["alert"]
            return int(message["dashboard_id"]), AlertNotice(
                **{name: alert[name] for name in AlertNotice.__dataclass_fields__ if name != "event_id"},
                event_id=alert.get("event_id"),
            )
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed alert event: {exc}") from None
    return decode_values(data)


# Control channel -------------------------------------------------------------

# Every server process subscribes to it for as long as it runs (server/hub.py).
CONTROL_CHANNEL = "dashboard:control"


@dataclass(frozen=True)
class Revocation:
    """Access that ended: sockets matching every field given must close.

    `session` is a digest of the session key, never the key itself: the
    message is visible to anything that can subscribe on this Redis.
    """

    reason: str  # one of REVOCATION_REASONS
    user_id: int | None = None
    dashboard_id: int | None = None
    session: str | None = None


REVOCATION_REASONS = ("logout", "session_expired", "user_deleted", "member_removed", "dashboard_deleted")


def encode_revocation(revocation: Revocation) -> str:
    """The control-channel message announcing a revocation."""
    if revocation.reason not in REVOCATION_REASONS:
        raise ValueError(f"unknown revocation reason {revocation.reason!r}")
    if revocation.user_id is None and revocation.dashboard_id is None and revocation.session is None:
        raise ValueError("a revocation must name a user, a dashboard or a session")
    return json.dumps({"v": EVENT_VERSION, "type": "revoke", **revocation.__dict__}, separators=(",", ":"))


@dataclass(frozen=True)
class DashboardChanged:
    """A dashboard's name, description or metrics changed: every process
    re-reads them and pushes a fresh `dashboard_config` to its open sockets."""

    dashboard_id: int


def encode_dashboard_changed(change: DashboardChanged) -> str:
    """The control-channel message announcing an edited dashboard."""
    return json.dumps(
        {"v": EVENT_VERSION, "type": "dashboard_changed", "dashboard_id": change.dashboard_id},
        separators=(",", ":"),
    )


def decode_control(data: bytes | str) -> Revocation | DashboardChanged | None:
    """The revocation or change a control message announces; None for other
    kinds of control message (so new kinds can be added without breaking old
    servers). ValueError if it is malformed."""
    try:
        message = json.loads(data)
        if not isinstance(message, dict) or message.get("type") not in ("revoke", "dashboard_changed"):
            return None
        if message.get("v") != EVENT_VERSION:
            raise ValueError(f"unsupported event version {message.get('v')!r}")
        if message["type"] == "dashboard_changed":
            dashboard_id = message.get("dashboard_id")
            if not isinstance(dashboard_id, int) or isinstance(dashboard_id, bool):
                raise ValueError(f"malformed control message: dashboard_id {dashboard_id!r}")
            return DashboardChanged(dashboard_id)
        revocation = Revocation(**{name: message.get(name) for name in Revocation.__dataclass_fields__})
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed control message: {exc}") from None
    if revocation.reason not in REVOCATION_REASONS:
        raise ValueError(f"unknown revocation reason {revocation.reason!r}")
    return revocation


async def announce_revocation(redis_client: RedisClient, revocation: Revocation) -> None:
    """Tell every server process to close the sockets this revocation covers."""
    await publish(redis_client, CONTROL_CHANNEL, encode_revocation(revocation))


async def announce_dashboard_changed(redis_client: RedisClient, change: DashboardChanged) -> None:
    """Tell every server process (this one included) to push the dashboard's new config."""
    await publish(redis_client, CONTROL_CHANNEL, encode_dashboard_changed(change))

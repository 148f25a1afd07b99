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
from datetime import datetime
from typing import Any

from common.db import AlertEvent, AlertRule, Metric, MetricValue
from common.redisconn import RedisClient, publish, redis_database

EVENT_VERSION = 1


@dataclass(frozen=True)
class Channels:
    """The Redis channel names of one deployment.

    Pub/sub ignores Redis database numbers: two deployments sharing a Redis
    (staging on /1, production on /0) would otherwise hear each other's
    dashboard 1. So every name carries the deployment's prefix; see
    channels_for for how it is chosen.
    """

    prefix: str = ""

    def dashboard(self, dashboard_id: int) -> str:
        """The channel carrying new values (and alerts) of one dashboard's metrics."""
        return f"{self.prefix}dashboard:{dashboard_id}:values"

    @property
    def control(self) -> str:
        """The channel every server process listens on for revocations and changes."""
        return f"{self.prefix}dashboard:control"

    @property
    def pattern(self) -> str:
        """All of this deployment's channels, as a PSUBSCRIBE pattern (for logs and debugging)."""
        return f"{self.prefix}dashboard:*"


def channels_for(redis_url: str | None, prefix: str | None = None) -> Channels:
    """The channels of the deployment on `redis_url`: the given prefix, else one
    derived from the Redis database number ("" for /0, the names earlier
    releases used, so a rolling upgrade keeps hearing them; "db1:" for /1)."""
    if prefix is not None:
        return Channels(prefix)
    number = redis_database(redis_url) if redis_url else 0
    return Channels("" if number == 0 else f"db{number}:")


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


@dataclass(frozen=True)
class ValueBatch:
    """The values of one published message, with the dashboard's number for
    the batch that stored them (None from a publisher older than the field)."""

    values: list[ValueEvent]
    seq: int | None = None


def encode_values(dashboard_id: int, values: Iterable[tuple[Metric, MetricValue]]) -> str:
    """The message published for a batch of committed values of one dashboard.

    It carries the batch's `seq` when the values have one (db.insert_values):
    consecutive per dashboard, so a subscriber can tell that a message was
    lost (server/live/gaps.py).
    """
    values = list(values)
    seqs = {stored.seq for _, stored in values if stored.seq is not None}
    # A tick's (or a push's) values share a timestamp: formatted once.
    stamps: dict[datetime, str] = {}
    return json.dumps(
        {
            "v": EVENT_VERSION,
            "dashboard_id": dashboard_id,
            # One insert is one batch per dashboard; values of several (a caller's
            # own mix) are not one batch, and a wrong number would look like a gap.
            **({"seq": seqs.pop()} if len(seqs) == 1 else {}),
            "values": [
                {
                    "id": stored.id,
                    "metric_id": metric.id,
                    "metric_name": metric.name,
                    "unit": metric.unit,
                    "value": stored.value,
                    "timestamp": stamps.get(stored.ts) or stamps.setdefault(stored.ts, stored.ts.isoformat()),
                }
                for metric, stored in values
            ],
        },
        separators=(",", ":"),
    )


def decode_values(data: bytes | str) -> tuple[int, list[ValueEvent]]:
    """(dashboard_id, values) of a published message; ValueError if malformed."""
    try:
        dashboard_id, batch = _values_of(json.loads(data))
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed values event: {exc}") from None
    return dashboard_id, batch.values


def _values_of(message: Any) -> tuple[int, ValueBatch]:
    try:
        if message.get("v") != EVENT_VERSION:
            raise ValueError(f"unsupported event version {message.get('v')!r}")
        seq = message.get("seq")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
            raise ValueError(f"malformed values event: seq {seq!r}")
        return int(message["dashboard_id"]), ValueBatch(
            [
                # Fields added by a newer worker are ignored, so the format can grow.
                ValueEvent(**{name: item[name] for name in _VALUE_FIELDS})
                for item in message["values"]
            ],
            seq,
        )
    except (KeyError, TypeError, AttributeError) as exc:
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


def decode_dashboard_event(data: bytes | str) -> tuple[int, ValueBatch | AlertNotice]:
    """(dashboard_id, values or alert) of a message on a dashboard's channel;
    ValueError if malformed."""
    try:
        # Parsed once: this runs for every message every server process receives.
        message = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed dashboard event: {exc}") from None
    if not (isinstance(message, dict) and message.get("type") == "alert"):
        return _values_of(message)
    try:
        if message.get("v") != EVENT_VERSION:
            raise ValueError(f"unsupported event version {message.get('v')!r}")
        alert = message["alert"]
        return int(message["dashboard_id"]), AlertNotice(
            **{name: alert[name] for name in AlertNotice.__dataclass_fields__ if name != "event_id"},
            event_id=alert.get("event_id"),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed alert event: {exc}") from None


# Control channel -------------------------------------------------------------

# Every server process subscribes to the control channel (Channels.control)
# for as long as it runs (server/live/hub.py).


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


REVOCATION_REASONS = (
    "logout",
    "session_expired",
    "sessions_ended",  # a password change or `user logout-everywhere`: all of a user's sessions
    "user_deleted",
    "member_removed",
    "dashboard_deleted",
)


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


@dataclass(frozen=True)
class PreferencesChanged:
    """A user changed their preferences of one dashboard, or (dashboard_id
    None) their theme, which is theirs on every dashboard: every process
    sends that user's open sockets of it (of all, for None) the new ones."""

    user_id: int
    dashboard_id: int | None = None


def encode_preferences_changed(change: PreferencesChanged) -> str:
    """The control-channel message announcing someone's new preferences."""
    return json.dumps(
        {"v": EVENT_VERSION, "type": "preferences_changed", **change.__dict__}, separators=(",", ":")
    )


_CONTROL_TYPES = ("revoke", "dashboard_changed", "preferences_changed")
Control = Revocation | DashboardChanged | PreferencesChanged


def decode_control(data: bytes | str) -> Control | None:
    """The revocation or change a control message announces; None for other
    kinds of control message (so new kinds can be added without breaking old
    servers). ValueError if it is malformed."""
    try:
        message = json.loads(data)
        if not isinstance(message, dict) or message.get("type") not in _CONTROL_TYPES:
            return None
        if message.get("v") != EVENT_VERSION:
            raise ValueError(f"unsupported event version {message.get('v')!r}")
        if message["type"] == "dashboard_changed":
            return DashboardChanged(_id_field(message, "dashboard_id"))
        if message["type"] == "preferences_changed":
            dashboard_id = message.get("dashboard_id")
            return PreferencesChanged(
                _id_field(message, "user_id"),
                None if dashboard_id is None else _id_field(message, "dashboard_id"),
            )
        given: dict[str, Any] = {name: message.get(name) for name in Revocation.__dataclass_fields__}
        revocation = Revocation(**given)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed control message: {exc}") from None
    if revocation.reason not in REVOCATION_REASONS:
        raise ValueError(f"unknown revocation reason {revocation.reason!r}")
    return revocation


def _id_field(message: dict[str, Any], name: str) -> int:
    value = message.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"malformed control message: {name} {value!r}")
    return value


async def announce_revocation(redis_client: RedisClient, channels: Channels, revocation: Revocation) -> None:
    """Tell every server process to close the sockets this revocation covers."""
    await publish(redis_client, channels.control, encode_revocation(revocation))


async def announce_dashboard_changed(
    redis_client: RedisClient, channels: Channels, change: DashboardChanged
) -> None:
    """Tell every server process (this one included) to push the dashboard's new config."""
    await publish(redis_client, channels.control, encode_dashboard_changed(change))


async def announce_preferences_changed(
    redis_client: RedisClient, channels: Channels, change: PreferencesChanged
) -> None:
    """Tell every server process (this one included) to send the user's sockets their new preferences."""
    await publish(redis_client, channels.control, encode_preferences_changed(change))

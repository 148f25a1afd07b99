"""The WebSocket protocol's messages: schemas for what clients send, and the
encoder for what the server sends. docs/protocol.md describes them for people.

Every message is a JSON object `{"action": ..., "payload": ...}`.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from common.config import MAX_METRICS_PER_DASHBOARD
from common.sources import DEFAULT_SOURCE, SOURCES, check_source, system_reading
from common.vocabulary import (
    ALERT_CONDITIONS,
    CHART_STYLES,
    CONTACT_KINDS,
    MAX_RETENTION_DAYS,
    METRIC_TYPES,
    MIN_RETENTION_DAYS,
    RANGES,
    ROLES,
    THEMES,
)

# Read here by server/asyncapi.py and server/live/history.py.

# What a client may send. Anything else is answered with an `error`.
CLIENT_ACTIONS = ("subscribe", "unsubscribe", "ping", "history", "resume")
# What the server sends.
SERVER_ACTIONS = (
    "authentication",
    "dashboard_config",
    "metric_history",
    "metric_update",
    "metric_updates",
    "alert",
    "preferences",
    "alerts",
    "pong",
    "complete",
    "error",
)
MAX_ID = 2**63 - 1  # PostgreSQL bigint
# users.username's CHECK (migrations/0001_initial.sql): longer is never a user.
USERNAME_MAX_LENGTH = 150
# Limits of a `history` from/to range (docs/protocol.md, "Ranges").
MIN_SPAN = timedelta(seconds=10)
MAX_SPAN = timedelta(days=400)  # past a year of rollups (the default keeps 365 days)
MAX_AGE = timedelta(days=3660)  # `from` no earlier than ten years ago
MAX_AHEAD = timedelta(days=1)  # `to` no later than a day from now
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME_TEXT = 40  # characters of an ISO 8601 time: "2026-12-07T02:04:05.123456+01:00" and some


class StrictInteger(fields.Integer):
    """An integer given as a JSON number: no strings, floats or booleans."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)


class EnvelopeSchema(Schema):
    action = fields.String(required=True, validate=validate.OneOf(CLIENT_ACTIONS))
    payload = fields.Raw(load_default=None, allow_none=True)


class MetricIdsSchema(Schema):
    """Payload of `subscribe` and `unsubscribe`."""

    # Every metric of the largest dashboard the quotas allow, and no more.
    metric_ids = fields.List(
        StrictInteger(validate=validate.Range(min=1, max=MAX_ID)),
        required=True,
        validate=validate.Length(min=1, max=MAX_METRICS_PER_DASHBOARD),
    )


class Timestamp(fields.Field[datetime]):
    """A point in time: an ISO 8601 string with a UTC offset (`Z` or `+01:00`), or a
    JSON integer of milliseconds since the Unix epoch. Loaded as an aware UTC datetime."""

    default_error_messages = {  # noqa: RUF012 (marshmallow's own attribute, an instance variable there)
        "invalid": "Not a time: an ISO 8601 string with an offset (Z, +01:00) or epoch milliseconds.",
        "naive": "No UTC offset: add Z or +HH:MM, or send epoch milliseconds.",
        "out_of_range": "Out of range.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        try:
            if isinstance(value, int) and not isinstance(value, bool):
                return EPOCH + timedelta(milliseconds=value)
            if isinstance(value, str) and len(value) <= MAX_TIME_TEXT:
                parsed = datetime.fromisoformat(value)
                if parsed.tzinfo is None:
                    raise self.make_error("naive")
                # Still a datetime in UTC (0001-01-01T00:00+14:00 is not).
                return parsed.astimezone(UTC)
        except (OverflowError, OSError):
            raise self.make_error("out_of_range") from None
        except ValueError:
            pass
        raise self.make_error("invalid")


class HistorySchema(MetricIdsSchema):
    """Payload of `history`: the metrics' values over a range, then live while it ends now.
    Either `range`, the last 5m, 1h, 24h or 7d, or `from` with an optional `to` (default: now)."""

    range = fields.String(validate=validate.OneOf(RANGES))
    since = Timestamp(
        data_key="from",
        metadata={"description": "start of the range: ISO 8601 with an offset, or epoch milliseconds"},
    )
    until = Timestamp(
        data_key="to",
        metadata={"description": "end of the range, alike; left out, or now or later: ends now, and live"},
    )

    @validates_schema
    def _one_range(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "until" in data and "since" not in data:
            raise ValidationError("to needs a from.", "to")
        if ("range" in data) == ("since" in data):
            raise ValidationError("Send either range or from (with an optional to).", "range")
        if "since" in data:
            check_span(data["since"], data.get("until"), datetime.now(UTC))


def check_span(since: datetime, until: datetime | None, now: datetime) -> None:
    """ValidationError unless [since, until or now) is a range `history` answers."""
    end = min(until, now) if until is not None else now
    if since < now - MAX_AGE:
        raise ValidationError(f"Earlier than {MAX_AGE.days} days ago.", "from")
    if until is not None and until > now + MAX_AHEAD:
        raise ValidationError(f"Later than {MAX_AHEAD.days} day from now.", "to")
    if until is not None and until <= since:
        raise ValidationError("Must be after from.", "to")
    if end - since < MIN_SPAN:
        raise ValidationError(f"The range must span at least {MIN_SPAN.seconds} seconds up to now.", "from")
    if end - since > MAX_SPAN:
        raise ValidationError(f"The range must span at most {MAX_SPAN.days} days.", "from")


class PositionSchema(Schema):
    metric_id = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_ID))
    after_id = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_ID))


class ResumeSchema(Schema):
    """Payload of `resume`: the newest value id the client holds, per metric."""

    positions = fields.List(
        fields.Nested(PositionSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_METRICS_PER_DASHBOARD),
    )


PAYLOAD_SCHEMAS: dict[str, Schema] = {
    "subscribe": MetricIdsSchema(),
    "unsubscribe": MetricIdsSchema(),
    "history": HistorySchema(),
    "resume": ResumeSchema(),
}
# The Chanx dashboard example's client sends the ids of `subscribe` and
# `unsubscribe` as a bare list, `[1, 2]`: such a payload is read as the value of
# this field, so both forms meet the same rules and get the same answers.
BARE_LIST_FIELDS = {"subscribe": "metric_ids", "unsubscribe": "metric_ids"}


# What the server sends. The server does not load these: they describe its
# messages for docs/asyncapi (server/asyncapi.py) and the tests check real
# messages against them.


class AuthenticatedSchema(Schema):
    user = fields.String(required=True)
    dashboard_id = fields.Integer(required=True)


class AuthenticationSchema(Schema):
    status_code = fields.Integer(required=True, validate=validate.OneOf([200, 401, 403]))
    status_text = fields.String(required=True)
    data = fields.Nested(AuthenticatedSchema, required=True, allow_none=True)


class MetricSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(METRIC_TYPES))
    unit = fields.String(required=True)
    source = fields.String(
        metadata={
            "description": "where its values come from: push (the push API), random (demo values),"
            " or a system:<reading> of the worker's host"
        }
    )


class DashboardConfigSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    metrics = fields.List(fields.Nested(MetricSchema), required=True)
    retention_days = fields.Integer(
        allow_none=True,
        metadata={"description": "days of raw values kept; null: the worker's global setting"},
    )


class HistoryValueSchema(Schema):
    """A stored value (with its `id`), or a bucket's summary (with min, max, count)."""

    id = fields.Integer()
    value = fields.Float(required=True, metadata={"description": "the value, or the bucket's average"})
    timestamp = fields.String(required=True, metadata={"description": "ISO 8601; a bucket's start"})
    min = fields.Float()
    max = fields.Float()
    count = fields.Integer()
    increase = fields.Float(
        metadata={
            "description": "a counter's bucket: its increase since the value before it, resets included"
        }
    )
    sketch = fields.List(
        fields.Tuple((fields.Integer(), fields.Integer())),
        metadata={
            "description": "a histogram's bucket: its values as [sketch key, count] pairs, keys ascending,"
            " keyed as the summary's sketch (a heatmap's column)"
        },
    )


class SketchSchema(Schema):
    """A histogram's values counted per key of a log-scale sketch: a value x with
    |x| >= min_magnitude is counted under sign(x) * (ceil(ln|x| / ln gamma) + key_offset),
    smaller ones under 0; a key k stands for sign(k) * 2 * gamma^(|k| - key_offset) / (gamma + 1)."""

    relative_error = fields.Float(required=True, metadata={"description": "of every percentile read from it"})
    gamma = fields.Float(required=True)
    key_offset = fields.Integer(required=True)
    min_magnitude = fields.Float(required=True)
    bins = fields.List(
        fields.Tuple((fields.Integer(), fields.Integer())),
        required=True,
        metadata={"description": "[key, count] pairs, keys ascending"},
    )


class RangeSummarySchema(Schema):
    """What the whole range holds: the same numbers on every range (docs/protocol.md, Ranges)."""

    count = fields.Integer(required=True, metadata={"description": "values in the range"})
    first_timestamp = fields.String(
        metadata={"description": "of its first value (a minute's start if rolled up)"}
    )
    last_timestamp = fields.String(metadata={"description": "of its newest value"})
    increase = fields.Float(
        metadata={"description": "a counter's: between its first and newest value, resets included"}
    )
    rate = fields.Float(
        allow_none=True, metadata={"description": "a counter's: increase per second between those values"}
    )
    last_value = fields.Float(metadata={"description": "the newest value (not a bucket's average)"})
    p50 = fields.Float(metadata={"description": "a histogram's, within the sketch's relative_error"})
    p95 = fields.Float()
    p99 = fields.Float()
    sketch = fields.Nested(
        SketchSchema, metadata={"description": "a histogram's distribution over the range"}
    )


class MetricHistorySchema(Schema):
    metric_id = fields.Integer(required=True)
    metric_name = fields.String(required=True)
    unit = fields.String(required=True)
    values = fields.List(
        fields.Nested(HistoryValueSchema),
        required=True,
        metadata={"description": "raw values in the order stored (by id; pushed timestamps may step back)"},
    )
    last_id = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "id of the newest stored value this history accounts for (the largest)"},
    )
    range = fields.String(
        validate=validate.OneOf(RANGES), metadata={"description": "answers `history` asked with a range"}
    )
    since = fields.String(
        data_key="from", metadata={"description": "answers `history`: the range's start, ISO 8601 in UTC"}
    )
    until = fields.String(
        data_key="to",
        allow_none=True,
        metadata={"description": "answers `history`: the range's end, ISO 8601 in UTC; null: it ends now"},
    )
    live = fields.Boolean(
        metadata={
            "description": "answers `history`: true when the range ends now (later values extend it);"
            " false when it ended in the past (later values are not part of it)"
        }
    )
    bucket_seconds = fields.Integer(metadata={"description": "answers `history`; 0: raw values"})
    summary = fields.Nested(RangeSummarySchema, metadata={"description": "answers `history`"})
    recovered = fields.Boolean(metadata={"description": "answers `resume`"})


class MetricUpdateSchema(Schema):
    id = fields.Integer(
        required=True, metadata={"description": "the stored value's id: live values come in id order"}
    )
    metric_id = fields.Integer(required=True)
    value = fields.Float(required=True)
    timestamp = fields.String(required=True)
    metric_name = fields.String(required=True)
    unit = fields.String(required=True)


class TickValuesSchema(Schema):
    timestamp = fields.String(required=True)
    values = fields.List(
        fields.Tuple((fields.Integer(), fields.Integer(), fields.Float())),
        required=True,
        metadata={"description": "[metric_id, id, value] of each value with this timestamp"},
    )


class MetricUpdatesSchema(Schema):
    updates = fields.List(fields.Nested(TickValuesSchema), required=True)


class AlertSchema(Schema):
    rule_id = fields.Integer(required=True)
    metric_id = fields.Integer(required=True)
    metric_name = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(["firing", "resolved"]))
    value = fields.Float(required=True, metadata={"description": "the value that fired or resolved it"})
    threshold = fields.Float(required=True)
    condition = fields.String(required=True, validate=validate.OneOf(ALERT_CONDITIONS))
    at = fields.String(required=True, metadata={"description": "ISO 8601: that value's timestamp"})
    event_id = fields.Integer(
        metadata={"description": "the stored event's id: per rule, a higher id is a newer state"}
    )


class AlertRuleStateSchema(Schema):
    rule_id = fields.Integer(required=True)
    metric_id = fields.Integer(required=True)
    metric_name = fields.String(required=True)
    condition = fields.String(required=True, validate=validate.OneOf(ALERT_CONDITIONS))
    threshold = fields.Float(required=True)
    for_seconds = fields.Integer(required=True)
    state = fields.String(required=True, validate=validate.OneOf(["ok", "firing"]))
    event_id = fields.Integer(
        required=True, allow_none=True, metadata={"description": "id of its newest event; null: never fired"}
    )
    since = fields.String(
        required=True, allow_none=True, metadata={"description": "ISO 8601: when its newest event happened"}
    )
    value = fields.Float(
        required=True, allow_none=True, metadata={"description": "the value that caused its newest event"}
    )


class AlertsSchema(Schema):
    rules = fields.List(fields.Nested(AlertRuleStateSchema), required=True)
    events = fields.List(
        fields.Nested(AlertSchema),
        required=True,
        metadata={"description": "the dashboard's latest firing/resolving events, newest first"},
    )


class PreferencesSchema(Schema):
    """The user's own view of the dashboard (GET /dashboards/{id}/preferences answers the same)."""

    dashboard_id = fields.Integer(required=True)
    hidden_metric_ids = fields.List(
        fields.Integer(), required=True, metadata={"description": "metrics whose cards are hidden"}
    )
    card_order = fields.List(
        fields.Integer(),
        required=True,
        metadata={
            "description": "these metrics first, in this order; the others after, in the dashboard's order"
        },
    )
    default_range = fields.String(required=True, validate=validate.OneOf(RANGES))
    chart_style = fields.String(required=True, validate=validate.OneOf(CHART_STYLES))
    theme = fields.String(
        required=True,
        validate=validate.OneOf(THEMES),
        metadata={"description": "the user's, on every dashboard"},
    )


class ErrorSchema(Schema):
    message = fields.String(required=True)
    errors = fields.Dict(required=True)


# None: no schema. `pong` echoes any JSON; `complete` has no payload.
SERVER_PAYLOAD_SCHEMAS: dict[str, Schema | None] = {
    "authentication": AuthenticationSchema(),
    "dashboard_config": DashboardConfigSchema(),
    "metric_history": MetricHistorySchema(),
    "metric_update": MetricUpdateSchema(),
    "metric_updates": MetricUpdatesSchema(),
    "alert": AlertSchema(),
    "preferences": PreferencesSchema(),
    "alerts": AlertsSchema(),
    "pong": None,
    "complete": None,
    "error": ErrorSchema(),
}


class ProtocolError(ValueError):
    """A client message that cannot be acted on; `errors` says why, per field."""

    def __init__(self, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


def parse_client_message(text: str) -> tuple[str, Any]:
    """(action, validated payload) of a client's text frame, or ProtocolError."""
    try:
        data = load_strict_json(text)
    except ValueError:
        raise ProtocolError("message is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError('message must be a JSON object {"action": ..., "payload": ...}')
    try:
        envelope = EnvelopeSchema().load(data)
    except ValidationError as exc:
        if "action" in exc.messages and isinstance(data.get("action"), str):
            message = f"unknown action {data['action']!r}"
        else:
            message = "invalid message"
        raise ProtocolError(message, exc.messages_dict) from None
    action = envelope["action"]
    payload = envelope["payload"]
    schema = PAYLOAD_SCHEMAS.get(action)
    if schema is None:
        return action, payload
    payload = _payload_object(action, payload)
    try:
        return action, schema.load(payload)
    except ValidationError as exc:
        raise ProtocolError(f"invalid payload for {action!r}", {"payload": exc.messages_dict}) from None


def _payload_object(action: str, payload: Any) -> dict[str, Any]:
    """The payload as the object its schema reads, or ProtocolError."""
    field = BARE_LIST_FIELDS.get(action)
    if field is not None and isinstance(payload, list):
        return {field: payload}
    if isinstance(payload, dict):
        return payload
    if field is not None:
        raise ProtocolError(
            f"payload of {action!r} must be an object or a list of metric ids",
            {"payload": ["Not a valid object or list."]},
        )
    raise ProtocolError(f"payload of {action!r} must be an object", {"payload": ["Not a valid object."]})


def load_strict_json(text: str) -> Any:
    """JSON as browsers' JSON.parse reads it, or ValueError saying why not.

    NaN, Infinity and numbers beyond a float (1e400) are refused rather than
    stored or echoed as values strict parsers cannot read; nesting too deep to
    parse is a ValueError too, not a RecursionError that escapes as a crash.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def encode_message(action: str, payload: Any = None) -> str:
    """A server message as the text of a WebSocket frame."""
    message: dict[str, Any] = {"action": action}
    if payload is not None:
        message["payload"] = payload
    return json.dumps(message, separators=(",", ":"))


def error_message(error: ProtocolError) -> str:
    return encode_message("error", {"message": error.message, "errors": error.errors})


# The HTTP push API (server/api.py) ----------------------------------------------

MAX_PUSHED_VALUES = 10_000  # per request


class StrictFloat(fields.Float):
    """A number given as a JSON number (no strings or booleans), finite."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_nan=False, **kwargs)

    def _validated(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._validated(value)


class PushedValueSchema(Schema):
    value = StrictFloat(required=True)
    # Optional; when given it must carry its time zone. Default: when received.
    timestamp = fields.AwareDateTime(load_default=None)


class PushedMetricValueSchema(PushedValueSchema):
    metric_id = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_ID))


class PushSchema(Schema):
    """Body of POST /api/v1/metrics/{id}/values."""

    values = fields.List(
        fields.Nested(PushedValueSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_PUSHED_VALUES),
    )


class BatchPushSchema(Schema):
    """Body of POST /api/v1/values."""

    values = fields.List(
        fields.Nested(PushedMetricValueSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_PUSHED_VALUES),
    )


_PLAIN_ITEM_KEYS = (frozenset({"value"}), frozenset({"metric_id", "value"}))


def load_plain_push(data: dict[str, Any], with_metric_id: bool) -> dict[str, Any] | None:
    """What PushSchema (or BatchPushSchema, `with_metric_id`) loads from `data`,
    for the common body only: nothing but `values`, each item a metric id (batch)
    and a JSON number, no timestamps. None for anything else, which the schema
    then loads (and words the errors of). Marshmallow spends about 25 µs on each
    item; a push of thousands of values spent half its server CPU there."""
    items = data.get("values") if len(data) == 1 else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_PUSHED_VALUES:
        return None
    keys = _PLAIN_ITEM_KEYS[with_metric_id]
    loaded = []
    for item in items:
        if type(item) is not dict or item.keys() != keys:
            return None
        value = item["value"]
        # JSON numbers only (bool is an int); load_strict_json already refused NaN and infinities.
        if type(value) is float:
            pass
        elif type(value) is int and -(2**63) <= value <= MAX_ID:
            value = float(value)
        else:
            return None
        entry: dict[str, Any] = {"value": value, "timestamp": None}
        if with_metric_id:
            metric_id = item["metric_id"]
            if type(metric_id) is not int or not 1 <= metric_id <= MAX_ID:
                return None
            entry["metric_id"] = metric_id
        loaded.append(entry)
    return {"values": loaded}


# Editing a dashboard (server/editing.py) -----------------------------------------
# Bounds follow the database's CHECKs; unknown fields are refused by name.

_NAME = validate.Length(min=1, max=200)
_DESCRIPTION = validate.Length(max=2000)
_UNIT = validate.Length(max=50)


class TrimmedString(fields.String):
    """A string without its surrounding spaces (so "  " is empty, not a name),
    that PostgreSQL can store: no NUL, no lone surrogate (JSON's "\\ud800")."""

    # marshmallow declares it per instance; a ClassVar here would not match.
    default_error_messages = {"unstorable": "Must not contain NUL characters or lone surrogates."}  # noqa: RUF012

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not storable_text(text):
            raise self.make_error("unstorable")
        return text


def storable_text(text: str) -> bool:
    """Whether PostgreSQL can store this text: it refuses NUL, and takes UTF-8."""
    return "\x00" not in text and utf8_text(text)


def utf8_text(text: str) -> bool:
    """Whether UTF-8 can hold this text (what PostgreSQL, Redis and argon2 take):
    not with lone surrogates, JSON's "\\ud800" or a header's undecodable bytes."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class DashboardEditSchema(Schema):
    """Body of POST /dashboards/{id}/settings: rename, describe, set the retention."""

    name = TrimmedString(required=True, validate=_NAME)
    description = TrimmedString(load_default="", validate=_DESCRIPTION)
    # Absent: unchanged; null: the worker's global retention.
    retention_days = StrictInteger(
        allow_none=True, validate=validate.Range(min=MIN_RETENTION_DAYS, max=MAX_RETENTION_DAYS)
    )


class DashboardDeleteSchema(Schema):
    """Body of POST /dashboards/{id}/delete: the dashboard's name, typed by the
    editor, so that a stray click or a stale tab deletes nothing."""

    confirm = TrimmedString(required=True, validate=_NAME)


class MetricCreateSchema(Schema):
    """Body of POST /dashboards/{id}/metrics.

    As with `dashboard-server metric add --source`: a system reading implies
    the type, unit and description that are not given.
    """

    name = TrimmedString(required=True, validate=_NAME)
    type = fields.String(load_default=None, validate=validate.OneOf(METRIC_TYPES))
    unit = TrimmedString(load_default=None, validate=_UNIT)
    description = TrimmedString(load_default=None, validate=_DESCRIPTION)
    source = fields.String(load_default=DEFAULT_SOURCE, validate=validate.OneOf(SOURCES))

    @post_load
    def _from_source(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        reading = system_reading(data["source"])
        if data["type"] is None:
            if reading is None:
                raise ValidationError("Missing data for required field.", "type")
            data["type"] = reading.metric_type
        try:
            check_source(data["source"], data["type"])
        except ValueError as exc:
            raise ValidationError(str(exc), "source") from None
        if data["unit"] is None:
            data["unit"] = reading.unit if reading else ""
        if data["description"] is None:
            data["description"] = reading.description if reading else ""
        return data


class MetricEditSchema(Schema):
    """Body of POST /dashboards/{id}/metrics/{metric_id}: the fields to change.

    A metric's type stays what it was: its stored values were made for it.
    """

    name = TrimmedString(validate=_NAME)
    unit = TrimmedString(validate=_UNIT)
    description = TrimmedString(validate=_DESCRIPTION)
    # Checked against the metric's type by the endpoint.
    source = fields.String(validate=validate.OneOf(SOURCES))


class MetricOrderSchema(Schema):
    """Body of POST /dashboards/{id}/metrics/order: every metric id, in the new order."""

    metric_ids = fields.List(
        StrictInteger(validate=validate.Range(min=1, max=MAX_ID)),
        required=True,
        validate=validate.Length(min=1, max=MAX_METRICS_PER_DASHBOARD),
    )


class MemberAddSchema(Schema):
    """Body of POST /dashboards/{id}/members."""

    username = TrimmedString(required=True, validate=validate.Length(min=1, max=USERNAME_MAX_LENGTH))
    role = fields.String(load_default="viewer", validate=validate.OneOf(ROLES))


class MemberRoleSchema(Schema):
    """Body of POST /dashboards/{id}/members/{user_id}/role."""

    role = fields.String(required=True, validate=validate.OneOf(ROLES))


# Personal preferences (server/preferences.py) --------------------------------------


def _no_duplicates(ids: list[int]) -> None:
    if len(set(ids)) != len(ids):
        raise ValidationError("Each metric may be listed once.")


def _metric_id_list() -> fields.List[int]:
    return fields.List(
        StrictInteger(validate=validate.Range(min=1, max=MAX_ID)),
        validate=[validate.Length(max=MAX_METRICS_PER_DASHBOARD), _no_duplicates],
    )


class ThemeSchema(Schema):
    """Body of PATCH /preferences: the user's theme, on every page."""

    theme = fields.String(required=True, validate=validate.OneOf(THEMES))


class DashboardPreferencesSchema(Schema):
    """Body of PATCH /dashboards/{id}/preferences: the fields to change, any of them."""

    hidden_metric_ids = _metric_id_list()
    card_order = _metric_id_list()
    default_range = fields.String(validate=validate.OneOf(RANGES))
    chart_style = fields.String(validate=validate.OneOf(CHART_STYLES))
    theme = fields.String(validate=validate.OneOf(THEMES))


class TokenCreateSchema(Schema):
    """Body of POST /dashboards/{id}/tokens."""

    name = TrimmedString(required=True, validate=_NAME)


_EMAIL = validate.Regexp(
    r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$", error="Must be one e-mail address (name@host.domain)."
)
_HTTP_URL = validate.URL(schemes={"http", "https"}, require_tld=False, error="Must be an http(s) URL.")


class ContactPointCreateSchema(Schema):
    """Body of POST /dashboards/{id}/contact-points (server/notifications_api.py)."""

    name = TrimmedString(required=True, validate=_NAME)
    kind = fields.String(required=True, validate=validate.OneOf(CONTACT_KINDS))
    # A URL for webhook and slack, an address for email: checked by kind below.
    target = TrimmedString(required=True, validate=validate.Length(min=1, max=2000))

    @validates_schema
    def _target_fits_kind(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "kind" in data and "target" in data:
            check_contact_target(data["kind"], data["target"])


class ContactPointEditSchema(Schema):
    """Body of POST /dashboards/{id}/contact-points/{contact_point_id}: a new name, or a new
    URL or address (checked against the contact point's kind by check_contact_target)."""

    name = TrimmedString(validate=_NAME)
    target = TrimmedString(validate=validate.Length(min=1, max=2000))

    @validates_schema
    def _something_changes(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ValidationError("Give a new name or target.")


def check_contact_target(kind: str, target: str) -> None:
    """ValidationError on `target` unless it suits the kind: an e-mail address for email,
    an http(s) URL for webhook and slack."""
    check = _EMAIL if kind == "email" else _HTTP_URL
    try:
        check(target)
    except ValidationError as exc:
        raise ValidationError(exc.messages, "target") from None


class RuleNotificationsSchema(Schema):
    """Body of POST /dashboards/{id}/alerts/{rule_id}/notifications."""

    contact_point_ids = fields.List(
        StrictInteger(validate=validate.Range(min=1, max=MAX_ID)),
        required=True,
        validate=validate.Length(max=50),
    )
    # Null: notify once per transition.
    repeat_seconds = StrictInteger(
        load_default=None, allow_none=True, validate=validate.Range(min=60, max=7 * 86400)
    )


class AlertRuleCreateSchema(Schema):
    """Body of POST /dashboards/{id}/alerts: as `dashboard-server alert add`."""

    metric_id = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_ID))
    condition = fields.String(required=True, validate=validate.OneOf(ALERT_CONDITIONS))
    threshold = StrictFloat(required=True)
    for_seconds = StrictInteger(load_default=0, validate=validate.Range(min=0, max=2**31 - 1))

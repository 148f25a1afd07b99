"""The socket protocol as an AsyncAPI 3 document, built from the marshmallow
schemas in common/schemas.py: what the server validates with is what it
publishes, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from common.schemas import (
    BARE_LIST_FIELDS,
    CLIENT_ACTIONS,
    PAYLOAD_SCHEMAS,
    RANGES,
    SERVER_ACTIONS,
    SERVER_PAYLOAD_SCHEMAS,
)

# A live `alert`, also the first of the `alerts` example's events.
ALERT_EXAMPLE = {
    "rule_id": 3,
    "metric_id": 1,
    "metric_name": "requests",
    "state": "firing",
    "value": 97.5,
    "threshold": 90.0,
    "condition": "above",
    "at": "2026-11-28T23:28:46.049670+00:00",
    "event_id": 17,
}

SUMMARIES = {
    "subscribe": (
        "Receive updates of these metrics; a metric_history comes first for each new one."
        " The ids as {metric_ids: [...]} or, as the Chanx example's client sends them, a bare list."
    ),
    "unsubscribe": "Stop receiving updates of these metrics. The ids as {metric_ids: [...]} or a bare list.",
    "ping": "Application-level ping (browsers cannot send WebSocket pings); answered with pong.",
    "history": (
        "The metrics' values over a time range (raw or bucketed), replacing what the client holds,"
        " with the range's summary: a counter's rate, a histogram's percentiles and distribution."
        " The range: the last 5m, 1h, 24h or 7d, or any from/to (to left out: up to now)."
    ),
    "resume": (
        "After a reconnect: what was stored after the newest value the client holds (a larger id), per metric."
    ),
    "authentication": "First message: whether the session may see this dashboard.",
    "dashboard_config": "The dashboard and its metrics.",
    "metric_history": "A metric's past values: on connect, or answering subscribe, history or resume.",
    "metric_update": "A new value of a subscribed metric.",
    "metric_updates": (
        "New values of subscribed metrics, several in one message, instead of metric_update:"
        " for sockets opened with ?updates=batch."
    ),
    "alert": "A threshold rule of one of the dashboard's metrics fired or resolved (to every socket).",
    "preferences": (
        "The user changed their own preferences of this dashboard (or their theme) on some page:"
        " sent to that user's sockets only."
    ),
    "alerts": "The dashboard's alert rules with their state, and its latest events: after connecting, "
    "and after every change of the dashboard.",
    "pong": "Answer to ping, echoing its payload.",
    "complete": "Sent after the handling of every client message.",
    "error": "A client message that could not be acted on.",
}

# Further examples, by name: the messages of the Chanx dashboard example's client
# (a bare list of ids; a ping without payload), which the server accepts too.
MORE_EXAMPLES: dict[str, dict[str, Any]] = {
    "subscribe": {"subscribe_list": [1, 2]},
    "unsubscribe": {"unsubscribe_list": [2]},
    "ping": {"ping_without_payload": None},
    "history": {
        "history_from_to": {"metric_ids": [1, 2], "from": "2026-11-28T08:00:00+01:00", "to": 1795856400000},
        "history_from_until_now": {"metric_ids": [1, 2], "from": "2026-11-28T20:00:00Z"},
    },
}

EXAMPLES: dict[str, Any] = {
    "subscribe": {"metric_ids": [1, 2]},
    "unsubscribe": {"metric_ids": [2]},
    "ping": {"t": 1767225600000},
    "history": {"metric_ids": [1, 2], "range": "1h"},
    "resume": {"positions": [{"metric_id": 1, "after_id": 5231}, {"metric_id": 2, "after_id": 5232}]},
    "authentication": {"status_code": 200, "status_text": "OK", "data": {"user": "demo", "dashboard_id": 1}},
    "dashboard_config": {
        "id": 1,
        "name": "Service health (demo)",
        "description": "Random values from dashboard-worker",
        "metrics": [
            {
                "id": 1,
                "name": "requests",
                "description": "",
                "type": "counter",
                "unit": "req",
                "source": "random",
            }
        ],
        "retention_days": None,
    },
    # An answer to `history` for a counter: buckets, and the summary of the range.
    "metric_history": {
        "metric_id": 1,
        "metric_name": "requests",
        "unit": "req",
        "values": [
            {
                "value": 466125.5,
                "timestamp": "2026-11-28T23:25:00+00:00",
                "min": 464510.0,
                "max": 467741.0,
                "count": 60,
                "increase": 1620.0,
            }
        ],
        "last_id": 5231,
        "range": "24h",
        "from": "2026-11-27T23:28:44.048772+00:00",
        "to": None,
        "live": True,
        "bucket_seconds": 300,
        "summary": {
            "count": 86400,
            "first_timestamp": "2026-11-27T23:28:45.049030+00:00",
            "last_timestamp": "2026-11-28T23:28:44.048772+00:00",
            "increase": 466560.0,
            "rate": 5.4,
            "last_value": 467741.0,
        },
    },
    "metric_update": {
        "id": 5240,
        "metric_id": 1,
        "value": 22.07,
        "timestamp": "2026-11-28T23:28:46.049670+00:00",
        "metric_name": "requests",
        "unit": "req",
    },
    "metric_updates": {
        "updates": [
            {"timestamp": "2026-11-28T23:28:46.049670+00:00", "values": [[1, 5240, 22.07], [2, 5241, 0.42]]},
            {"timestamp": "2026-11-28T23:28:47.050112+00:00", "values": [[1, 5250, 23.5], [2, 5251, 0.4]]},
        ]
    },
    "alert": ALERT_EXAMPLE,
    "alerts": {
        "rules": [
            {
                "rule_id": 3,
                "metric_id": 1,
                "metric_name": "requests",
                "condition": "above",
                "threshold": 90.0,
                "for_seconds": 60,
                "state": "firing",
                "event_id": 17,
                "since": "2026-11-28T23:28:46.049670+00:00",
                "value": 97.5,
            }
        ],
        "events": [ALERT_EXAMPLE],
    },
    "preferences": {
        "dashboard_id": 1,
        "hidden_metric_ids": [4],
        "card_order": [2, 1],
        "default_range": "1h",
        "chart_style": "area",
        "theme": "dark",
    },
    "pong": {"t": 1767225600000},
    "complete": None,
    "error": {"message": "unknown action 'publish'", "errors": {"action": ["Must be one of: ..."]}},
}


def field_schema(field: fields.Field) -> dict[str, Any]:
    """The JSON Schema of one marshmallow field, with its validators."""
    schema: dict[str, Any]
    if isinstance(field, fields.Nested):
        nested = field.schema
        schema = object_schema(nested)
    elif isinstance(field, fields.List):
        schema = {"type": "array", "items": field_schema(field.inner)}
    elif isinstance(field, fields.Tuple):
        # Draft 7's tuple form (the AsyncAPI schema format builds on draft 7).
        items = [field_schema(inner) for inner in field.tuple_fields]
        schema = {"type": "array", "items": items, "additionalItems": False, "minItems": len(items)}
    elif isinstance(field, fields.Integer):
        schema = {"type": "integer"}
    elif isinstance(field, fields.Float | fields.Number):
        schema = {"type": "number"}
    elif isinstance(field, fields.Boolean):
        schema = {"type": "boolean"}
    elif isinstance(field, fields.String):
        schema = {"type": "string"}
    elif isinstance(field, fields.Dict):
        schema = {"type": "object"}
    else:
        schema = {}  # fields.Raw: any JSON
    for validator in field.validators:
        if isinstance(validator, validate.Range):
            schema.update(minimum=validator.min, maximum=validator.max)
        elif isinstance(validator, validate.Length):
            key = "Items" if schema.get("type") == "array" else "Length"
            schema.update({f"min{key}": validator.min, f"max{key}": validator.max})
        elif isinstance(validator, validate.OneOf):
            schema["enum"] = list(validator.choices)
    if "description" in field.metadata:
        schema["description"] = field.metadata["description"]
    if field.allow_none and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


def object_schema(schema: Schema) -> dict[str, Any]:
    """The JSON Schema of a marshmallow schema: unknown keys are refused, as on load."""
    result: dict[str, Any] = {
        "type": "object",
        # On the wire a field has its data_key (`from`, `to`: Python keywords) if it has one.
        "properties": {field.data_key or name: field_schema(field) for name, field in schema.fields.items()},
        "additionalProperties": False,
    }
    required = [field.data_key or name for name, field in schema.fields.items() if field.required]
    if required:
        result["required"] = required
    if schema.__doc__:
        result["description"] = schema.__doc__.strip()
    return result


def _payload_schema(action: str) -> dict[str, Any] | None:
    schema = PAYLOAD_SCHEMAS.get(action) if action in CLIENT_ACTIONS else SERVER_PAYLOAD_SCHEMAS.get(action)
    if schema is not None and action in BARE_LIST_FIELDS:
        field = BARE_LIST_FIELDS[action]
        bare = {**field_schema(schema.fields[field]), "description": f"the {field} alone, a bare list"}
        return {"oneOf": [object_schema(schema), bare]}
    if schema is not None:
        return object_schema(schema)
    if action == "complete":
        return None
    return {"description": "any JSON, or none"}  # ping and its pong


def message(action: str) -> dict[str, Any]:
    """An AsyncAPI message: the envelope with this action and its payload schema."""
    envelope: dict[str, Any] = {
        "type": "object",
        "properties": {"action": {"const": action}},
        "required": ["action"],
        "additionalProperties": False,
    }
    payload = _payload_schema(action)
    if payload is not None:
        envelope["properties"]["payload"] = payload
        if payload.get("type") == "object" or "oneOf" in payload:  # ping's and pong's may be left out
            envelope["required"].append("payload")
    examples = [_example(action, EXAMPLES[action])]
    examples += [_example(action, payload, name) for name, payload in MORE_EXAMPLES.get(action, {}).items()]
    return {
        "name": action,
        "title": action,
        "summary": SUMMARIES[action],
        "contentType": "application/json",
        "payload": envelope,
        "examples": examples,
    }


def _example(action: str, payload: Any, name: str | None = None) -> dict[str, Any]:
    example: dict[str, Any] = {"action": action}
    if payload is not None:
        example["payload"] = payload
    return {"name": name or action, "payload": example}


def asyncapi_document() -> dict[str, Any]:
    """The whole protocol; served at /asyncapi.json and shown in the playground."""
    client = {action: message(action) for action in CLIENT_ACTIONS}
    server = {action: message(action) for action in SERVER_ACTIONS}
    channel_messages = {**client, **server}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Live dashboards WebSocket",
            "version": "1.1.0",
            "description": (
                "One socket per open dashboard. Every frame is a JSON text message "
                '{"action": ..., "payload": ...}. docs/protocol.md explains the sequence, '
                "close codes and recovery. Histories, resume and live values all follow one "
                "order, the stored value's id. Ranges for history: " + ", ".join(RANGES) + ", or any "
                "from/to (ISO 8601 with an offset, or epoch milliseconds; docs/protocol.md, Ranges)."
            ),
        },
        "defaultContentType": "application/json",
        "channels": {
            "dashboard": {
                "address": "/ws/dashboard/{dashboardId}/",
                "title": "A dashboard's socket",
                "description": (
                    "Authenticated by the session cookie. Add ?subscribe=none to skip the "
                    "history sent on connect (then send resume or history), and ?updates=batch "
                    "to get live values as metric_updates messages instead of metric_update."
                ),
                "parameters": {"dashboardId": {"description": "The dashboard's id (digits)."}},
                "messages": channel_messages,
            }
        },
        "operations": {
            **{
                f"receive_{action}": {
                    "action": "receive",
                    "channel": {"$ref": "#/channels/dashboard"},
                    "summary": SUMMARIES[action],
                    "messages": [{"$ref": f"#/channels/dashboard/messages/{action}"}],
                }
                for action in client
            },
            **{
                f"send_{action}": {
                    "action": "send",
                    "channel": {"$ref": "#/channels/dashboard"},
                    "summary": SUMMARIES[action],
                    "messages": [{"$ref": f"#/channels/dashboard/messages/{action}"}],
                }
                for action in server
            },
        },
    }

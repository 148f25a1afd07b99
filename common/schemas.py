"""The WebSocket protocol's messages: schemas for what clients send, and the
encoder for what the server sends. docs/protocol.md describes them for people.

Every message is a JSON object `{"action": ..., "payload": ...}`.
"""

from __future__ import annotations

import json
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

# What a client may send. Anything else is answered with an `error`.
CLIENT_ACTIONS = ("subscribe", "unsubscribe", "ping")
# What the server sends.
SERVER_ACTIONS = (
    "authentication",
    "dashboard_config",
    "metric_history",
    "metric_update",
    "pong",
    "complete",
    "error",
)
# Bounds on a subscribe/unsubscribe request; a dashboard has far fewer metrics.
MAX_IDS_PER_MESSAGE = 500
MAX_ID = 2**63 - 1  # PostgreSQL bigint


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

    metric_ids = fields.List(
        StrictInteger(validate=validate.Range(min=1, max=MAX_ID)),
        required=True,
        validate=validate.Length(min=1, max=MAX_IDS_PER_MESSAGE),
    )


class PingSchema(Schema):
    """Payload of `ping`: anything, or nothing; it is echoed in the `pong`."""


PAYLOAD_SCHEMAS: dict[str, Schema] = {
    "subscribe": MetricIdsSchema(),
    "unsubscribe": MetricIdsSchema(),
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
        # NaN and Infinity are not JSON: refused rather than echoed in a pong
        # that strict parsers (browsers' JSON.parse) cannot read.
        data = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # RecursionError: nesting too deep to parse
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
    if not isinstance(payload, dict):
        raise ProtocolError(f"payload of {action!r} must be an object", {"payload": ["Not a valid object."]})
    try:
        return action, schema.load(payload)
    except ValidationError as exc:
        raise ProtocolError(f"invalid payload for {action!r}", {"payload": exc.messages_dict}) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def encode_message(action: str, payload: Any = None) -> str:
    """A server message as the text of a WebSocket frame."""
    message: dict[str, Any] = {"action": action}
    if payload is not None:
        message["payload"] = payload
    return json.dumps(message, separators=(",", ":"))


def error_message(error: ProtocolError) -> str:
    return encode_message("error", {"message": error.message, "errors": error.errors})

"""The AsyncAPI document as the /asyncapi/ page shows it: servers, security,
each operation with its message, and every schema as a table of fields.

Read from the document itself (not from the marshmallow schemas), so the page
shows exactly what /asyncapi.json says; the template only lays it out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SCHEMA_PREFIX = "#/components/schemas/"


@dataclass(frozen=True)
class TypePart:
    """A piece of a field's type: plain text, or a schema's name linking to its table."""

    text: str
    schema: str | None = None


@dataclass(frozen=True)
class FieldRow:
    name: str
    type: list[TypePart]
    required: bool
    description: str
    limits: list[str]


@dataclass(frozen=True)
class SchemaTable:
    name: str
    description: str
    type: list[TypePart]  # of a schema that is not an object (a list, or any JSON)
    rows: list[FieldRow]
    limits: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MessageView:
    action: str
    operation: str
    summary: str
    payload: list[TypePart]  # empty: the message has no payload
    payload_required: bool
    examples: list[tuple[str, str]]  # (name, JSON)

    @property
    def payload_schemas(self) -> list[str]:
        """The schemas the payload names itself, shown with the message."""
        return [part.schema for part in self.payload if part.schema]


@dataclass(frozen=True)
class ProtocolView:
    title: str
    version: str
    description: str
    servers: list[dict[str, Any]]
    security: list[dict[str, Any]]
    channel: dict[str, Any]
    client_messages: list[MessageView]
    server_messages: list[MessageView]
    schemas: list[SchemaTable]

    def schema(self, name: str) -> SchemaTable:
        return next(table for table in self.schemas if table.name == name)


def protocol_view(document: dict[str, Any]) -> ProtocolView:
    """What /asyncapi/ shows of the document."""
    components = document["components"]
    channel = document["channels"]["dashboard"]
    servers = [
        {
            "name": name,
            "url": f"{server['protocol']}://{server['host']}{channel['address']}",
            "protocol": server["protocol"],
            "description": server.get("description", ""),
            "security": [_ref_name(item) for item in server.get("security", [])],
        }
        for name, server in document["servers"].items()
    ]
    security = [{**scheme, "id": name} for name, scheme in components["securitySchemes"].items()]
    parameters = {
        name: _resolve(document, parameter).get("description", "")
        for name, parameter in channel.get("parameters", {}).items()
    }
    messages: dict[str, list[MessageView]] = {"receive": [], "send": []}
    for operation_id, operation in document["operations"].items():
        for reference in operation["messages"]:
            message = _resolve(document, reference)
            messages[operation["action"]].append(_message_view(operation_id, message))
    return ProtocolView(
        title=document["info"]["title"],
        version=document["info"]["version"],
        description=document["info"].get("description", ""),
        servers=servers,
        security=security,
        channel={
            "address": channel["address"],
            "description": channel.get("description", ""),
            "parameters": parameters,
        },
        client_messages=messages["receive"],
        server_messages=messages["send"],
        schemas=[_schema_table(name, schema) for name, schema in components["schemas"].items()],
    )


def _message_view(operation_id: str, message: dict[str, Any]) -> MessageView:
    envelope = message["payload"]
    payload = envelope["properties"].get("payload")
    return MessageView(
        action=message["name"],
        operation=operation_id,
        summary=message.get("summary", ""),
        payload=type_parts(payload) if payload is not None else [],
        payload_required="payload" in envelope.get("required", []),
        examples=[
            (example.get("name", ""), json.dumps(example["payload"], indent=2))
            for example in message.get("examples", [])
        ],
    )


def _schema_table(name: str, schema: dict[str, Any]) -> SchemaTable:
    required = set(schema.get("required", []))
    rows = [
        FieldRow(
            name=field_name,
            type=type_parts(field_schema),
            required=field_name in required,
            description=_description(field_schema),
            limits=limits(field_schema),
        )
        for field_name, field_schema in schema.get("properties", {}).items()
    ]
    is_object = schema.get("type") == "object"
    return SchemaTable(
        name=name,
        description=schema.get("description", ""),
        type=[] if is_object else type_parts(schema),
        rows=rows,
        limits=[] if is_object else limits(schema),
    )


def type_parts(schema: dict[str, Any]) -> list[TypePart]:
    """A schema's type in words, nested schemas by name: "array of Position"."""
    if "$ref" in schema:
        return [TypePart(_ref_name(schema), schema=_ref_name(schema))]
    for combinator, word in (("oneOf", " or "), ("anyOf", " or "), ("allOf", " and ")):
        if combinator in schema:
            parts: list[TypePart] = []
            for index, option in enumerate(schema[combinator]):
                if index:
                    parts.append(TypePart(word))
                parts.extend(type_parts(option))
            return parts
    if "const" in schema:
        return [TypePart(json.dumps(schema["const"]))]
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    if "array" in kinds:
        items = schema.get("items", {})
        if isinstance(items, list):  # a tuple
            inner = [part for index, item in enumerate(items) for part in _joined(index, type_parts(item))]
            parts = [TypePart("["), *inner, TypePart("]")]
        else:
            parts = [TypePart("array of "), *type_parts(items)]
        others = [k for k in kinds if k != "array"]
        return [*parts, TypePart(" or " + " or ".join(others))] if others else parts
    if kinds:
        return [TypePart(" or ".join(kinds))]
    return [TypePart("any JSON")]


def _joined(index: int, parts: list[TypePart]) -> list[TypePart]:
    return [TypePart(", "), *parts] if index else parts


def limits(schema: dict[str, Any]) -> list[str]:
    """The schema's bounds in words: "1 to 500 items", "one of: 5m, 1h"."""
    words = []
    for low, high, unit in (
        ("minimum", "maximum", ""),
        ("minLength", "maxLength", " characters"),
        ("minItems", "maxItems", " items"),
    ):
        if low in schema and high in schema:
            words.append(f"{schema[low]} to {schema[high]}{unit}")
        elif low in schema:
            words.append(f"at least {schema[low]}{unit}")
        elif high in schema:
            words.append(f"at most {schema[high]}{unit}")
    if "enum" in schema:
        words.append("one of: " + ", ".join(json.dumps(choice) for choice in schema["enum"]))
    items = schema.get("items")
    if isinstance(items, dict) and "$ref" not in items:
        words.extend(f"each {word}" for word in limits(items))
    return words


def _description(schema: dict[str, Any]) -> str:
    if "description" in schema:
        return schema["description"]
    items = schema.get("items")
    return items.get("description", "") if isinstance(items, dict) else ""


def _ref_name(reference: dict[str, Any]) -> str:
    return reference["$ref"].rsplit("/", 1)[1]


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref`s (JSON pointers within the document) to what they name."""
    while "$ref" in node:
        target: Any = document
        for key in node["$ref"].removeprefix("#/").split("/"):
            target = target[key.replace("~1", "/").replace("~0", "~")]
        node = target
    return node

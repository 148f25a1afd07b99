"""The published AsyncAPI document matches what the server handles and sends,
and is valid against the official AsyncAPI 3.0 JSON Schema."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from redis.asyncio import Redis

from common import db
from common.ingest import store_and_publish
from common.schemas import CLIENT_ACTIONS, SERVER_ACTIONS, SERVER_PAYLOAD_SCHEMAS, parse_client_message
from server.app import create_app
from server.asyncapi import asyncapi_document
from server.auth import SESSION_COOKIE
from server.live.endpoint import HANDLERS
from tests.asyncapispec import official_schema
from tests.helpers import csrf_from
from tests.servers import servers
from tests.wsclient import connect, publish, read_connect_sequence, receive_until


@pytest.fixture(scope="session")
def asyncapi_schema(request, tmp_path_factory) -> dict[str, Any]:
    """Kept in the pytest cache between runs (fetched again without one)."""
    cache = getattr(request.config, "cache", None)
    directory = cache.mkdir("asyncapi-specs") if cache is not None else tmp_path_factory.mktemp("specs")
    return official_schema(directory)


def _document(host: str = "127.0.0.1:8080", scheme: str = "http") -> dict[str, Any]:
    """As served: through JSON."""
    return json.loads(json.dumps(asyncapi_document(host, scheme)))


def _resolve(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        assert node["$ref"].startswith("#/"), node
        target: Any = doc
        for key in node["$ref"][2:].split("/"):
            target = target[key]
        node = target
    return node


def _messages(doc: dict[str, Any]) -> dict[str, Any]:
    return {name: _resolve(doc, ref) for name, ref in doc["channels"]["dashboard"]["messages"].items()}


def _payload(doc: dict[str, Any], action: str) -> Any:
    return _resolve(doc, _messages(doc)[action]["payload"]["properties"]["payload"])


def _operations(doc: dict, kind: str) -> set[str]:
    return {
        op["messages"][0]["$ref"].rsplit("/", 1)[1]
        for op in doc["operations"].values()
        if op["action"] == kind
    }


async def test_served_at_a_stable_url_without_login(client):
    response = await client.get("/asyncapi.json")
    assert response.status == 200
    doc = await response.json()
    host = f"127.0.0.1:{client.port}"
    assert doc == _document(host, "http")
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["dashboard"]["address"] == "/ws/dashboard/{dashboardId}/"
    # The server is the one asked: its host and port, ws for http.
    assert doc["servers"] == {"site": {**doc["servers"]["site"], "host": host, "protocol": "ws"}}


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_document_is_valid_against_the_official_asyncapi_3_schema(asyncapi_schema, scheme):
    jsonschema.Draft7Validator.check_schema(asyncapi_schema)
    errors = list(jsonschema.Draft7Validator(asyncapi_schema).iter_errors(_document(scheme=scheme)))
    assert errors == [], [f"{error.json_path}: {error.message[:300]}" for error in errors]


@pytest.mark.parametrize(
    "path, bad",
    [
        (["components", "securitySchemes", "session", "in"], "body"),
        (["servers", "site", "protocol"], 80),
        (["operations", "receive_ping", "action"], "publish"),
        (["components", "messages", "ping", "payload", "type"], "objekt"),
    ],
)
def test_the_official_schema_refuses_a_broken_document(asyncapi_schema, path, bad):
    """The validator reaches every part (its $refs resolve): breaking one is caught."""
    doc = _document()
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    assert list(jsonschema.Draft7Validator(asyncapi_schema).iter_errors(doc)) != []


def test_every_reference_names_a_part_of_the_document_and_every_component_is_used():
    doc = _document()
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    for ref in refs:
        assert _resolve(doc, {"$ref": ref}) is not None
    components = doc["components"]
    for kind in ("schemas", "messages", "parameters", "securitySchemes"):
        for name in components[kind]:
            assert f"#/components/{kind}/{name}" in refs, f"{kind}/{name} is never referred to"
    # Messages and nested objects are referred to, never copied inline.
    channel = doc["channels"]["dashboard"]
    assert all(set(message) == {"$ref"} for message in channel["messages"].values())
    for schema in components["schemas"].values():
        for field in schema.get("properties", {}).values():
            items = field.get("items", {})
            assert "properties" not in field and "properties" not in items, schema


def test_the_session_cookie_is_the_security_scheme_of_the_server():
    doc = _document()
    (requirement,) = doc["servers"]["site"]["security"]
    scheme = _resolve(doc, requirement)
    assert scheme["type"] == "httpApiKey"
    assert (scheme["in"], scheme["name"]) == ("cookie", SESSION_COOKIE)
    assert doc["channels"]["dashboard"]["servers"] == [{"$ref": "#/servers/site"}]


async def test_logging_in_sets_the_cookie_the_document_names(client, make_user):
    await make_user("alice")
    token = await csrf_from(client)
    response = await client.post(
        "/login",
        data={"username": "alice", "password": "secret-pw", "csrf_token": token},
        allow_redirects=False,
    )
    assert response.status == 302
    doc = await (await client.get("/asyncapi.json")).json()
    name = doc["components"]["securitySchemes"]["session"]["name"]
    assert response.cookies[name].value


async def test_servers_behind_a_trusted_proxy_are_the_forwarded_host_and_scheme(aiohttp_client, settings):
    client = await aiohttp_client(create_app(replace(settings, trusted_proxies=("127.0.0.1/32",))))
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "dash.example.org"}
    doc = await (await client.get("/asyncapi.json", headers=forwarded)).json()
    assert (doc["servers"]["site"]["host"], doc["servers"]["site"]["protocol"]) == ("dash.example.org", "wss")
    standard = {"Forwarded": "for=203.0.113.7;proto=https;host=dash.example.org:8443"}
    doc = await (await client.get("/asyncapi.json", headers=standard)).json()
    assert (doc["servers"]["site"]["host"], doc["servers"]["site"]["protocol"]) == (
        "dash.example.org:8443",
        "wss",
    )


async def test_forwarded_headers_from_anyone_else_are_not_believed(client):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    doc = await (await client.get("/asyncapi.json", headers=forwarded)).json()
    assert doc["servers"]["site"]["host"] == f"127.0.0.1:{client.port}"
    assert doc["servers"]["site"]["protocol"] == "ws"


async def test_a_host_header_that_is_no_host_is_not_copied_into_the_document(client, asyncapi_schema):
    response = await client.get("/asyncapi.json", headers={"Host": "a{b}<c>"})
    assert response.status == 200
    doc = await response.json()
    server = doc["servers"]["site"]
    assert server["host"] == "{host}"
    assert set(server["variables"]) == {"host"}
    assert list(jsonschema.Draft7Validator(asyncapi_schema).iter_errors(doc)) == []


def test_every_action_the_server_handles_is_documented():
    doc = _document()
    assert set(HANDLERS) == set(CLIENT_ACTIONS)
    assert _operations(doc, "receive") == set(HANDLERS)
    assert _operations(doc, "send") == set(SERVER_ACTIONS)
    assert set(doc["channels"]["dashboard"]["messages"]) == set(HANDLERS) | set(SERVER_ACTIONS)


def test_payload_schemas_come_from_the_marshmallow_schemas():
    doc = _document()
    resume = _payload(doc, "resume")
    position = _resolve(doc, resume["properties"]["positions"]["items"])
    assert position["required"] == ["metric_id", "after_id"]
    assert position["properties"]["after_id"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    history = _payload(doc, "history")
    assert history["properties"]["range"]["enum"] == ["5m", "1h", "24h", "7d"]
    assert _resolve(doc, history["properties"]["metric_ids"])["maxItems"] == 500


@pytest.mark.parametrize("action", ["subscribe", "unsubscribe"])
def test_ids_may_be_an_object_or_the_bare_list_with_the_same_rules(action):
    doc = _document()
    message = _messages(doc)[action]
    assert "payload" in message["payload"]["required"]
    as_object, bare = _payload(doc, action)["oneOf"]
    assert _resolve(doc, as_object)["required"] == ["metric_ids"]
    # One schema of the ids, for both forms.
    assert (
        bare
        == _resolve(doc, as_object)["properties"]["metric_ids"]
        == {"$ref": "#/components/schemas/MetricIdList"}
    )
    ids = {key: value for key, value in _resolve(doc, bare).items() if key != "description"}
    assert ids == {
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "minItems": 1,
        "maxItems": 500,
    }
    assert [type(example["payload"]["payload"]) for example in message["examples"]] == [dict, list]


@pytest.mark.parametrize("action", CLIENT_ACTIONS + SERVER_ACTIONS)
def test_every_example_matches_its_message_schema_in_the_document(action):
    doc = _document()
    message = _messages(doc)[action]
    # The envelope's $refs point into the document's components: validate within it.
    validator = jsonschema.Draft7Validator({**message["payload"], "components": doc["components"]})
    for example in message["examples"]:
        assert list(validator.iter_errors(example["payload"])) == [], example
    broken = copy.deepcopy(message["examples"][0]["payload"])
    broken["unexpected"] = True
    assert list(validator.iter_errors(broken)) != []


@pytest.mark.parametrize("action", CLIENT_ACTIONS)
def test_client_examples_are_accepted_by_the_server(action):
    for example in _messages(_document())[action]["examples"]:
        assert parse_client_message(json.dumps(example["payload"]))[0] == action


@pytest.mark.parametrize("action", [a for a in SERVER_ACTIONS if SERVER_PAYLOAD_SCHEMAS[a] is not None])
def test_server_examples_match_their_schemas(action):
    (example,) = _messages(_document())[action]["examples"]
    assert SERVER_PAYLOAD_SCHEMAS[action].validate(example["payload"]["payload"]) == {}


async def test_real_server_messages_match_the_documented_schemas(client, setup, pool):
    cpu = setup["cpu"]
    await publish(pool, cpu, 1.0)
    ws = await connect(client, setup["ops"].id)
    seen = await read_connect_sequence(ws, 2)
    # Through the ingest path, so that the rule fires and an `alert` is sent too.
    await db.create_alert_rule(pool, cpu.id, "above", 1.5)
    redis_client = Redis.from_url(servers().redis_url)
    try:
        (stored,) = await store_and_publish(
            pool, redis_client, servers().channels, {cpu.id: cpu}, [(cpu.id, 2.0, datetime.now(UTC))]
        )
    finally:
        await redis_client.aclose()
    seen.extend(await receive_until(ws, "alert"))
    # The user's own preferences, changed on another page of theirs.
    token = await csrf_from(client, "/dashboards/")
    changed = await client.patch(
        f"/dashboards/{setup['ops'].id}/preferences",
        json={"chart_style": "area"},
        headers={"X-CSRF-Token": token},
    )
    assert changed.status == 200, await changed.text()
    seen.extend(await receive_until(ws, "preferences"))
    requests = [
        {"action": "history", "payload": {"metric_ids": [cpu.id], "range": "1h"}},
        {"action": "history", "payload": {"metric_ids": [cpu.id], "range": "5m"}},
        {"action": "unsubscribe", "payload": {"metric_ids": [cpu.id]}},
        {"action": "resume", "payload": {"positions": [{"metric_id": cpu.id, "after_id": stored.id}]}},
        {"action": "ping", "payload": {"t": 1}},
        {"action": "bogus"},
    ]
    for request in requests:
        await ws.send_json(request)
        seen.extend(await receive_until(ws, "complete"))
    # Live values in the batched form, on a socket that asked for it.
    batched = await client.ws_connect(f"/ws/dashboard/{setup['ops'].id}/?updates=batch&subscribe=none")
    await receive_until(batched, "alerts")
    await batched.send_json({"action": "subscribe", "payload": {"metric_ids": [cpu.id]}})
    await receive_until(batched, "complete")
    await publish(pool, cpu, 3.0)
    seen.extend(await receive_until(batched, "metric_updates"))
    actions = {message["action"] for message in seen}
    assert actions == set(SERVER_ACTIONS)
    doc = _document()
    for message in seen:
        schema = SERVER_PAYLOAD_SCHEMAS[message["action"]]
        if schema is not None:
            assert schema.validate(message["payload"]) == {}, message
        # And the document's own JSON Schema of that message says the same.
        documented = _messages(doc)[message["action"]]["payload"]
        validator = jsonschema.Draft7Validator({**documented, "components": doc["components"]})
        assert list(validator.iter_errors(message)) == [], message

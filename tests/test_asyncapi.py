"""The published AsyncAPI document matches what the server handles and sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from common import db
from common.ingest import store_and_publish
from common.schemas import CLIENT_ACTIONS, SERVER_ACTIONS, SERVER_PAYLOAD_SCHEMAS, parse_client_message
from server.asyncapi import asyncapi_document
from server.live.endpoint import HANDLERS
from tests.helpers import csrf_from
from tests.servers import servers
from tests.wsclient import connect, publish, read_connect_sequence, receive_until


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
    assert doc == json.loads(json.dumps(asyncapi_document()))
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["dashboard"]["address"] == "/ws/dashboard/{dashboardId}/"


def test_every_action_the_server_handles_is_documented():
    doc = asyncapi_document()
    assert set(HANDLERS) == set(CLIENT_ACTIONS)
    assert _operations(doc, "receive") == set(HANDLERS)
    assert _operations(doc, "send") == set(SERVER_ACTIONS)
    assert set(doc["channels"]["dashboard"]["messages"]) == set(HANDLERS) | set(SERVER_ACTIONS)


def test_payload_schemas_come_from_the_marshmallow_schemas():
    messages = asyncapi_document()["channels"]["dashboard"]["messages"]
    resume = messages["resume"]["payload"]["properties"]["payload"]
    position = resume["properties"]["positions"]["items"]
    assert position["required"] == ["metric_id", "after_id"]
    assert position["properties"]["after_id"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    history = messages["history"]["payload"]["properties"]["payload"]
    assert history["properties"]["range"]["enum"] == ["5m", "1h", "24h", "7d"]
    assert history["properties"]["metric_ids"]["maxItems"] == 500


@pytest.mark.parametrize("action", ["subscribe", "unsubscribe"])
def test_ids_may_be_an_object_or_the_bare_list_with_the_same_rules(action):
    message = asyncapi_document()["channels"]["dashboard"]["messages"][action]
    assert "payload" in message["payload"]["required"]
    as_object, bare = message["payload"]["properties"]["payload"]["oneOf"]
    assert as_object["required"] == ["metric_ids"]
    ids = {key: value for key, value in bare.items() if key != "description"}
    assert ids == as_object["properties"]["metric_ids"]
    assert ids == {
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "minItems": 1,
        "maxItems": 500,
    }
    assert [type(example["payload"]["payload"]) for example in message["examples"]] == [dict, list]


@pytest.mark.parametrize("action", CLIENT_ACTIONS)
def test_client_examples_are_accepted_by_the_server(action):
    examples = asyncapi_document()["channels"]["dashboard"]["messages"][action]["examples"]
    for example in examples:
        assert parse_client_message(json.dumps(example["payload"]))[0] == action


@pytest.mark.parametrize("action", [a for a in SERVER_ACTIONS if SERVER_PAYLOAD_SCHEMAS[a] is not None])
def test_server_examples_match_their_schemas(action):
    (example,) = asyncapi_document()["channels"]["dashboard"]["messages"][action]["examples"]
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
    for message in seen:
        schema = SERVER_PAYLOAD_SCHEMAS[message["action"]]
        if schema is not None:
            assert schema.validate(message["payload"]) == {}, message

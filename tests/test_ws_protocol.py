"""The dashboard WebSocket protocol, point by point (docs/protocol.md)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import WSMsgType, WSServerHandshakeError

from common import db
from common.schemas import ProtocolError, parse_client_message
from server.app import create_app
from server.live.closecodes import CloseCode
from tests.helpers import log_in
from tests.wsclient import (
    connect,
    expect_only_barrier,
    publish,
    read_connect_sequence,
    receive,
    receive_until,
)

# 1. authentication ------------------------------------------------------------


async def test_no_session_gets_401_then_close_4401(new_client, setup):
    anonymous = await new_client()
    ws = await connect(anonymous, setup["ops"].id)
    first = await receive(ws)
    assert first == {
        "action": "authentication",
        "payload": {"status_code": 401, "status_text": "Authentication required", "data": None},
    }
    closing = await ws.receive()
    assert closing.type == WSMsgType.CLOSE
    assert ws.close_code == CloseCode.UNAUTHENTICATED


async def test_non_member_gets_403_same_as_for_missing_dashboard(client, setup):
    answers = []
    for dashboard_id in (setup["other"].id, 987654, 2**63 - 1, 2**70):
        ws = await connect(client, dashboard_id)
        answers.append((await receive(ws), (await ws.receive()).type, ws.close_code))
    expected = (
        {
            "action": "authentication",
            "payload": {"status_code": 403, "status_text": "Forbidden", "data": None},
        },
        WSMsgType.CLOSE,
        CloseCode.FORBIDDEN,
    )
    assert answers == [expected] * 4


async def test_member_is_authenticated(client, setup):
    ws = await connect(client, setup["ops"].id)
    assert await receive(ws) == {
        "action": "authentication",
        "payload": {
            "status_code": 200,
            "status_text": "OK",
            "data": {"user": "alice", "dashboard_id": setup["ops"].id},
        },
    }


# 2. and 3. config and history -------------------------------------------------


async def test_config_then_history_per_metric(client, setup, pool):
    cpu = setup["cpu"]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    await db.insert_values(pool, [(cpu.id, float(i), start + timedelta(seconds=i)) for i in range(150)])
    ws = await connect(client, setup["ops"].id)
    _, config, *histories, alerts = await read_connect_sequence(ws, 2)
    assert config == {
        "action": "dashboard_config",
        "payload": {
            "id": setup["ops"].id,
            "name": "Ops",
            "description": "about ops",
            "metrics": [
                {
                    "id": cpu.id,
                    "name": "cpu",
                    "description": "cpu description",
                    "type": "gauge",
                    "unit": "%",
                    "source": "push",
                },
                {
                    "id": setup["requests"].id,
                    "name": "requests",
                    "description": "requests description",
                    "type": "counter",
                    "unit": "req",
                    "source": "push",
                },
            ],
            "retention_days": None,
        },
    }
    by_metric = {h["payload"]["metric_id"]: h["payload"] for h in histories}
    assert all(h["action"] == "metric_history" for h in histories)
    cpu_history = by_metric[cpu.id]
    assert (cpu_history["metric_name"], cpu_history["unit"]) == ("cpu", "%")
    # The latest 100 of 150, oldest first.
    assert [v["value"] for v in cpu_history["values"]] == [float(i) for i in range(50, 150)]
    first = datetime.fromisoformat(cpu_history["values"][0]["timestamp"])
    assert first == start + timedelta(seconds=50)
    assert first.tzinfo is not None
    assert by_metric[setup["requests"].id]["values"] == []
    # Last, the dashboard's alert rules and events: none here.
    assert alerts == {"action": "alerts", "payload": {"rules": [], "events": []}}


# 4. live updates ----------------------------------------------------------------


async def test_new_values_arrive_as_metric_updates(client, setup, pool):
    ws = await connect(client, setup["ops"].id)
    await read_connect_sequence(ws, 2)
    stored = await publish(pool, setup["cpu"], 42.5)
    update = await receive(ws)
    assert update == {
        "action": "metric_update",
        "payload": {
            "metric_id": setup["cpu"].id,
            "value": 42.5,
            "timestamp": stored.ts.isoformat(),
            "metric_name": "cpu",
            "unit": "%",
            "id": stored.id,
        },
    }


async def test_updates_of_other_dashboards_never_arrive(client, setup, pool):
    ws = await connect(client, setup["ops"].id)
    await read_connect_sequence(ws, 2)
    await publish(pool, setup["secret"], 1.0)
    await publish(pool, setup["cpu"], 2.0)
    update = await receive(ws)
    assert update["payload"]["metric_id"] == setup["cpu"].id
    await expect_only_barrier(pool, setup["cpu"], ws)


async def test_every_connection_of_a_dashboard_gets_each_update(new_client, client, setup, pool):
    second = await new_client()
    await log_in(second, "alice")
    sockets = [await connect(client, setup["ops"].id), await connect(second, setup["ops"].id)]
    for ws in sockets:
        await read_connect_sequence(ws, 2)
    await publish(pool, setup["requests"], 7.0)
    for ws in sockets:
        assert (await receive(ws))["payload"]["value"] == 7.0


# 5. subscribe, unsubscribe, ping --------------------------------------------------

# The two forms of a `subscribe` or `unsubscribe` payload: ours, and the bare list
# of ids the Chanx dashboard example's client sends. Both obey every rule.
ID_FORMS = {"object": lambda ids: {"metric_ids": ids}, "list": lambda ids: ids}
each_form = pytest.mark.parametrize("form", list(ID_FORMS))


@each_form
async def test_unsubscribe_stops_updates_and_subscribe_resumes_with_history(client, setup, pool, form):
    cpu, requests = setup["cpu"], setup["requests"]
    ids = ID_FORMS[form]
    ws = await connect(client, setup["ops"].id)
    await read_connect_sequence(ws, 2)
    await ws.send_json({"action": "unsubscribe", "payload": ids([cpu.id])})
    assert await receive(ws) == {"action": "complete"}
    await publish(pool, cpu, 1.0)
    await publish(pool, requests, 2.0)
    update = await receive(ws)
    assert update["payload"]["metric_id"] == requests.id
    await expect_only_barrier(pool, requests, ws)

    await ws.send_json({"action": "subscribe", "payload": ids([cpu.id])})
    history, complete = await receive(ws), await receive(ws)
    assert history["action"] == "metric_history"
    assert history["payload"]["metric_id"] == cpu.id
    assert [v["value"] for v in history["payload"]["values"]] == [1.0]
    assert complete == {"action": "complete"}
    await publish(pool, cpu, 3.0)
    assert (await receive(ws))["payload"] == {**(await _last_update_payload(pool, cpu)), "value": 3.0}


async def _last_update_payload(pool, metric):
    (latest,) = (await db.latest_values(pool, [metric.id], 1))[metric.id]
    return {
        "metric_id": metric.id,
        "value": latest.value,
        "timestamp": latest.ts.isoformat(),
        "metric_name": metric.name,
        "unit": metric.unit,
        "id": latest.id,
    }


@each_form
async def test_subscribing_again_sends_no_duplicate_history(client, setup, form):
    ws = await connect(client, setup["ops"].id)
    await read_connect_sequence(ws, 2)
    await ws.send_json({"action": "subscribe", "payload": ID_FORMS[form]([setup["cpu"].id, setup["cpu"].id])})
    assert await receive(ws) == {"action": "complete"}


@each_form
async def test_resubscribing_after_unsubscribe_sends_one_history_for_duplicated_ids(
    client, setup, pool, form
):
    cpu = setup["cpu"]
    ids = ID_FORMS[form]
    ws = await connect(client, setup["ops"].id)
    await read_connect_sequence(ws, 2)
    await ws.send_json({"action": "unsubscribe", "payload": ids([cpu.id, cpu.id])})
    assert await receive(ws) == {"action": "complete"}
    await ws.send_json({"action": "subscribe", "payload": ids([cpu.id, cpu.id])})
    answers = await receive_until(ws, "complete")
    assert [(m["action"], m.get("payload", {}).get("metric_id")) for m in answers] == [
        ("metric_history", cpu.id),
        ("complete", None),
    ]


@each_form
async def test_unsubscribing_what_is_not_subscribed_is_accepted(client, setup, pool, form):
    cpu, requests = setup["cpu"], setup["requests"]
    ids = ID_FORMS[form]
    ws = await connect(client, setup["ops"].id)
    await read_connect_sequence(ws, 2)
    for _ in range(2):
        await ws.send_json({"action": "unsubscribe", "payload": ids([cpu.id])})
        assert await receive(ws) == {"action": "complete"}
    await publish(pool, cpu, 1.0)
    await publish(pool, requests, 2.0)
    assert (await receive(ws))["payload"]["metric_id"] == requests.id
    await expect_only_barrier(pool, requests, ws)


@pytest.mark.parametrize("action", ["subscribe", "unsubscribe"])
@each_form
async def test_ids_of_another_dashboard_are_refused_not_added(client, setup, pool, form, action):
    cpu, secret = setup["cpu"], setup["secret"]
    ws = await connect(client, setup["ops"].id)
    await read_connect_sequence(ws, 2)
    await ws.send_json({"action": action, "payload": ID_FORMS[form]([cpu.id, secret.id])})
    error, complete = await receive(ws), await receive(ws)
    assert error == {
        "action": "error",
        "payload": {
            "message": f"metric ids not on this dashboard: {secret.id}",
            "errors": {"payload": {"metric_ids": {"not_on_dashboard": [secret.id]}}},
        },
    }
    assert complete == {"action": "complete"}
    # Nothing changed, cpu included: still subscribed to it, never to the other's.
    await publish(pool, secret, 5.0)
    await publish(pool, cpu, 6.0)
    assert (await receive(ws))["payload"]["metric_id"] == cpu.id
    await expect_only_barrier(pool, cpu, ws)


async def test_ping_is_answered_with_pong_then_complete(client, setup):
    ws = await connect(client, setup["ops"].id)
    await read_connect_sequence(ws, 2)
    await ws.send_json({"action": "ping", "payload": {"n": 1}})
    assert await receive(ws) == {"action": "pong", "payload": {"n": 1}}
    assert await receive(ws) == {"action": "complete"}
    await ws.send_json({"action": "ping"})
    assert await receive_until(ws, "complete") == [{"action": "pong"}, {"action": "complete"}]


# 6. bad input -------------------------------------------------------------------

BAD_INPUT = [
    ("not json", "{nope", "message is not valid JSON"),
    ("not an object", "[1, 2]", 'message must be a JSON object {"action": ..., "payload": ...}'),
    ("a string", '"ping"', 'message must be a JSON object {"action": ..., "payload": ...}'),
    ("no action", '{"payload": {}}', "invalid message"),
    ("unknown action", '{"action": "explode"}', "unknown action 'explode'"),
    ("action not a string", '{"action": 5}', "invalid message"),
    (
        "subscribe payload a number",
        '{"action": "subscribe", "payload": 1}',
        "payload of 'subscribe' must be an object or a list of metric ids",
    ),
    (
        "unsubscribe payload missing",
        '{"action": "unsubscribe"}',
        "payload of 'unsubscribe' must be an object or a list of metric ids",
    ),
    (
        "history payload a list",
        '{"action": "history", "payload": [1]}',
        "payload of 'history' must be an object",
    ),
    ("missing ids", '{"action": "subscribe", "payload": {}}', "invalid payload for 'subscribe'"),
    (
        "ids not a list",
        '{"action": "unsubscribe", "payload": {"metric_ids": 3}}',
        "invalid payload for 'unsubscribe'",
    ),
    (
        "extra payload key",
        '{"action": "subscribe", "payload": {"metric_ids": [1], "all": true}}',
        "invalid payload for 'subscribe'",
    ),
    (
        "ids in a nested list",
        '{"action": "subscribe", "payload": [[1]]}',
        "invalid payload for 'subscribe'",
    ),
    ("action null", '{"action": null}', "invalid message"),
    ("NaN", '{"action": "ping", "payload": NaN}', "message is not valid JSON"),
    ("nested too deep to parse", "[" * 30_000 + "]" * 30_000, "message is not valid JSON"),
    ("empty frame", "", "message is not valid JSON"),
]
# The rules for the ids of `subscribe` and `unsubscribe`, each broken in both
# forms of their payload: (case, ids as JSON, message).
BAD_IDS = [
    ("id a string", '["1"]', "invalid payload for {action!r}"),
    ("id a float", "[1.5]", "invalid payload for {action!r}"),
    ("id a boolean", "[true]", "invalid payload for {action!r}"),
    ("id null", "[null]", "invalid payload for {action!r}"),
    ("id negative", "[-1]", "invalid payload for {action!r}"),
    ("id huge", "[1e30]", "invalid payload for {action!r}"),
    ("no ids", "[]", "invalid payload for {action!r}"),
    ("too many ids", json.dumps(list(range(1, 502))), "invalid payload for {action!r}"),
    ("thousands of ids", json.dumps(list(range(1, 9001))), "invalid payload for {action!r}"),
    ("id zero", "[0]", "invalid payload for {action!r}"),
    ("id above bigint", "[9223372036854775808]", "invalid payload for {action!r}"),
    ("id with 5000 digits", "[" + "9" * 5000 + "]", "message is not valid JSON"),
    ("duplicate ids of another dashboard", "[987654, 987654]", "metric ids not on this dashboard: 987654"),
]
JSON_ID_FORMS = {"object": '{{"metric_ids": {}}}', "list": "{}"}
BAD_INPUT += [
    (
        f"{action} {form}: {case}",
        f'{{"action": "{action}", "payload": {JSON_ID_FORMS[form].format(ids)}}}',
        message.format(action=action),
    )
    for case, ids, message in BAD_IDS
    for action in ("subscribe", "unsubscribe")
    for form in JSON_ID_FORMS
]


@pytest.mark.parametrize(
    ("text", "message"), [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT]
)
async def test_bad_input_gets_an_error_and_the_connection_stays_usable(client, setup, pool, text, message):
    ws = await connect(client, setup["ops"].id)
    await read_connect_sequence(ws, 2)
    await ws.send_str(text)
    error = await receive(ws)
    assert error["action"] == "error"
    assert error["payload"]["message"] == message
    assert isinstance(error["payload"]["errors"], dict)
    assert await receive(ws) == {"action": "complete"}
    # Nothing changed: still subscribed to everything, still answering.
    await publish(pool, setup["cpu"], 9.0)
    assert (await receive(ws))["action"] == "metric_update"
    await ws.send_json({"action": "ping"})
    assert await receive_until(ws, "complete") == [{"action": "pong"}, {"action": "complete"}]


@pytest.mark.parametrize("action", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize(
    "ids", [ids for _, ids, _ in BAD_IDS] + ["[1, 2, 2]", "[9223372036854775807]"], ids=lambda ids: ids[:40]
)
def test_both_forms_get_the_same_answer(action, ids):
    """The bare list is the object form's `metric_ids`: same value, or same error."""
    answers = []
    for form in JSON_ID_FORMS.values():
        try:
            answers.append(parse_client_message(f'{{"action": "{action}", "payload": {form.format(ids)}}}'))
        except ProtocolError as exc:
            answers.append((exc.message, exc.errors))
    assert answers[0] == answers[1]


async def test_binary_frame_gets_an_error(client, setup):
    ws = await connect(client, setup["ops"].id)
    await read_connect_sequence(ws, 2)
    await ws.send_bytes(b'{"action": "ping"}')
    error = await receive(ws)
    assert error["payload"]["message"] == "binary frames are not supported; send JSON text"
    assert await receive(ws) == {"action": "complete"}


async def test_frame_over_the_size_limit_closes_with_1009(client, setup):
    ws = await connect(client, setup["ops"].id)
    await read_connect_sequence(ws, 2)
    await ws.send_str(json.dumps({"action": "ping", "payload": "x" * 70_000}))
    closing = await ws.receive()
    assert closing.type == WSMsgType.CLOSE
    assert ws.close_code == 1009


# Security at the upgrade ----------------------------------------------------------


async def test_cross_origin_upgrade_is_refused(client, setup):
    with pytest.raises(WSServerHandshakeError) as refused:
        await connect(client, setup["ops"].id, origin="https://evil.example")
    assert refused.value.status == 403


async def test_same_origin_upgrade_is_accepted(client, setup):
    ws = await connect(client, setup["ops"].id, origin=f"http://{client.host}:{client.port}")
    assert (await receive(ws))["payload"]["status_code"] == 200


async def test_allow_listed_origin_is_accepted(aiohttp_client, settings, make_user, make_dashboard):
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    proxied = await aiohttp_client(create_app(replace(settings, allowed_origins=("https://dash.example",))))
    await log_in(proxied, "alice")
    ws = await connect(proxied, ops.id, origin="https://dash.example")
    assert (await receive(ws))["payload"]["status_code"] == 200
    with pytest.raises(WSServerHandshakeError):
        await connect(proxied, ops.id, origin="https://other.example")

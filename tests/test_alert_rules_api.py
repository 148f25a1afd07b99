"""Alert rules from the page (server/alerts_api.py) and the `alerts` message:
editors add and remove rules, which behave as the CLI's; every socket gets the
dashboard's alert state when it connects (what fired or resolved while no one
watched included) and again after each change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common import db
from common.schemas import SERVER_PAYLOAD_SCHEMAS
from server.live.alertstate import RECENT_EVENTS
from tests.helpers import api_token, as_user, post, run_cli
from tests.wsclient import expect_only_barrier, open_socket, read_connect_sequence, receive


@pytest.fixture
def alerts_path(team) -> str:
    return f"/dashboards/{team['ops'].id}/alerts"


@pytest.fixture
async def push(client, team, pool):
    """Push (seconds after a start 2 minutes ago, value) points of cpu through the push API."""
    secret = await api_token(pool, team["ops"].id, "test")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)

    async def _push(*points: tuple[float, float]) -> None:
        values = [
            {"metric_id": team["cpu"].id, "value": v, "timestamp": (start + timedelta(seconds=s)).isoformat()}
            for s, v in points
        ]
        response = await client.post(
            "/api/v1/values", json={"values": values}, headers={"Authorization": f"Bearer {secret}"}
        )
        assert response.status == 201, await response.text()

    return _push


def valid(payload: dict) -> dict:
    assert not SERVER_PAYLOAD_SCHEMAS["alerts"].validate(payload), payload
    return payload


async def next_alerts(ws) -> dict:
    while True:
        message = await receive(ws)
        if message["action"] == "alerts":
            return valid(message["payload"])


# From the page ----------------------------------------------------------------------


async def test_an_editor_adds_a_rule_that_fires_like_a_cli_one(client, team, alerts_path, push, pool):
    cpu = team["cpu"]
    body = {"metric_id": cpu.id, "condition": "above", "threshold": 90, "for_seconds": 20}
    status, answer = await post(client, alerts_path, body)
    assert status == 201, answer
    (rule,) = await db.list_alert_rules(pool, team["ops"].id)
    assert (rule.metric_id, rule.condition, rule.threshold, rule.for_seconds, rule.created_by) == (
        cpu.id,
        "above",
        90.0,
        20,
        team["ed"].id,
    )
    assert valid(answer) == {
        "rules": [
            {
                "rule_id": rule.id,
                "metric_id": cpu.id,
                "metric_name": "cpu",
                "condition": "above",
                "threshold": 90.0,
                "for_seconds": 20,
                "state": "ok",
                "event_id": None,
                "since": None,
                "value": None,
            }
        ],
        "events": [],
    }
    # Evaluated on the ingest path, as any rule.
    await push((0, 95.0), (10, 96.0))
    assert await db.list_alert_events(pool, rule.id) == []
    await push((20, 97.0))
    (fired,) = await db.list_alert_events(pool, rule.id)
    listed = await (await client.get(alerts_path)).json()
    assert listed["rules"][0]["state"] == "firing"
    assert listed["rules"][0]["event_id"] == fired.id
    assert [(e["event_id"], e["state"], e["value"]) for e in listed["events"]] == [(fired.id, "firing", 97.0)]


async def test_an_editor_removes_a_rule_of_this_dashboard_only(
    client, team, alerts_path, pool, make_dashboard, make_metric
):
    rule = await db.create_alert_rule(pool, team["cpu"].id, "below", 5.0)
    elsewhere = await make_dashboard("elsewhere")
    theirs = await db.create_alert_rule(pool, (await make_metric(elsewhere, "x")).id, "above", 1.0)
    assert (await post(client, f"{alerts_path}/{theirs.id}/delete", {}))[0] == 404
    assert (await post(client, f"{alerts_path}/{2**63}/delete", {}))[0] == 404
    status, answer = await post(client, f"{alerts_path}/{rule.id}/delete", {})
    assert (status, answer) == (200, {"rules": [], "events": []})
    assert await db.list_alert_rules(pool, team["ops"].id) == []
    assert [r.id for r in await db.list_alert_rules(pool, elsewhere.id)] == [theirs.id]
    assert (await post(client, f"{alerts_path}/{rule.id}/delete", {}))[0] == 404


async def test_viewers_outsiders_and_anonymous_are_refused(client, team, alerts_path, new_client, pool):
    rule = await db.create_alert_rule(pool, team["cpu"].id, "below", 5.0)
    body = {"metric_id": team["cpu"].id, "condition": "above", "threshold": 1}
    viewer = await as_user(new_client, "vi")
    outsider = await as_user(new_client, "out")
    for who, expected in ((viewer, 403), (outsider, 404)):
        assert (await who.get(alerts_path)).status == expected
        assert (await post(who, alerts_path, body))[0] == expected
        assert (await post(who, f"{alerts_path}/{rule.id}/delete", {}))[0] == expected
    assert (await (await new_client()).get(alerts_path)).status == 401
    assert (await post(client, alerts_path, body, token=None))[0] == 403
    assert (await post(client, f"{alerts_path}/{rule.id}/delete", {}, token="forged"))[0] == 403
    assert [r.id for r in await db.list_alert_rules(pool, team["ops"].id)] == [rule.id]
    page = await (await viewer.get(f"/dashboards/{team['ops'].id}/")).text()
    assert 'id="edit-alerts"' not in page and 'id="alert-list"' in page


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"condition": "above", "threshold": 1}, 400, "metric_id"),
        ({"metric_id": "1", "condition": "above", "threshold": 1}, 400, "metric_id"),
        ({"metric_id": 0, "condition": "above", "threshold": 1}, 400, "metric_id"),
        ({"metric_id": "cpu", "condition": "over", "threshold": 1}, 400, "condition"),
        ({"metric_id": "cpu", "threshold": 1}, 400, "condition"),
        ({"metric_id": "cpu", "condition": "above"}, 400, "threshold"),
        ({"metric_id": "cpu", "condition": "above", "threshold": "90"}, 400, "threshold"),
        ({"metric_id": "cpu", "condition": "above", "threshold": None}, 400, "threshold"),
        ({"metric_id": "cpu", "condition": "above", "threshold": 1, "for_seconds": -1}, 400, "for_seconds"),
        ({"metric_id": "cpu", "condition": "above", "threshold": 1, "for_seconds": 1.5}, 400, "for_seconds"),
        ({"metric_id": "cpu", "condition": "above", "threshold": 1, "severity": "high"}, 400, "severity"),
        ({"metric_id": "theirs", "condition": "above", "threshold": 1}, 422, "metric_id"),
    ],
)
async def test_bad_rules_name_the_field_and_add_nothing(
    client, team, alerts_path, pool, make_dashboard, make_metric, body, status, field
):
    theirs = await make_metric(await make_dashboard("elsewhere"), "theirs")
    ids = {"cpu": team["cpu"].id, "theirs": theirs.id}
    body = {**body, "metric_id": ids.get(body.get("metric_id"), body.get("metric_id"))}
    if body["metric_id"] is None:
        del body["metric_id"]
    got, answer = await post(client, alerts_path, body)
    assert (got, field in answer.get("errors", {})) == (status, True), answer
    assert await db.list_alert_rules(pool, team["ops"].id) == []


# The `alerts` message ------------------------------------------------------------------


async def test_a_new_socket_gets_what_fired_while_no_one_was_connected(client, team, push, pool):
    rule = await db.create_alert_rule(pool, team["cpu"].id, "above", 90.0, for_seconds=0)
    await push((0, 95.0))  # fires with no socket open
    (fired,) = await db.list_alert_events(pool, rule.id)

    ws = await client.ws_connect(f"/ws/dashboard/{team['ops'].id}/")
    *_, last = await read_connect_sequence(ws, 2)
    assert last["action"] == "alerts"
    state = valid(last["payload"])
    assert state["rules"] == [
        {
            "rule_id": rule.id,
            "metric_id": team["cpu"].id,
            "metric_name": "cpu",
            "condition": "above",
            "threshold": 90.0,
            "for_seconds": 0,
            "state": "firing",
            "event_id": fired.id,
            "since": fired.at.isoformat(),
            "value": 95.0,
        }
    ]
    assert state["events"] == [
        {
            "rule_id": rule.id,
            "metric_id": team["cpu"].id,
            "metric_name": "cpu",
            "state": "firing",
            "value": 95.0,
            "threshold": 90.0,
            "condition": "above",
            "at": fired.at.isoformat(),
            "event_id": fired.id,
        }
    ]
    await expect_only_barrier(pool, team["requests"], ws)


async def test_a_reconnect_sees_a_rule_that_resolved_while_away(client, team, push, pool):
    rule = await db.create_alert_rule(pool, team["cpu"].id, "above", 90.0)
    ws = await client.ws_connect(f"/ws/dashboard/{team['ops'].id}/?subscribe=none")
    assert [(await receive(ws))["action"] for _ in range(3)] == [
        "authentication",
        "dashboard_config",
        "alerts",
    ]
    await push((0, 95.0))
    live = await receive(ws)
    assert (live["action"], live["payload"]["state"]) == ("alert", "firing")
    await ws.close()

    # Away: it resolves, fires and resolves again, more often than the list holds.
    for i in range(RECENT_EVENTS + 5):  # odd: the last one resolves
        await push((1 + i, 80.0 if i % 2 == 0 else 95.0))
    stored = await db.list_alert_events(pool, rule.id)
    assert len(stored) == RECENT_EVENTS + 6 and stored[-1].state == "resolved"

    again = await client.ws_connect(f"/ws/dashboard/{team['ops'].id}/?subscribe=none")
    actions = [await receive(again) for _ in range(3)]
    state = valid(actions[2]["payload"])
    (shown,) = state["rules"]
    assert (shown["state"], shown["event_id"], shown["value"]) == ("ok", stored[-1].id, 80.0)
    # The newest events, newest first.
    assert [e["event_id"] for e in state["events"]] == [e.id for e in reversed(stored)][:RECENT_EVENTS]


async def test_rule_changes_reach_open_sockets(client, team, alerts_path, new_client, settings, pool):
    ws = await open_socket(await as_user(new_client, "vi"), team["ops"], 2)  # through its first alerts
    status, _ = await post(
        client, alerts_path, {"metric_id": team["cpu"].id, "condition": "below", "threshold": 3}
    )
    assert status == 201
    (added,) = (await next_alerts(ws))["rules"]
    assert (added["metric_name"], added["condition"], added["threshold"]) == ("cpu", "below", 3.0)

    # From the CLI too.
    await run_cli(settings, "alert", "add", "ops", "requests", "--above", "100", "--for", "60")
    rules = (await next_alerts(ws))["rules"]
    assert [(r["metric_name"], r["for_seconds"]) for r in rules] == [("cpu", 0), ("requests", 60)]
    await run_cli(settings, "alert", "remove", "ops", str(added["rule_id"]))
    assert [r["metric_name"] for r in (await next_alerts(ws))["rules"]] == ["requests"]

    # A renamed metric's rules carry the new name.
    await post(client, f"/dashboards/{team['ops'].id}/metrics/{team['requests'].id}", {"name": "hits"})
    assert [r["metric_name"] for r in (await next_alerts(ws))["rules"]] == ["hits"]

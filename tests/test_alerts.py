"""Threshold alerts: evaluation on the ingest path, stored events, live `alert` messages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result

from common import alerts, db
from server.cli import main as server_main
from tests.helpers import api_token, log_in
from tests.servers import servers
from tests.wsclient import expect_only_barrier, read_connect_sequence, receive

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _start() -> datetime:
    # The push API refuses timestamps more than 5 minutes from its clock.
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)


@pytest.fixture
async def board(pool, make_user, make_dashboard, make_metric):
    """alice watches `ops` (temp, with a rule) and bob watches `other`."""
    alice = await make_user("alice")
    bob = await make_user("bob")
    ops = await make_dashboard("ops", members=(alice,))
    other = await make_dashboard("other", members=(bob,))
    temp = await make_metric(ops, "temp", "gauge", "C")
    theirs = await make_metric(other, "theirs", "gauge")
    secret = await api_token(pool, ops.id)
    rule = await db.create_alert_rule(pool, temp.id, "above", 90.0, for_seconds=30)
    return {
        "t0": _start(),
        "ops": ops,
        "other": other,
        "theirs": theirs,
        "temp": temp,
        "rule": rule,
        "auth": {"Authorization": f"Bearer {secret}"},
    }


async def _push(client, board, *points: tuple[float, float]) -> None:
    values = [
        {
            "metric_id": board["temp"].id,
            "value": v,
            "timestamp": (board["t0"] + timedelta(seconds=s)).isoformat(),
        }
        for s, v in points
    ]
    response = await client.post("/api/v1/values", json={"values": values}, headers=board["auth"])
    assert response.status == 201, await response.text()


async def _next_alert(ws) -> dict:
    while True:
        message = await receive(ws)
        if message["action"] == "alert":
            return message["payload"]


async def test_fires_after_for_seconds_and_resolves_live_to_members_only(client, new_client, pool, board):
    await log_in(client, "alice")
    ws = await client.ws_connect(f"/ws/dashboard/{board['ops'].id}/")
    await read_connect_sequence(ws, 1)
    bob_client = await new_client()
    await log_in(bob_client, "bob")
    bob_ws = await bob_client.ws_connect(f"/ws/dashboard/{board['other'].id}/")
    await read_connect_sequence(bob_ws, 1)
    rule, t0 = board["rule"], board["t0"]

    # Above for 0..20 s: not yet 30 s, nothing fires.
    await _push(client, board, (0, 95.0), (10, 96.0), (20, 97.0))
    assert await db.list_alert_events(pool, rule.id) == []
    # Separate requests: the run since t=0 is carried in the rule's row.
    await _push(client, board, (30, 98.0))
    firing = await _next_alert(ws)
    assert firing == {
        "rule_id": rule.id,
        "metric_id": board["temp"].id,
        "metric_name": "temp",
        "state": "firing",
        "value": 98.0,
        "threshold": 90.0,
        "condition": "above",
        "at": (t0 + timedelta(seconds=30)).isoformat(),
        "event_id": firing["event_id"],
    }
    await _push(client, board, (40, 99.0))  # still firing: no new event
    await _push(client, board, (50, 80.0))
    resolved = await _next_alert(ws)
    assert (resolved["state"], resolved["value"], resolved["at"]) == (
        "resolved",
        80.0,
        (t0 + timedelta(seconds=50)).isoformat(),
    )

    events = await db.list_alert_events(pool, rule.id)
    assert [(e.state, e.value, e.at) for e in events] == [
        ("firing", 98.0, t0 + timedelta(seconds=30)),
        ("resolved", 80.0, t0 + timedelta(seconds=50)),
    ]
    assert [firing["event_id"], resolved["event_id"]] == [e.id for e in events]
    # No alert of ops ever reached bob, who watches another dashboard.
    await expect_only_barrier(pool, board["theirs"], bob_ws)


async def test_a_dip_restarts_the_duration(client, pool, board):
    await _push(client, board, (0, 95.0), (20, 85.0), (30, 95.0), (50, 95.0))
    assert await db.list_alert_events(pool, board["rule"].id) == []
    await _push(client, board, (60, 91.0))
    assert [e.state for e in await db.list_alert_events(pool, board["rule"].id)] == ["firing"]


async def test_late_values_do_not_rewind_the_state(client, pool, board):
    await _push(client, board, (0, 95.0), (30, 95.0))
    await _push(client, board, (10, 50.0))  # older than what was evaluated: skipped
    assert [e.state for e in await db.list_alert_events(pool, board["rule"].id)] == ["firing"]


def test_step_below_with_zero_duration_fires_at_once():
    rule = db.AlertRule(1, 1, "below", 10.0, 0, None)
    after, transition = alerts.step(rule, 5.0, T0)
    assert (after.state, transition) == ("firing", "firing")
    after, transition = alerts.step(after, 10.0, T0 + timedelta(seconds=1))
    assert (after.state, transition) == ("ok", "resolved")


async def test_cli_adds_lists_and_removes_rules(pool, board, database_url):
    def invoke(args: list[str]) -> Result:
        # In a thread: the commands run their own event loop.
        return CliRunner().invoke(server_main, args)

    options = ["--database-url", database_url, "--redis-url", servers().redis_url]
    added = await asyncio.to_thread(
        invoke, [*options, "alert", "add", "ops", "temp", "--below", "-5", "--for", "60"]
    )
    assert added.exit_code == 0, added.output
    listed = await asyncio.to_thread(invoke, [*options, "alert", "list", "ops"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[1:] == [
        f"{board['rule'].id}\ttemp\tabove\t90.0\t30s\tok",
        f"{int(board['rule'].id) + 1}\ttemp\tbelow\t-5.0\t60s\tok",
    ]
    rule_id = lines[2].split("\t")[0]
    refused = await asyncio.to_thread(invoke, [*options, "alert", "remove", "other", rule_id])
    assert refused.exit_code != 0
    removed = await asyncio.to_thread(invoke, [*options, "alert", "remove", "ops", rule_id])
    assert removed.exit_code == 0, removed.output
    assert [r.id for r in await db.list_alert_rules(pool, board["ops"].id)] == [board["rule"].id]
    both = await asyncio.to_thread(
        invoke, [*options, "alert", "add", "ops", "temp", "--above", "1", "--below", "2"]
    )
    assert both.exit_code != 0


async def test_page_lists_rules_as_text(client, pool, board, make_metric):
    odd = await make_metric(board["ops"], "<b>odd</b>", "gauge")
    await db.create_alert_rule(pool, odd.id, "below", 1.0)
    await log_in(client, "alice")
    page = await (await client.get(f"/dashboards/{board['ops'].id}/")).text()
    assert 'id="alert-list"' in page and f'data-rule-id="{board["rule"].id}"' in page
    assert "temp above 90.0 for 30s" in page
    assert "&lt;b&gt;odd&lt;/b&gt; below 1.0" in page and "<b>odd</b>" not in page

"""The protocol's additions for pages: `history` over a time range, `resume`
after a reconnect, connecting without the default history, and logout closing
the session's sockets (docs/protocol.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import WSMsgType

from common import db
from server.live.closecodes import CloseCode
from server.live.history import MAX_RECOVERED
from tests.helpers import csrf_from, log_in
from tests.wsclient import (
    connect,
    connect_bare,
    expect_only_barrier,
    expect_silence,
    publish,
    read_connect_sequence,
    receive,
    receive_until,
)


async def test_subscribe_none_sends_no_history_and_no_updates(client, setup, pool):
    ws = await connect_bare(client, setup["ops"].id)
    await publish(pool, setup["cpu"], 1.0)
    await expect_silence(ws)


async def test_history_and_updates_carry_stored_ids(client, setup, pool):
    cpu = setup["cpu"]
    (first,) = await db.insert_values(pool, [(cpu.id, 1.0, datetime.now(UTC))])
    ws = await connect(client, setup["ops"].id)
    _, _, cpu_history, _, _ = await read_connect_sequence(ws, 2)
    assert cpu_history["payload"]["values"][0]["id"] == first.id
    assert cpu_history["payload"]["last_id"] == first.id
    stored = await publish(pool, cpu, 2.0)
    assert (await receive(ws))["payload"]["id"] == stored.id


async def test_resume_sends_exactly_the_missed_values(client, setup, pool):
    cpu, requests = setup["cpu"], setup["requests"]
    now = datetime.now(UTC)
    held = await db.insert_values(pool, [(cpu.id, float(i), now + timedelta(seconds=i)) for i in range(3)])
    missed = await db.insert_values(
        pool, [(cpu.id, float(i), now + timedelta(seconds=i)) for i in range(3, 6)]
    )
    ws = await connect_bare(client, setup["ops"].id)
    await ws.send_json(
        {"action": "resume", "payload": {"positions": [{"metric_id": cpu.id, "after_id": held[-1].id}]}}
    )
    history, complete = await receive(ws), await receive(ws)
    assert history["action"] == "metric_history"
    assert history["payload"]["recovered"] is True
    assert [(v["id"], v["value"]) for v in history["payload"]["values"]] == [(m.id, m.value) for m in missed]
    assert history["payload"]["last_id"] == missed[-1].id
    assert complete == {"action": "complete"}
    # Now live for cpu only: requests was not resumed.
    await publish(pool, requests, 1.0)
    live = await publish(pool, cpu, 9.0)
    assert (await receive(ws))["payload"]["id"] == live.id
    await expect_only_barrier(pool, cpu, ws)


async def test_resume_with_nothing_missed_is_recovered_and_empty(client, setup, pool):
    cpu = setup["cpu"]
    (last,) = await db.insert_values(pool, [(cpu.id, 1.0, datetime.now(UTC))])
    ws = await connect_bare(client, setup["ops"].id)
    await ws.send_json(
        {"action": "resume", "payload": {"positions": [{"metric_id": cpu.id, "after_id": last.id}]}}
    )
    history = (await receive(ws))["payload"]
    assert (history["recovered"], history["values"], history["last_id"]) == (True, [], last.id)


async def test_resume_too_far_back_or_unknown_is_not_recovered(client, setup, pool):
    cpu, requests = setup["cpu"], setup["requests"]
    now = datetime.now(UTC)
    values = await db.insert_values(
        pool, [(cpu.id, float(i), now + timedelta(milliseconds=i)) for i in range(MAX_RECOVERED + 2)]
    )
    ws = await connect_bare(client, setup["ops"].id)
    positions = [
        {"metric_id": cpu.id, "after_id": values[0].id},  # MAX_RECOVERED + 1 missed
        {"metric_id": requests.id, "after_id": values[1].id},  # a value of another metric
    ]
    await ws.send_json({"action": "resume", "payload": {"positions": positions}})
    answers = [m["payload"] for m in await receive_until(ws, "complete") if m["action"] == "metric_history"]
    assert [(a["metric_id"], a["recovered"], a["values"], a["last_id"]) for a in answers] == [
        (cpu.id, False, [], None),
        (requests.id, False, [], None),
    ]
    # Subscribed all the same: the client reloads with `history` and stays live.
    live = await publish(pool, requests, 1.0)
    assert (await receive(ws))["payload"]["id"] == live.id


async def test_resume_of_a_subscribed_metric_sends_nothing(client, setup, pool):
    (last,) = await db.insert_values(pool, [(setup["cpu"].id, 1.0, datetime.now(UTC))])
    ws = await connect(client, setup["ops"].id)
    await read_connect_sequence(ws, 2)
    positions = [{"metric_id": setup["cpu"].id, "after_id": last.id}]
    await ws.send_json({"action": "resume", "payload": {"positions": positions}})
    assert await receive(ws) == {"action": "complete"}


async def test_resume_refuses_foreign_metrics_and_bad_positions(client, setup):
    ws = await connect_bare(client, setup["ops"].id)
    positions = [{"metric_id": setup["secret"].id, "after_id": 1}]
    await ws.send_json({"action": "resume", "payload": {"positions": positions}})
    error = await receive(ws)
    assert error["payload"]["errors"] == {
        "payload": {"metric_ids": {"not_on_dashboard": [setup["secret"].id]}}
    }
    await receive(ws)
    await ws.send_json({"action": "resume", "payload": {"positions": [{"metric_id": 1, "after_id": "7"}]}})
    error = await receive(ws)
    assert error["payload"] == {
        "message": "invalid payload for 'resume'",
        "errors": {"payload": {"positions": {"0": {"after_id": ["Not a valid integer."]}}}},
    }


async def test_history_of_the_short_range_is_raw_values_inside_it(client, setup, pool):
    cpu = setup["cpu"]
    now = datetime.now(UTC)
    await db.insert_values(pool, [(cpu.id, 1.0, now - timedelta(minutes=6))])
    inside = await db.insert_values(
        pool, [(cpu.id, float(i), now - timedelta(seconds=60 - i)) for i in range(3)]
    )
    ws = await connect_bare(client, setup["ops"].id)
    await ws.send_json({"action": "history", "payload": {"metric_ids": [cpu.id], "range": "5m"}})
    history = (await receive(ws))["payload"]
    assert (history["range"], history["bucket_seconds"], history["last_id"]) == ("5m", 0, inside[-1].id)
    assert [(v["id"], v["value"]) for v in history["values"]] == [(v.id, v.value) for v in inside]
    live = await publish(pool, cpu, 5.0)
    assert await receive(ws) == {"action": "complete"}
    assert (await receive(ws))["payload"]["id"] == live.id


async def test_history_of_long_ranges_is_bucketed_in_the_database(client, setup, pool):
    cpu = setup["cpu"]
    # Two values in each 12 s bucket over the last hour (epoch-aligned buckets).
    now = datetime.now(UTC).replace(microsecond=0)
    start = datetime.fromtimestamp((int(now.timestamp()) // 12 - 299) * 12, UTC)
    rows = [
        (cpu.id, float(k % 7 + offset), start + timedelta(seconds=12 * k + offset))
        for k in range(299)
        for offset in (0, 5)
    ]
    stored = await db.insert_values(pool, rows)
    ws = await connect(client, setup["ops"].id)
    await read_connect_sequence(ws, 2)
    await ws.send_json({"action": "history", "payload": {"metric_ids": [cpu.id], "range": "1h"}})
    history = (await receive(ws))["payload"]
    assert (history["range"], history["bucket_seconds"]) == ("1h", 12)
    assert len(history["values"]) <= 300
    assert history["last_id"] == stored[-1].id
    first = history["values"][0]
    assert first == {"value": 2.5, "min": 0.0, "max": 5.0, "count": 2, "timestamp": start.isoformat()}
    assert all(v["count"] == 2 for v in history["values"])


async def test_history_answers_invalid_ranges_with_an_error(client, setup):
    ws = await connect_bare(client, setup["ops"].id)
    await ws.send_json({"action": "history", "payload": {"metric_ids": [setup["cpu"].id], "range": "2h"}})
    error = await receive(ws)
    assert error["payload"]["errors"] == {"payload": {"range": ["Must be one of: 5m, 1h, 24h, 7d."]}}


async def test_logout_closes_the_sessions_sockets_with_4401(client, new_client, setup):
    other = await new_client()
    await log_in(other, "alice")
    mine, theirs = await connect(client, setup["ops"].id), await connect(other, setup["ops"].id)
    await read_connect_sequence(mine, 2)
    await read_connect_sequence(theirs, 2)
    token = await csrf_from(client, "/dashboards/")
    response = await client.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    assert response.status == 302
    closing = await mine.receive(timeout=5)
    assert (closing.type, closing.data, closing.extra) == (
        WSMsgType.CLOSE,
        CloseCode.UNAUTHENTICATED,
        "logout",
    )
    # Another session of the same user keeps its socket.
    await theirs.send_json({"action": "ping"})
    assert await receive_until(theirs, "complete") == [{"action": "pong"}, {"action": "complete"}]

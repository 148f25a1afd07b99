"""Live values in both forms (server/live/updates.py): `metric_update` one by one, and
`metric_updates` for sockets opened with `?updates=batch`; history then live values
with no gap and no duplicate in either."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import aiohttp
import pytest
from redis.asyncio import Redis

from common import db
from common.events import EVENT_VERSION, AlertNotice, ValueEvent, encode_values
from common.schemas import SERVER_PAYLOAD_SCHEMAS
from server.live.updates import batch_frame, from_events
from tests.helpers import log_in
from tests.servers import servers
from tests.wsclient import (
    expect_only_barrier,
    publish_many,
    read_connect_sequence,
    receive,
    unpacked_updates,
)


def _event(metric_id: int, value_id: int, value: float, timestamp: str) -> ValueEvent:
    return ValueEvent(
        id=value_id, metric_id=metric_id, value=value, timestamp=timestamp, metric_name="m", unit="u"
    )


def _payload(frame: bytes) -> dict:
    """The JSON of one final, unmasked text frame of under 64 KiB."""
    assert frame[0] == 0x81
    size, header = (frame[1], 2) if frame[1] < 126 else (int.from_bytes(frame[2:4], "big"), 4)
    assert len(frame) == header + size
    return json.loads(frame[header:])


def test_a_batch_writes_each_timestamp_once_for_the_values_that_follow_it():
    first, second = "2026-11-29T08:00:00.000001+00:00", "2026-11-29T08:00:01.5+00:00"
    updates = from_events(
        [
            _event(1, 10, 1.5, first),
            _event(2, 11, -2.0, first),
            _event(1, 12, 3e-7, second),
            _event(2, 13, 4.0, first),  # a late value: its own entry again, order kept
        ]
    )
    message = _payload(batch_frame(updates))
    assert message == {
        "action": "metric_updates",
        "payload": {
            "updates": [
                {"timestamp": first, "values": [[1, 10, 1.5], [2, 11, -2.0]]},
                {"timestamp": second, "values": [[1, 12, 3e-7]]},
                {"timestamp": first, "values": [[2, 13, 4.0]]},
            ]
        },
    }
    assert SERVER_PAYLOAD_SCHEMAS["metric_updates"].validate(message["payload"]) == {}
    # The same value in its single form says the same, and more.
    single = _payload(updates[0].frame)
    assert single["action"] == "metric_update"
    assert single["payload"] == {
        "metric_id": 1, "value": 1.5, "timestamp": first, "metric_name": "m", "unit": "u", "id": 10,
    }  # fmt: skip


def test_a_tick_of_ten_values_is_a_fraction_of_the_bytes():
    tick = from_events([_event(i, 5000 + i, 22.07, "2026-11-29T08:00:00.049670+00:00") for i in range(10)])
    single = sum(len(update.frame) for update in tick)
    assert len(batch_frame(tick)) * 4 < single


async def _batched(client, dashboard_id: int, query: str = "") -> aiohttp.ClientWebSocketResponse:
    return await client.ws_connect(f"/ws/dashboard/{dashboard_id}/?updates=batch{query}")


async def _both_forms(client, new_client, dashboard_id: int, metric_count: int) -> tuple:
    """Two sockets of alice's to the dashboard, batched and single, past their set-up."""
    await log_in(client, "alice")
    other = await new_client()
    await log_in(other, "alice")
    batched = await _batched(client, dashboard_id)
    single = await other.ws_connect(f"/ws/dashboard/{dashboard_id}/")
    for ws in (batched, single):
        await read_connect_sequence(ws, metric_count)
    return batched, single


async def _values(ws, count: int) -> list[list]:
    """The next `count` values, from metric_updates messages only."""
    values: list[list] = []
    while len(values) < count:
        values += unpacked_updates(await receive(ws))
    assert len(values) == count, values
    return values


async def test_batched_and_single_sockets_get_the_same_values_each_in_their_form(
    client, new_client, pool, make_user, make_dashboard, make_metric
):
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    cpu, mem = await make_metric(ops, "cpu"), await make_metric(ops, "mem")
    batched, single = await _both_forms(client, new_client, ops.id, 2)

    now = datetime.now(UTC)
    stored = await db.insert_values(pool, [(cpu.id, 1.0, now), (mem.id, 2.0, now), (cpu.id, 3.0, now)])
    async with Redis.from_url(servers().redis_url) as redis_client:
        metrics = {cpu.id: cpu, mem.id: mem}
        await redis_client.publish(
            servers().channels.dashboard(ops.id),
            encode_values(ops.id, [(metrics[v.metric_id], v) for v in stored]),
        )
    expected = [[v.metric_id, v.id, v.value, v.ts.isoformat()] for v in stored]
    assert await _values(batched, 3) == expected
    singles = [(await receive(single))["payload"] for _ in range(3)]
    assert [[p["metric_id"], p["id"], p["value"], p["timestamp"]] for p in singles] == expected
    await expect_only_barrier(pool, mem, batched, single)


async def test_a_batched_socket_gets_only_the_metrics_it_is_subscribed_to(
    client, pool, make_user, make_dashboard, make_metric
):
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    cpu, mem = await make_metric(ops, "cpu"), await make_metric(ops, "mem")
    await log_in(client, "alice")
    ws = await _batched(client, ops.id)
    await read_connect_sequence(ws, 2)
    await ws.send_json({"action": "unsubscribe", "payload": {"metric_ids": [mem.id]}})
    assert await receive(ws) == {"action": "complete"}
    await publish_many(pool, mem, 3)
    await publish_many(pool, cpu, 2)
    assert [(v[0], v[2]) for v in await _values(ws, 2)] == [(cpu.id, 0.0), (cpu.id, 1.0)]
    await expect_only_barrier(pool, cpu, ws)


async def test_an_unknown_updates_form_is_refused_before_the_upgrade(client, make_user, make_dashboard):
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    await log_in(client, "alice")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(f"/ws/dashboard/{ops.id}/?updates=compressed")
    assert refused.value.status == 400
    response = await client.get(
        f"/ws/dashboard/{ops.id}/?updates=compressed",
        headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="},
    )  # fmt: skip
    assert "updates must be" in await response.text()


@asynccontextmanager
async def streaming(pool, metric: db.Metric) -> AsyncIterator[None]:
    """Values of `metric` stored and published five at a time, every few
    milliseconds, until the block ends."""
    stop = asyncio.Event()

    async def stream() -> None:
        first = 0
        while not stop.is_set():
            await publish_many(pool, metric, 5, first)
            first += 5
            await asyncio.sleep(0.002)  # the stream's pace, not a wait

    publisher = asyncio.create_task(stream())
    try:
        yield
    finally:
        stop.set()
        await publisher


def value_ids(message: dict) -> list[int]:
    """The value ids a history or a live message (either form) carries; none for others."""
    if message["action"] == "metric_history":
        return [v["id"] for v in message["payload"]["values"]]
    if message["action"] == "metric_updates":
        return [v[1] for v in unpacked_updates(message)]
    if message["action"] == "metric_update":
        return [message["payload"]["id"]]
    return []


async def _stored_ids(pool, metric: db.Metric) -> list[int]:
    return [v.id for v in (await db.latest_values(pool, [metric.id], 10_000))[metric.id]]


def assert_gapless(ids: list[int], stored: list[int]) -> None:
    """What a socket got is a run of the stored ids: no gap, no duplicate, in order."""
    start = stored.index(ids[0])
    assert ids == stored[start : start + len(ids)], "gap, duplicate or disorder"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("form", ["single", "batch"])
async def test_history_then_live_values_have_no_gap_and_no_duplicate_while_values_stream(
    client, pool, make_user, make_dashboard, make_metric, form
):
    """Sockets opened one after another while values keep coming: for each, the
    history and the live values after it are exactly the stored ids, in order.
    Values that arrive while a socket's history is read are held and sent after
    it; values the history holds that arrive later still are dropped."""
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    cpu = await make_metric(ops, "cpu")
    await log_in(client, "alice")
    async with streaming(pool, cpu):
        for _ in range(15):
            ws = await client.ws_connect(f"/ws/dashboard/{ops.id}/?updates={form}")
            ids: list[int] = []
            seen: list[str] = []
            while len(ids) < 25 or "alerts" not in seen:
                message = await receive(ws)
                seen.append(message["action"])
                if message["action"] in ("metric_update", "metric_updates"):
                    assert "metric_history" in seen, "a live value before the history"
                    assert message["action"] == ("metric_updates" if form == "batch" else "metric_update")
                ids += value_ids(message)
            assert_gapless(ids, await _stored_ids(pool, cpu))
            await ws.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("form", ["single", "batch"])
async def test_a_fan_out_split_over_loop_turns_keeps_every_socket_gapless_and_in_order(
    client, pool, make_user, make_dashboard, make_metric, form, monkeypatch
):
    """With one connection per slice (server/live/hub.py, FANOUT_SLICE), each update
    reaches the sockets over several loop turns while more arrive, sockets open
    and subscribe: every socket still gets exactly the stored ids after its
    history, in order."""
    monkeypatch.setattr("server.live.hub.FANOUT_SLICE", 1)
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    cpu = await make_metric(ops, "cpu")
    await log_in(client, "alice")
    sockets: list[tuple[aiohttp.ClientWebSocketResponse, list[int]]] = []

    async def read_until(ws: aiohttp.ClientWebSocketResponse, ids: list[int], count: int) -> None:
        while len(ids) < count:
            ids += value_ids(await receive(ws))

    async with streaming(pool, cpu):
        for _ in range(6):
            ws = await client.ws_connect(f"/ws/dashboard/{ops.id}/?updates={form}")
            sockets.append((ws, []))
            # The sockets opened before keep reading (and being written to in slices).
            await asyncio.gather(*(read_until(w, ids, len(ids) + 10) for w, ids in sockets))
    stored = await _stored_ids(pool, cpu)
    for ws, ids in sockets:
        assert_gapless(ids, stored)
        await ws.close()


async def test_unreadable_events_are_skipped_and_the_next_value_still_arrives(
    client, new_client, pool, make_user, make_dashboard, make_metric
):
    """Junk on a dashboard's channel (another deployment, a bug, an old worker)
    reaches no socket in either form, and what follows is served as usual."""
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    cpu = await make_metric(ops, "cpu")
    batched, single = await _both_forms(client, new_client, ops.id, 1)

    def event(value) -> str:
        item = {"id": 1, "metric_id": cpu.id, "metric_name": "cpu", "unit": "u", "value": value,
                "timestamp": "2026-11-29T08:00:00+00:00"}  # fmt: skip
        return json.dumps({"v": 1, "dashboard_id": ops.id, "values": [item]})

    junk = [
        "not json",
        '{"v": 99, "dashboard_id": 1, "values": []}',
        event("high"),
        event(float("nan")),
        event(None),
    ]
    async with Redis.from_url(servers().redis_url) as redis_client:
        for message in junk:
            await redis_client.publish(servers().channels.dashboard(ops.id), message)
    await publish_many(pool, cpu, 1)
    assert [v[2] for v in await _values(batched, 1)] == [0.0]
    assert (await receive(single))["payload"]["value"] == 0.0
    await expect_only_barrier(pool, cpu, batched, single)


@pytest.mark.parametrize("form", ["single", "batch"])
async def test_an_alert_never_overtakes_values_published_before_it_across_slices(
    client, new_client, pool, make_user, make_dashboard, make_metric, form, monkeypatch
):
    """With one connection per slice, a value still waiting for later loop turns
    goes out before an alert published after it (the hub drains its backlog
    first, Hub._deliver_pending): on every socket, the value comes first."""
    monkeypatch.setattr("server.live.hub.FANOUT_SLICE", 1)
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    cpu = await make_metric(ops, "cpu")
    query = "?updates=batch" if form == "batch" else ""
    sockets = []
    for index in range(4):
        browser = client if index == 0 else await new_client()
        await log_in(browser, "alice")
        ws = await browser.ws_connect(f"/ws/dashboard/{ops.id}/{query}")
        await read_connect_sequence(ws, 1)
        sockets.append(ws)
    now = datetime.now(UTC)
    (stored,) = await db.insert_values(pool, [(cpu.id, 95.0, now)])
    notice = AlertNotice(1, cpu.id, "cpu", "firing", 95.0, 90.0, "above", now.isoformat(), 1)
    alert = json.dumps(
        {"v": EVENT_VERSION, "type": "alert", "dashboard_id": ops.id, "alert": notice.__dict__}
    )
    channel = servers().channels.dashboard(ops.id)
    async with (
        Redis.from_url(servers().redis_url) as redis_client,
        redis_client.pipeline(transaction=False) as pipe,
    ):
        pipe.publish(channel, encode_values(ops.id, [(cpu, stored)]))
        pipe.publish(channel, alert)
        await pipe.execute()
    for ws in sockets:
        first, second = await receive(ws), await receive(ws)
        assert first["action"] == ("metric_updates" if form == "batch" else "metric_update"), first
        assert (second["action"], second["payload"]["rule_id"]) == ("alert", 1), second

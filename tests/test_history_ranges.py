"""`history` over any from/to (docs/protocol.md, "Ranges"): raw values when few enough,
else minute buckets chosen by the server; statistics as true as the raw values give them;
a range that ended in the past is not live; the old `range` form unchanged; every
malformed or hostile range answered with an `error` on a socket that stays usable."""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from common import db, stats
from common.schemas import SERVER_PAYLOAD_SCHEMAS
from server.live.history import HISTORY_TURNS_PER_USER, MAX_POINTS, MAX_RAW
from server.ratelimit import PerUserTurns
from tests.helpers import store_last_seconds
from tests.statsdata import exact_percentile
from tests.wsclient import connect_bare, publish, receive, receive_until
from worker.retention import delete_expired
from worker.rollups import roll_up


async def _history(ws, metric_ids: list[int], **window) -> list[dict]:
    await ws.send_json({"action": "history", "payload": {"metric_ids": metric_ids, **window}})
    answers = []
    for _ in metric_ids:
        message = await receive(ws, within=30)
        assert message["action"] == "metric_history", message
        # As documented (docs/protocol.md, /asyncapi.json).
        assert SERVER_PAYLOAD_SCHEMAS["metric_history"].validate(message["payload"]) == {}
        answers.append(message["payload"])
    assert await receive(ws) == {"action": "complete"}
    return answers


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


async def _store(pool, metric: db.Metric, rows: list[tuple[datetime, float]]) -> None:
    for start in range(0, len(rows), 10_000):
        await db.insert_values(pool, [(metric.id, v, ts) for ts, v in rows[start : start + 10_000]])


async def test_a_past_range_of_rollups_gives_the_statistics_of_its_raw_values(
    client, setup, pool, make_metric
):
    latency = await make_metric(setup["ops"], "latency", "histogram", "ms")
    requests = setup["requests"]
    now = datetime.now(UTC).replace(microsecond=0)  # epoch milliseconds name the same times
    rng = random.Random(6)
    latencies, counts = [], []
    age, count = 4 * 86400.0, 0.0
    while age > 60:
        ts = now - timedelta(seconds=age)
        latencies.append((ts, rng.lognormvariate(math.log(20 + 10 * age / 86400), 0.6)))
        count = count + rng.randint(20, 40) if rng.random() > 0.001 else 3.0  # a rare reset
        counts.append((ts, count))
        age -= rng.uniform(5, 15)
    await _store(pool, latency, latencies)
    await _store(pool, requests, counts)
    await roll_up(pool)
    # Off the minute on both ends: the minutes they cut are read from raw values.
    since = now - timedelta(days=3, seconds=1234.5)
    until = now - timedelta(days=1, seconds=4321.25)

    ws = await connect_bare(client, setup["ops"].id)
    for form in (_iso, _ms):
        window = {"from": form(since), "to": form(until)}
        lat, req = await _history(ws, [latency.id, requests.id], **window)
        for answer in (lat, req):
            assert answer["live"] is False
            assert (answer["from"], answer["to"]) == (since.isoformat(), until.isoformat())
            assert "range" not in answer
            size = answer["bucket_seconds"]
            # Whole minutes, as few as give at most MAX_POINTS buckets.
            assert (
                size % 60 == 0 and (until - since).total_seconds() / size <= MAX_POINTS < 2 * 60 * MAX_POINTS
            )
            assert 0 < len(answer["values"]) <= MAX_POINTS + 1
            starts = [datetime.fromisoformat(v["timestamp"]) for v in answer["values"]]
            assert since - timedelta(seconds=size) < starts[0] and starts[-1] < until

        inside_latencies = [v for ts, v in latencies if since <= ts < until]
        summary = lat["summary"]
        assert summary["count"] == len(inside_latencies) == sum(v["count"] for v in lat["values"])
        for p in stats.PERCENTILES:
            exact = exact_percentile(inside_latencies, p)
            assert summary[f"p{p}"] == pytest.approx(exact, rel=stats.RELATIVE_ERROR + 1e-9), p

        inside_counts = [(ts, v) for ts, v in counts if since <= ts < until]
        increase = stats.counter_increase(v for _, v in inside_counts)
        assert req["summary"]["increase"] == pytest.approx(increase, rel=1e-12)
        assert sum(b["increase"] for b in req["values"]) == pytest.approx(increase, rel=1e-12)
        assert req["summary"]["last_value"] == inside_counts[-1][1]
        # The newest value's time where its minute is read raw (the one `until` cuts),
        # its minute's start where the minute comes rolled up (docs/protocol.md, "Ranges").
        newest = inside_counts[-1][0]
        if newest < until.replace(second=0, microsecond=0):
            newest = newest.replace(second=0, microsecond=0)
        assert req["summary"]["last_timestamp"] == newest.isoformat()

    # Raw values older than a day gone: the minutes' rollups alone give the same inside numbers.
    before = lat
    await delete_expired(pool, 1)
    inner_since = (since + timedelta(minutes=2)).replace(second=0, microsecond=0)
    inner_until = (until - timedelta(minutes=2)).replace(second=0, microsecond=0)
    (lat,) = await _history(ws, [latency.id], **{"from": _iso(inner_since), "to": _iso(inner_until)})
    inside = [v for ts, v in latencies if inner_since <= ts < inner_until]
    assert lat["summary"]["count"] == len(inside) < before["summary"]["count"]
    for p in stats.PERCENTILES:
        assert lat["summary"][f"p{p}"] == pytest.approx(
            exact_percentile(inside, p), rel=stats.RELATIVE_ERROR + 1e-9
        )


async def test_a_short_range_holds_its_raw_values_and_a_longer_one_buckets(client, setup, pool):
    cpu = setup["cpu"]
    now = datetime.now(UTC)
    rows = [(now - timedelta(seconds=s), float(s % 97)) for s in range(3600, 0, -2)]
    await _store(pool, cpu, rows)
    ws = await connect_bare(client, setup["ops"].id)

    since, until = now - timedelta(minutes=20), now - timedelta(minutes=10)
    (answer,) = await _history(ws, [cpu.id], **{"from": _iso(since), "to": _iso(until)})
    inside = [(ts, v) for ts, v in rows if since <= ts < until]
    assert answer["bucket_seconds"] == 0 and answer["live"] is False
    assert [(datetime.fromisoformat(v["timestamp"]), v["value"]) for v in answer["values"]] == inside
    assert answer["last_id"] == max(v["id"] for v in answer["values"])
    assert answer["summary"]["count"] == len(inside)

    # More than MAX_RAW values in the range: minute buckets, holding all of them.
    since = now - timedelta(seconds=2 * MAX_RAW + 200)
    (answer,) = await _history(ws, [cpu.id], **{"from": _iso(since)})
    inside = [v for ts, v in rows if ts >= since]
    assert len(inside) > MAX_RAW
    assert answer["bucket_seconds"] == 60 and answer["live"] is True and answer["to"] is None
    assert sum(b["count"] for b in answer["values"]) == answer["summary"]["count"] == len(inside)
    assert min(b["min"] for b in answer["values"]) == min(inside)


async def test_a_range_ending_now_is_live_and_one_ended_says_so(client, setup, pool):
    cpu = setup["cpu"]
    ws = await connect_bare(client, setup["ops"].id)
    old = await publish(pool, cpu, 7.0, datetime.now(UTC) - timedelta(minutes=30))

    # A `to` at or after now (clocks differ) ends now: live, and later values follow.
    soon = datetime.now(UTC) + timedelta(minutes=5)
    since = datetime.now(UTC) - timedelta(hours=1)
    (answer,) = await _history(ws, [cpu.id], **{"from": _iso(since), "to": _iso(soon)})
    assert answer["live"] is True and answer["to"] is None
    assert [v["id"] for v in answer["values"]] == [old.id]
    new = await publish(pool, cpu, 8.0)
    *_, update = await receive_until(ws, "metric_update")
    assert update["payload"]["id"] == new.id

    # Ended in the past: the answer says so (the page stops adding values to it); the
    # socket keeps its metrics subscribed, so the values still come and it stays live.
    until = datetime.now(UTC) - timedelta(minutes=10)
    (answer,) = await _history(ws, [cpu.id], **{"from": _iso(since), "to": _iso(until)})
    assert answer["live"] is False and datetime.fromisoformat(answer["to"]) == until
    assert [v["id"] for v in answer["values"]] == [old.id]
    newer = await publish(pool, cpu, 9.0)
    *_, update = await receive_until(ws, "metric_update")
    assert update["payload"]["id"] == newer.id


async def test_the_range_form_answers_as_before(client, setup, pool):
    cpu = setup["cpu"]
    await publish(pool, cpu, 1.0)
    ws = await connect_bare(client, setup["ops"].id)
    expected = {"5m": 0, "1h": 12, "24h": 300, "7d": 2040}
    for name, size in expected.items():
        (answer,) = await _history(ws, [cpu.id], range=name)
        assert (answer["range"], answer["bucket_seconds"], answer["live"], answer["to"]) == (
            name,
            size,
            True,
            None,
        )
        assert answer["summary"]["count"] == 1


def _abuses(now: datetime) -> list[tuple[dict, str]]:
    """(payload without metric_ids, the field its error names)."""
    hour_ago = _iso(now - timedelta(hours=1))
    return [
        ({"from": hour_ago, "to": hour_ago}, "to"),  # empty
        ({"from": hour_ago, "to": _iso(now - timedelta(hours=2))}, "to"),  # reversed
        ({"from": _iso(now - timedelta(seconds=5))}, "from"),  # shorter than MIN_SPAN
        ({"from": _iso(now - timedelta(days=401))}, "from"),  # longer than MAX_SPAN
        (
            {"from": _iso(now - timedelta(days=7000)), "to": _iso(now - timedelta(days=6990))},
            "from",
        ),  # far past
        ({"from": hour_ago, "to": _iso(now + timedelta(days=3))}, "to"),  # far future
        ({"from": _iso(now + timedelta(hours=1))}, "from"),  # starts in the future
        ({"from": _iso(now + timedelta(hours=1)), "to": _iso(now + timedelta(hours=2))}, "from"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-12-07T10:00:00"}, "from"),  # no offset: whose 10:00?
        ({"from": "2026-12-07"}, "from"),
        ({"from": "9999-12-31T23:00:00-14:00"}, "from"),  # past the last datetime in UTC
        ({"from": "2" * 5000}, "from"),
        ({"from": 1.7e12}, "from"),  # epoch milliseconds are integers
        ({"from": True}, "from"),
        ({"from": None}, "from"),
        ({"from": [hour_ago]}, "from"),
        ({"from": {"t": 1}}, "from"),
        ({"from": 10**30}, "from"),
        ({"from": -(10**15)}, "from"),
        ({"from": hour_ago, "range": "1h"}, "range"),  # both forms
        ({"to": hour_ago}, "to"),  # a to alone
        ({}, "range"),  # neither
        ({"range": "6h"}, "range"),
        ({"from": hour_ago, "until": hour_ago}, "until"),  # unknown key
    ]


async def test_every_hostile_range_gets_an_error_and_the_socket_stays_usable(client, setup, pool):
    cpu = setup["cpu"]
    await publish(pool, cpu, 1.0)
    ws = await connect_bare(client, setup["ops"].id)
    for window, field in _abuses(datetime.now(UTC)):
        await ws.send_json({"action": "history", "payload": {"metric_ids": [cpu.id], **window}})
        error = await receive(ws)
        assert error["action"] == "error", window
        assert error["payload"]["message"] == "invalid payload for 'history'", window
        assert field in error["payload"]["errors"]["payload"], (window, error)
        assert await receive(ws) == {"action": "complete"}
    # Still usable: a ping, and a good range.
    await ws.send_json({"action": "ping", "payload": {"t": 1}})
    assert await receive(ws) == {"action": "pong", "payload": {"t": 1}}
    assert await receive(ws) == {"action": "complete"}
    (answer,) = await _history(ws, [cpu.id], **{"from": _ms(datetime.now(UTC) - timedelta(hours=1))})
    assert answer["summary"]["count"] == 1


async def test_a_dashboard_full_of_metrics_gets_its_whole_history_on_one_socket(
    client, setup, pool, make_metric
):
    """100 metrics (the default quota) with MAX_RAW values each in the range: about
    7 MB of answer, seven times a socket's send buffer. It is a reply the client
    asked for and reads, so it is written as the client reads it, not refused
    as a slow consumer's backlog."""
    metrics = [setup["cpu"], setup["requests"]]
    metrics += [await make_metric(setup["ops"], f"m{n}") for n in range(98)]
    now = await store_last_seconds(pool, metrics, MAX_RAW)

    ws = await connect_bare(client, setup["ops"].id)
    ids = [metric.id for metric in metrics]
    answers = await _history(ws, ids, **{"from": _iso(now - timedelta(seconds=MAX_RAW + 1))})
    assert [answer["metric_id"] for answer in answers] == ids
    for answer in answers:
        assert answer["bucket_seconds"] == 0
        assert [v["value"] for v in answer["values"]] == [float(n) for n in range(MAX_RAW)]
    await ws.send_json({"action": "ping"})
    assert await receive_until(ws, "complete") == [{"action": "pong"}, {"action": "complete"}]
    await ws.close()


async def test_one_users_range_histories_take_turns_and_other_users_do_not_wait():
    turns = PerUserTurns(HISTORY_TURNS_PER_USER)
    running: Counter[int] = Counter()
    most: Counter[int] = Counter()
    answered = asyncio.Event()

    async def history(user_id: int) -> None:
        async with turns.turn(user_id):
            running[user_id] += 1
            most[user_id] = max(most[user_id], running[user_id])
            await answered.wait()
            running[user_id] -= 1

    # One user's many sockets at once, and another user's one.
    tasks = [asyncio.create_task(history(1)) for _ in range(6)] + [asyncio.create_task(history(2))]
    await asyncio.sleep(0.05)
    assert running == {1: HISTORY_TURNS_PER_USER, 2: 1}
    answered.set()
    await asyncio.gather(*tasks)
    assert most == {1: HISTORY_TURNS_PER_USER, 2: 1}
    assert not turns._turns  # nothing kept for users with nothing running


async def test_a_cancelled_wait_for_a_turn_gives_nothing_away():
    turns = PerUserTurns(1)
    held = asyncio.Event()
    done = asyncio.Event()

    async def holder() -> None:
        async with turns.turn(1):
            held.set()
            await done.wait()

    first = asyncio.create_task(holder())
    await held.wait()
    waiting = asyncio.create_task(holder())  # a socket that closes while it waits
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    done.set()
    await first
    assert not turns._turns

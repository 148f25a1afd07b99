"""Numbers on long ranges are true: a histogram's percentiles and a counter's rate,
read through the socket's `history` as the page reads them, equal what the raw
values give on every range, within the stated error (common/stats.py)."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from common import db, stats
from common.schemas import RANGES, SERVER_PAYLOAD_SCHEMAS
from tests.statsdata import RATE, counter_rows, exact_percentile, in_range, latencies
from tests.wsclient import connect_bare, receive
from worker.retention import delete_expired
from worker.rollups import roll_up


async def _store_rolled_up_then_a_tail(
    pool, metric: db.Metric, rows, tail: Callable[[datetime], list[float]]
) -> None:
    """Store `rows` and roll them up; then `tail(now)`, stamped now, which the rollups do
    not cover yet (as the worker's newest ticks); the tail is added to `rows`.

    The tail is computed for the moment it is stamped: on a loaded machine storing
    and rolling up a week takes seconds, and a counter's next value must still
    follow its rate."""
    for start in range(0, len(rows), 10_000):
        await db.insert_values(pool, [(metric.id, v, ts) for ts, v in rows[start : start + 10_000]])
    await roll_up(pool)
    stamp = datetime.now(UTC)
    stored = await db.insert_values(pool, [(metric.id, v, stamp) for v in tail(stamp)])
    rows += [(v.ts, v.value) for v in stored]


async def _history(ws, metric_id: int, range_name: str) -> dict:
    await ws.send_json({"action": "history", "payload": {"metric_ids": [metric_id], "range": range_name}})
    message = await receive(ws, within=30)
    assert message["action"] == "metric_history", message
    assert await receive(ws) == {"action": "complete"}
    # As documented (docs/protocol.md, /asyncapi.json).
    assert SERVER_PAYLOAD_SCHEMAS["metric_history"].validate(message["payload"]) == {}
    return message["payload"]


async def _assert_percentiles(ws, latency: db.Metric, rows, now: datetime, ranges) -> None:
    for range_name in ranges:
        summary = (await _history(ws, latency.id, range_name))["summary"]
        raw = in_range(rows, now, range_name)
        assert summary["count"] == len(raw), range_name
        assert summary["sketch"]["relative_error"] == stats.RELATIVE_ERROR
        assert sum(count for _, count in summary["sketch"]["bins"]) == len(raw), range_name
        for p in stats.PERCENTILES:
            exact = exact_percentile(raw, p)
            # The sketch's bound, plus float rounding.
            assert summary[f"p{p}"] == pytest.approx(exact, rel=stats.RELATIVE_ERROR + 1e-9), (range_name, p)


async def test_histogram_percentiles_agree_with_the_raw_values_on_every_range(
    client, setup, pool, make_metric
):
    latency = await make_metric(setup["ops"], "latency", "histogram", "ms")
    now = datetime.now(UTC)
    rows = latencies(now)
    await _store_rolled_up_then_a_tail(pool, latency, rows, lambda _: [0.7, 95.0, 31.0])
    ws = await connect_bare(client, setup["ops"].id)

    await _assert_percentiles(ws, latency, rows, now, RANGES)
    # The ranges do differ (the median drifts): the test would catch a range read wrongly.
    p99s = {r: exact_percentile(in_range(rows, now, r), 99) for r in ("1h", "24h", "7d")}
    assert p99s["1h"] < p99s["24h"] / 1.1 < p99s["7d"] / 1.2

    # Raw values older than a day gone: the long range reads the minutes' sketches alone.
    assert await delete_expired(pool, 1) > 20_000
    await _assert_percentiles(ws, latency, rows, now, ["24h", "7d"])


async def test_a_steady_counter_reads_the_same_rate_on_every_range(client, setup, pool):
    requests = setup["requests"]
    now = datetime.now(UTC)
    rows, reset = counter_rows(now)
    last_ts, last_value = rows[-1]
    await _store_rolled_up_then_a_tail(
        pool,
        requests,
        rows,
        lambda stamp: [last_value + math.floor(RATE * (stamp - last_ts).total_seconds())],
    )
    ws = await connect_bare(client, setup["ops"].id)

    for range_name, seconds in RANGES.items():
        history = await _history(ws, requests.id, range_name)
        summary = history["summary"]
        assert summary["rate"] == pytest.approx(RATE, rel=0.02), range_name
        # And exactly what the raw values in the range give (the reset in the week counted once).
        since = now - timedelta(seconds=seconds)
        inside = [(ts, v) for ts, v in rows if ts >= since]
        increase = stats.counter_increase(v for _, v in inside)
        assert summary["increase"] == pytest.approx(increase, rel=1e-9, abs=RATE * 20), range_name
        assert summary["last_value"] == rows[-1][1]
        assert summary["last_timestamp"] == rows[-1][0].isoformat()
        if history["bucket_seconds"]:
            # The buckets' increases add up to the range's: a chart of rates agrees with the number.
            total = sum(b["increase"] for b in history["values"])
            assert total == pytest.approx(summary["increase"])
    week = (await _history(ws, requests.id, "7d"))["summary"]
    assert since < reset  # the week holds the reset
    assert week["increase"] > rows[-1][1] * 1.5


async def test_each_rollup_minute_keeps_first_last_increase_and_distribution(
    pool, make_dashboard, make_metric
):
    board = await make_dashboard("ops")
    latency = await make_metric(board, "latency", "histogram", "ms")
    jobs = await make_metric(board, "jobs", "counter", "")
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    rng = random.Random(1)
    latencies = [
        (latency.id, rng.lognormvariate(3, 1), minute + timedelta(seconds=s / 2)) for s in range(240)
    ]
    # A reset inside a minute: 10, 20, 30, then 4 and 9 (an increase of 20 + 4 + 5).
    counts = [(jobs.id, v, minute + timedelta(seconds=10 * i)) for i, v in enumerate([10, 20, 30, 4, 9])]
    await db.insert_values(pool, latencies + counts)
    # A late value, stored after the first pass, belongs to its own minute.
    await roll_up(pool)
    (late,) = await db.insert_values(pool, [(latency.id, -0.5, minute + timedelta(seconds=30))])
    await roll_up(pool)

    [counter_minute] = await db.list_rollups(pool, jobs.id, minute, minute + timedelta(minutes=1))
    assert (counter_minute.first, counter_minute.last, counter_minute.increase) == (10, 9, 29)
    assert counter_minute.sketch is None  # only histograms keep one

    by_minute: dict[datetime, list[float]] = defaultdict(list)
    for _, value, ts in [*latencies, (latency.id, late.value, late.ts)]:
        by_minute[ts.replace(second=0, microsecond=0)].append(value)
    rollups = await db.list_rollups(pool, latency.id, minute, minute + timedelta(minutes=5))
    assert {r.minute: r.sketch for r in rollups} == {m: stats.make_sketch(v) for m, v in by_minute.items()}
    # Bounded: at most one entry per value, fewer where values are close.
    assert all(len(r.sketch) <= r.count for r in rollups)

"""common.db.insert_values stores exactly what it is given (its columns travel as array literals)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from common import db


async def test_values_and_timestamps_come_back_exactly_as_given(pool, make_dashboard, make_metric):
    ops = await make_dashboard("ops")
    first, second = await make_metric(ops, "a"), await make_metric(ops, "b")
    now = datetime.now(UTC).replace(microsecond=123456)
    india = timezone(timedelta(hours=5, minutes=30))
    rows = [
        (first.id, 0.1 + 0.2, now),
        (second.id, -0.0, now),
        (first.id, 1.7976931348623157e308, now - timedelta(seconds=1)),
        (second.id, 5e-324, now.replace(microsecond=0)),  # isoformat leaves the zero microseconds out
        (first.id, -123456789.125, now.astimezone(india)),  # another offset: the same instant
        (second.id, 42.0, now + timedelta(microseconds=1)),
    ]
    stored = await db.insert_values(pool, rows)
    assert [(v.metric_id, v.value, v.ts) for v in stored] == rows
    assert [v.id for v in stored] == sorted(v.id for v in stored)
    read = await db.latest_values(pool, [first.id, second.id], 10)
    assert {(v.id, v.value, v.ts) for values in read.values() for v in values} == {
        (v.id, v.value, v.ts) for v in stored
    }


async def test_a_thousand_values_in_one_call_keep_their_order(pool, make_dashboard, make_metric):
    ops = await make_dashboard("ops")
    metrics = [await make_metric(ops, f"m{i}") for i in range(10)]
    now = datetime.now(UTC)
    rows = [(metrics[i % 10].id, i / 7, now + timedelta(microseconds=i)) for i in range(1000)]
    stored = await db.insert_values(pool, rows)
    assert [(v.metric_id, v.value, v.ts) for v in stored] == rows


async def test_rows_of_a_deleted_metric_are_left_out_and_the_rest_stored(pool, make_dashboard, make_metric):
    ops = await make_dashboard("ops")
    kept, gone = await make_metric(ops, "kept"), await make_metric(ops, "gone")
    await db.delete_metric(pool, ops.id, gone.id)
    now = datetime.now(UTC)
    rows = [(gone.id, 1.0, now), (kept.id, 2.0, now), (gone.id, 3.0, now), (kept.id, 4.0, now)]
    stored = await db.insert_values(pool, rows)
    assert [(v.metric_id, v.value) for v in stored] == [(kept.id, 2.0), (kept.id, 4.0)]

"""Real data is never mixed with generated data: a pushed metric gets only
what is pushed (the worker writes nothing to it), a generated one refuses
pushes, and a counter never decreases, however many pushes race."""

from __future__ import annotations

import asyncio
import csv
import io
import random
from datetime import UTC, datetime, timedelta

import pytest

from common import db
from common.sources import PUSH, RANDOM
from tests.helpers import api_token, eventually, log_in
from tests.processes import child
from tests.wsclient import read_connect_sequence


async def _token(pool, dashboard: db.Dashboard) -> dict[str, str]:
    secret = await api_token(pool, dashboard.id)
    return {"Authorization": f"Bearer {secret}"}


async def _stored(pool, metric: db.Metric) -> list[db.MetricValue]:
    """Every stored value of the metric, in time order (ties by id)."""
    return (await db.latest_values(pool, [metric.id], 100_000, by_time=True))[metric.id]


async def test_concurrent_pushes_never_make_a_counter_decrease(client, pool, make_dashboard, make_metric):
    ops = await make_dashboard("ops")
    jobs = await make_metric(ops, "jobs", "counter")
    auth = await _token(pool, ops)
    url = f"/api/v1/metrics/{jobs.id}/values"
    values = list(range(1, 21))
    random.Random(14).shuffle(values)  # interleaved: most arrive after a larger one

    async def push(value: int):
        response = await client.post(url, json={"value": value}, headers=auth)
        return value, response.status, await response.json()

    answers = await asyncio.gather(*(push(value) for value in values))

    stored = [v.value for v in await _stored(pool, jobs)]
    assert stored == sorted(stored), f"the counter decreased: {stored}"
    accepted = sorted(float(value) for value, status, _ in answers if status == 201)
    assert stored == accepted and accepted
    for value, status, body in answers:
        if status != 201:
            assert status == 422, body
            (message,) = body["errors"]["values"]["0"]["value"]
            assert message.startswith("counter jobs would decrease from ") and message.endswith(
                f"to {value}.0"
            )


async def test_a_backdated_counter_value_may_not_exceed_a_later_one(
    client, pool, make_dashboard, make_metric
):
    ops = await make_dashboard("ops")
    jobs = await make_metric(ops, "jobs", "counter")
    auth = await _token(pool, ops)
    url = f"/api/v1/metrics/{jobs.id}/values"
    now = datetime.now(UTC)
    assert (await client.post(url, json={"value": 10}, headers=auth)).status == 201
    earlier = (now - timedelta(minutes=1)).isoformat()
    response = await client.post(url, json={"value": 20, "timestamp": earlier}, headers=auth)
    assert response.status == 422
    assert (await response.json())["errors"]["values"]["0"]["value"] == [
        "counter jobs would decrease from 20.0 to 10.0, a value stored after it"
    ]
    # Below the later value it fits: the counter still only grows in time order.
    assert (await client.post(url, json={"value": 5, "timestamp": earlier}, headers=auth)).status == 201
    assert [v.value for v in await _stored(pool, jobs)] == [5.0, 10.0]


async def test_a_generated_metric_refuses_pushes(client, pool, make_dashboard, make_metric):
    ops = await make_dashboard("ops")
    demo = await make_metric(ops, "demo", "gauge", source=RANDOM)
    pushed = await make_metric(ops, "pushed", "gauge")
    assert pushed.source == PUSH
    auth = await _token(pool, ops)
    batch = [{"metric_id": pushed.id, "value": 1}, {"metric_id": demo.id, "value": 2}]
    response = await client.post("/api/v1/values", json={"values": batch}, headers=auth)
    assert response.status == 422
    errors = (await response.json())["errors"]["values"]
    assert list(errors) == ["1"]
    assert "metric demo gets random values from the worker" in errors["1"]["metric_id"][0]
    assert await _stored(pool, pushed) == [] and await _stored(pool, demo) == []


@pytest.mark.slow
async def test_a_running_worker_leaves_a_pushed_metric_alone(
    client, settings, pool, make_user, make_dashboard, make_metric
):
    """The issue's report: a counter pushed 1000000 read back with the worker's
    random walk beside it. Now it holds what was pushed, in every view."""
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    demo = await make_metric(ops, "demo", "gauge", source=RANDOM)  # shows the worker ticking
    pushed = await make_metric(ops, "pushed", "counter")
    auth = await _token(pool, ops)
    url = f"/api/v1/metrics/{pushed.id}/values"
    sent = [1_000_000.0]
    assert (await client.post(url, json={"value": sent[0]}, headers=auth)).status == 201
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    with child(["-m", "worker", *urls, "run", "--interval", "0.1"]):
        for value in (1_000_005.0, 1_000_050.0):
            await _wait_for_ticks(pool, demo, 4)
            assert (await client.post(url, json={"value": value}, headers=auth)).status == 201
            sent.append(value)
        await _wait_for_ticks(pool, demo, 12)

    assert [v.value for v in await _stored(pool, pushed)] == sent
    await log_in(client, "alice")
    ws = await client.ws_connect(f"/ws/dashboard/{ops.id}/")
    histories = [m["payload"] for m in await read_connect_sequence(ws, 2) if m["action"] == "metric_history"]
    await ws.close()
    (history,) = [h for h in histories if h["metric_id"] == pushed.id]
    assert [v["value"] for v in history["values"]] == sent
    response = await client.get(
        f"/dashboards/{ops.id}/export", params={"format": "csv", "metric": str(pushed.id), "since": "1h"}
    )
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [float(row["value"]) for row in rows] == sent


async def _wait_for_ticks(pool, metric: db.Metric, count: int) -> None:
    async def enough() -> bool:
        return len(await _stored(pool, metric)) >= count

    await eventually(enough, 15, f"the worker stored {count} values of {metric.name}")

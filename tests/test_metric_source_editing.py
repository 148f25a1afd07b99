"""A metric's source chosen from the page (server/editing.py): checked as the
CLI checks it, sent in `dashboard_config`, and used by the worker's next tick."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from common import db
from tests.helpers import post
from tests.servers import servers
from tests.wsclient import next_config, open_socket
from worker.tick import Producer


async def test_a_system_reading_implies_type_unit_and_description(client, team, pool):
    ops = team["ops"]
    ws = await open_socket(client, ops, 2)
    status, answer = await post(
        client, f"/dashboards/{ops.id}/metrics", {"name": "mem", "source": "system:memory_used"}
    )
    assert status == 201, answer
    (mem,) = [m for m in await db.list_metrics(pool, ops.id) if m.name == "mem"]
    assert (mem.type, mem.unit, mem.description, mem.source) == (
        "gauge",
        "bytes",
        "Memory in use",
        "system:memory_used",
    )
    pushed = next(m for m in (await next_config(ws))["metrics"] if m["name"] == "mem")
    assert pushed["source"] == "system:memory_used"
    # Given fields win; a gauge reading may feed a histogram.
    status, _ = await post(
        client,
        f"/dashboards/{ops.id}/metrics",
        {"name": "load", "type": "histogram", "unit": "", "source": "system:load1"},
    )
    assert status == 201
    (load,) = [m for m in await db.list_metrics(pool, ops.id) if m.name == "load"]
    assert (load.type, load.unit, load.source) == ("histogram", "", "system:load1")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "type": "counter", "source": "system:cpu_percent"}, "source"),
        ({"name": "x", "type": "gauge", "source": "system:net_bytes_sent"}, "source"),
        ({"name": "x", "type": "gauge", "source": "system:nope"}, "source"),
        ({"name": "x", "type": "gauge", "source": 1}, "source"),
        ({"name": "x", "source": "random"}, "type"),
        ({"name": "x"}, "type"),
    ],
)
async def test_a_source_that_cannot_feed_the_metric_is_refused(client, team, pool, body, field):
    status, answer = await post(client, f"/dashboards/{team['ops'].id}/metrics", body)
    assert (status, list(answer["errors"])) == (400, [field]), answer
    assert [m.name for m in await db.list_metrics(pool, team["ops"].id)] == ["cpu", "requests"]


async def test_changing_the_source_is_checked_against_the_type(client, team, pool):
    ops, cpu, requests = team["ops"], team["cpu"], team["requests"]
    status, answer = await post(
        client, f"/dashboards/{ops.id}/metrics/{cpu.id}", {"source": "system:net_bytes_sent"}
    )
    assert (status, list(answer["errors"])) == (400, ["source"]), answer
    status, _ = await post(client, f"/dashboards/{ops.id}/metrics/{requests.id}", {"source": "system:nope"})
    assert status == 400
    assert {m.source for m in await db.list_metrics(pool, ops.id)} == {"push"}

    status, answer = await post(
        client, f"/dashboards/{ops.id}/metrics/{cpu.id}", {"source": "system:memory_used"}
    )
    assert status == 200, answer
    assert next(m for m in answer["config"]["metrics"] if m["id"] == cpu.id)["source"] == "system:memory_used"
    # Other fields stay, and a change without `source` keeps it.
    await post(client, f"/dashboards/{ops.id}/metrics/{cpu.id}", {"unit": "B"})
    (changed,) = [m for m in await db.list_metrics(pool, ops.id) if m.id == cpu.id]
    assert (changed.name, changed.unit, changed.source) == ("cpu", "B", "system:memory_used")


async def test_the_worker_uses_a_source_chosen_from_the_page(client, team, pool):
    ops, cpu = team["ops"], team["cpu"]
    async with Redis.from_url(servers().redis_url) as redis_client:
        producer = Producer(pool, redis_client, servers().channels)
        await producer.tick()
        assert (await db.latest_values(pool, [cpu.id], 1))[cpu.id] == []  # pushed: the worker writes none
        await post(client, f"/dashboards/{ops.id}/metrics/{cpu.id}", {"source": "random"})
        await producer.tick()
        (random_value,) = (await db.latest_values(pool, [cpu.id], 1))[cpu.id]
        assert 10 <= random_value.value <= 100  # the demo generator's range for gauges
        await post(client, f"/dashboards/{ops.id}/metrics/{cpu.id}", {"source": "system:memory_used"})
        # The same producer, as a running worker: it re-reads the metrics every tick.
        await producer.tick()
    (reading,) = (await db.latest_values(pool, [cpu.id], 1))[cpu.id]
    assert reading.value > 1_000_000  # bytes of memory in use, not a demo value

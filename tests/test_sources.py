"""Metric sources: the host's real readings through psutil, chosen per metric."""

from __future__ import annotations

import random

import psutil
import pytest
from redis.asyncio import Redis

from common import db
from common.sources import SOURCES, SYSTEM_READINGS, check_source, system_reading
from server.cli import main as server_main
from tests.helpers import expect_error, expect_ok, invoker
from tests.servers import servers
from worker import sources
from worker.sources import READERS, Sources
from worker.tick import Producer


@pytest.fixture
def server_cli(database_url, clean_state):
    return invoker(server_main, database_url)


def _metric(metric_id: int, source: str, metric_type: str | None = None) -> db.Metric:
    reading = SYSTEM_READINGS[source.removeprefix("system:")]
    return db.Metric(metric_id, 1, source, "", metric_type or reading.metric_type, reading.unit, source)


def test_every_reading_has_a_reader():
    assert READERS.keys() == SYSTEM_READINGS.keys()


def test_real_readings_are_plausible():
    readings = [source for source in SOURCES if system_reading(source)]
    metrics = [_metric(i, source) for i, source in enumerate(readings, start=1)]
    produce = Sources(random.Random(1)).produce
    last: dict[int, float] = {}
    seen = []
    for _ in range(3):
        values = produce(metrics, last)
        last.update(values)
        seen.append(values)
    by_source = {m.source: [values.get(m.id) for values in seen] for m in metrics}
    total_memory = psutil.virtual_memory().total
    for name in ("cpu_percent", "memory_percent"):
        assert all(0 <= v <= 100 for v in by_source[f"system:{name}"]), name
    assert all(0 < v <= total_memory for v in by_source["system:memory_used"])
    for name in ("load1", "load5", "load15"):
        assert all(v >= 0 for v in by_source[f"system:{name}"]), name
    for name in ("net_bytes_sent", "net_bytes_recv", "disk_read_bytes", "disk_write_bytes"):
        readings = by_source[f"system:{name}"]
        if name.startswith("disk") and psutil.disk_io_counters() is None:
            assert readings == [None] * 3  # no disks visible: no values, not zeros
            continue
        assert all(v >= 0 for v in readings), name
        assert readings == sorted(readings), f"{name} decreased: {readings}"


def test_counters_stay_monotonic_when_the_host_counter_restarts(monkeypatch):
    raw = iter([1000.0, 1500.0, 200.0, 300.0])  # a reboot between 1500 and 200
    monkeypatch.setitem(sources.READERS, "net_bytes_sent", lambda: next(raw))
    metric = _metric(1, "system:net_bytes_sent")
    produce = Sources(random.Random(1)).produce
    last = {1: 800.0}  # stored before the worker started
    stored = []
    for _ in range(4):
        value = produce([metric], last)[1]
        last[1] = value
        stored.append(value)
    assert stored == [1000.0, 1500.0, 1700.0, 1800.0]


def test_a_gauge_reading_can_feed_a_histogram_but_a_counter_needs_a_counter():
    check_source("system:cpu_percent", "histogram")
    with pytest.raises(ValueError, match="system:net_bytes_sent is a counter"):
        check_source("system:net_bytes_sent", "gauge")
    with pytest.raises(ValueError, match="choose one of: push, random, system:cpu_percent"):
        check_source("system:coffee", "gauge")


async def test_worker_ticks_store_the_hosts_readings(pool, make_dashboard):
    board = await make_dashboard("host")
    cpu = await db.create_metric(pool, board.id, "cpu", "gauge", "%", source="system:cpu_percent")
    sent = await db.create_metric(pool, board.id, "sent", "counter", "bytes", source="system:net_bytes_sent")
    await db.create_metric(pool, board.id, "demo", "gauge", source="random")
    pushed = await db.create_metric(pool, board.id, "pushed", "gauge")
    assert pushed.source == "push"  # the default: the worker leaves it alone

    async with Redis.from_url(servers().redis_url) as client:
        producer = Producer(pool, client, servers().channels)
        for _ in range(3):
            assert await producer.tick() == 3
    stored = await db.latest_values(pool, [cpu.id, sent.id, pushed.id], 10)
    assert stored[pushed.id] == []
    assert all(0 <= v.value <= 100 for v in stored[cpu.id])
    counts = [v.value for v in stored[sent.id]]
    assert counts == sorted(counts) and counts[0] > 0


def test_metric_add_with_a_system_source(server_cli):
    expect_ok(server_cli("dashboard", "create", "Host"))
    out = expect_ok(server_cli("metric", "add", "host", "cpu", "--source", "system:cpu_percent"))
    assert out.startswith("added gauge cpu (id ") and "system:cpu_percent" in out
    expect_ok(server_cli("metric", "add", "host", "sent", "--source", "system:net_bytes_sent"))
    listed = expect_ok(server_cli("metric", "list", "host")).splitlines()
    assert [line.split("\t")[1:] for line in listed] == [
        ["gauge", "cpu", "%", "system:cpu_percent"],
        ["counter", "sent", "bytes", "system:net_bytes_sent"],
    ]
    sources_listed = expect_ok(server_cli("metric", "sources"))
    assert "system:load1\tgauge" in sources_listed
    assert sources_listed.startswith("push\tany\t\tValues pushed to the HTTP API")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--source", "system:coffee"],
            "choose one of: push, random, system:cpu_percent, system:memory_used",
        ),
        (["--source", "system:net_bytes_sent", "--type", "gauge"], "system:net_bytes_sent is a counter"),
        ([], "Missing option '--type'"),
    ],
    ids=["unknown", "wrong type", "push needs a type"],
)
def test_metric_add_refuses_a_bad_source(server_cli, args, message):
    expect_ok(server_cli("dashboard", "create", "Host"))
    assert message in expect_error(server_cli("metric", "add", "host", "x", *args), exit_code=2)

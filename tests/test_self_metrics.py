"""The service's own observability: /metrics on the server and the worker, JSON logs."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from datetime import UTC, datetime

import psycopg2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from common import db
from common.events import encode_values
from common.sources import RANDOM
from common.version import __version__
from tests.processes import child, free_port, wait_for_http
from tests.servers import servers
from tests.wsclient import read_connect_sequence, receive


def samples(text: str) -> dict[str, float]:
    """Every sample of a scrape, keyed by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


async def scrape(client) -> dict[str, float]:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples(await response.text())


async def publish(pool, metric, values: list[float]) -> None:
    stored = await db.insert_values(pool, [(metric.id, v, datetime.now(UTC)) for v in values])
    async with Redis.from_url(servers().redis_url) as client:
        await client.publish(
            servers().channels.dashboard(metric.dashboard_id),
            encode_values(metric.dashboard_id, [(metric, item) for item in stored]),
        )


async def test_metrics_needs_no_login_and_starts_at_zero(client, clean_state):
    found = await scrape(client)
    assert found["dashboard_open_connections"] == 0
    assert found["dashboard_messages_sent_total"] == 0
    assert found["dashboard_backend_errors_total{backend=database}"] == 0
    assert found["dashboard_backend_errors_total{backend=redis}"] == 0
    assert found["dashboard_publish_to_send_seconds_count"] == 0


async def test_metrics_show_the_process_its_runtime_and_release_without_created_series(client):
    response = await client.get("/metrics")
    text = await response.text()
    found = samples(text)
    assert found["process_resident_memory_bytes"] > 1_000_000
    assert found["process_open_fds"] > 0
    assert found["process_cpu_seconds_total"] > 0
    assert "process_start_time_seconds" in found
    assert any(name.startswith("python_gc_objects_collected_total") for name in found)
    assert any(name.startswith("python_info") for name in found)
    assert found[f"dashboard_build_info{{version={__version__}}}"] == 1
    # Every counter and histogram would otherwise add a _created series.
    assert "_created" not in text


async def test_connections_sends_and_latency_move(client, pool, setup):
    ws = await client.ws_connect(f"/ws/dashboard/{setup['ops'].id}/")
    await read_connect_sequence(ws, 2)
    second = await client.ws_connect(f"/ws/dashboard/{setup['ops'].id}/")
    await read_connect_sequence(second, 2)
    assert (await scrape(client))["dashboard_open_connections"] == 2

    await publish(pool, setup["cpu"], [1.0, 2.0, 3.0])
    for socket in (ws, second):
        for _ in range(3):
            assert (await receive(socket))["action"] == "metric_update"
    found = await scrape(client)
    # Three values, each handed to two connections.
    assert found["dashboard_messages_sent_total"] == 6
    assert found["dashboard_publish_to_send_seconds_count"] == 3
    # Stored and published just now: well under the 10 s bucket.
    assert found["dashboard_publish_to_send_seconds_bucket{le=10.0}"] == 3

    await ws.close()
    await second.close()
    for _ in range(50):
        if (await scrape(client))["dashboard_open_connections"] == 0:
            break
        await asyncio.sleep(0.05)
    assert (await scrape(client))["dashboard_open_connections"] == 0


async def test_database_errors_are_counted(client, setup, monkeypatch):
    async def broken(*args: object) -> None:
        raise psycopg2.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(db, "list_user_dashboards", broken)
    response = await client.get("/dashboards/")
    assert response.status == 503  # the "try again shortly" answer (server/errorpages.py)
    assert (await scrape(client))["dashboard_backend_errors_total{backend=database}"] == 1


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def _json_lines(output: str) -> list[dict]:
    """Every line of the output, each of which must be one JSON object."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(entry, dict) for entry in parsed)
    return parsed


@pytest.mark.slow
async def test_worker_metrics_port_and_json_logs(settings, make_dashboard, make_metric):
    ops = await make_dashboard("ops")
    await make_metric(ops, "cpu", "gauge", source=RANDOM)
    port = free_port()
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    args = [
        "-m",
        "worker",
        *urls,
        "--log-format",
        "json",
        "run",
        "--interval",
        "0.1",
        "--metrics-port",
        str(port),
        "--retention-days",
        "30",
    ]
    with child(args) as worker:
        await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{port}/metrics", worker)
        found: dict[str, float] = {}
        for _ in range(100):
            found = samples(await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics"))
            if found["dashboard_worker_tick_seconds_count"] >= 3:
                break
            await asyncio.sleep(0.1)
        assert found["dashboard_worker_tick_seconds_count"] >= 3
        assert found["dashboard_worker_values_stored_total"] >= 3
        assert 0 <= found["dashboard_worker_tick_lag_seconds"] < 5
        assert found["dashboard_worker_backend_errors_total{backend=database}"] == 0
        assert found[f"dashboard_build_info{{version={__version__}}}"] == 1
        assert found["process_resident_memory_bytes"] > 1_000_000
        worker.terminate()
        assert worker.wait(timeout=15) == 0
        entries = _json_lines(worker.output())
    assert {"time", "level", "logger", "message", "pid"} <= set(entries[0])
    assert any(e["message"].startswith("worker started") for e in entries)
    assert any(e["message"] == "worker stopped" for e in entries)


@pytest.mark.slow
async def test_server_json_logs_from_env(settings):
    port = free_port()
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    env = {"DASHBOARD_LOG_FORMAT": "json"}
    with child(["-m", "server", *urls, "run", "--port", str(port)], env=env) as server:
        await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{port}/healthz", server)
        scraped = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        assert "dashboard_open_connections 0.0" in scraped
        server.terminate()
        assert server.wait(timeout=15) == 0
        entries = _json_lines(server.output())
    assert any(e["message"].startswith("serving on http://127.0.0.1") for e in entries)
    # aiohttp's access log goes through the same formatter.
    assert any(e["logger"] == "aiohttp.access" and "GET /metrics" in e["message"] for e in entries)

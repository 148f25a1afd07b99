"""The laptop default: no URLs configured, embedded PostgreSQL and Redis from nothing."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest

from server.cli.demo import DEMO_METRICS, MACHINE_METRICS
from tests.helpers import browser_log_in
from tests.processes import child, free_port, wait_for_http
from tests.wsclient import read_connect_sequence, receive

pytestmark = pytest.mark.slow

# The embedded default applies only when no URL is configured anywhere.
NO_URLS = {key: "" for key in ("DASHBOARD_DATABASE_URL", "DASHBOARD_REDIS_URL")}


async def test_quick_start_runs_everything_from_an_empty_data_dir(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**NO_URLS, "DASHBOARD_DATA_DIR": str(data_dir)}
    with child(["-m", "server", "up", "--port", str(port), "--interval", "0.2"], env=env) as up:
        await asyncio.to_thread(wait_for_http, f"{base}/login", up, 90)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            await browser_log_in(session, base, "demo", "demo")
            async with session.get(f"{base}/dashboards/") as response:
                page = await response.text()
            assert "Service health (demo)" in page
            ws = await session.ws_connect(f"{base}/ws/dashboard/1/", origin=base)
            sequence = await read_connect_sequence(ws, 9)
            assert sequence[0]["payload"]["status_code"] == 200
            assert len(sequence[1]["payload"]["metrics"]) == 9
            update = await receive(ws, within=20)
            assert update["action"] == "metric_update"
            await ws.close()
        output = up.output()
    assert f"Open http://127.0.0.1:{port}/ and log in as demo / demo" in output
    assert (data_dir / "postgres" / "PG_VERSION").exists()


def test_worker_and_server_cli_share_the_embedded_servers(tmp_path):
    env = {**os.environ, **NO_URLS, "DASHBOARD_DATA_DIR": str(tmp_path / "data")}
    import subprocess
    import sys

    demo = subprocess.run(
        [sys.executable, "-m", "server", "demo"], env=env, capture_output=True, text=True, timeout=120
    )
    assert demo.returncode == 0, demo.stderr
    assert "editor login: demo / demo" in demo.stdout
    tick = subprocess.run(
        [sys.executable, "-m", "worker", "tick"], env=env, capture_output=True, text=True, timeout=120
    )
    assert tick.returncode == 0, tick.stderr
    # One value per metric of both demo dashboards.
    assert f"stored and published {len(DEMO_METRICS) + len(MACHINE_METRICS)} value(s)" in tick.stdout
    check = subprocess.run(
        [sys.executable, "-m", "server", "check"], env=env, capture_output=True, text=True, timeout=120
    )
    assert (check.returncode, check.stdout.strip()) == (0, "ok")

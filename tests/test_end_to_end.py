"""Worker → PostgreSQL → Redis → server → browser socket, as separate processes."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aiohttp
import pytest

from common import db
from common.sources import RANDOM
from tests.helpers import browser_log_in
from tests.processes import child, free_port, wait_for_http
from tests.servers import with_database_name
from tests.wsclient import read_connect_sequence, receive

pytestmark = pytest.mark.slow


async def test_worker_tick_reaches_a_connected_client(settings, pool, make_user, make_dashboard, make_metric):
    alice = await make_user("alice")
    dashboard = await make_dashboard("ops", members=(alice,))
    metrics = [
        await make_metric(dashboard, "cpu", "gauge", source=RANDOM),
        await make_metric(dashboard, "hits", "counter", source=RANDOM),
    ]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    with child(["-m", "server", *urls, "run", "--port", str(port)]) as server:
        await asyncio.to_thread(wait_for_http, f"{base}/login", server)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            await browser_log_in(session, base, "alice", "secret-pw")
            ws = await session.ws_connect(f"{base}/ws/dashboard/{dashboard.id}/", origin=base)
            sequence = await read_connect_sequence(ws, 2)
            assert [m["action"] for m in sequence] == ["authentication", "dashboard_config"] + [
                "metric_history"
            ] * 2 + ["alerts"]
            with child(["-m", "worker", *urls, "run", "--interval", "0.2"]):
                updates = [await receive(ws, within=15) for _ in range(4)]
            await ws.close()
    assert {u["action"] for u in updates} == {"metric_update"}
    assert {u["payload"]["metric_id"] for u in updates} == {m.id for m in metrics}
    # Every value shown to the client is in PostgreSQL.
    stored = await db.latest_values(pool, [m.id for m in metrics], 100)
    stored_pairs = {(v.metric_id, v.value, v.ts.isoformat()) for values in stored.values() for v in values}
    for update in updates:
        payload = update["payload"]
        assert (payload["metric_id"], payload["value"], payload["timestamp"]) in stored_pairs


async def test_server_refuses_to_start_on_an_unmigrated_database(settings):
    import psycopg2

    # Named after the test database: two parallel runs never share it.
    name = f"{urlsplit(settings.database_url).path.lstrip('/')}_empty"
    admin = psycopg2.connect(with_database_name(settings.database_url, "postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
    try:
        empty = with_database_name(settings.database_url, name)
        with child(
            [
                "-m",
                "server",
                "--database-url",
                empty,
                "--redis-url",
                settings.redis_url,
                "run",
                "--port",
                str(free_port()),
            ]
        ) as server:
            code = await asyncio.to_thread(server.wait, 30)
            output = server.output()
        # 78, EX_CONFIG: the units' RestartPreventExitStatus, no restart loop.
        assert code == 78
        assert "migration(s): run `dashboard-server migrate`" in output
        assert "Traceback" not in output
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()

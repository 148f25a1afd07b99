"""`dashboard-server run --workers N`: N processes on one port, each with its own subscription."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import psutil
import pytest
from redis.asyncio import Redis

from tests.helpers import browser_log_in, eventually_sync, run_cli
from tests.processes import child, free_port, free_port_range, wait_for_http
from tests.wsclient import publish_many, read_connect_sequence, receive

pytestmark = pytest.mark.slow


def _wait_until_listening(processes: list[psutil.Process], port: int, timeout: float = 30) -> None:
    """Every process has bound the port (the first to answer HTTP may be alone)."""

    def all_listening() -> bool:
        return all(
            any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in p.net_connections("tcp"))
            for p in processes
        )

    eventually_sync(all_listening, timeout, f"every server process listens on {port}")


def _sample(text: str, name: str) -> float:
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(f"{name} "))


async def test_two_server_processes_share_the_port_and_each_fans_out(
    settings, pool, make_user, make_dashboard, make_metric
):
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    cpu = await make_metric(ops, "cpu")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    metrics_port = free_port_range(2)
    run = ["run", "--port", str(port), "--workers", "2", "--metrics-port", str(metrics_port)]
    with child(["-m", "server", *urls, *run]) as server:
        await asyncio.to_thread(wait_for_http, f"{base}/login", server)
        # multiprocessing also starts a resource tracker: count the servers.
        children = [c for c in psutil.Process(server.pid).children() if "spawn_main" in " ".join(c.cmdline())]
        assert len(children) == 2
        await asyncio.to_thread(_wait_until_listening, children, port)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            await browser_log_in(session, base, "alice", "secret-pw")
            # 16 connections land on both processes but for a 1 in 32768 chance.
            sockets = [await session.ws_connect(f"{base}/ws/dashboard/{ops.id}/") for _ in range(16)]
            for ws in sockets:
                await read_connect_sequence(ws, 1)
            async with Redis.from_url(settings.redis_url) as redis_client:
                clients = await redis_client.client_list()
                database = (await redis_client.client_info())["db"]
            # Servers of other deployments on the same Redis (another database) do not count.
            subscribers = {
                int(entry["name"].split("/")[1])
                for entry in clients
                if entry["name"].startswith("dashboard-server/")
                and int(entry["sub"]) >= 2
                and str(entry["db"]) == str(database)
            }
            assert subscribers == {c.pid for c in children}
            await publish_many(pool, cpu, 1)
            for ws in sockets:
                assert (await receive(ws))["payload"]["metric_id"] == cpu.id
            # Each process answers for itself on its own port: the totals are exact.
            open_connections = []
            for own_port in (metrics_port, metrics_port + 1):
                async with session.get(f"http://127.0.0.1:{own_port}/metrics") as response:
                    scraped = await response.text()
                open_connections.append(_sample(scraped, "dashboard_open_connections"))
            assert sum(open_connections) == 16 and all(open_connections), open_connections
            server.send_signal(signal.SIGTERM)
            closes = [await ws.receive() for ws in sockets]
        # What each client got is a close frame with 1001 (ws.close_code may
        # read 1006 where the server hung up before the client's reply).
        assert {(message.type, message.data) for message in closes} == {(aiohttp.WSMsgType.CLOSE, 1001)}
        assert await asyncio.to_thread(server.wait, 20) == 0
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)


async def test_a_metric_added_while_sockets_are_open_is_in_new_sockets_config_on_every_process(
    settings, pool, make_user, make_dashboard, make_metric
):
    """Each process keeps the config of the dashboards it serves (server/live/configcache.py):
    a change announced by another process (here the CLI) must reach that copy, so a
    socket opened afterwards on either server starts with the new metric."""
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    await make_metric(ops, "cpu")
    ports = [free_port(), free_port()]
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    with (
        child(["-m", "server", *urls, "run", "--port", str(ports[0])]) as first,
        child(["-m", "server", *urls, "run", "--port", str(ports[1])]) as second,
    ):
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        for base, server in zip(bases, (first, second), strict=True):
            await asyncio.to_thread(wait_for_http, f"{base}/login", server)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            # Sessions live in Redis, and the cookie is the host's: one login serves both.
            await browser_log_in(session, bases[0], "alice", "secret-pw")
            # An open socket on each process: each now holds the dashboard's config.
            open_sockets = [await session.ws_connect(f"{base}/ws/dashboard/{ops.id}/") for base in bases]
            for ws in open_sockets:
                await read_connect_sequence(ws, 1)

            await run_cli(settings, "metric", "add", "ops", "disk", "--type", "gauge")
            for base, ws in zip(bases, open_sockets, strict=True):
                pushed = await receive(ws)  # that process heard of the change
                assert [m["name"] for m in pushed["payload"]["metrics"]] == ["cpu", "disk"]
                fresh = await session.ws_connect(f"{base}/ws/dashboard/{ops.id}/")
                sequence = await read_connect_sequence(fresh, 2)
                assert [m["name"] for m in sequence[1]["payload"]["metrics"]] == ["cpu", "disk"]
                await fresh.close()
            for ws in open_sockets:
                await ws.close()

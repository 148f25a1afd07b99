"""Running the server: in this process, or as N processes sharing one port.

With N > 1 each child binds the port with SO_REUSEPORT, so the kernel spreads
new connections over them; each child has its own event loop, database pool
and single Redis subscription. The parent alone talks to systemd (the unit
says NotifyAccess=main): it sends READY=1 once every child serves, and pings
the watchdog only while every child has shown its event loop turning within
the last ping interval, so one hung child gets the whole set restarted
instead of being masked by the healthy ones. It forwards SIGTERM/SIGINT and
stops all children if one of them dies.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from collections.abc import MutableSequence, Sequence
from multiprocessing.process import BaseProcess

from common.cli import EX_CONFIG
from common.config import ResolvedSettings
from common.failures import BackendUnavailable
from common.logs import configure_logging
from common.migrate import MigrationError
from common.sdnotify import SYSTEMD_VARIABLES, notify, watchdog_interval
from server.app import create_app
from server.running import CannotListen, Heartbeat, run_server

log = logging.getLogger(__name__)

# How often the parent looks at its children (exits, beats).
SUPERVISE_PERIOD = 0.2
# Children beat at least this often, whatever the watchdog interval.
MAX_BEAT_PERIOD = 0.5


class ServeError(RuntimeError):
    """The server could not start or a server process died."""

    def __init__(self, message: str, *, configuration: bool = False) -> None:
        super().__init__(message)
        # A setting or the schema is wrong: restarting will not help.
        self.configuration = configuration


def serve(settings: ResolvedSettings, host: str, port: int, workers: int = 1) -> None:
    """Serve until SIGINT/SIGTERM with `workers` processes."""
    if workers == 1:
        _run(settings, host, port, reuse_port=False, metrics_port=settings.metrics_port)
        return
    ping_every = watchdog_interval()
    beat_period = MAX_BEAT_PERIOD if ping_every is None else min(MAX_BEAT_PERIOD, ping_every / 4)
    context = multiprocessing.get_context("spawn")
    # Each child's last beat (time.monotonic(), one clock for all processes); 0 until it serves.
    beats = context.Array("d", workers, lock=False)
    level = logging.getLevelName(logging.getLogger().level)
    children = [
        context.Process(
            target=_child,
            args=(settings, host, port, level, beats, i, beat_period),
            name=f"dashboard-server-{i}",
        )
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
        failed = _supervise(children, beats, stop_requested, ping_every)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed is not None:
        raise ServeError(
            f"server process {failed.name} exited with code {failed.exitcode}; stopped the others",
            configuration=failed.exitcode == EX_CONFIG,
        )


def _supervise(
    children: Sequence[BaseProcess],
    beats: MutableSequence[float],
    stop_requested: threading.Event,
    ping_every: float | None,
) -> BaseProcess | None:
    """Join the children, speaking for them to systemd; the first that dies
    unasked makes the others stop."""
    failed = None
    ready = False
    last_ping = 0.0
    stopping_told = False
    while any(child.is_alive() for child in children):
        for child in children:
            child.join(SUPERVISE_PERIOD / len(children))
            if child.exitcode is not None and failed is None and not stop_requested.is_set():
                failed = child
                for other in children:
                    if other.is_alive():
                        other.terminate()
        if stop_requested.is_set() or failed is not None:
            if not stopping_told:
                notify("STOPPING=1")
                stopping_told = True
            continue
        now = time.monotonic()
        if not ready and all(beat > 0 for beat in beats):
            ready = True
            notify(f"READY=1\nSTATUS=serving with {len(children)} processes")
        if (
            ready
            and ping_every is not None
            and now - last_ping >= ping_every
            and all(now - beat < ping_every for beat in beats)
        ):
            notify("WATCHDOG=1")
            last_ping = now
    return failed


def _child(
    settings: ResolvedSettings,
    host: str,
    port: int,
    log_level: str,
    beats: MutableSequence[float],
    index: int,
    beat_period: float,
) -> None:
    # Only the parent speaks to systemd: a child's READY or ping would count
    # for the whole unit and hide a sibling that hangs.
    for name in SYSTEMD_VARIABLES:
        os.environ.pop(name, None)
    configure_logging(log_level, settings.log_format)

    def beat() -> None:
        beats[index] = time.monotonic()

    try:
        # Process i's own /metrics on metrics_port + i: each scraped on its own.
        metrics_port = None if settings.metrics_port is None else settings.metrics_port + index
        _run(settings, host, port, reuse_port=True, heartbeat=(beat, beat_period), metrics_port=metrics_port)
    except ServeError as exc:
        log.error("%s", exc)
        sys.exit(EX_CONFIG if exc.configuration else 1)


def _run(
    settings: ResolvedSettings,
    host: str,
    port: int,
    *,
    reuse_port: bool,
    heartbeat: Heartbeat | None = None,
    metrics_port: int | None = None,
) -> None:
    try:
        app = create_app(settings)
        run_server(app, host, port, reuse_port=reuse_port, heartbeat=heartbeat, metrics_port=metrics_port)
    except MigrationError as exc:
        raise ServeError(str(exc), configuration=True) from None
    except (BackendUnavailable, CannotListen) as exc:
        # A restart may help: the backend comes back, the port is freed.
        raise ServeError(str(exc)) from None

"""Running the server process: start, tell systemd, stop cleanly on a signal.

Start-up: the app's cleanup contexts check the schema, the database and Redis;
then the port is bound (with the connection limits of server/httplimits.py);
only then is systemd told READY=1. On SIGTERM or
SIGINT the listening socket is closed first (no new connections), then every
WebSocket is closed with 1001 so clients reconnect elsewhere, then handlers
get `shutdown_timeout` seconds to finish before the resources close. A stop
that takes longer than a few seconds says in the log what it still waits on,
and every stop says how long it took: systemd kills a unit that overruns
`TimeoutStopSec`, and the operator should see why before that happens.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager, suppress
from pathlib import Path

from aiohttp import web

from common.sdnotify import beat_forever, notify, run_watchdog
from common.telemetry import serve_registry
from server.gcpolicy import freeze_after_bursts, tune
from server.httplimits import GuardedSite
from server.keys import HUB_KEY, SETTINGS_KEY, TELEMETRY_KEY
from server.proxies import AccessLog

log = logging.getLogger(__name__)

# Seconds for HTTP handlers still running at a stop. aiohttp may spend it
# twice: waiting for the handlers, then again after cancelling them. With the
# second sockets get to answer 1001 and the pools' close (common/db/core.py
# POOL_CLOSE_WAIT), a stop stays under the systemd unit's TimeoutStopSec (20 s).
SHUTDOWN_TIMEOUT = 5.0
SLOW_STOP_REPORT = 3.0  # seconds between "still stopping" lines
SLOW_STOP_PLACES = 10  # the places most tasks wait in, in each of them
# The packages whose lines a "still stopping" line names (installed or not).
_OWN_CODE = tuple(str(Path(__file__).resolve().parents[1] / name) for name in ("server", "common"))

# A child of `--workers N`: what to call from the event loop, and how often,
# to show its parent (which pings systemd's watchdog) that the loop turns.
Heartbeat = tuple[Callable[[], None], float]


class CannotListen(RuntimeError):
    """A listening socket (the port, or the --metrics-port) could not be bound.

    Its own class: an OSError of the database or Redis must not be reported
    as the port's fault.
    """


def run_server(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    heartbeat: Heartbeat | None = None,
    metrics_port: int | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; raises what start-up raises (MigrationError,
    BackendUnavailable, CannotListen).

    `reuse_port` lets several processes bind the same port (server/serve.py).
    With a `heartbeat` the process beats for its parent instead of pinging
    systemd's watchdog. With a `metrics_port` this process's own /metrics is
    also served there (settings.metrics_host), whatever process the shared
    port hands a scrape to.
    """
    asyncio.run(_serve(app, host, port, reuse_port, shutdown_timeout, heartbeat, metrics_port))


async def _serve(
    app: web.Application,
    host: str,
    port: int,
    reuse_port: bool,
    shutdown_timeout: float,
    heartbeat: Heartbeat | None,
    metrics_port: int | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, access_log_class=AccessLog)
    try:
        await runner.setup()
    except BaseException:
        # What opened before the failure (the pool, when Redis is down) closes.
        await runner.cleanup()
        raise
    settings = app[SETTINGS_KEY]
    try:
        with _listening(host, port):
            await GuardedSite(runner, host, port, settings, reuse_port=reuse_port).start()
        log.info("serving on http://%s:%d", host, port)
        async with AsyncExitStack() as own_metrics:
            if metrics_port is not None:
                registry = app[TELEMETRY_KEY].registry
                with _listening(settings.metrics_host, metrics_port):
                    await own_metrics.enter_async_context(
                        serve_registry(registry, settings.metrics_host, metrics_port)
                    )
                log.info(
                    "this process's metrics at http://%s:%d/metrics", settings.metrics_host, metrics_port
                )
            await _until_stopped(app, stop, host, port, heartbeat)
    finally:
        started = time.monotonic()
        stopping = asyncio.current_task()
        assert stopping is not None  # run by asyncio.run
        reporter = asyncio.create_task(_report_slow_stop(started, stopping), name="slow-stop-report")
        try:
            await runner.cleanup()
        finally:
            reporter.cancel()
        log.info("stopped in %.1f s", time.monotonic() - started)


@contextmanager
def _listening(host: str, port: int) -> Iterator[None]:
    """Inside, binding a socket on host:port: its OSError becomes CannotListen."""
    try:
        yield
    except OSError as exc:
        raise CannotListen(f"cannot serve on {host}:{port}: {exc}") from None


async def _report_slow_stop(started: float, stopping: asyncio.Task[object]) -> None:
    """Every few seconds of a stop, log where the stop itself waits and where
    the other tasks do, alike ones counted together (thousands of sockets)."""
    while True:
        await asyncio.sleep(SLOW_STOP_REPORT)
        others = Counter(
            _where(task) for task in asyncio.all_tasks() if task not in (stopping, asyncio.current_task())
        )
        log.warning(
            "still stopping after %.0f s: the stop %s; %d other task(s): %s",
            time.monotonic() - started,
            _where(stopping),
            others.total(),
            "; ".join(f"{count}x {where}" for where, count in others.most_common(SLOW_STOP_PLACES)),
        )


def _where(task: asyncio.Task[object]) -> str:
    """The line a task waits on and the innermost line of ours that led there,
    with the task's name if it was given one."""
    name = task.get_name()
    named = "" if name.startswith("Task-") else f"{name} "
    stack = _awaiting(task.get_coro())
    if not stack:
        return name
    inner = stack[-1]
    where = f"{named}waits in {_line(inner)}"
    ours = [frame for frame in stack if frame.f_code.co_filename.startswith(_OWN_CODE)]
    if ours and ours[-1] is not inner:
        where += f", called from {_line(ours[-1])}"
    return where


def _awaiting(coro: object) -> list[types.FrameType]:
    """The frames of a suspended coroutine and of those it awaits, outermost
    first (Task.get_stack gives only the outermost)."""
    frames = []
    while (frame := getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)) is not None:
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames


def _line(frame: types.FrameType) -> str:
    path = Path(frame.f_code.co_filename)
    return f"{frame.f_code.co_name} ({path.parent.name}/{path.name}:{frame.f_lineno})"


async def _until_stopped(
    app: web.Application, stop: asyncio.Event, host: str, port: int, heartbeat: Heartbeat | None
) -> None:
    """Tell systemd (or the parent) this process serves, until `stop` is set."""
    # What exists now (modules, the app, its pools) lives as long as the
    # process: frozen, full garbage collections no longer walk it. So is what
    # each burst of socket set-ups leaves (server/gcpolicy.py).
    gc.collect()
    gc.freeze()
    tune()
    freezer = asyncio.create_task(freeze_after_bursts(app[HUB_KEY]), name="gc-freezer")
    notify(f"READY=1\nSTATUS=serving on {host}:{port}")
    liveness = run_watchdog() if heartbeat is None else beat_forever(*heartbeat)
    watchdog = asyncio.create_task(liveness, name="liveness")
    await stop.wait()
    log.info("stopping: closing sockets with 1001")
    notify("STOPPING=1")
    for task in (watchdog, freezer):
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

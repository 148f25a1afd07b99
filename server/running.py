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
from collections.abc import Callable
from contextlib import AsyncExitStack, suppress
from pathlib import Path

from aiohttp import web

from common.sdnotify import beat_forever, notify, run_watchdog
from common.telemetry import serve_registry
from server.gcpolicy import freeze_after_bursts, tune
from server.httplimits import GuardedSite
from server.keys import HUB_KEY, SETTINGS_KEY, TELEMETRY_KEY
from server.proxies import AccessLog

log = logging.getLogger(__name__)

# Seconds for HTTP handlers still running at a stop. aiohttp spends it up to
# twice per connection: waiting for the handler, then again after cancelling
# it. Twice this, the second for sockets to answer 1001 and the resources'
# close stay well under the systemd unit's TimeoutStopSec (20 s).
SHUTDOWN_TIMEOUT = 5.0
SLOW_STOP_REPORT = 3.0  # seconds between "still stopping" lines
# The packages whose lines a "still stopping" line names (installed or not).
_OWN_CODE = tuple(str(Path(__file__).resolve().parents[1] / name) for name in ("server", "common"))

# A child of `--workers N`: what to call from the event loop, and how often,
# to show its parent (which pings systemd's watchdog) that the loop turns.
Heartbeat = tuple[Callable[[], None], float]


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
    """Serve until SIGTERM/SIGINT; raises what start-up raises (MigrationError, OSError).

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
    await runner.setup()
    settings = app[SETTINGS_KEY]
    try:
        await GuardedSite(runner, host, port, settings, reuse_port=reuse_port).start()
        log.info("serving on http://%s:%d", host, port)
        async with AsyncExitStack() as own_metrics:
            if metrics_port is not None:
                registry = app[TELEMETRY_KEY].registry
                await own_metrics.enter_async_context(
                    serve_registry(registry, settings.metrics_host, metrics_port)
                )
                log.info(
                    "this process's metrics at http://%s:%d/metrics", settings.metrics_host, metrics_port
                )
            await _until_stopped(app, stop, host, port, heartbeat)
    finally:
        started = time.monotonic()
        reporter = asyncio.create_task(_report_slow_stop(started), name="slow-stop-report")
        try:
            await runner.cleanup()
        finally:
            reporter.cancel()
        log.info("stopped in %.1f s", time.monotonic() - started)


async def _report_slow_stop(started: float) -> None:
    """Every few seconds of a stop, log where each task still running waits."""
    while True:
        await asyncio.sleep(SLOW_STOP_REPORT)
        waiting = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        log.warning(
            "still stopping after %.0f s; %d task(s) wait: %s",
            time.monotonic() - started,
            len(waiting),
            "; ".join(_where(task) for task in waiting[:20]),
        )


def _where(task: asyncio.Task[object]) -> str:
    """A task's name, the line it waits on and the innermost line of ours that led there."""
    stack = _awaiting(task.get_coro())
    if not stack:
        return task.get_name()
    inner = stack[-1]
    where = f"{task.get_name()} waits in {_line(inner)}"
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

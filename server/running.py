"""Running the server process: start, tell systemd, stop cleanly on a signal.

Start-up: the app's cleanup contexts check the schema, the database and Redis;
then the port is bound (with the connection limits of server/httplimits.py);
only then is systemd told READY=1. On SIGTERM or
SIGINT the listening socket is closed first (no new connections), then every
WebSocket is closed with 1001 so clients reconnect elsewhere, then handlers
get `shutdown_timeout` seconds to finish before the resources close.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack, suppress

from aiohttp import web

from common.sdnotify import beat_forever, notify, run_watchdog
from common.telemetry import serve_registry
from server.gcpolicy import freeze_after_bursts, tune
from server.httplimits import GuardedSite
from server.keys import HUB_KEY, SETTINGS_KEY, TELEMETRY_KEY
from server.proxies import AccessLog

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 10.0  # seconds; the systemd unit's TimeoutStopSec is above it

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
        await runner.cleanup()


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

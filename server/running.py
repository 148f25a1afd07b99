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
from contextlib import suppress

from aiohttp import web

from common.sdnotify import beat_forever, notify, run_watchdog
from server.httplimits import GuardedSite
from server.keys import SETTINGS_KEY
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
) -> None:
    """Serve until SIGTERM/SIGINT; raises what start-up raises (MigrationError, OSError).

    `reuse_port` lets several processes bind the same port (server/serve.py).
    With a `heartbeat` the process beats for its parent instead of pinging
    systemd's watchdog.
    """
    asyncio.run(_serve(app, host, port, reuse_port, shutdown_timeout, heartbeat))


async def _serve(
    app: web.Application,
    host: str,
    port: int,
    reuse_port: bool,
    shutdown_timeout: float,
    heartbeat: Heartbeat | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, access_log_class=AccessLog)
    await runner.setup()
    try:
        await GuardedSite(runner, host, port, app[SETTINGS_KEY], reuse_port=reuse_port).start()
        log.info("serving on http://%s:%d", host, port)
        # What exists now (modules, the app, its pools) lives as long as the
        # process: frozen, full garbage collections no longer walk it.
        gc.collect()
        gc.freeze()
        notify(f"READY=1\nSTATUS=serving on {host}:{port}")
        liveness = run_watchdog() if heartbeat is None else beat_forever(*heartbeat)
        watchdog = asyncio.create_task(liveness, name="liveness")
        await stop.wait()
        log.info("stopping: closing sockets with 1001")
        notify("STOPPING=1")
        watchdog.cancel()
        with suppress(asyncio.CancelledError):
            await watchdog
    finally:
        await runner.cleanup()

"""Edited dashboards reach every open page: a fresh `dashboard_config`, live.

An edit (server/editing.py, or the CLI) commits, then announces the
dashboard on the control channel. Every server process, this one included,
hears it, drops the dashboard from its config cache (server/live/configcache.py:
sockets opening from now on get the new config), re-reads the dashboard and
its metrics once, and sends the same `dashboard_config` frame to each of its
open sockets of that dashboard, followed by the dashboard's `alerts` (a rule
added or removed, or a metric renamed or removed with its rules, changes them
too).
Sockets stop receiving updates of metrics that were removed; metrics that
were added may then be subscribed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator

from aiohttp import web

from common import db
from common.events import DashboardChanged, Revocation, announce_dashboard_changed
from common.failures import REDIS_UNAVAILABLE
from common.tasks import BackgroundTasks
from server.keys import CHANNELS_KEY, CONFIG_LOCKS_KEY, CONFIGS_KEY, DB_KEY, HUB_KEY, REDIS_KEY, TELEMETRY_KEY
from server.live.alertstate import alerts_frame
from server.live.configcache import ConfigCache

log = logging.getLogger(__name__)


async def announce_change(app: web.Application, dashboard_id: int) -> None:
    """After a committed edit: every process pushes the dashboard's new config.

    Through Redis, which echoes it back to this process too. If Redis is
    away, this process's own sockets are updated directly; the others'
    see the change when they reconnect.
    """
    try:
        await announce_dashboard_changed(app[REDIS_KEY], app[CHANNELS_KEY], DashboardChanged(dashboard_id))
    except REDIS_UNAVAILABLE as exc:
        log.warning("could not announce the change of dashboard %s: %s", dashboard_id, exc)
        app[CONFIGS_KEY].invalidate(dashboard_id)
        await push_config(app, dashboard_id)


async def push_config(app: web.Application, dashboard_id: int) -> None:
    """Send the dashboard's current config to this process's sockets of it."""
    hub = app[HUB_KEY]
    async with app[CONFIG_LOCKS_KEY][dashboard_id]:
        if not hub.connections_of(dashboard_id):
            return
        config = await app[CONFIGS_KEY].get(dashboard_id)
        if config is None:
            return  # deleted: its sockets are being closed by the revocation
        alerts = await alerts_frame(app[DB_KEY], dashboard_id)
        for conn in hub.connections_of(dashboard_id):
            conn.dashboard = config.dashboard
            conn.metrics = config.metrics
            gone = [metric_id for metric_id in conn.subscribed if metric_id not in config.metrics]
            hub.unsubscribe(conn, gone)
            conn.send_frame(config.frame)
            conn.send_frame(alerts)


async def config_push_ctx(app: web.Application) -> AsyncIterator[None]:
    """The config cache, and configs pushed as the control channel announces
    changes; pending pushes are stopped at exit."""
    tasks = BackgroundTasks()
    # One lock per dashboard: two quick edits are read and sent in order, so
    # the older config can never arrive after the newer one.
    app[CONFIG_LOCKS_KEY] = defaultdict(asyncio.Lock)
    configs = app[CONFIGS_KEY] = ConfigCache(app[DB_KEY], app[TELEMETRY_KEY].config_reads)

    def on_change(change: DashboardChanged) -> None:
        # At once, before the push is scheduled: a socket opening from now on
        # must not be handed the old config.
        configs.invalidate(change.dashboard_id)
        tasks.start(_push_logged(app, change.dashboard_id))

    def on_revocation(revocation: Revocation) -> None:
        if revocation.dashboard_id is not None and revocation.reason == "dashboard_deleted":
            configs.invalidate(revocation.dashboard_id)

    hub = app[HUB_KEY]
    hub.on_dashboard_changed(on_change)
    hub.on_control(on_revocation)
    # After a Redis outage, announcements may have been missed.
    hub.on_resync(configs.clear)
    yield
    await tasks.cancel_all()


async def _push_logged(app: web.Application, dashboard_id: int) -> None:
    try:
        await push_config(app, dashboard_id)
    except db.UNAVAILABLE as exc:
        # The pages keep their old config until they reconnect.
        log.warning("could not push the config of dashboard %s: %s", dashboard_id, exc)

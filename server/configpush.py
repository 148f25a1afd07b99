"""Edited dashboards reach every open page: a fresh `dashboard_config`, live.

An edit (server/editing.py, or the CLI) commits, then announces the
dashboard on the control channel. Every server process, this one included,
hears it, re-reads the dashboard and its metrics once, and sends the same
`dashboard_config` frame to each of its open sockets of that dashboard,
followed by the dashboard's `alerts` (a rule added or removed, or a metric
renamed or removed with its rules, changes them too).
Sockets stop receiving updates of metrics that were removed; metrics that
were added may then be subscribed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import redis.exceptions
from aiohttp import web

from common import db
from common.events import DashboardChanged, announce_dashboard_changed
from common.schemas import encode_message
from server.alertstate import alert_state
from server.frames import text_frame
from server.keys import CHANNELS_KEY, CONFIG_LOCKS_KEY, DB_KEY, HUB_KEY, REDIS_KEY

log = logging.getLogger(__name__)


def config_payload(dashboard: db.Dashboard, metrics: list[db.Metric]) -> dict[str, Any]:
    """The `dashboard_config` message's payload; metrics in the dashboard's order."""
    return {
        "id": dashboard.id,
        "name": dashboard.name,
        "description": dashboard.description,
        "metrics": [
            {
                "id": m.id,
                "name": m.name,
                "description": m.description,
                "type": m.type,
                "unit": m.unit,
                "source": m.source,
            }
            for m in metrics
        ],
        "retention_days": dashboard.retention_days,
    }


async def announce_change(app: web.Application, dashboard_id: int) -> None:
    """After a committed edit: every process pushes the dashboard's new config.

    Through Redis, which echoes it back to this process too. If Redis is
    away, this process's own sockets are updated directly; the others'
    see the change when they reconnect.
    """
    try:
        await announce_dashboard_changed(app[REDIS_KEY], app[CHANNELS_KEY], DashboardChanged(dashboard_id))
    except (redis.exceptions.RedisError, OSError) as exc:
        log.warning("could not announce the change of dashboard %s: %s", dashboard_id, exc)
        await push_config(app, dashboard_id)


async def push_config(app: web.Application, dashboard_id: int) -> None:
    """Send the dashboard's current config to this process's sockets of it."""
    hub = app[HUB_KEY]
    async with app[CONFIG_LOCKS_KEY][dashboard_id]:
        if not hub.connections_of(dashboard_id):
            return
        pool = app[DB_KEY]
        dashboard = await db.get_dashboard(pool, dashboard_id)
        if dashboard is None:
            return  # deleted: its sockets are being closed by the revocation
        metrics = await db.list_metrics(pool, dashboard_id)
        shared = hub.shared_metrics(dashboard_id, metrics)
        frame = text_frame(encode_message("dashboard_config", config_payload(dashboard, metrics)))
        alerts = text_frame(encode_message("alerts", await alert_state(pool, dashboard_id)))
        for conn in hub.connections_of(dashboard_id):
            conn.dashboard = dashboard
            conn.metrics = shared
            hub.unsubscribe(conn, [metric_id for metric_id in conn.subscribed if metric_id not in shared])
            conn.send_frame(frame)
            conn.send_frame(alerts)


async def config_push_ctx(app: web.Application) -> AsyncIterator[None]:
    """Push configs as the control channel announces changes; stop pending pushes at exit."""
    tasks: set[asyncio.Task[None]] = set()
    # One lock per dashboard: two quick edits are read and sent in order, so
    # the older config can never arrive after the newer one.
    app[CONFIG_LOCKS_KEY] = defaultdict(asyncio.Lock)

    def on_change(change: DashboardChanged) -> None:
        task = asyncio.create_task(_push_logged(app, change.dashboard_id))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    app[HUB_KEY].on_dashboard_changed(on_change)
    yield
    for task in list(tasks):
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def _push_logged(app: web.Application, dashboard_id: int) -> None:
    try:
        await push_config(app, dashboard_id)
    except db.UNAVAILABLE as exc:
        # The pages keep their old config until they reconnect.
        log.warning("could not push the config of dashboard %s: %s", dashboard_id, exc)

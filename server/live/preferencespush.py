"""A user's new preferences reach their other open pages, on every process.

A change (server/preferences.py) commits, then announces the user (and the
dashboard, or none for the theme, which is theirs everywhere) on the control
channel. Every server process, this one included, hears it, reads the
preferences once per dashboard, and sends a `preferences` message to that
user's sockets only: other members of the dashboard never see it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from common import db
from common.events import PreferencesChanged, announce_preferences_changed
from common.failures import REDIS_UNAVAILABLE
from common.schemas import encode_message
from common.tasks import BackgroundTasks
from server.keys import CHANNELS_KEY, DB_KEY, HUB_KEY, PREFERENCE_LOCKS_KEY, REDIS_KEY, REGISTRY_KEY
from server.live.connection import ClientConnection
from server.live.frames import text_frame

log = logging.getLogger(__name__)


def preferences_payload(dashboard_id: int, preferences: db.Preferences) -> dict[str, Any]:
    """The `preferences` message's payload, as GET /dashboards/{id}/preferences answers it."""
    return {
        "dashboard_id": dashboard_id,
        "hidden_metric_ids": list(preferences.hidden_metric_ids),
        "card_order": list(preferences.card_order),
        "default_range": preferences.default_range,
        "chart_style": preferences.chart_style,
        "theme": preferences.theme,
    }


async def announce_preferences(app: web.Application, change: PreferencesChanged) -> None:
    """After a committed change: every process sends the user's sockets the new preferences.

    Through Redis, which echoes it back to this process too. If Redis is
    away, this process's own sockets are told directly; the user's pages
    elsewhere read them when they next reconnect.
    """
    try:
        await announce_preferences_changed(app[REDIS_KEY], app[CHANNELS_KEY], change)
    except REDIS_UNAVAILABLE as exc:
        log.warning("could not announce the preferences of user %s: %s", change.user_id, exc)
        await push_preferences(app, change)


async def push_preferences(app: web.Application, change: PreferencesChanged) -> None:
    """Send the user's sockets on this process (of the dashboard, or all) their preferences."""
    async with app[PREFERENCE_LOCKS_KEY][change.user_id]:
        by_dashboard: dict[int, list[ClientConnection]] = defaultdict(list)
        for conn in app[REGISTRY_KEY].connections_of_user(change.user_id):
            if change.dashboard_id in (None, conn.dashboard.id):
                by_dashboard[conn.dashboard.id].append(conn)
        for dashboard_id, connections in by_dashboard.items():
            preferences = await db.get_preferences(app[DB_KEY], dashboard_id, change.user_id)
            frame = text_frame(encode_message("preferences", preferences_payload(dashboard_id, preferences)))
            for conn in connections:
                conn.send_frame(frame)


async def preferences_push_ctx(app: web.Application) -> AsyncIterator[None]:
    """Push preferences as the control channel announces changes; stop pending pushes at exit."""
    tasks = BackgroundTasks()
    # One lock per user: two quick changes are read and sent in order, so
    # the older preferences can never arrive after the newer ones.
    app[PREFERENCE_LOCKS_KEY] = defaultdict(asyncio.Lock)

    def on_change(change: PreferencesChanged) -> None:
        tasks.start(_push_logged(app, change))

    app[HUB_KEY].on_preferences_changed(on_change)
    yield
    await tasks.cancel_all()


async def _push_logged(app: web.Application, change: PreferencesChanged) -> None:
    try:
        await push_preferences(app, change)
    except db.UNAVAILABLE as exc:
        # The pages keep what they show until they reconnect and read them again.
        log.warning("could not push the preferences of user %s: %s", change.user_id, exc)

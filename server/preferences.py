"""Each member's own preferences: JSON endpoints for the page's View panel and theme toggle.

Preferences are personal, not edits: every member may change theirs,
viewers too, and no one else's. Bodies and answers are JSON, with the
session's CSRF token in the X-CSRF-Token header (server/auth.py). Anonymous
callers get 401, non-members 404 (as if the dashboard did not exist), an
invalid body 400 naming the field; nothing changes then. A change is
committed, then announced, so the user's other open pages follow
(server/live/preferencespush.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from common import db
from common.events import PreferencesChanged
from common.schemas import MAX_ID, DashboardPreferencesSchema, ThemeSchema
from server.auth import current_user
from server.jsonbody import json_error, load_body
from server.keys import DB_KEY
from server.live.preferencespush import announce_preferences, preferences_payload


async def _user(request: web.Request) -> db.User:
    user = await current_user(request)
    if user is None:
        raise json_error(web.HTTPUnauthorized, "log in first")
    return user


async def _member_dashboard_id(request: web.Request, user: db.User) -> int:
    dashboard_id = int(request.match_info["id"])
    if dashboard_id > MAX_ID or await db.get_membership(request.app[DB_KEY], dashboard_id, user.id) is None:
        # Same answer as for a dashboard that does not exist.
        raise json_error(web.HTTPNotFound, "no such dashboard")
    return dashboard_id


async def get_dashboard_preferences(request: web.Request) -> web.Response:
    user = await _user(request)
    dashboard_id = await _member_dashboard_id(request, user)
    preferences = await db.get_preferences(request.app[DB_KEY], dashboard_id, user.id)
    return web.json_response(preferences_payload(dashboard_id, preferences))


async def change_dashboard_preferences(request: web.Request) -> web.Response:
    user = await _user(request)
    dashboard_id = await _member_dashboard_id(request, user)
    body: dict[str, Any] = await load_body(request, DashboardPreferencesSchema())
    try:
        preferences = await db.update_preferences(request.app[DB_KEY], dashboard_id, user.id, **body)
    except db.MetricsNotOnDashboard as exc:
        errors = {
            field: [f"not on this dashboard: {', '.join(map(str, ids))}"]
            for field, ids in exc.foreign.items()
        }
        raise json_error(web.HTTPBadRequest, "metric ids not on this dashboard", errors) from None
    except db.NotFound:  # the membership ended meanwhile
        raise json_error(web.HTTPNotFound, "no such dashboard") from None
    if body:
        # A new theme shows on every dashboard the user has open, this one included.
        scope = None if "theme" in body else dashboard_id
        await announce_preferences(request.app, PreferencesChanged(user.id, scope))
    return web.json_response(preferences_payload(dashboard_id, preferences))


async def get_user_preferences(request: web.Request) -> web.Response:
    user = await _user(request)
    return web.json_response({"theme": await db.get_theme(request.app[DB_KEY], user.id)})


async def change_user_preferences(request: web.Request) -> web.Response:
    """The theme, from any page (the dashboard list has no dashboard to name)."""
    user = await _user(request)
    body = await load_body(request, ThemeSchema())
    try:
        await db.set_theme(request.app[DB_KEY], user.id, body["theme"])
    except db.NotFound:  # deleted meanwhile
        raise json_error(web.HTTPUnauthorized, "log in first") from None
    await announce_preferences(request.app, PreferencesChanged(user.id))
    return web.json_response({"theme": body["theme"]})

"""Editing a dashboard from its page: name, retention, metrics, members; deleting it. Editors only.

Every endpoint takes and answers JSON, with the session's CSRF token in the
X-CSRF-Token header (server/auth.py checks it before any handler runs).
Anonymous callers get 401, non-members 404 (as if the dashboard did not
exist), viewers 403; nothing changes then. A change is committed, then
announced, so every open page of the dashboard gets a fresh
`dashboard_config` (server/live/configpush.py). Errors are
`{"error": message, "errors": {field: [reasons]}}`: 400 for a body that is
not valid, 409 for a name already taken, 422 for a change refused on its
merits (an unknown user, the last editor, a quota: server/jsonbody.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from common import db
from common.events import Revocation
from common.schemas import (
    MAX_ID,
    DashboardDeleteSchema,
    DashboardEditSchema,
    MemberAddSchema,
    MemberRoleSchema,
    MetricCreateSchema,
    MetricEditSchema,
    MetricOrderSchema,
)
from server.auth import current_user
from server.jsonbody import json_error, load_body, quota_refused
from server.keys import DB_KEY, SETTINGS_KEY, USER_KEY
from server.live.configcache import config_payload
from server.live.configpush import announce_change
from server.live.revocation import revoke

EditHandler = Callable[[web.Request, db.Dashboard], Awaitable[web.Response]]


def editor_only(handler: EditHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Run `handler` with the dashboard if the caller is one of its editors."""

    async def wrapper(request: web.Request) -> web.Response:
        user = await current_user(request)
        if user is None:
            raise json_error(web.HTTPUnauthorized, "log in first")
        dashboard_id = int(request.match_info["id"])
        membership = None
        if dashboard_id <= MAX_ID:
            membership = await db.get_membership(request.app[DB_KEY], dashboard_id, user.id)
        if membership is None:
            # Same answer as for a dashboard that does not exist.
            raise json_error(web.HTTPNotFound, "no such dashboard")
        if membership.role != db.EDITOR:
            raise json_error(web.HTTPForbidden, "only editors may change this dashboard")
        request[USER_KEY] = user
        return await handler(request, membership.dashboard)

    return wrapper


def path_id(request: web.Request, name: str) -> int:
    """The id in the path's `name` part; 404 beyond what the database can hold."""
    value = int(request.match_info[name])
    if value > MAX_ID:
        raise json_error(web.HTTPNotFound, f"no such {name.removesuffix('_id')}")
    return value


async def _changed(request: web.Request, dashboard_id: int, status: int = 200) -> web.Response:
    """Announce the committed change; answer with the dashboard as it now is."""
    await announce_change(request.app, dashboard_id)
    pool = request.app[DB_KEY]
    dashboard = await db.get_dashboard(pool, dashboard_id)
    if dashboard is None:
        raise json_error(web.HTTPNotFound, "no such dashboard")
    metrics = await db.list_metrics(pool, dashboard_id)
    members = await db.list_members(pool, dashboard_id)
    return web.json_response(
        {"config": config_payload(dashboard, metrics), "members": [_member(m) for m in members]},
        status=status,
    )


def _member(member: db.Member) -> dict[str, Any]:
    return {"user_id": member.user.id, "username": member.user.username, "role": member.role}


@editor_only
async def edit_dashboard(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    body = await load_body(request, DashboardEditSchema())
    await db.update_dashboard(request.app[DB_KEY], dashboard.id, body["name"], body["description"])
    if "retention_days" in body:
        await db.set_dashboard_retention(request.app[DB_KEY], dashboard.id, body["retention_days"])
    return await _changed(request, dashboard.id)


@editor_only
async def delete_dashboard(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    """Delete the dashboard if `confirm` is its name (as now stored, not as the page last showed it)."""
    body = await load_body(request, DashboardDeleteSchema())
    if body["confirm"] != dashboard.name.strip():
        message = f"type the dashboard's name, {dashboard.name!r}, to delete it"
        raise json_error(web.HTTPUnprocessableEntity, message, {"confirm": [message]})
    if not await db.delete_dashboard(request.app[DB_KEY], dashboard.id):
        raise json_error(web.HTTPNotFound, "no such dashboard")
    # Every open page of it, on every server process, closes its socket.
    await revoke(request.app, Revocation("dashboard_deleted", dashboard_id=dashboard.id))
    index = str(request.app.router["dashboards"].url_for())
    return web.json_response({"deleted": dashboard.id, "next": index})


@editor_only
async def add_metric(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    body = await load_body(request, MetricCreateSchema())
    try:
        await db.create_metric(
            request.app[DB_KEY],
            dashboard.id,
            body["name"],
            body["type"],
            body["unit"],
            body["description"],
            body["source"],
            quotas=request.app[SETTINGS_KEY].quotas,
        )
    except db.AlreadyExists as exc:
        raise json_error(web.HTTPConflict, str(exc), {"name": [str(exc)]}) from None
    except db.QuotaExceeded as exc:
        raise quota_refused(exc) from None
    except db.NotFound:  # deleted meanwhile
        raise json_error(web.HTTPNotFound, "no such dashboard") from None
    return await _changed(request, dashboard.id, status=201)


@editor_only
async def edit_metric(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    metric_id = path_id(request, "metric_id")
    body = await load_body(request, MetricEditSchema())
    pool = request.app[DB_KEY]
    current = next((m for m in await db.list_metrics(pool, dashboard.id) if m.id == metric_id), None)
    if current is None:
        raise json_error(web.HTTPNotFound, f"no metric {metric_id} on this dashboard")
    try:
        await db.update_metric(
            pool,
            dashboard.id,
            metric_id,
            body.get("name", current.name),
            body.get("unit", current.unit),
            body.get("description", current.description),
            body.get("source"),
        )
    except db.NotFound as exc:  # removed meanwhile
        raise json_error(web.HTTPNotFound, str(exc)) from None
    except db.AlreadyExists as exc:
        raise json_error(web.HTTPConflict, str(exc), {"name": [str(exc)]}) from None
    except ValueError as exc:  # a source that cannot feed this metric's type
        raise json_error(web.HTTPBadRequest, str(exc), {"source": [str(exc)]}) from None
    return await _changed(request, dashboard.id)


@editor_only
async def remove_metric(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    metric_id = path_id(request, "metric_id")
    if not await db.delete_metric(request.app[DB_KEY], dashboard.id, metric_id):
        raise json_error(web.HTTPNotFound, f"no metric {metric_id} on this dashboard")
    return await _changed(request, dashboard.id)


@editor_only
async def reorder_metrics(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    body = await load_body(request, MetricOrderSchema())
    try:
        await db.reorder_metrics(request.app[DB_KEY], dashboard.id, body["metric_ids"])
    except ValueError as exc:
        raise json_error(web.HTTPUnprocessableEntity, str(exc), {"metric_ids": [str(exc)]}) from None
    return await _changed(request, dashboard.id)


@editor_only
async def list_members(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    members = await db.list_members(request.app[DB_KEY], dashboard.id)
    return web.json_response({"members": [_member(m) for m in members]})


@editor_only
async def add_member(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    body = await load_body(request, MemberAddSchema())
    pool = request.app[DB_KEY]
    try:
        user = await db.get_user_by_username(pool, body["username"])
    except db.NotFound:
        message = f"no user {body['username']!r}: check the name, or create the account first (dashboard-server user create)"
        raise json_error(web.HTTPUnprocessableEntity, message, {"username": [message]}) from None
    try:
        added = await db.add_member(
            pool, dashboard.id, user.id, body["role"], quotas=request.app[SETTINGS_KEY].quotas
        )
    except db.QuotaExceeded as exc:
        raise quota_refused(exc) from None
    except db.NotFound as exc:  # the dashboard or the user deleted meanwhile
        raise json_error(web.HTTPNotFound, str(exc)) from None
    if not added:
        message = f"{user.username} is already a member"
        raise json_error(web.HTTPConflict, message, {"username": [message]})
    return await _changed(request, dashboard.id, status=201)


@editor_only
async def change_role(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    user_id = path_id(request, "user_id")
    body = await load_body(request, MemberRoleSchema())
    try:
        await db.set_member_role(
            request.app[DB_KEY], dashboard.id, user_id, body["role"], quotas=request.app[SETTINGS_KEY].quotas
        )
    except db.NotFound as exc:
        raise json_error(web.HTTPNotFound, str(exc)) from None
    except db.LastEditor as exc:
        raise json_error(web.HTTPUnprocessableEntity, str(exc), {"role": [str(exc)]}) from None
    except db.QuotaExceeded as exc:
        raise quota_refused(exc) from None
    return await _changed(request, dashboard.id)


@editor_only
async def remove_member(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    user_id = path_id(request, "user_id")
    try:
        removed = await db.remove_member(request.app[DB_KEY], dashboard.id, user_id, keep_editor=True)
    except db.LastEditor as exc:
        raise json_error(web.HTTPUnprocessableEntity, str(exc), {"user_id": [str(exc)]}) from None
    if not removed:
        raise json_error(web.HTTPNotFound, "not a member of this dashboard")
    # Their open sockets to this dashboard close on every server process.
    await revoke(request.app, Revocation("member_removed", user_id=user_id, dashboard_id=dashboard.id))
    return await _changed(request, dashboard.id)

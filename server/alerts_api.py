"""A dashboard's threshold alert rules, managed by its editors from the page.

As `dashboard-server alert add/list/remove`: a rule made here is the same
row, evaluated on the ingest path like any other. After a change every open
page of the dashboard gets a fresh `alerts` message (through the same
announcement as an edit, server/live/configpush.py). Same JSON, CSRF and role
rules as server/editing.py; answers are the `alerts` payload
(server/live/alertstate.py).
"""

from __future__ import annotations

from aiohttp import web

from common import db
from common.schemas import AlertRuleCreateSchema
from server.editing import editor_only, path_id
from server.jsonbody import json_error, load_body, quota_refused
from server.keys import DB_KEY, SETTINGS_KEY, USER_KEY
from server.live.alertstate import alert_state
from server.live.configpush import announce_change


async def _answer(request: web.Request, dashboard_id: int, status: int = 200) -> web.Response:
    return web.json_response(await alert_state(request.app[DB_KEY], dashboard_id), status=status)


@editor_only
async def list_rules(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    return await _answer(request, dashboard.id)


@editor_only
async def add_rule(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    body = await load_body(request, AlertRuleCreateSchema())
    pool = request.app[DB_KEY]
    message = f"no metric {body['metric_id']} on this dashboard"
    if not any(m.id == body["metric_id"] for m in await db.list_metrics(pool, dashboard.id)):
        raise json_error(web.HTTPUnprocessableEntity, message, {"metric_id": [message]})
    try:
        await db.create_alert_rule(
            pool,
            body["metric_id"],
            body["condition"],
            body["threshold"],
            body["for_seconds"],
            created_by=request[USER_KEY].id,
            quotas=request.app[SETTINGS_KEY].quotas,
        )
    except db.QuotaExceeded as exc:
        raise quota_refused(exc) from None
    except db.NotFound:  # the metric was removed meanwhile
        raise json_error(web.HTTPUnprocessableEntity, message, {"metric_id": [message]}) from None
    await announce_change(request.app, dashboard.id)
    return await _answer(request, dashboard.id, status=201)


@editor_only
async def remove_rule(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    rule_id = path_id(request, "rule_id")
    if not await db.delete_alert_rule(request.app[DB_KEY], dashboard.id, rule_id):
        raise json_error(web.HTTPNotFound, f"no alert rule {rule_id} on this dashboard")
    await announce_change(request.app, dashboard.id)
    return await _answer(request, dashboard.id)

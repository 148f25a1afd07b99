"""A dashboard's alert contact points and their delivery log, managed by its editors.

The server never sends a notification itself: "Send test" queues one in the
outbox like a transition does, and a worker delivers it (worker/notify), so
the page's test takes the real path, address checks and retries included.
A webhook's signing secret is in the answer to its creation and nowhere else
in any answer. Same JSON, CSRF and role rules as server/editing.py.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web
from marshmallow import ValidationError

from common import db
from common.schemas import (
    ContactPointCreateSchema,
    ContactPointEditSchema,
    RuleNotificationsSchema,
    check_contact_target,
)
from server.editing import editor_only, path_id
from server.jsonbody import json_error, load_body, quota_refused
from server.keys import DB_KEY, SETTINGS_KEY, USER_KEY

# Attempts in the delivery log a page shows.
LOG_LENGTH = 50
# The answer to a creation holds a secret: no cache may keep it.
NO_STORE = {"Cache-Control": "no-store"}


def _contact(contact: db.ContactPoint) -> dict[str, Any]:
    return {
        "id": contact.id,
        "name": contact.name,
        "kind": contact.kind,
        "target": contact.target,
        "created_at": contact.created_at.isoformat(),
    }


def _attempt(attempt: db.DeliveryAttempt) -> dict[str, Any]:
    return {
        "notification_id": attempt.notification_id,
        "contact_point_id": attempt.contact_point_id,
        "kind": attempt.kind,
        "status": attempt.status,
        "at": attempt.at.isoformat(),
        "outcome": attempt.outcome,
        "detail": attempt.detail,
    }


async def _state(request: web.Request, dashboard_id: int) -> dict[str, Any]:
    """Contact points, each rule's notification settings, and the newest attempts."""
    pool = request.app[DB_KEY]
    rules = await db.list_rule_notifications(pool, dashboard_id)
    return {
        "contact_points": [_contact(c) for c in await db.list_contact_points(pool, dashboard_id)],
        "rules": [
            {
                "rule_id": r.rule_id,
                "contact_point_ids": r.contact_point_ids,
                "repeat_seconds": r.repeat_seconds,
            }
            for r in rules
        ],
        "deliveries": [_attempt(a) for a in await db.list_delivery_attempts(pool, dashboard_id, LOG_LENGTH)],
    }


@editor_only
async def list_contact_points(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    return web.json_response(await _state(request, dashboard.id), headers=NO_STORE)


@editor_only
async def add_contact_point(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    body = await load_body(request, ContactPointCreateSchema())
    # Only the generic webhook signs; Slack and e-mail have no use for a secret.
    secret = secrets.token_urlsafe(32) if body["kind"] == "webhook" else None
    try:
        created = await db.create_contact_point(
            request.app[DB_KEY],
            dashboard.id,
            body["name"],
            body["kind"],
            body["target"],
            secret,
            created_by=request[USER_KEY].id,
            quotas=request.app[SETTINGS_KEY].quotas,
        )
    except db.QuotaExceeded as exc:
        raise quota_refused(exc) from None
    except db.NotFound:
        raise json_error(web.HTTPNotFound, "no such dashboard") from None
    answer = {"contact_point": _contact(created), "secret": secret, **await _state(request, dashboard.id)}
    return web.json_response(answer, status=201, headers=NO_STORE)


@editor_only
async def edit_contact_point(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    """Rename a contact point, or point it elsewhere; its kind and signing secret stay."""
    contact_id = path_id(request, "contact_point_id")
    body = await load_body(request, ContactPointEditSchema())
    pool = request.app[DB_KEY]
    try:
        current = await db.get_contact_point(pool, dashboard.id, contact_id)
        if "target" in body:
            check_contact_target(current.kind, body["target"])
        await db.update_contact_point(
            pool, dashboard.id, contact_id, name=body.get("name"), target=body.get("target")
        )
    except ValidationError as exc:
        # As a bad body is answered: the target does not suit this contact point's kind.
        raise json_error(web.HTTPBadRequest, "invalid request", exc.normalized_messages()) from None
    except db.NotFound as exc:
        raise json_error(web.HTTPNotFound, str(exc)) from None
    return web.json_response(await _state(request, dashboard.id), headers=NO_STORE)


@editor_only
async def remove_contact_point(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    contact_id = path_id(request, "contact_point_id")
    if not await db.delete_contact_point(request.app[DB_KEY], dashboard.id, contact_id):
        raise json_error(web.HTTPNotFound, f"no contact point {contact_id} on this dashboard")
    return web.json_response(await _state(request, dashboard.id), headers=NO_STORE)


@editor_only
async def send_test(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    contact_id = path_id(request, "contact_point_id")
    try:
        await db.enqueue_test_notification(request.app[DB_KEY], dashboard.id, contact_id)
    except db.NotFound:
        raise json_error(web.HTTPNotFound, f"no contact point {contact_id} on this dashboard") from None
    # Accepted: a worker sends it within a second or so; the log then shows the outcome.
    return web.json_response(await _state(request, dashboard.id), status=202, headers=NO_STORE)


@editor_only
async def set_rule_notifications(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    rule_id = path_id(request, "rule_id")
    body = await load_body(request, RuleNotificationsSchema())
    try:
        await db.set_rule_notifications(
            request.app[DB_KEY], dashboard.id, rule_id, body["contact_point_ids"], body["repeat_seconds"]
        )
    except db.NotFound as exc:
        field = "contact_point_ids" if "contact point" in str(exc) else "rule_id"
        raise json_error(web.HTTPUnprocessableEntity, str(exc), {field: [str(exc)]}) from None
    return web.json_response(await _state(request, dashboard.id), headers=NO_STORE)

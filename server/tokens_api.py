"""A dashboard's API tokens (for the push API), managed by its editors from the page.

As `dashboard-server token create/list/revoke/delete`: a new token's secret is in
the answer to its creation and nowhere else, ever; only its SHA-256 and a
short prefix (to tell tokens apart) are stored. Same JSON, CSRF and role
rules as server/editing.py.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from common import db
from common.schemas import TokenCreateSchema
from common.tokens import display_prefix, new_token, token_hash
from server.editing import editor_only, path_id
from server.jsonbody import json_error, load_body, quota_refused
from server.keys import DB_KEY, SETTINGS_KEY, USER_KEY

# The one answer that holds a secret must not be kept by any cache.
NO_STORE = {"Cache-Control": "no-store"}


def _token(token: db.ApiToken) -> dict[str, Any]:
    def when(moment: Any) -> str | None:
        return moment.isoformat() if moment is not None else None

    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": when(token.created_at),
        "last_used_at": when(token.last_used_at),
        "revoked_at": when(token.revoked_at),
        # Null when made from the CLI; the token is revoked once its creator is no editor.
        "created_by": (
            {"user_id": token.created_by, "username": token.created_by_username}
            if token.created_by is not None
            else None
        ),
    }


async def _listing(request: web.Request, dashboard_id: int) -> list[dict[str, Any]]:
    return [_token(t) for t in await db.list_api_tokens(request.app[DB_KEY], dashboard_id)]


@editor_only
async def list_tokens(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    return web.json_response({"tokens": await _listing(request, dashboard.id)}, headers=NO_STORE)


@editor_only
async def create_token(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    body = await load_body(request, TokenCreateSchema())
    secret = new_token()
    try:
        created = await db.create_api_token(
            request.app[DB_KEY],
            dashboard.id,
            body["name"],
            token_hash(secret),
            display_prefix(secret),
            created_by=request[USER_KEY].id,
            quotas=request.app[SETTINGS_KEY].quotas,
        )
    except db.QuotaExceeded as exc:
        raise quota_refused(exc) from None
    except db.NotAnEditor as exc:  # demoted since the check at the door
        raise json_error(web.HTTPForbidden, str(exc)) from None
    except db.NotFound:
        raise json_error(web.HTTPNotFound, "no such dashboard") from None
    answer = {"token": _token(created), "secret": secret, "tokens": await _listing(request, dashboard.id)}
    return web.json_response(answer, status=201, headers=NO_STORE)


@editor_only
async def revoke_token(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    token_id = path_id(request, "token_id")
    if not await db.revoke_api_token(request.app[DB_KEY], dashboard.id, token_id):
        raise json_error(web.HTTPNotFound, f"no active token {token_id} on this dashboard")
    return web.json_response({"tokens": await _listing(request, dashboard.id)}, headers=NO_STORE)


@editor_only
async def delete_token(request: web.Request, dashboard: db.Dashboard) -> web.Response:
    """Drop a revoked token from the list; an active one must be revoked first."""
    token_id = path_id(request, "token_id")
    if not await db.delete_revoked_api_token(request.app[DB_KEY], dashboard.id, token_id):
        message = f"no revoked token {token_id} on this dashboard (revoke it first)"
        raise json_error(web.HTTPNotFound, message)
    return web.json_response({"tokens": await _listing(request, dashboard.id)}, headers=NO_STORE)

"""The HTML pages: login, logout, the dashboard list and a dashboard."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp_jinja2
import aiopg
from aiohttp import web
from marshmallow import ValidationError

from common import db
from common.events import Revocation
from common.passwords import UnusablePassword, hash_password, needs_rehash
from common.schemas import USERNAME_MAX_LENGTH, DashboardEditSchema, storable_text
from common.slugs import slugify
from common.sources import DEFAULT_SOURCE, PUSH, SOURCE_DESCRIPTIONS, SOURCES, system_reading
from server.asyncapi import asyncapi_document
from server.asyncapi_html import protocol_view
from server.auth import current_user, form_fields, log_in, log_out, login_required, page_context
from server.keys import DB_KEY, PASSWORD_GATE_KEY, REDIS_KEY, SETTINGS_KEY, TELEMETRY_KEY, USER_KEY
from server.live.preferencespush import preferences_payload
from server.live.registry import session_digest
from server.live.revocation import revoke
from server.ratelimit import (
    LoginLimits,
    PasswordGate,
    client_address,
    forgive_login,
    login_failed,
    reserve_login,
)

log = logging.getLogger(__name__)
DEFAULT_NEXT = "/dashboards/"
# C0 controls and DEL: what URL parsers strip or choke on.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def too_many_attempts(wait_seconds: int) -> str:
    """The refused login's message: how long to wait, as the Retry-After header says."""
    if wait_seconds < 60:
        amount, unit = wait_seconds, "second"
    else:
        amount, unit = -(-wait_seconds // 60), "minute"
    return f"Too many failed logins. Try again in {amount} {unit}{'s' if amount != 1 else ''}."


async def index(request: web.Request) -> web.StreamResponse:
    if await current_user(request) is None:
        raise web.HTTPFound(request.app.router["login"].url_for())
    raise web.HTTPFound(request.app.router["dashboards"].url_for())


@aiohttp_jinja2.template("login.html")
async def login_page(request: web.Request) -> dict:
    return await page_context(request, next=_safe_next(request.query.get("next")), error=None, username="")


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await form_fields(request)
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    next_url = _safe_next(str(form.get("next", "")))
    # Before anything else: a name no user can have never reaches Redis or a hash.
    if len(username) > USERNAME_MAX_LENGTH:
        error = f"Username: at most {USERNAME_MAX_LENGTH} characters."
        return await _login_answer(request, 400, error, next_url, "")
    gate = request.app[PASSWORD_GATE_KEY]
    if not gate.admit():
        request.app[TELEMETRY_KEY].login_refusals.labels(reason="busy").inc()
        error = "Too many logins at once. Try again in a moment."
        return await _login_answer(request, 503, error, next_url, username, retry_after=1)
    try:
        return await _check_login(request, gate, username, password, next_url)
    finally:
        gate.leave()


async def _check_login(
    request: web.Request, gate: PasswordGate, username: str, password: str, next_url: str
) -> web.StreamResponse:
    """Count the attempt, then check the password (in that order: see server/ratelimit.py)."""
    settings, redis_client = request.app[SETTINGS_KEY], request.app[REDIS_KEY]
    address = client_address(request.remote)
    limits = LoginLimits(
        settings.login_attempts_before_backoff,
        settings.login_failures_per_address,
        settings.login_window_seconds,
    )
    refused = await reserve_login(redis_client, username, address, limits)
    if refused is not None:
        request.app[TELEMETRY_KEY].login_refusals.labels(reason=refused.reason).inc()
        error = too_many_attempts(refused.retry_after)
        return await _login_answer(request, 429, error, next_url, username, retry_after=refused.retry_after)
    # A name PostgreSQL cannot hold (NUL) names nobody: the same answer as a wrong one.
    known = username and storable_text(username)
    credentials = await db.get_credentials(request.app[DB_KEY], username) if known else None
    # Checked even for an unknown user, so both failures look and time the same.
    request.app[TELEMETRY_KEY].password_checks.inc()
    valid = await gate.verify(credentials.password_hash if credentials else None, password)
    if credentials is None or not valid:
        await login_failed(redis_client, username, address, limits)
        return await _login_answer(request, 401, "Invalid username or password.", next_url, username)
    await forgive_login(redis_client, username, address)
    await _rehash_if_needed(request.app[DB_KEY], credentials, password)
    await log_in(request, credentials.user)
    raise web.HTTPFound(next_url)


async def _login_answer(
    request: web.Request,
    status: int,
    error: str,
    next_url: str,
    username: str,
    retry_after: int | None = None,
) -> web.Response:
    """The login page again, with what went wrong."""
    context = await page_context(request, next=next_url, error=error, username=username)
    response = aiohttp_jinja2.render_template("login.html", request, context, status=status)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def _rehash_if_needed(pool: aiopg.Pool, credentials: db.Credentials, password: str) -> None:
    """A hash made with older (weaker) argon2 parameters is made again with
    today's, now that the password is at hand."""
    if not needs_rehash(credentials.password_hash):
        return
    try:
        # Off the event loop, as every argon2 computation (server/ratelimit.py).
        new_hash = await asyncio.to_thread(hash_password, password)
    except UnusablePassword:  # set before empty passwords were refused; kept until changed
        return
    if await db.replace_password_hash(pool, credentials.user.id, credentials.password_hash, new_hash):
        log.info("password hash of %s renewed with the current parameters", credentials.user.username)


async def logout(request: web.Request) -> web.StreamResponse:
    await form_fields(request)  # a form's post, as every page sends it; nothing else
    key = await log_out(request)
    # An anonymous visitor's session has no sockets: its logout only clears
    # the cookie, and announces nothing for every process to act on.
    if key is not None:
        # This session's sockets, on every server process, close now.
        await revoke(request.app, Revocation("logout", session=session_digest(key)))
    raise web.HTTPFound(request.app.router["login"].url_for())


@login_required
@aiohttp_jinja2.template("dashboards.html")
async def dashboard_list(request: web.Request) -> dict:
    user = request[USER_KEY]
    dashboards = await db.list_user_dashboards(request.app[DB_KEY], user.id)
    return await page_context(request, user=user, dashboards=dashboards, errors={}, form={})


@login_required
async def create_dashboard(request: web.Request) -> web.StreamResponse:
    """The list page's "New dashboard" form: any user may create one and becomes its editor."""
    user = request[USER_KEY]
    form = await form_fields(request)
    fields = {key: str(form.get(key, "")) for key in ("name", "description")}
    try:
        body = DashboardEditSchema().load(fields)
    except ValidationError as exc:
        return await _refused_dashboard(request, fields, exc.messages, 400)
    try:
        created = await db.create_owned_dashboard(
            request.app[DB_KEY],
            body["name"],
            slugify(body["name"]) or "dashboard",
            body["description"],
            user.id,
            request.app[SETTINGS_KEY].quotas,
        )
    except db.QuotaExceeded as exc:
        return await _refused_dashboard(request, fields, {"limit": [str(exc)]}, 422)
    log.info("user %s created dashboard %s (id %d)", user.username, created.slug, created.id)
    # 303: the browser GETs the new dashboard, where its editor adds metrics.
    raise web.HTTPSeeOther(request.app.router["dashboard"].url_for(id=str(created.id)))


async def _refused_dashboard(
    request: web.Request, form: dict[str, str], errors: dict[str, Any] | list[Any], status: int
) -> web.Response:
    """The list page again, its New dashboard form saying why nothing was created."""
    user = request[USER_KEY]
    dashboards = await db.list_user_dashboards(request.app[DB_KEY], user.id)
    context = await page_context(request, user=user, dashboards=dashboards, errors=errors, form=form)
    return aiohttp_jinja2.render_template("dashboards.html", request, context, status=status)


@login_required
@aiohttp_jinja2.template("dashboard.html")
async def dashboard_page(request: web.Request) -> dict | web.Response:
    user = request[USER_KEY]
    dashboard_id = int(request.match_info["id"])
    membership = None
    if dashboard_id <= 2**63 - 1:
        membership = await db.get_membership(request.app[DB_KEY], dashboard_id, user.id)
    if membership is None:
        # Not "forbidden": whether the dashboard exists is not for non-members to learn.
        context = await page_context(request, user=user)
        return aiohttp_jinja2.render_template("no_dashboard.html", request, context, status=404)
    # The alert list's starting state; alerts.js keeps it current from `alert` messages.
    metric_names = {m.id: m.name for m in await db.list_metrics(request.app[DB_KEY], dashboard_id)}
    rules = await db.list_alert_rules(request.app[DB_KEY], dashboard_id)
    # In the page, so the cards come up hidden, ordered and drawn as the user likes at once.
    preferences = await db.get_preferences(request.app[DB_KEY], dashboard_id, user.id)
    # Viewers get no edit controls; the editing endpoints refuse them anyway.
    return await page_context(
        request,
        user=user,
        dashboard=membership.dashboard,
        can_edit=membership.role == db.EDITOR,
        has_metrics=bool(metric_names),  # an empty dashboard opens its Edit panel
        alert_rules=[(rule, metric_names.get(rule.metric_id, "")) for rule in rules],
        preferences=preferences_payload(dashboard_id, preferences),
        metric_sources=[
            (source, system_reading(source), SOURCE_DESCRIPTIONS.get(source)) for source in SOURCES
        ],
        default_source=DEFAULT_SOURCE,
        push_source=PUSH,
        kiosk="kiosk" in request.query,
    )


@login_required
@aiohttp_jinja2.template("playground.html")
async def playground(request: web.Request) -> dict:
    user = request[USER_KEY]
    dashboards = await db.list_user_dashboards(request.app[DB_KEY], user.id)
    return await page_context(request, user=user, dashboards=dashboards)


async def asyncapi(request: web.Request) -> web.Response:
    """The socket protocol as AsyncAPI 3 (public: it holds no data)."""
    document = asyncapi_document(request.host, request.scheme)
    return web.json_response(document, headers={"Cache-Control": "no-cache"})


async def asyncapi_page(request: web.Request) -> web.Response:
    """The same document as a page to read (public, as the JSON is)."""
    document = asyncapi_document(request.host, request.scheme)
    context = await page_context(request, user=await current_user(request), protocol=protocol_view(document))
    response = aiohttp_jinja2.render_template("asyncapi.html", request, context)
    response.headers["Cache-Control"] = "no-cache"
    return response


def _safe_next(target: str | None) -> str:
    """Only same-site paths may be a redirect target after login (no open redirect).

    Control characters are removed first: browsers and yarl drop tab, CR and LF
    inside URLs, so `/<TAB>/evil.example` would become `//evil.example`. Each
    percent-decoded form must pass too, for whatever decodes the path again.
    """
    if not target:
        return DEFAULT_NEXT
    cleaned = _CONTROL_CHARACTERS.sub("", target)
    form, previous = cleaned, None
    while form != previous:
        if not _is_local_path(form):
            return DEFAULT_NEXT
        previous, form = form, _CONTROL_CHARACTERS.sub("", unquote(form))
    return cleaned


def _is_local_path(path: str) -> bool:
    """An absolute path on this site: no scheme, no host, no `//` or `/\\` start, no backslash."""
    parts = urlsplit(path)
    return (
        path.startswith("/")
        and not path.startswith("//")
        and "\\" not in path
        and not parts.scheme
        and not parts.netloc
    )

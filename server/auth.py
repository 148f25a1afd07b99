"""Who is asking: sessions, the login requirement, CSRF tokens, Origin checks."""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp_session import SESSION_KEY, Session, get_session, new_session
from multidict import MultiDictProxy

from common import db
from common.db import User
from common.schemas import utf8_text
from server.keys import DB_KEY, SETTINGS_KEY, USER_KEY

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSRF_FIELD = "csrf_token"
# Where scripts send the token with a JSON request (server/editing.py).
CSRF_HEADER = "X-CSRF-Token"
# Methods that change something; GET and HEAD must not (forms cannot send the others).
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
API_PREFIX = "/api/"
SESSION_COOKIE = "dashboard_session"
PROBE_PATHS = ("/healthz", "/readyz")
METRICS_PATH = "/metrics"
_USER_ID = "user_id"
# Where a session keeps its CSRF token (server/sessions.py reads it too).
CSRF_SESSION_KEY = "csrf_token"


async def current_user(request: web.Request) -> User | None:
    """The logged-in user of this request's session, if it is still valid."""
    user_id = session_user_id(await get_session(request))
    if user_id is None:
        return None
    return await db.get_user(request.app[DB_KEY], user_id)


def session_user_id(session: Session) -> int | None:
    """The user a session is logged in as, if any."""
    user_id = session.get(_USER_ID)
    return user_id if isinstance(user_id, int) else None


async def socket_session(request: web.Request) -> tuple[int | None, str | None]:
    """The user id a socket's session names (not checked against the database)
    and the session's key, in one session read.

    The session is then dropped from the request: a socket's request lives
    as long as the socket, and nothing is ever saved to an upgraded response.
    """
    session = await get_session(request)
    request.pop(SESSION_KEY, None)
    key = session.identity
    return session_user_id(session), (key if isinstance(key, str) else None)


def session_redis_key(key: str) -> str:
    """Where aiohttp-session's RedisStorage keeps the session with this key."""
    return f"{SESSION_COOKIE}_{key}"


async def log_in(request: web.Request, user: User) -> None:
    # A fresh session id at login defeats session fixation.
    session = await new_session(request)
    session[_USER_ID] = user.id
    session[CSRF_SESSION_KEY] = secrets.token_urlsafe(32)


async def log_out(request: web.Request) -> str | None:
    """End the session; its key if someone was logged in on it (views.logout
    then closes its sockets everywhere), None for an anonymous visitor's."""
    session = await get_session(request)
    key = session.identity if isinstance(session.get(_USER_ID), int) else None
    session.invalidate()
    return key if isinstance(key, str) else None


def login_required(handler: Handler) -> Handler:
    """Send anonymous visitors to the login page, coming back here afterwards."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        user = await current_user(request)
        if user is None:
            raise web.HTTPFound(request.app.router["login"].url_for().with_query(next=request.path_qs))
        request[USER_KEY] = user
        return await handler(request)

    return wrapper


async def csrf_token(request: web.Request) -> str:
    """This session's CSRF token, created on first use."""
    session = await get_session(request)
    token = session.get(CSRF_SESSION_KEY)
    if not isinstance(token, str):
        token = session[CSRF_SESSION_KEY] = secrets.token_urlsafe(32)
    return token


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse any request that changes something (POST, PUT, PATCH, DELETE)
    whose token does not match the session's: a form's hidden field, or the
    X-CSRF-Token header of a script's JSON request."""
    if request.path.startswith(API_PREFIX) or request.method not in UNSAFE_METHODS:
        # The push API authenticates by bearer token, never by cookie: a
        # forged cross-site request carries no credential for it.
        return await handler(request)
    if request.content_type == "application/json":
        # A cross-site page cannot set this header without a CORS preflight,
        # which this server never grants; the token is checked all the same.
        _check_csrf(request.headers.get(CSRF_HEADER), (await get_session(request)).get(CSRF_SESSION_KEY))
    elif request.method == "POST" and request.content_type in FORM_CONTENT_TYPES:
        form = await form_fields(request)
        _check_csrf(form.get(CSRF_FIELD), (await get_session(request)).get(CSRF_SESSION_KEY))
    else:
        raise web.HTTPUnsupportedMediaType(
            text="Send forms as form data, or JSON with an X-CSRF-Token header."
        )
    return await handler(request)


async def form_fields(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The request's form fields: 415 if the body is not a form, 400 if it cannot be read."""
    if request.content_type not in FORM_CONTENT_TYPES:
        raise web.HTTPUnsupportedMediaType(text="Send this form as form data.")
    try:
        form = await request.post()
    # Undecodable text (UnicodeDecodeError is a ValueError), an unknown charset, broken multipart.
    except (ValueError, LookupError, HttpProcessingError) as exc:
        raise web.HTTPBadRequest(text=f"The form could not be read: {exc}") from None
    # A charset of the client's choosing (unicode_escape, say) can give lone
    # surrogates, which would fail later in Redis or the password hash as a 500.
    # (NUL is valid text: each field's own checks say what it may hold.)
    for name, value in form.items():
        if isinstance(value, str) and not utf8_text(value):
            raise web.HTTPBadRequest(text=f"The form could not be read: {name[:40]!r} is not valid text.")
    return form


def _check_csrf(sent: object, expected: object) -> None:
    # Compared as bytes: compare_digest raises TypeError for a str with
    # anything but ASCII, and a header or form field may hold any text
    # (headers arrive with undecodable bytes as lone surrogates).
    if not (
        isinstance(sent, str)
        and isinstance(expected, str)
        and hmac.compare_digest(
            sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
        )
    ):
        raise web.HTTPForbidden(text="Invalid or missing CSRF token: reload the page and retry.")


def origin_allowed(request: web.Request) -> bool:
    """Whether a WebSocket upgrade's Origin is this service (or allow-listed).

    Browsers always send Origin on WebSocket upgrades; a request without one
    is not from a browser page and cannot be a cross-site hijack.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if origin in request.app[SETTINGS_KEY].allowed_origins:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == request.host


async def page_context(request: web.Request, **values: Any) -> dict[str, Any]:
    """A page template's context: `values` plus what every page's forms need.

    Called by the views that render pages, rather than as an aiohttp-jinja2
    context processor, which would read the session from Redis for every
    request: static files, the API and the probes too.
    """
    user = values.get("user")
    # On <html> from the server, so the page never flashes in the other theme.
    # Nobody logged in (the login page): None, and the page follows the system's setting.
    theme = await db.get_theme(request.app[DB_KEY], user.id) if isinstance(user, User) else None
    return {"csrf_field": CSRF_FIELD, "csrf_token": await csrf_token(request), "theme": theme, **values}

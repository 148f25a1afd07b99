"""The application factory. Each resource is opened and closed by its own
cleanup context, in order: database, Redis, then the hub that needs Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, suppress
from importlib import resources

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import session_middleware

from common import db, vocabulary
from common.config import ResolvedSettings, obscure_password
from common.events import channels_for
from common.failures import ping_redis, reaching_database
from common.migrate import MigrationError, pending_migrations
from common.redisconn import connect_redis
from server.auth import SESSION_COOKIE, csrf_middleware
from server.errorpages import error_pages
from server.headers import add_security_headers
from server.keys import (
    CHANNELS_KEY,
    DB_KEY,
    HISTORY_TURNS_KEY,
    HUB_KEY,
    PASSWORD_GATE_KEY,
    READS_KEY,
    REDIS_KEY,
    SETTINGS_KEY,
    SOCKETS_KEY,
    TELEMETRY_KEY,
)
from server.live.configpush import config_push_ctx
from server.live.gaps import DatabaseStream
from server.live.history import HISTORY_TURNS_PER_USER
from server.live.hub import Hub
from server.live.preferencespush import preferences_push_ctx
from server.live.revocation import registry_ctx
from server.live.sharedreads import SharedReads
from server.live.transport import Heartbeat, OpenSockets
from server.proxies import forwarded_middleware, parse_networks
from server.ratelimit import PasswordGate, PerUserTurns
from server.routes import setup_routes
from server.sessions import RedisSessionStorage
from server.telemetry import ServerTelemetry, errors_middleware

log = logging.getLogger(__name__)

REDIS_CONNECTIONS = 32  # per server process, including the one subscription
SHUTDOWN_CLOSE_WAIT = 1.0  # seconds for clients to answer the 1001 close frame


def create_app(settings: ResolvedSettings) -> web.Application:
    """Build the server for settings whose database and Redis URLs are set."""
    if settings.database_url is None or settings.redis_url is None:
        raise ValueError("create_app needs concrete database and Redis URLs")
    # Creating the client opens nothing; redis_ctx checks and closes it.
    # A bounded pool: a burst of requests waits for a free connection instead
    # of failing. Named, so CLIENT LIST shows which server process holds what.
    redis_client = connect_redis(
        settings.redis_url,
        max_connections=REDIS_CONNECTIONS,
        health_check_interval=30,
        client_name=f"dashboard-server/{os.getpid()}",
    )
    storage = RedisSessionStorage(
        redis_client,
        cookie_name=SESSION_COOKIE,
        max_age=settings.session_max_age,
        httponly=True,
        samesite="Lax",
        secure=settings.secure_cookies,
    )
    telemetry = ServerTelemetry()
    # Order matters: the CSRF check reads the session, so the session
    # middleware must run first (outermost). Errors are counted outside
    # both, so a session store failure counts too; error pages are outermost
    # of all, so they see the counted error and need no session to render.
    # Before them, an address typed without its trailing slash (/playground)
    # is redirected to the page it names instead of "not found".
    # First of all, behind a trusted proxy, the request takes the client's
    # address, scheme and host: everything after (limits, Origin) sees them.
    forwarded = (
        [forwarded_middleware(parse_networks(settings.trusted_proxies))] if settings.trusted_proxies else []
    )
    app = web.Application(
        middlewares=[
            *forwarded,
            web.normalize_path_middleware(append_slash=True, merge_slashes=False),
            error_pages,
            errors_middleware(telemetry),
            session_middleware(storage),
            csrf_middleware,
        ]
    )
    app[SETTINGS_KEY] = settings
    app[CHANNELS_KEY] = channels_for(settings.redis_url, settings.channel_prefix)
    app[TELEMETRY_KEY] = telemetry
    app[REDIS_KEY] = redis_client
    app[SOCKETS_KEY] = OpenSockets()
    app[READS_KEY] = SharedReads()
    app[HISTORY_TURNS_KEY] = PerUserTurns(HISTORY_TURNS_PER_USER)
    templates = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(resources.files("templates"))),
        autoescape=True,
    )
    # Option lists and the page scripts' constants come from here, never a copy.
    templates.globals["vocabulary"] = vocabulary
    app[aiohttp_jinja2.static_root_key] = "/static"
    setup_routes(app)
    app.cleanup_ctx.extend(
        [
            db_ctx,
            redis_ctx,
            password_gate_ctx,
            hub_ctx,
            heartbeat_ctx,
            registry_ctx,
            config_push_ctx,
            preferences_push_ctx,
        ]
    )
    app.on_shutdown.append(close_sockets)
    app.on_response_prepare.append(add_security_headers)
    return app


async def db_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    async with AsyncExitStack() as stack:
        # Only opening and the first query: what fails later is a request's.
        with reaching_database(settings.database_url):
            pool = await stack.enter_async_context(db.create_pool(settings.database_url))
            pending = await pending_migrations(pool)
        if pending:
            raise MigrationError(
                f"the database needs {len(pending)} migration(s): run `dashboard-server migrate`"
            )
        log.info("database ready at %s", obscure_password(settings.database_url))
        app[DB_KEY] = pool
        yield


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    redis_client = app[REDIS_KEY]
    try:
        await ping_redis(redis_client, app[SETTINGS_KEY].redis_url)
        log.info(
            "Redis ready at %s (channels %s)",
            obscure_password(app[SETTINGS_KEY].redis_url),
            app[CHANNELS_KEY].pattern,
        )
        yield
    finally:
        await redis_client.aclose()


async def password_gate_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    gate = PasswordGate(settings.login_check_threads, settings.login_check_waiting)
    app[PASSWORD_GATE_KEY] = gate
    yield
    gate.close()


async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = Hub(app[REDIS_KEY], app[CHANNELS_KEY], app[TELEMETRY_KEY], DatabaseStream(app[DB_KEY]))
    app[HUB_KEY] = hub
    # Read at scrape time only: nothing to update on connect and disconnect.
    app[TELEMETRY_KEY].open_connections.set_function(hub.connection_count)
    listener = asyncio.create_task(hub.run(), name="redis-listener")
    yield
    listener.cancel()
    with suppress(asyncio.CancelledError):
        await listener
    await hub.close()


async def heartbeat_ctx(app: web.Application) -> AsyncIterator[None]:
    sockets = app[SOCKETS_KEY]
    heartbeat = asyncio.create_task(
        Heartbeat(sockets, app[SETTINGS_KEY].heartbeat_seconds).run(), name="heartbeat"
    )
    yield
    heartbeat.cancel()
    with suppress(asyncio.CancelledError):
        await heartbeat


async def close_sockets(app: web.Application) -> None:
    """On shutdown, tell every client to go and reconnect (to another instance)."""
    # All at once, and not for long: a client that does not answer within a
    # second (gone, or not reading) must not hold up the stop.
    await app[SOCKETS_KEY].close_all(SHUTDOWN_CLOSE_WAIT)
    # What they were reading for (shared among them) holds pool connections.
    app[READS_KEY].cancel_all()

"""The dashboard WebSocket endpoint: upgrade, authenticate, send config and
history, then answer client messages. docs/protocol.md is its spec; the
histories themselves are server/live/history.py.

One order throughout: the stored value's id (a larger id was stored later;
common/db/values.py). Histories hold the values stored last, `last_id` is the
largest id they account for, `resume` sends the ids after a position, and the
hub hands live values over in that order, so that "after" and "already sent"
mean the same everywhere, also for pushes back-dated by minutes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import redis.exceptions
from aiohttp import web

from common import db
from common.failures import BACKEND_UNAVAILABLE
from common.schemas import ProtocolError, encode_message, error_message, parse_client_message
from server.auth import origin_allowed, socket_session
from server.keys import (
    CONFIGS_KEY,
    DB_KEY,
    HUB_KEY,
    READS_KEY,
    REGISTRY_KEY,
    SETTINGS_KEY,
    SOCKETS_KEY,
    TELEMETRY_KEY,
)
from server.live.alertstate import alerts_frame
from server.live.closecodes import CloseCode
from server.live.connection import ClientConnection
from server.live.frames import TEXT
from server.live.history import (
    answer_with_histories,
    latest_loader,
    range_loader,
    requested_window,
    resume_loader,
    send_histories,
)
from server.live.transport import TakenOver, WebSocket, is_upgrade, take_over
from server.ratelimit import TokenBucket

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024  # larger client frames are refused (close 1009)


async def dashboard_socket(request: web.Request) -> web.StreamResponse:
    # Checked before the upgrade: a page on another site must not be able to
    # open a socket that rides on this user's cookie.
    if not origin_allowed(request):
        raise web.HTTPForbidden(text="WebSocket connections from other origins are refused.")
    if not is_upgrade(request):
        raise web.HTTPBadRequest(text="This address takes WebSocket connections only.")
    # `?updates=batch`: live values as one `metric_updates` message per turn (server/live/updates.py).
    updates = request.query.get("updates", "single")
    if updates not in ("single", "batch"):
        raise web.HTTPBadRequest(text="updates must be `single` (the default) or `batch`.")
    app = request.app
    # Revocations seen from now on may be missed by the checks below; the
    # registry holds them against this socket when it is added.
    checked_at = time.monotonic()
    session: tuple[int | None, str | None] | Exception
    try:
        session = await socket_session(request)
    except redis.exceptions.RedisError as exc:
        session = exc
    settings = app[SETTINGS_KEY]
    socket = WebSocket(MAX_FRAME_BYTES, TokenBucket(settings.message_rate, settings.message_burst))
    if take_over(request, socket):
        app[SOCKETS_KEY].add(socket)
        # `?subscribe=none`: the client will send `resume` or `history` itself
        # (a reconnecting page), so the default history would be wasted.
        with_history = request.query.get("subscribe") != "none"
        batched = updates == "batch"
        socket.run(_set_up(app, socket, session, _dashboard_id(request), checked_at, with_history, batched))
    else:
        log.debug("client of %s went away before the upgrade", request.path)
    # aiohttp has let go of the connection (server/live/transport.py): nothing is sent.
    return TakenOver()


async def _set_up(
    app: web.Application,
    socket: WebSocket,
    session: tuple[int | None, str | None] | Exception,
    dashboard_id: int | None,
    checked_at: float,
    with_history: bool,
    batched: bool,
) -> None:
    """Authenticate, send config, history and alerts, then take client messages."""
    if not socket.is_open:  # closed as it was added: the server is stopping
        return
    try:
        if isinstance(session, Exception):
            raise session
        conn = await _open(app, socket, session, dashboard_id, checked_at, batched)
        if conn is not None:
            try:
                await _serve(app, conn, with_history)
            finally:
                # Everything the set-up sent, in one write (also what is ready when a read fails).
                conn.uncork()
    except BACKEND_UNAVAILABLE as exc:
        # Answered at once with a code that says "come back", instead of a
        # socket that hangs or dies with 1011.
        log.warning("dashboard socket ended, database or session store unavailable: %r", exc)
        app[TELEMETRY_KEY].backend_error(exc)
        socket.close(CloseCode.TRY_AGAIN_LATER, "service unavailable")


async def _open(
    app: web.Application,
    socket: WebSocket,
    session: tuple[int | None, str | None],
    dashboard_id: int | None,
    checked_at: float,
    batched: bool,
) -> ClientConnection | None:
    """Authenticate, then send the config; None if the client was refused."""
    user_id, key = session
    if user_id is None or key is None:
        _refuse(socket, 401, "Authentication required", CloseCode.UNAUTHENTICATED)
        return None
    # One round trip for both checks, and for those of every socket opening in
    # the same loop turn (a read starts after its askers asked: revocations
    # from `checked_at` on are still seen): with thousands of sockets opening
    # at once, set-up cost is what bounds how fast they are all served again.
    pool = app[DB_KEY]
    user, member = await app[READS_KEY].read_batched(
        "access", (user_id, dashboard_id or 0), lambda pairs: db.get_users_and_memberships(pool, pairs)
    )
    if user is None:
        _refuse(socket, 401, "Authentication required", CloseCode.UNAUTHENTICATED)
        return None
    # From the per-process cache (server/live/configcache.py). From here until the
    # hub lists this socket (`_serve`) nothing waits, so any later change of
    # the config is pushed to it.
    config = await app[CONFIGS_KEY].get(dashboard_id) if member and dashboard_id is not None else None
    if config is None:
        # Same answer whether the dashboard exists or not: ids are not probeable.
        _refuse(socket, 403, "Forbidden", CloseCode.FORBIDDEN)
        return None
    settings = app[SETTINGS_KEY]
    registry = app[REGISTRY_KEY]
    if registry.count_for_user(user.id) >= settings.max_connections_per_user:
        _refuse(socket, 429, "Too many connections", CloseCode.TOO_MANY_CONNECTIONS)
        return None
    if not socket.is_open:  # went away during the checks
        return None
    accepted = {"user": user.username, "dashboard_id": dashboard_id}
    # Goes out with the handshake's answer and, if nothing closes the socket
    # meanwhile, with the config, history and alerts (`uncork`).
    socket.send_later(
        encode_message("authentication", {"status_code": 200, "status_text": "OK", "data": accepted})
    )
    flushes = app[HUB_KEY].flushes
    conn = ClientConnection(
        socket, user, config.dashboard, config.metrics, settings.client_buffer_bytes, flushes, batched
    )
    conn.cork()
    # Registered before anything is sent, so a revocation from now on reaches it.
    # One that came during the checks above closes it here instead; it is then
    # served like a socket revoked just after opening, until the close completes.
    registry.add(conn, key, checked_at)
    conn.send_frame(config.frame)
    # From here, however the socket ends, `_ended` undoes what was registered
    # (once the set-up is over, so that nothing is registered after it).
    socket.start(partial(_on_message, app, conn), partial(_ended, app, conn))
    return conn


async def _serve(app: web.Application, conn: ClientConnection, with_history: bool) -> None:
    """Join the live stream, then send history and the alerts; client messages wait until then."""
    await app[HUB_KEY].add(conn)
    if with_history:
        await send_histories(app, conn, list(conn.metrics), latest_loader(app, conn.metrics))
    # After the hub.add above: an event stored from now on also arrives
    # live; `event_id` tells the client which of the two is newer.
    conn.send_frame(await _alerts_frame(app, conn.dashboard.id))


async def _on_message(app: web.Application, conn: ClientConnection, opcode: int, payload: bytes) -> None:
    """One client message (server/live/transport.py hands them over one at a time, in order,
    and has already counted it against the socket's rate limit)."""
    if opcode == TEXT:
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            conn.close_soon(CloseCode.INVALID_TEXT, "text frame is not UTF-8")
            return
        await _handle_text(app, conn, text)
    else:
        conn.send(error_message(ProtocolError("binary frames are not supported; send JSON text")))
    conn.send(encode_message("complete"))


def _ended(app: web.Application, conn: ClientConnection) -> None:
    app[REGISTRY_KEY].remove(conn)
    app[HUB_KEY].remove(conn)
    app[TELEMETRY_KEY].connection_ended(conn.dropped_frames, conn.close_code)


def _dashboard_id(request: web.Request) -> int | None:
    try:
        dashboard_id = int(request.match_info["id"])
    except ValueError:
        return None
    return dashboard_id if 0 < dashboard_id <= 2**63 - 1 else None


def _refuse(socket: WebSocket, status: int, text: str, code: CloseCode) -> None:
    socket.send_text(
        encode_message("authentication", {"status_code": status, "status_text": text, "data": None})
    )
    # Nothing the client sends any more is parsed: a refused socket costs no work.
    socket.close(code, text, parse_reply=False)


async def _alerts_frame(app: web.Application, dashboard_id: int) -> bytes:
    """The dashboard's `alerts` message, read and encoded once for the sockets opening together."""
    pool = app[DB_KEY]
    return await app[READS_KEY].read(("alerts", dashboard_id), lambda: alerts_frame(pool, dashboard_id))


async def _handle_text(app: web.Application, conn: ClientConnection, text: str) -> None:
    try:
        action, payload = parse_client_message(text)
        await HANDLERS[action](app, conn, payload)
    except ProtocolError as exc:
        conn.send(error_message(exc))


def _own_metric_ids(conn: ClientConnection, metric_ids: list[int]) -> list[int]:
    """The ids, deduplicated in order; refuses all of them if any is not ours."""
    foreign = sorted({i for i in metric_ids if i not in conn.metrics})
    if foreign:
        raise ProtocolError(
            "metric ids not on this dashboard: " + ", ".join(map(str, foreign)),
            {"payload": {"metric_ids": {"not_on_dashboard": foreign}}},
        )
    return list(dict.fromkeys(metric_ids))


async def _on_subscribe(app: web.Application, conn: ClientConnection, payload: dict[str, Any]) -> None:
    wanted = _own_metric_ids(conn, payload["metric_ids"])
    new = [metric_id for metric_id in wanted if metric_id not in conn.subscribed]
    if new:
        await answer_with_histories(app, conn, new, latest_loader(app, conn.metrics))


async def _on_history(app: web.Application, conn: ClientConnection, payload: dict[str, Any]) -> None:
    # Subscribed or not: the history replaces what the client holds. A range that
    # ended in the past says `live: false`; the metrics stay subscribed all the same
    # (the socket's own liveness and the alerts do not depend on the range in view).
    wanted = _own_metric_ids(conn, payload["metric_ids"])
    loader = range_loader(app, conn.metrics, requested_window(payload, datetime.now(UTC)))
    await answer_with_histories(app, conn, wanted, loader)


async def _on_resume(app: web.Application, conn: ClientConnection, payload: dict[str, Any]) -> None:
    positions = {p["metric_id"]: p["after_id"] for p in payload["positions"]}
    wanted = _own_metric_ids(conn, [p["metric_id"] for p in payload["positions"]])
    # Subscribed metrics are already live: the client has everything since.
    new = [metric_id for metric_id in wanted if metric_id not in conn.subscribed]
    if new:
        await answer_with_histories(app, conn, new, resume_loader(app, conn.metrics, positions))


async def _on_unsubscribe(app: web.Application, conn: ClientConnection, payload: dict[str, Any]) -> None:
    app[HUB_KEY].unsubscribe(conn, _own_metric_ids(conn, payload["metric_ids"]))


async def _on_ping(app: web.Application, conn: ClientConnection, payload: Any) -> None:
    conn.send(encode_message("pong", payload))


HANDLERS: dict[str, Callable[[web.Application, ClientConnection, Any], Awaitable[None]]] = {
    "subscribe": _on_subscribe,
    "unsubscribe": _on_unsubscribe,
    "ping": _on_ping,
    "history": _on_history,
    "resume": _on_resume,
}

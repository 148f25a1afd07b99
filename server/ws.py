"""The dashboard WebSocket: authenticate, send config and history, then
stream updates and answer client messages. docs/protocol.md is its spec.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.exceptions
from aiohttp import WSMsgType, web

from common import db
from common.db import Metric, MetricValue
from common.schemas import ProtocolError, encode_message, error_message, parse_client_message
from server.auth import current_user, origin_allowed, session_key
from server.closecodes import CloseCode
from server.connection import ClientConnection
from server.keys import DB_KEY, HUB_KEY, REGISTRY_KEY, SETTINGS_KEY, SOCKETS_KEY
from server.ratelimit import TokenBucket

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024  # larger client frames are refused (close 1009)


async def dashboard_socket(request: web.Request) -> web.WebSocketResponse:
    # Checked before the upgrade: a page on another site must not be able to
    # open a socket that rides on this user's cookie.
    if not origin_allowed(request):
        raise web.HTTPForbidden(text="WebSocket connections from other origins are refused.")
    settings = request.app[SETTINGS_KEY]
    # aiohttp sends no pings unless asked: without them a peer that vanished
    # (laptop lid closed, NAT timeout) would hold its socket open for hours.
    ws = web.WebSocketResponse(heartbeat=settings.heartbeat_seconds, max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    request.app[SOCKETS_KEY].add(ws)
    try:
        await _serve(request, ws)
    except (*db.UNAVAILABLE, redis.exceptions.RedisError) as exc:
        # Answered at once with a code that says "come back", instead of a
        # socket that hangs or dies with 1011.
        log.warning("dashboard socket ended, database or session store unavailable: %s", exc)
        await ws.close(code=CloseCode.TRY_AGAIN_LATER, message=b"service unavailable")
    return ws


async def _serve(request: web.Request, ws: web.WebSocketResponse) -> None:
    user = await current_user(request)
    key = await session_key(request) if user is not None else None
    if user is None or key is None:
        await _refuse(ws, 401, "Authentication required", CloseCode.UNAUTHENTICATED)
        return
    dashboard = await _member_dashboard(request, user.id)
    if dashboard is None:
        # Same answer whether the dashboard exists or not: ids are not probeable.
        await _refuse(ws, 403, "Forbidden", CloseCode.FORBIDDEN)
        return
    settings = request.app[SETTINGS_KEY]
    registry = request.app[REGISTRY_KEY]
    if registry.count_for_user(user.id) >= settings.max_connections_per_user:
        await _refuse(ws, 429, "Too many connections", CloseCode.TOO_MANY_CONNECTIONS)
        return

    await ws.send_str(
        encode_message(
            "authentication",
            {
                "status_code": 200,
                "status_text": "OK",
                "data": {"user": user.username, "dashboard_id": dashboard.id},
            },
        )
    )
    pool = request.app[DB_KEY]
    metrics = await db.list_metrics(pool, dashboard.id)
    transport = request.transport
    if transport is None:  # the client went away during the queries above
        return
    conn = ClientConnection(ws, transport, user, dashboard, metrics, settings.client_buffer_bytes)
    # Registered before anything is sent, so a revocation from now on reaches it.
    registry.add(conn, key)
    conn.send(encode_message("dashboard_config", _config_payload(dashboard, metrics)))
    hub = request.app[HUB_KEY]
    bucket = TokenBucket(settings.message_rate, settings.message_burst)
    try:
        await hub.add(conn)
        await _subscribe_with_history(request, conn, [metric.id for metric in metrics])
        async for message in ws:
            if not bucket.take():
                # Not `break`: returning now would close with 1000 before this
                # code goes out. Frames are dropped until the close completes.
                conn.close_soon(CloseCode.RATE_LIMITED, "too many messages")
                continue
            if message.type == WSMsgType.TEXT:
                await _handle_text(request, conn, message.data)
            elif message.type == WSMsgType.BINARY:
                conn.send(error_message(ProtocolError("binary frames are not supported; send JSON text")))
            else:
                break
            conn.send(encode_message("complete"))
    finally:
        registry.remove(conn)
        hub.remove(conn)


async def _member_dashboard(request: web.Request, user_id: int) -> db.Dashboard | None:
    try:
        dashboard_id = int(request.match_info["id"])
    except ValueError:
        return None
    if not 0 < dashboard_id <= 2**63 - 1:
        return None
    return await db.get_member_dashboard(request.app[DB_KEY], dashboard_id, user_id)


async def _refuse(ws: web.WebSocketResponse, status: int, text: str, code: CloseCode) -> None:
    await ws.send_str(
        encode_message("authentication", {"status_code": status, "status_text": text, "data": None})
    )
    await ws.close(code=code, message=text.encode())


def _config_payload(dashboard: db.Dashboard, metrics: list[Metric]) -> dict[str, Any]:
    return {
        "id": dashboard.id,
        "name": dashboard.name,
        "description": dashboard.description,
        "metrics": [
            {"id": m.id, "name": m.name, "description": m.description, "type": m.type, "unit": m.unit}
            for m in metrics
        ],
    }


def _history_payload(metric: Metric, values: list[MetricValue]) -> dict[str, Any]:
    return {
        "metric_id": metric.id,
        "metric_name": metric.name,
        "unit": metric.unit,
        "values": [{"value": v.value, "timestamp": v.ts.isoformat()} for v in values],
    }


async def _subscribe_with_history(
    request: web.Request, conn: ClientConnection, metric_ids: list[int]
) -> None:
    """Subscribe to the metrics, then send their history, then live updates.

    Live updates arriving while history is read are held back and released
    afterwards minus those the history already contained: no gap, no duplicate.
    """
    conn.hold()
    last_sent: dict[int, int] = {}
    try:
        request.app[HUB_KEY].subscribe(conn, metric_ids)
        limit = request.app[SETTINGS_KEY].history_limit
        history = await db.latest_values(request.app[DB_KEY], metric_ids, limit)
        for metric_id in metric_ids:
            values = history[metric_id]
            conn.send(encode_message("metric_history", _history_payload(conn.metrics[metric_id], values)))
            if values:
                last_sent[metric_id] = values[-1].id
    finally:
        conn.release(last_sent)


async def _handle_text(request: web.Request, conn: ClientConnection, text: str) -> None:
    try:
        action, payload = parse_client_message(text)
        await HANDLERS[action](request, conn, payload)
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


async def _on_subscribe(request: web.Request, conn: ClientConnection, payload: dict[str, Any]) -> None:
    wanted = _own_metric_ids(conn, payload["metric_ids"])
    new = [metric_id for metric_id in wanted if metric_id not in conn.subscribed]
    if not new:
        return
    try:
        await _subscribe_with_history(request, conn, new)
    except db.UNAVAILABLE as exc:
        # Undone, so that the client can simply send the same subscribe again.
        request.app[HUB_KEY].unsubscribe(conn, new)
        log.warning("history unavailable: %s", exc)
        raise ProtocolError(
            "history unavailable: the database is not reachable, retry later",
            {"database": ["unavailable"]},
        ) from None


async def _on_unsubscribe(request: web.Request, conn: ClientConnection, payload: dict[str, Any]) -> None:
    request.app[HUB_KEY].unsubscribe(conn, _own_metric_ids(conn, payload["metric_ids"]))


async def _on_ping(request: web.Request, conn: ClientConnection, payload: Any) -> None:
    conn.send(encode_message("pong", payload))


HANDLERS: dict[str, Callable[[web.Request, ClientConnection, Any], Awaitable[None]]] = {
    "subscribe": _on_subscribe,
    "unsubscribe": _on_unsubscribe,
    "ping": _on_ping,
}

"""Probes for load balancers and orchestrators: /healthz (the process answers)
and /readyz (it can serve: the database and Redis answer); /metrics for Prometheus."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from aiohttp import web

from common import db
from common.failures import BACKEND_UNAVAILABLE
from common.telemetry import exposition
from server.keys import DB_KEY, REDIS_KEY, TELEMETRY_KEY

# A probe must answer quickly even when a dependency hangs.
CHECK_TIMEOUT = 2.0


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop turns. Touches neither the database nor Redis."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: 200 when the database and Redis both answer, else 503 naming which not."""
    checks = {
        "database": await _check(db.ping(request.app[DB_KEY])),
        "redis": await _check(request.app[REDIS_KEY].ping()),
    }
    ready = all(state == "ok" for state in checks.values())
    return web.json_response(
        {"status": "ok" if ready else "unavailable", **checks}, status=200 if ready else 503
    )


async def metrics(request: web.Request) -> web.Response:
    """This process's own metrics for Prometheus (counts only: no user data)."""
    return exposition(request, request.app[TELEMETRY_KEY].registry)


async def _check(probe: Awaitable[object]) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)
    except BACKEND_UNAVAILABLE:
        return "unreachable"
    return "ok"

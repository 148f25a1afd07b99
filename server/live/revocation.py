"""Open sockets follow their session and membership: when access ends, they close.

Access is checked when a socket opens. Afterwards two things end it:

* an announcement on the control channel (`common.events.Revocation`), which
  every server process receives from Redis, so a logout or a removal made
  through any process or the CLI closes the sockets on all of them at once;
* a sweep every `session_check_interval` seconds that re-reads each socket's
  session from Redis and its membership from PostgreSQL. It catches what no
  one announces (a session that simply expired) and any announcement missed
  while Redis was away.

A revocation that arrives while a socket is opening, after its checks but
before it is registered, is kept by the registry for a while and applied when
the socket is added (SocketRegistry.add), so it does not wait for the sweep.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import suppress

from aiohttp import web

from common import db
from common.events import Revocation, announce_revocation
from common.failures import BACKEND_UNAVAILABLE, REDIS_UNAVAILABLE
from server.auth import session_redis_key
from server.keys import CHANNELS_KEY, DB_KEY, HUB_KEY, REDIS_KEY, REGISTRY_KEY, SETTINGS_KEY
from server.live.registry import SocketRegistry, close

log = logging.getLogger(__name__)


async def revoke(app: web.Application, revocation: Revocation) -> None:
    """End access here at once, and announce it to every other server process."""
    app[REGISTRY_KEY].revoke(revocation)
    try:
        await announce_revocation(app[REDIS_KEY], app[CHANNELS_KEY], revocation)
    except REDIS_UNAVAILABLE as exc:
        # The other processes' sweeps will still find it.
        log.warning("could not announce %s: %s", revocation.reason, exc)


async def sweep(app: web.Application) -> None:
    """Close the sockets whose session expired or whose membership ended."""
    sessions = app[REGISTRY_KEY].sessions()
    if not sessions:
        return
    live = await _live_sessions(app, set(sessions.values()))
    expired = {conn for conn, key in sessions.items() if live.get(key) != conn.user.id}
    close(expired, "session_expired")
    remaining = [conn for conn in sessions if conn not in expired]
    pairs = {(conn.dashboard.id, conn.user.id) for conn in remaining}
    members = await db.current_memberships(app[DB_KEY], list(pairs))
    close([c for c in remaining if (c.dashboard.id, c.user.id) not in members], "member_removed")


async def _live_sessions(app: web.Application, keys: set[str]) -> dict[str, int]:
    """The user id of each session key still logged in and not past its age."""
    ordered = list(keys)
    async with app[REDIS_KEY].pipeline(transaction=False) as pipe:
        for key in ordered:
            pipe.get(session_redis_key(key))
        stored = await pipe.execute()
    oldest = time.time() - app[SETTINGS_KEY].session_max_age
    live = {}
    for key, data in zip(ordered, stored, strict=True):
        with suppress(ValueError, TypeError, AttributeError, KeyError):
            record = json.loads(data)
            user_id = record["session"].get("user_id")
            if isinstance(user_id, int) and record.get("created", 0) >= oldest:
                live[key] = user_id
    return live


async def registry_ctx(app: web.Application) -> AsyncIterator[None]:
    """The socket registry, fed by the hub's control channel, and its sweep."""
    registry = SocketRegistry()
    app[REGISTRY_KEY] = registry
    app[HUB_KEY].on_control(registry.revoke)
    app[HUB_KEY].on_resync(registry.resync)
    sweeper = asyncio.create_task(_sweep_forever(app), name="session-sweep")
    yield
    sweeper.cancel()
    with suppress(asyncio.CancelledError):
        await sweeper


async def _sweep_forever(app: web.Application) -> None:
    interval = app[SETTINGS_KEY].session_check_interval
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep(app)
        except BACKEND_UNAVAILABLE as exc:
            # Fail open for one round rather than close everyone on a blip.
            log.warning("session sweep skipped: %s", exc)

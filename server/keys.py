"""Typed keys of everything the application holds (aiohttp warns on string keys)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiopg
from aiohttp import web

from common.config import ResolvedSettings
from common.db import User
from common.events import Channels
from common.redisconn import RedisClient

# Only for the checker: importing the keys (server/auth.py does) must not
# load the socket stack, so the keys of these types say so in annotations.
if TYPE_CHECKING:
    from server.live.configcache import ConfigCache
    from server.live.hub import Hub
    from server.live.registry import SocketRegistry
    from server.live.sharedreads import SharedReads
    from server.live.transport import OpenSockets
    from server.ratelimit import PasswordGate, PerUserTurns
    from server.telemetry import ServerTelemetry

SETTINGS_KEY = web.AppKey("settings", ResolvedSettings)
# This deployment's Redis channel names (from the settings).
CHANNELS_KEY = web.AppKey("channels", Channels)
DB_KEY = web.AppKey("db", aiopg.Pool)
REDIS_KEY = web.AppKey[RedisClient]("redis")
HUB_KEY: web.AppKey[Hub] = web.AppKey("hub")
SOCKETS_KEY: web.AppKey[OpenSockets] = web.AppKey("sockets")
REGISTRY_KEY: web.AppKey[SocketRegistry] = web.AppKey("registry")
TELEMETRY_KEY: web.AppKey[ServerTelemetry] = web.AppKey("telemetry")
# Per dashboard, held while its new config is read and pushed (server/live/configpush.py).
CONFIG_LOCKS_KEY = web.AppKey("config_locks", dict[int, asyncio.Lock])
# Per user, held while their new preferences are read and pushed (server/live/preferencespush.py).
PREFERENCE_LOCKS_KEY = web.AppKey("preference_locks", dict[int, asyncio.Lock])
# Each watched dashboard's config, read once per process (server/live/configcache.py).
CONFIGS_KEY: web.AppKey[ConfigCache] = web.AppKey("configs")
# History reads of sockets opening together, made once (server/live/sharedreads.py).
READS_KEY: web.AppKey[SharedReads] = web.AppKey("reads")
# Login password checks, off the event loop and bounded (server/ratelimit.py).
PASSWORD_GATE_KEY: web.AppKey[PasswordGate] = web.AppKey("password_gate")
# Histories clients ask for, a few of one user's at once (server/live/history.py).
HISTORY_TURNS_KEY: web.AppKey[PerUserTurns] = web.AppKey("history_turns")

# The logged-in user of a request, set by auth.login_required.
USER_KEY = web.RequestKey("user", User)
# The client's address given by a trusted proxy (server/proxies.py), for the access log.
CLIENT_ADDRESS_KEY = web.RequestKey("client_address", str)

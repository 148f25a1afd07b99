"""Sessions in Redis, on any of our Redis clients (one server, Sentinel, Cluster).

aiohttp-session's RedisStorage refuses anything but `redis.asyncio.Redis`,
though it only needs GET and SET; this is the same storage, keys and format
(`dashboard_session_<key>`, JSON, expiring with the session), for a
`RedisCluster` too. Logged-in sessions are also listed per user, so that a
password change or `user logout-everywhere` can end them all.

A visitor who is not logged in has nothing to keep but the login form's CSRF
token, so their session lives in the cookie alone (`anon.<token>`, a
double-submit token, for an hour): anonymous requests write nothing to
Redis, however many there are. The 7-day session in Redis is made at login
(under a fresh key: server/auth.py log_in).

The sessions asked for in one event-loop turn are read in one pipeline
(server/live/sharedreads.py, `read_batched`): a reconnect storm of thousands of
sockets is a few round trips to Redis, not one per socket waiting for one of
the pool's connections.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from aiohttp import web
from aiohttp_session import AbstractStorage, Session, SessionData
from redis.asyncio import RedisCluster

from common.redisconn import RedisClient
from server.auth import CSRF_SESSION_KEY, session_redis_key, session_user_id
from server.live.sharedreads import SharedReads

ANONYMOUS_PREFIX = "anon."
# How long a login form may be left open before its token is refused.
ANONYMOUS_MAX_AGE = 3600
# What secrets.token_urlsafe(32) makes (server/auth.py csrf_token).
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")
# What a logged-in session's key is (uuid.uuid4().hex, `save_session`). Any
# other cookie names no session and is not looked up: the keys of one loop
# turn go to Redis in one MGET, and a key Redis cannot take (a cookie's
# undecodable bytes arrive as lone surrogates) failed the whole batch, other
# users' requests with it.
_KEY = re.compile(r"[0-9a-f]{32}")


class RedisSessionStorage(AbstractStorage):
    """Session data under `session_redis_key(key)`, the cookie holding only the key."""

    def __init__(self, redis_client: RedisClient, **cookie_options: Any) -> None:
        super().__init__(encoder=json.dumps, decoder=json.loads, **cookie_options)
        self._redis = redis_client
        self._reads = SharedReads()

    async def load_session(self, request: web.Request) -> Session:
        key = self.load_cookie(request)
        if isinstance(key, str) and key.startswith(ANONYMOUS_PREFIX):
            token = key.removeprefix(ANONYMOUS_PREFIX)
            if _TOKEN.fullmatch(token):
                anonymous: SessionData = {"created": int(time.time()), "session": {CSRF_SESSION_KEY: token}}
                return Session(None, data=anonymous, new=False, max_age=ANONYMOUS_MAX_AGE)
            return Session(None, data=None, new=True, max_age=self.max_age)
        if isinstance(key, str) and _KEY.fullmatch(key):
            # The sessions asked for in one loop turn are read in one pipeline (a reconnect storm).
            raw = await self._reads.read_batched("get", session_redis_key(str(key)), self._get_many)
            if raw is not None:
                try:
                    stored = self._decoder(_text(raw))
                except ValueError:
                    stored = None
                return Session(str(key), data=stored, new=False, max_age=self.max_age)
        return Session(None, data=None, new=True, max_age=self.max_age)

    async def _get_many(self, redis_keys: list[str]) -> dict[str, bytes | str | None]:
        if isinstance(self._redis, RedisCluster):
            # The keys live in different slots: one GET each, pipelined per node.
            async with self._redis.pipeline(transaction=False) as pipe:
                for redis_key in redis_keys:
                    pipe.get(redis_key)
                found = await pipe.execute()
        else:
            # One command and one reply for the whole batch: a pipeline of GETs
            # cost a reply to parse (and a read timeout to arm) per socket set up.
            found = await self._redis.mget(redis_keys)
        return dict(zip(redis_keys, found, strict=True))

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        user_id = session_user_id(session)
        if user_id is None:
            await self._save_anonymous(response, session)
            return
        key = session.identity
        if key is None:
            key = uuid.uuid4().hex
            self.save_cookie(response, key, max_age=session.max_age)
        elif session.empty:
            self.save_cookie(response, "", max_age=session.max_age)
        else:
            self.save_cookie(response, str(key), max_age=session.max_age)
        data = self._encoder(self._get_session_data(session))
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(session_redis_key(str(key)), data, ex=session.max_age)
            if user_id is not None:
                # Indexed by user, so that end_user_sessions finds them all.
                pipe.sadd(user_sessions_key(user_id), str(key))
                if session.max_age is not None:
                    pipe.expire(user_sessions_key(user_id), session.max_age)
            await pipe.execute()

    async def _save_anonymous(self, response: web.StreamResponse, session: Session) -> None:
        """The cookie of a visitor who is not (or no longer) logged in; nothing kept in Redis."""
        if session.identity is not None:
            # A logged-in session that just ended (logout): its stored data goes.
            await self._redis.delete(session_redis_key(str(session.identity)))
        token = session.get(CSRF_SESSION_KEY)
        if session.empty or not isinstance(token, str):
            self.save_cookie(response, "", max_age=session.max_age)
        else:
            self.save_cookie(response, ANONYMOUS_PREFIX + token, max_age=ANONYMOUS_MAX_AGE)


def user_sessions_key(user_id: int) -> str:
    """The set of a user's session keys. Not under the sessions' own prefix, so
    no cookie can name it (a cookie `x` is looked up as `dashboard_session_x`)."""
    return f"dashboard_user_sessions_{user_id}"


async def end_user_sessions(redis_client: RedisClient, user_id: int) -> int:
    """Delete every stored session of the user (their cookies open nothing after);
    how many there were. Their open sockets are closed by a Revocation."""
    index = user_sessions_key(user_id)
    keys = [_text(key) for key in await redis_client.smembers(index)]
    if keys:
        await redis_client.delete(*[session_redis_key(key) for key in keys])
        # Only these: a login since the read stays indexed (it used the new password).
        await redis_client.srem(index, *keys)
    return len(keys)


def _text(reply: bytes | str) -> str:
    # Our clients answer bytes (no decode_responses); the client's type allows either.
    return reply.decode() if isinstance(reply, bytes) else reply

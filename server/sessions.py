"""Sessions in Redis, on any of our Redis clients (one server, Sentinel, Cluster).

aiohttp-session's RedisStorage refuses anything but `redis.asyncio.Redis`,
though it only needs GET and SET; this is the same storage, keys and format
(`dashboard_session_<key>`, JSON, expiring with the session), for a
`RedisCluster` too. Logged-in sessions are also listed per user, so that a
password change or `user logout-everywhere` can end them all.
"""

from __future__ import annotations

import json
import uuid

from aiohttp import web
from aiohttp_session import AbstractStorage, Session

from common.redisconn import RedisClient
from server.auth import session_redis_key, session_user_id


class RedisSessionStorage(AbstractStorage):
    """Session data under `session_redis_key(key)`, the cookie holding only the key."""

    def __init__(self, redis_client: RedisClient, **cookie_options: object) -> None:
        super().__init__(encoder=json.dumps, decoder=json.loads, **cookie_options)  # type: ignore[arg-type]
        self._redis = redis_client

    async def load_session(self, request: web.Request) -> Session:
        key = self.load_cookie(request)
        if key is not None:
            data = await self._redis.get(session_redis_key(str(key)))
            if data is not None:
                try:
                    stored = self._decoder(data.decode())
                except ValueError:
                    stored = None
                return Session(str(key), data=stored, new=False, max_age=self.max_age)
        return Session(None, data=None, new=True, max_age=self.max_age)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        key = session.identity
        if key is None:
            key = uuid.uuid4().hex
            self.save_cookie(response, key, max_age=session.max_age)
        elif session.empty:
            self.save_cookie(response, "", max_age=session.max_age)
        else:
            self.save_cookie(response, str(key), max_age=session.max_age)
        data = self._encoder(self._get_session_data(session))
        user_id = session_user_id(session)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(session_redis_key(str(key)), data, ex=session.max_age)
            if user_id is not None:
                # Indexed by user, so that end_user_sessions finds them all.
                pipe.sadd(user_sessions_key(user_id), str(key))
                if session.max_age is not None:
                    pipe.expire(user_sessions_key(user_id), session.max_age)
            await pipe.execute()


def user_sessions_key(user_id: int) -> str:
    """The set of a user's session keys. Not under the sessions' own prefix, so
    no cookie can name it (a cookie `x` is looked up as `dashboard_session_x`)."""
    return f"dashboard_user_sessions_{user_id}"


async def end_user_sessions(redis_client: RedisClient, user_id: int) -> int:
    """Delete every stored session of the user (their cookies open nothing after);
    how many there were. Their open sockets are closed by a Revocation."""
    index = user_sessions_key(user_id)
    keys = [key.decode() for key in await redis_client.smembers(index)]
    if keys:
        await redis_client.delete(*[session_redis_key(key) for key in keys])
        # Only these: a login since the read stays indexed (it used the new password).
        await redis_client.srem(index, *keys)
    return len(keys)

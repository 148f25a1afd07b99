"""Login limits: a guesser slows down only itself, a burst is counted before
its passwords are checked, the checks never stall the event loop, and a
name no user can have never reaches Redis.

The attacks that need real source addresses run against a real server
process, with clients bound to other loopback addresses (127.0.0.2, ...).
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from urllib.parse import urlencode

import aiohttp
import pytest
from redis.asyncio import Redis

from server.app import create_app
from server.keys import TELEMETRY_KEY
from server.ratelimit import client_address
from tests.helpers import csrf_from, eventually
from tests.processes import child, free_port, wait_for_http
from tests.servers import servers

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
CHECKS_SAMPLE = re.compile(r"^dashboard_password_checks_total ([0-9.e+]+)$", re.MULTILINE)


async def attempt(client, username: str, password: str):
    token = await csrf_from(client)
    # As a stream: aiohttp warns about (and the tests turn into errors) large raw bodies.
    body = urlencode({"username": username, "password": password, "csrf_token": token}).encode()
    response = await client.post(
        "/login",
        data=io.BytesIO(body),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
    )
    return response.status, await response.text()


# In the app (the test client's one address) -----------------------------------------


async def test_one_address_backs_off_on_a_name_known_or_not(client, make_user):
    await make_user("alice")
    statuses = [(await attempt(client, "alice", "wrong"))[0] for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    status, page = await attempt(client, "alice", "secret-pw")  # from here, even the right one waits
    assert status == 429
    assert "Too many failed logins. Try again in 1 second." in page  # what to do, and when
    assert [(await attempt(client, "nobody", "wrong"))[0] for _ in range(6)] == [401] * 5 + [429]
    assert (await attempt(client, "bob", "wrong"))[0] == 401  # another name is not held back

    async def logged_in() -> bool:  # a refused attempt does not lengthen the wait
        return (await attempt(client, "alice", "secret-pw"))[0] == 302

    await eventually(logged_in, 1.9, "the wait lapses after 1 s (the next would be 2 s)")


async def test_logins_are_limited_per_address(aiohttp_client, settings, make_user):
    await make_user("alice")
    client = await aiohttp_client(create_app(replace(settings, login_failures_per_address=3)))
    statuses = [(await attempt(client, f"guess{i}", "wrong"))[0] for i in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert (await attempt(client, "alice", "secret-pw"))[0] == 429


async def test_parallel_attempts_never_pass_the_per_address_limit(aiohttp_client, settings):
    app = create_app(replace(settings, login_failures_per_address=5))
    client = await aiohttp_client(app)
    token = await csrf_from(client)
    statuses: list[int] = []
    for wave in range(4):  # 3 names at once: with checks counted after, the second wave would all pass
        names = [f"guess{wave}-{i}" for i in range(3)]
        statuses += await asyncio.gather(*(post_form(client, token, name, "wrong") for name in names))
    assert sorted(statuses) == [401] * 5 + [429] * 7
    assert app[TELEMETRY_KEY].password_checks._value.get() == 5


async def post_form(client, token: str, username: str, password: str) -> int:
    data = {"username": username, "password": password, "csrf_token": token}
    response = await client.post("/login", data=data, allow_redirects=False)
    return response.status


async def test_a_good_login_forgives_the_pairs_attempts(client, make_user):
    await make_user("alice")
    for _ in range(4):
        await attempt(client, "alice", "wrong")
    assert (await attempt(client, "alice", "secret-pw"))[0] == 302
    assert [(await attempt(client, "alice", "wrong"))[0] for _ in range(5)] == [401] * 5


@pytest.mark.parametrize("length", [151, 1 << 20])
async def test_an_overlong_username_never_reaches_redis(client, length):
    username = "u" * length
    status, page = await attempt(client, username, "wrong")
    # 151: the field named; 1 MiB: the body is over aiohttp's limit (413) before any handler.
    assert status == (400 if length == 151 else 413)
    if length == 151:
        assert "Username: at most 150 characters." in page
        assert username not in page  # not echoed back either
    redis_client = Redis.from_url(servers().redis_url)
    try:
        keys = [key async for key in redis_client.scan_iter(match="*uuuuuuuu*")]
    finally:
        await redis_client.aclose()
    assert keys == []


@pytest.mark.parametrize(
    ("remote", "counted_as"),
    [
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # same /64, same bucket
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),  # the next /64 is another client
        ("::ffff:192.0.2.7", "192.0.2.7"),  # an IPv4 client on a dual-stack socket
        ("192.0.2.7", "192.0.2.7"),
        (None, "unknown"),
    ],
)
def test_ipv6_clients_are_counted_by_their_64(remote, counted_as):
    assert client_address(remote) == counted_as


# Against a real server process, from real source addresses ---------------------------


@pytest.fixture
def server(settings) -> Iterator[str]:
    port = free_port()
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    with child(["-m", "server", *urls, "run", "--port", str(port)]) as process:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process)
        yield f"http://127.0.0.1:{port}"


async def session_from(address: str) -> aiohttp.ClientSession:
    """A client whose connections come from `address` (any of 127.0.0.0/8)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=0)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True))


async def post_login(
    session: aiohttp.ClientSession, base: str, token: str, username: str, password: str
) -> int:
    data = {"username": username, "password": password, "csrf_token": token}
    async with session.post(f"{base}/login", data=data, allow_redirects=False) as response:
        return response.status


async def login_token(session: aiohttp.ClientSession, base: str) -> str:
    async with session.get(f"{base}/login") as response:
        return CSRF_INPUT.search(await response.text())[1]


@pytest.fixture
async def sessions() -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    opened: dict[str, aiohttp.ClientSession] = {}
    for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        opened[address] = await session_from(address)
    yield opened
    for session in opened.values():
        await session.close()


async def test_a_guesser_elsewhere_does_not_lock_the_owner_out(server, sessions, make_user):
    await make_user("alice")
    attacker, owner = sessions["127.0.0.2"], sessions["127.0.0.3"]
    token = await login_token(attacker, server)
    statuses = [await post_login(attacker, server, token, "alice", f"guess{i}") for i in range(20)]
    assert statuses[:5] == [401] * 5 and 429 in statuses
    assert await post_login(attacker, server, token, "alice", "secret-pw") == 429  # the guesser waits
    owner_token = await login_token(owner, server)
    assert await post_login(owner, server, owner_token, "alice", "secret-pw") == 302


async def test_a_parallel_burst_is_counted_before_passwords_are_checked(server, sessions, make_user):
    await make_user("alice")
    probe = asyncio.create_task(probe_health(server))
    try:
        # 200 at once on one name from one address.
        one_name = await burst(sessions["127.0.0.2"], server, ["alice"] * 200)
        checks_one_name = await password_checks(server)
        # 200 names at once from another: the per-process gate answers most "busy".
        many_names = await burst(sessions["127.0.0.4"], server, [f"user{i}" for i in range(200)])
        checks_many_names = await password_checks(server) - checks_one_name
    finally:
        probe.cancel()
    latencies = await probe
    assert set(one_name) <= {401, 429, 503} and set(many_names) <= {401, 429, 503}
    # Five free attempts, then one more per backoff lapse (1 s, 2 s, ...) while the burst lasts.
    assert checks_one_name <= 7, checks_one_name
    assert checks_many_names <= 10, checks_many_names  # 2 running + 8 waiting, the rest refused
    # The checks ran beside the event loop: the probe was answered all along.
    # Inline, 200 argon2 checks (64 MiB, t=3) would hold every probe for seconds; off the
    # loop, a probe waits only for the machine itself (generous: CI's 2 cores are shared,
    # so one probe in ten may have waited for another process).
    assert len(latencies) >= 5 and sorted(latencies)[len(latencies) * 9 // 10] < 1.0, latencies
    assert sorted(latencies)[len(latencies) // 2] < 0.25, latencies


async def burst(session: aiohttp.ClientSession, base: str, names: list[str]) -> list[int]:
    """A wrong password for each name, all at once."""
    token = await login_token(session, base)
    started = time.monotonic()
    statuses = await asyncio.gather(*(post_login(session, base, token, name, "wrong") for name in names))
    assert time.monotonic() - started < 15  # refused ones are answered at once, not queued
    return list(statuses)


async def probe_health(base: str) -> list[float]:
    """GET /healthz every 50 ms until cancelled; each answer's seconds."""
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:
        try:
            while True:
                started = time.monotonic()
                async with session.get(f"{base}/healthz") as response:
                    assert response.status == 200
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            return latencies


async def password_checks(base: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as response:
        return float(CHECKS_SAMPLE.search(await response.text())[1])

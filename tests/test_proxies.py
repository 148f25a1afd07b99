"""Behind a reverse proxy: forwarded headers believed only from trusted proxies.

The test client connects from 127.0.0.1; as a trusted proxy it speaks for
clients in X-Forwarded-For, and the login limit per address, the Origin
check and the access log must see those clients, never the proxy.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import aiohttp
import pytest

from server.app import create_app
from tests.helpers import csrf_from, eventually
from tests.processes import child, free_port, wait_for_http


async def _login(client, forwarded_for: str, password: str) -> int:
    token = await csrf_from(client)
    response = await client.post(
        "/login",
        data={"username": "alice", "password": password, "csrf_token": token},
        headers={"X-Forwarded-For": forwarded_for},
        allow_redirects=False,
    )
    return response.status


@pytest.fixture
def proxied(settings):
    """Settings of a server behind a proxy on 127.0.0.1, three failures allowed per address."""
    return replace(
        settings,
        trusted_proxies=("127.0.0.1/32",),
        login_failures_per_address=3,
        login_attempts_before_backoff=1000,
    )


async def test_login_limit_counts_the_forwarded_client_not_the_proxy(aiohttp_client, proxied, make_user):
    await make_user("alice")
    client = await aiohttp_client(create_app(proxied))
    for _ in range(3):
        assert await _login(client, "203.0.113.7", "wrong") == 401
    assert await _login(client, "203.0.113.7", "secret-pw") == 429
    # Another client behind the same proxy is not locked out by the first.
    assert await _login(client, "198.51.100.9", "secret-pw") == 302


async def test_the_rightmost_untrusted_hop_is_the_client(aiohttp_client, proxied, make_user):
    await make_user("alice")
    client = await aiohttp_client(create_app(proxied))
    # An attacker prepends addresses at will; the proxy appends the real one.
    for forged in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        assert await _login(client, f"{forged}, 203.0.113.7", "wrong") == 401
    assert await _login(client, "4.4.4.4, 203.0.113.7", "secret-pw") == 429


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(aiohttp_client, settings, make_user):
    await make_user("alice")
    direct = replace(settings, login_failures_per_address=3, login_attempts_before_backoff=1000)
    client = await aiohttp_client(create_app(direct))
    for forged in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        assert await _login(client, forged, "wrong") == 401
    # All three counted against 127.0.0.1, whatever the header said.
    assert await _login(client, "4.4.4.4", "secret-pw") == 429


@pytest.mark.slow
async def test_access_log_shows_the_forwarded_client(settings):
    port = free_port()
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    args = ["-m", "server", *urls, "--log-format", "json", "run", "--port", str(port)]
    with child([*args, "--trusted-proxy", "127.0.0.0/8"]) as server:
        await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{port}/healthz", server)
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{port}/login", headers={"X-Forwarded-For": "203.0.113.7"})

        def access_log() -> list[dict]:
            entries = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
            return [entry for entry in entries if entry.get("logger") == "aiohttp.access"]

        await eventually(lambda: any(e.get("path") == "/login" for e in access_log()), 5, "/login logged")
        access = access_log()
    assert any(entry.get("client") == "203.0.113.7" and entry.get("path") == "/login" for entry in access), (
        access
    )
    assert all(entry.get("client") != "127.0.0.1" or entry.get("path") == "/healthz" for entry in access), (
        access
    )


async def test_origin_check_uses_the_forwarded_host(aiohttp_client, proxied, make_user, make_dashboard):
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    client = await aiohttp_client(create_app(proxied))
    assert await _login(client, "203.0.113.7", "secret-pw") == 302
    headers = {"X-Forwarded-Host": "dash.example.com", "X-Forwarded-Proto": "https"}
    ws = await client.ws_connect(
        f"/ws/dashboard/{ops.id}/", origin="https://dash.example.com", headers=headers
    )
    await ws.close()
    with pytest.raises(Exception, match="403"):
        await client.ws_connect(f"/ws/dashboard/{ops.id}/", origin="https://evil.example", headers=headers)


async def test_the_standard_forwarded_header_counts_the_same_way(aiohttp_client, proxied, make_user):
    await make_user("alice")
    client = await aiohttp_client(create_app(proxied))

    async def login(forwarded: str, password: str) -> int:
        token = await csrf_from(client)
        data = {"username": "alice", "password": password, "csrf_token": token}
        response = await client.post(
            "/login", data=data, headers={"Forwarded": forwarded}, allow_redirects=False
        )
        return response.status

    for forged in ("1.1.1.1", '"[2001:db8::1]:4711"', "unknown"):
        assert await login(f'for={forged}, for="[2001:db8::7]:443";proto=https', "wrong") == 401
    assert await login('for="[2001:db8::7]:80"', "secret-pw") == 429
    assert await login("for=198.51.100.9", "secret-pw") == 302

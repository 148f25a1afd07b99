"""Fixtures over the real PostgreSQL and Redis (tests/servers.py says which).

The test database is created anew once per session and migrated with our
own migrations; every test starts from empty tables and an empty Redis
database. What tests share besides fixtures is in tests/helpers.py.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiopg
import psycopg2
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, async_playwright

from common import db
from common.config import Settings
from common.migrate import migrate
from common.passwords import hash_password
from common.sources import DEFAULT_SOURCE
from server.app import create_app
from tests.browser.pages import CHROMIUM, CHROMIUM_ARGS
from tests.helpers import log_in
from tests.notifyreceiver import SECRET, receiver
from tests.servers import TABLES, servers, with_database_name


def _recreate_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or name == "postgres":
        raise ValueError(f"refusing to recreate database {name!r}")
    admin = psycopg2.connect(with_database_name(url, "postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {name}")
    admin.close()


@pytest.fixture(scope="session")
def database_url() -> str:
    """A freshly created, migrated test database."""
    url = servers().database_url
    _recreate_database(url)
    import asyncio

    async def _migrate() -> None:
        async with db.create_pool(url) as pool:
            await migrate(pool)

    asyncio.run(_migrate())
    return url


@pytest.fixture
def clean_state(database_url: str) -> Iterator[None]:
    """Empty tables and Redis database before the test."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    conn.close()
    client = redis.Redis.from_url(servers().redis_url)
    client.flushdb()
    client.close()
    yield


@pytest.fixture
def settings(database_url: str, clean_state: None) -> Settings:
    return Settings(database_url=database_url, redis_url=servers().redis_url, history_limit=100)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[aiopg.Pool]:
    async with db.create_pool(settings.database_url or "") as created:
        yield created


@pytest.fixture
def app(settings: Settings) -> web.Application:
    return create_app(settings)


@pytest.fixture
async def client(aiohttp_client: Callable[..., Awaitable[TestClient]], app: web.Application) -> TestClient:
    return await aiohttp_client(app)


@pytest.fixture
def make_user(pool: aiopg.Pool) -> Callable[..., Awaitable[db.User]]:
    async def _make(username: str, password: str = "secret-pw") -> db.User:
        return await db.create_user(pool, username, hash_password(password))

    return _make


@pytest.fixture
def make_dashboard(pool: aiopg.Pool) -> Callable[..., Awaitable[db.Dashboard]]:
    async def _make(slug: str, *, members: tuple[db.User, ...] = (), name: str | None = None) -> db.Dashboard:
        created = await db.create_dashboard(pool, name or slug.title(), slug, f"about {slug}")
        for member in members:
            await db.add_member(pool, created.id, member.id)
        return created

    return _make


@pytest.fixture
def make_metric(pool: aiopg.Pool) -> Callable[..., Awaitable[db.Metric]]:
    async def _make(
        dashboard: db.Dashboard,
        name: str,
        metric_type: str = "gauge",
        unit: str = "u",
        *,
        source: str = DEFAULT_SOURCE,
    ) -> db.Metric:
        return await db.create_metric(
            pool, dashboard.id, name, metric_type, unit, f"{name} description", source
        )

    return _make


@pytest.fixture
async def setup(client: TestClient, make_user, make_dashboard, make_metric) -> dict[str, Any]:
    """alice is a member of `ops` (two metrics); `other` has a metric she may not see."""
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    cpu = await make_metric(ops, "cpu", "gauge", "%")
    requests = await make_metric(ops, "requests", "counter", "req")
    other = await make_dashboard("other")
    secret = await make_metric(other, "secret", "gauge")
    await log_in(client, "alice")
    return {"user": alice, "ops": ops, "cpu": cpu, "requests": requests, "other": other, "secret": secret}


@pytest.fixture
async def new_client(client: TestClient) -> AsyncIterator[Callable[[], Awaitable[TestClient]]]:
    """More browsers (own cookie jars) on the same running server as `client`."""
    made: list[TestClient] = []

    async def _make() -> TestClient:
        other = TestClient(client.server)
        await other.start_server()
        made.append(other)
        return other

    yield _make
    for other in made:
        await other.close()


@pytest.fixture(autouse=True)
def restore_root_logging() -> Iterator[None]:
    """Drop the stderr handler a CLI command installs: it writes to CliRunner's dead stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
async def team(client, make_user, make_dashboard, make_metric, pool):
    """ed edits `ops` (cpu, requests), vi views it, out is no member; ed is logged in on `client`."""
    ed, vi, out = await make_user("ed"), await make_user("vi"), await make_user("out")
    ops = await make_dashboard("ops")
    await db.add_member(pool, ops.id, ed.id, db.EDITOR)
    await db.add_member(pool, ops.id, vi.id)
    cpu = await make_metric(ops, "cpu", "gauge", "%")
    requests = await make_metric(ops, "requests", "counter", "req")
    await log_in(client, "ed")
    return {"ed": ed, "vi": vi, "out": out, "ops": ops, "cpu": cpu, "requests": requests}


@pytest.fixture
async def hook():
    async with receiver() as state:
        yield state


@pytest.fixture
async def board(pool, make_user, make_dashboard, make_metric, hook):
    """`ops`'s temp metric, a rule (above 90) notifying a webhook at the receiver."""
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    temp = await make_metric(ops, "temp", "gauge", "C")
    rule = await db.create_alert_rule(pool, temp.id, "above", 90.0)
    contact = await db.create_contact_point(pool, ops.id, "ops hook", "webhook", hook.url, SECRET)
    await db.set_rule_notifications(pool, ops.id, rule.id, [contact.id], None)
    return {"ops": ops, "temp": temp, "rule": rule, "contact": contact}


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary; CI sets DASHBOARD_REQUIRE_BROWSER so that a missing one fails there."""
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set DASHBOARD_TEST_CHROMIUM)"
        if os.environ.get("DASHBOARD_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()

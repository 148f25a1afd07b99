"""Fixtures over the real PostgreSQL and Redis.

The servers are those named by DASHBOARD_TEST_DATABASE_URL and
DASHBOARD_TEST_REDIS_URL (CI points them at the machine's own); when unset,
embedded ones are started for the session, so the suite runs on a machine
with nothing but Python. The test database is created anew once per session
and migrated with our own migrations; every test starts from empty tables and
an empty Redis database.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiopg
import psycopg2
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient

from common import db
from common.config import Settings
from common.embedded import start_embedded, stop_embedded_redis
from common.events import channels_for
from common.migrate import migrate
from common.passwords import hash_password
from common.sources import DEFAULT_SOURCE
from server.app import create_app


def _test_servers() -> tuple[str, str]:
    database_url = os.environ.get("DASHBOARD_TEST_DATABASE_URL")
    redis_url = os.environ.get("DASHBOARD_TEST_REDIS_URL")
    if database_url and redis_url:
        return database_url, redis_url
    data_dir = Path(tempfile.mkdtemp(prefix="dashboard-tests-"))
    # Registered first so it runs last, after the embedded servers stopped.
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    embedded = start_embedded(Settings(data_dir=data_dir))
    # Registered after start_embedded, so it runs before the data is removed.
    atexit.register(stop_embedded_redis)
    embedded_db = with_database_name(embedded.database_url or "", "dashboard_test")
    return database_url or embedded_db, redis_url or embedded.redis_url or ""


def with_database_name(url: str, name: str) -> str:
    """The same server's URL for another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


DATABASE_URL, REDIS_URL = _test_servers()
# The channels of the servers the tests start (the test Redis URL's database number).
CHANNELS = channels_for(REDIS_URL)
TABLES = "metric_values, metrics, dashboard_members, dashboards, users, rollup_progress, dashboard_seqs"


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
    _recreate_database(DATABASE_URL)
    import asyncio

    async def _migrate() -> None:
        async with db.create_pool(DATABASE_URL) as pool:
            await migrate(pool)

    asyncio.run(_migrate())
    return DATABASE_URL


@pytest.fixture
def clean_state(database_url: str) -> Iterator[None]:
    """Empty tables and Redis database before the test."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    conn.close()
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    yield


@pytest.fixture
def settings(database_url: str, clean_state: None) -> Settings:
    return Settings(database_url=database_url, redis_url=REDIS_URL, history_limit=100)


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


CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


async def csrf_from(client: TestClient, path: str = "/login") -> str:
    response = await client.get(path)
    match = CSRF_INPUT.search(await response.text())
    assert match, f"no CSRF token on {path}"
    return match[1]


async def log_in(client: TestClient, username: str, password: str = "secret-pw") -> None:
    """Log the test client in through the real login form."""
    token = await csrf_from(client)
    response = await client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        allow_redirects=False,
    )
    assert response.status == 302, await response.text()


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


async def json_request(
    client: TestClient, method: str, path: str, body: object, *, token: str | None = "fetch"
) -> tuple[int, dict]:
    """A JSON request the way the page's scripts send it (CSRF token in the header):
    the status and the JSON answer (or {"text": ...} when the answer is not JSON)."""
    if token == "fetch":
        token = await csrf_from(client, "/dashboards/")
    headers = {"X-CSRF-Token": token} if token else {}
    response = await client.request(method, path, json=body, headers=headers)
    try:
        return response.status, await response.json()
    except Exception:
        return response.status, {"text": await response.text()}

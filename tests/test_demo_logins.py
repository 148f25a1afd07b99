"""`demo` and `up` make logins whose passwords everyone knows: never beside a
real deployment's users unless asked. The real `dashboard-server`, as a process,
as an operator with the wrong environment loaded would run it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import closing
from urllib.parse import urlsplit

import psycopg2
import pytest
from psycopg2 import sql

from common import db
from common.migrate import applied_versions, migrate
from common.passwords import hash_password
from tests.helpers import query_rows
from tests.processes import child, free_port, wait_for_http
from tests.servers import servers, with_database_name

pytestmark = pytest.mark.slow

DEMO_USERS = [("demo",), ("outsider",), ("viewer",)]
REFUSAL = re.compile(
    r"^Error: not adding demo/demo, viewer/viewer and outsider/outsider: the database holds 1 other"
    r" user\(s\), a real deployment's, .*\(--alongside-real-users adds them anyway\)$",
    re.MULTILINE,
)


@pytest.fixture
def empty_database_url(database_url: str) -> Iterator[str]:
    """A database created empty (never migrated) for this test, dropped after it."""
    url = with_database_name(database_url, f"{urlsplit(database_url).path.lstrip('/')}_demo")
    name = sql.Identifier(urlsplit(url).path.lstrip("/"))
    with closing(psycopg2.connect(with_database_name(database_url, "postgres"))) as admin:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            cur.execute(sql.SQL("CREATE DATABASE {}").format(name))
        yield url
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def _urls(database_url: str) -> list[str]:
    return ["-m", "server", "--database-url", database_url, "--redis-url", servers().redis_url]


def _server(database_url: str, *args: str) -> tuple[int, str]:
    """Run `dashboard-server ARGS` to its end: its exit status and output."""
    with child([*_urls(database_url), *args]) as process:
        return process.wait(60), process.output()


def _usernames(database_url: str) -> list[tuple[str]]:
    return query_rows(database_url, "SELECT username FROM users ORDER BY username")


def _add_real_user(database_url: str, *, up_to: int | None = None) -> None:
    """Migrate (up to version `up_to`) and add alice: a real deployment's database."""

    async def add() -> None:
        async with db.create_pool(database_url) as pool:
            await migrate(pool, up_to=up_to)
            await db.create_user(pool, "alice", hash_password("alice's own"))

    asyncio.run(add())


def test_demo_and_up_work_on_a_fresh_database_and_again_on_their_own_users(empty_database_url):
    first_code, first = _server(empty_database_url, "demo")
    assert first_code == 0, first
    assert "editor login: demo / demo" in first
    again_code, again = _server(empty_database_url, "demo")
    assert again_code == 0, again
    assert _usernames(empty_database_url) == DEMO_USERS

    port = free_port()
    with child([*_urls(empty_database_url), "up", "--port", str(port), "--interval", "0.2"]) as up:
        wait_for_http(f"http://127.0.0.1:{port}/login", up, 60)
    assert _usernames(empty_database_url) == DEMO_USERS


def test_demo_refuses_a_database_with_other_users_and_leaves_it_as_it_was(empty_database_url):
    # One migration behind, as a deployment about to be upgraded: not even migrated.
    _add_real_user(empty_database_url, up_to=1)

    code, output = _server(empty_database_url, "demo")

    assert code == 1, output
    assert REFUSAL.search(output), output
    assert "Traceback" not in output
    assert _usernames(empty_database_url) == [("alice",)]

    async def versions() -> list[int]:
        async with db.create_pool(empty_database_url) as pool:
            return await applied_versions(pool)

    assert asyncio.run(versions()) == [1]


def test_up_refuses_too_and_the_flag_adds_the_logins_beside_real_users(database_url, clean_state):
    _add_real_user(database_url)

    code, output = _server(database_url, "up", "--port", str(free_port()))
    assert code == 1, output
    assert REFUSAL.search(output), output
    assert "Open http://" not in output and "Traceback" not in output
    assert _usernames(database_url) == [("alice",)]

    code, output = _server(database_url, "demo", "--alongside-real-users")
    assert code == 0, output
    assert _usernames(database_url) == [("alice",), *DEMO_USERS]
    # The flag is needed every time: alice is still there.
    assert _server(database_url, "demo")[0] == 1

    code, output = _server(database_url, "demo", "--help")
    assert code == 0 and "--alongside-real-users" in output

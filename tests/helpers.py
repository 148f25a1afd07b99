"""What several test modules share: logging in, JSON requests, the CLI, waiting for a condition.

Test modules import from here (and from wsclient.py, processes.py,
faultservers.py, statsdata.py), never from each other or from conftest.py.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import aiohttp
import click
import psycopg2
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from click.testing import CliRunner, Result

from common import db
from common.tokens import display_prefix, new_token, token_hash
from server.cli import main as server_main
from tests.servers import servers

T = TypeVar("T")


async def eventually(condition: Callable[[], T | Awaitable[T]], within: float, what: str = "") -> T:
    """Poll `condition` (a function, sync or async) until it returns something truthy; that value.

    Fails after `within` seconds, naming `what` and the last value seen.
    """
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {within} s: {what or condition} (last: {value!r})"
        await asyncio.sleep(0.05)


def eventually_sync(condition: Callable[[], T], within: float, what: str = "") -> T:
    """`eventually` for code outside an event loop."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {within} s: {what or condition} (last: {value!r})"
        time.sleep(0.05)


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


async def browser_log_in(session: aiohttp.ClientSession, base: str, username: str, password: str) -> None:
    async with session.get(f"{base}/login") as response:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await response.text())[1]
    async with session.post(
        f"{base}/login",
        data={"username": username, "password": password, "csrf_token": token},
        allow_redirects=False,
    ) as response:
        assert response.status == 302


async def run_cli(settings, *args: str) -> str:
    """`dashboard-server ARGS` in a thread (each command runs its own event loop)."""
    result = await asyncio.to_thread(
        CliRunner().invoke,
        server_main,
        ["--database-url", settings.database_url, "--redis-url", settings.redis_url, *args],
    )
    assert result.exit_code == 0, result.output
    return result.output


async def closed_within(ws, seconds: float) -> tuple[int | None, float]:
    """Read until the socket closes; (close code, seconds it took)."""
    started = time.monotonic()
    while True:
        message = await asyncio.wait_for(ws.receive(), seconds)
        if message.type == WSMsgType.CLOSE:  # the code the server sent
            return message.data, time.monotonic() - started
        if message.type in (WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
            return ws.close_code, time.monotonic() - started


async def as_user(new_client, username: str) -> TestClient:
    other = await new_client()
    await log_in(other, username)
    return other


async def post(
    client: TestClient, path: str, body: object, *, token: str | None = "fetch"
) -> tuple[int, dict]:
    """A JSON POST the way the page's script sends it (CSRF token in the header)."""
    return await json_request(client, "POST", path, body, token=token)


Invoke = Callable[..., Result]


def invoker(group: click.Group, database_url: str, redis_url: str | None = None) -> Invoke:
    """Run a CLI command of `group` in-process against the test servers."""
    runner = CliRunner()
    redis_url = redis_url or servers().redis_url

    def invoke(*args: str) -> Result:
        return runner.invoke(group, ["--database-url", database_url, "--redis-url", redis_url, *args])

    return invoke


def expect_ok(result: Result) -> str:
    """The standard output of a command that must have succeeded."""
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.stdout


def expect_error(result: Result, exit_code: int = 1) -> str:
    """The error output of a command that must have refused with a message, not crashed."""
    assert result.exit_code == exit_code, result.output
    # A crash also exits 1, but leaves its own exception here.
    assert isinstance(result.exception, SystemExit), result.exception
    return result.stderr


def query_rows(database_url: str, query: str, params: tuple = ()) -> list[tuple]:
    with closing(psycopg2.connect(database_url)) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


async def waiting_on_locks(pool) -> int:
    """How many sessions of the test database wait for a lock now."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return (await cur.fetchone())[0]


# What docs/scaling.md promises for a worker that dies (default settings).
FAILOVER_SECONDS = 15


async def leases_by_holder(pool) -> dict[str, set[int]]:
    by_holder: dict[int, set[int]] = {}
    for dashboard_id, worker in (await db.dashboard_leases(pool)).items():
        by_holder.setdefault(worker, set()).add(dashboard_id)
    return by_holder


async def each_stored_since(pool, metrics, since, count: int, what: str, within: float = 15) -> None:
    """Wait until every metric has `count` values stamped after `since`."""

    async def stored() -> bool:
        values = await db.latest_values(pool, [m.id for m in metrics], 100_000)
        return all(sum(v.ts > since for v in values[m.id]) >= count for m in metrics)

    await eventually(stored, within, what)


async def wait_for_leases(pool, condition, within: float) -> float:
    """Seconds until condition(leases by holder) held; fails after `within`."""
    started = time.monotonic()
    while not condition(await leases_by_holder(pool)):
        assert time.monotonic() - started < within, f"leases now: {await leases_by_holder(pool)}"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def assert_one_producer(metric_id: int, gaps: list[float], interval: float) -> None:
    """No (metric, tick) stored twice: two producers at once would interleave
    their ticks and make about half the gaps (seconds) shorter than half a tick.
    One producer's tick stamped late makes such a gap now and then on a loaded
    machine, so a few are allowed."""
    short = [round(gap, 3) for gap in gaps if gap < interval / 2]
    assert len(short) <= len(gaps) // 5, f"metric {metric_id}: produced twice ({short} of {len(gaps)} gaps)"


async def api_token(pool, dashboard_id: int, name: str = "ci") -> str:
    """A new API token of the dashboard, stored as `token create` stores one; its secret."""
    secret = new_token()
    await db.create_api_token(pool, dashboard_id, name, token_hash(secret), display_prefix(secret))
    return secret


async def store_last_seconds(pool, metrics: list[db.Metric], count: int) -> datetime:
    """Values 0..count-1 of each metric, one a second up to now (the newest last):
    a range from `count` seconds ago holds them all raw. Returns that now."""
    now = datetime.now(UTC)
    rows = [(m.id, float(n), now - timedelta(seconds=count - n)) for m in metrics for n in range(count)]
    for start in range(0, len(rows), 10_000):
        await db.insert_values(pool, rows[start : start + 10_000])
    return now

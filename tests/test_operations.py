"""Operations: health probes, SIGTERM, systemd's notify protocol and units."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import psutil
import psycopg2
import pytest

from common import db
from common.db.core import CLIENT_TIMEOUT, POOL_CLOSE_WAIT
from common.failures import REDIS_STARTUP_TIMEOUT
from server.app import create_app
from server.live.closecodes import CloseCode
from server.running import SHUTDOWN_TIMEOUT
from tests.faultservers import redis_server
from tests.helpers import browser_log_in
from tests.processes import FakeSystemd, child, free_port, wait_for_http
from tests.servers import with_database_name
from tests.wsclient import read_connect_sequence

UNITS = Path(__file__).parent.parent / "deploy" / "systemd"


async def test_healthz_and_readyz_when_all_is_well(client):
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert (ready.status, await ready.json()) == (200, {"status": "ok", "database": "ok", "redis": "ok"})


async def test_readyz_says_which_dependency_is_down_and_does_not_hang(aiohttp_client, settings, tmp_path):
    with redis_server(tmp_path) as own_redis:
        client = await aiohttp_client(
            create_app(settings.with_urls(settings.database_url or "", own_redis.url))
        )
        assert (await client.get("/readyz")).status == 200
        own_redis.kill()
        started = time.monotonic()
        ready = await client.get("/readyz")
        assert (ready.status, await ready.json()) == (
            503,
            {"status": "unavailable", "database": "ok", "redis": "unreachable"},
        )
        assert time.monotonic() - started < 3
        assert (await client.get("/healthz")).status == 200


@pytest.mark.slow
async def test_server_notifies_ready_pings_watchdog_and_stops_cleanly_on_sigterm(
    settings, make_user, make_dashboard, make_metric, tmp_path
):
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    await make_metric(ops, "cpu")
    systemd = FakeSystemd(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    try:
        with child(["-m", "server", *urls, "run", "--port", str(port)], env=systemd.env(0.4)) as server:
            await asyncio.to_thread(systemd.wait_for, "READY=1", 30)
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
                # READY means serving: no retry needed.
                async with session.get(f"{base}/healthz") as response:
                    assert response.status == 200
                for _ in range(3):
                    assert await asyncio.to_thread(systemd.wait_for, "WATCHDOG=1", 1) < 0.5
                await browser_log_in(session, base, "alice", "secret-pw")
                ws = await session.ws_connect(f"{base}/ws/dashboard/{ops.id}/", origin=base)
                await read_connect_sequence(ws, 1)
                started = time.monotonic()
                server.send_signal(signal.SIGTERM)
                closing = await ws.receive(timeout=5)
                assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, CloseCode.GOING_AWAY)
                await asyncio.to_thread(systemd.wait_for, "STOPPING=1", 5)
                assert await asyncio.to_thread(server.wait, 15) == 0
                assert time.monotonic() - started < 12  # within the shutdown timeout
                with pytest.raises(aiohttp.ClientConnectionError):
                    await session.get(f"{base}/healthz")
    finally:
        systemd.close()


@pytest.mark.slow
async def test_a_stop_held_up_by_an_unfinished_request_ends_in_time_and_says_what_it_waits_on(settings):
    """A client that sent half a body holds a handler. The stop gives it
    SHUTDOWN_TIMEOUT, which aiohttp may spend twice, then ends well inside
    systemd's TimeoutStopSec (20 s), and the log says where it waited."""
    port = free_port()
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    with child(["-m", "server", *urls, "run", "--port", str(port)]) as server:
        await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{port}/healthz", server)
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nusername="
        )
        await writer.drain()
        # A request sent after ours and answered: the server has read ours, and
        # its handler waits for the rest of the body.
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as answer,
        ):
            assert answer.status == 200
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait, 20) == 0
        took = time.monotonic() - started
        writer.close()
        # Held for the handler's time, and well inside TimeoutStopSec (20 s).
        assert SHUTDOWN_TIMEOUT - 0.5 < took < 15
        output = server.output()
        assert re.search(r"still stopping after \d+ s", output)
        # The login handler (server/auth.py) reading the body that never comes.
        assert re.search(
            r"waits in _wait \(aiohttp/streams.py:\d+\), called from \w+ \(server/auth.py:", output
        )
        assert re.search(r"stopped in \d+\.\d s", output)


async def test_a_pool_closes_in_bounded_time_with_a_connection_never_given_back(settings, caplog):
    """aiopg alone waits for every connection in use, forever if a task never
    gives one back: a stopping process would wait for systemd's SIGKILL."""
    loop = asyncio.get_running_loop()
    async with db.create_pool(settings.database_url) as pool:
        held = await pool.acquire()  # as by a task that was never cancelled
        started = loop.time()
    assert loop.time() - started < POOL_CLOSE_WAIT + 1
    assert held.closed
    assert "1 connection(s) in use or being opened after 2 s, closed" in caplog.text


def start_as_systemd(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`python args...` started as systemd starts a unit's main process:
    WATCHDOG_PID set to that process's own pid."""
    command = " ".join(shlex.quote(arg) for arg in [sys.executable, *args])
    return subprocess.Popen(["sh", "-c", f"WATCHDOG_PID=$$ exec {command}"], env={**os.environ, **env})


@pytest.mark.slow
async def test_several_server_processes_ping_the_watchdog_only_while_every_one_is_alive(settings, tmp_path):
    systemd = FakeSystemd(tmp_path)
    port = free_port()
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    args = ["-m", "server", *urls, "run", "--port", str(port), "--workers", "2"]
    server = start_as_systemd(args, systemd.env(1.0))
    try:
        await asyncio.to_thread(systemd.wait_for, "READY=1", 30)
        children = [c for c in psutil.Process(server.pid).children() if "spawn_main" in " ".join(c.cmdline())]
        assert len(children) == 2
        # Pinged every half timeout (0.5 s) while both children turn.
        assert await asyncio.to_thread(systemd.count, "WATCHDOG=1", 2.0) >= 3
        children[0].suspend()  # SIGSTOP: a hung event loop, the process still alive
        try:
            await asyncio.to_thread(systemd.count, "WATCHDOG=1", 0.6)  # a ping already on its way
            assert await asyncio.to_thread(systemd.count, "WATCHDOG=1", 2.0) == 0
        finally:
            children[0].resume()
        assert await asyncio.to_thread(systemd.wait_for, "WATCHDOG=1", 2) < 2
        server.send_signal(signal.SIGTERM)
        await asyncio.to_thread(systemd.wait_for, "STOPPING=1", 5)
        assert await asyncio.to_thread(server.wait, 20) == 0
        # NotifyAccess=main: systemd would ignore anything the children sent.
        assert {pid for _message, pid in systemd.senders} == {server.pid}
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        systemd.close()


@pytest.mark.slow
async def test_worker_notifies_ready_pings_watchdog_and_exits_on_sigterm(
    settings, make_dashboard, make_metric, tmp_path
):
    await make_metric(await make_dashboard("ops"), "cpu")
    systemd = FakeSystemd(tmp_path)
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    try:
        with child(["-m", "worker", *urls, "run", "--interval", "0.1"], env=systemd.env(0.4)) as worker:
            await asyncio.to_thread(systemd.wait_for, "READY=1", 30)
            assert await asyncio.to_thread(systemd.wait_for, "WATCHDOG=1", 1) < 0.5
            # It keeps pinging while it ticks.
            assert await asyncio.to_thread(systemd.wait_for, "WATCHDOG=1", 1) < 0.5
            worker.send_signal(signal.SIGTERM)
            await asyncio.to_thread(systemd.wait_for, "STOPPING=1", 5)
            assert await asyncio.to_thread(worker.wait, 10) == 0
            output = worker.output()
        assert "worker stopped" in output
        assert "tick failed" not in output
    finally:
        systemd.close()


@contextmanager
def schema_out_of_step(database_url: str, state: str) -> Iterator[None]:
    """The test database as one with a migration pending ("pending": the
    newest one's record gone) or one newer than the code ("newer": a record of
    a version the code does not know); put back afterwards."""
    with closing(psycopg2.connect(database_url)) as conn, conn, conn.cursor() as cur:
        if state == "pending":
            cur.execute(
                "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)"
                " RETURNING version, name, applied_at"
            )
            removed = cur.fetchone()
        else:
            cur.execute(
                "INSERT INTO schema_migrations (version, name)"
                " SELECT max(version) + 1, 'from_a_newer_release' FROM schema_migrations"
            )
    try:
        yield
    finally:
        with closing(psycopg2.connect(database_url)) as conn, conn, conn.cursor() as cur:
            if state == "pending":
                cur.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)", removed
                )
            else:
                cur.execute("DELETE FROM schema_migrations WHERE name = 'from_a_newer_release'")


SCHEMA_PROBLEMS = {
    "pending": "run `dashboard-server migrate`",
    "newer": "this code knows only",
}


@pytest.mark.slow
@pytest.mark.parametrize("schema", SCHEMA_PROBLEMS)
@pytest.mark.parametrize(
    "command",
    [
        ["server", "check"],
        ["server", "run"],
        # The sample dashboard.env's: the children find it, the main process exits.
        ["server", "run", "--workers", "2"],
        ["worker", "run"],
    ],
    ids=" ".join,
)
def test_run_exits_78_where_check_does_so_systemd_stops_restarting(settings, schema, command):
    """systemd honours RestartPreventExitStatus=78 only from the main process
    (`run`), never from an ExecStartPre: `run` must exit 78 itself."""
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    args = ["-m", command[0], *urls, *command[1:]]
    if command[1] == "run" and command[0] == "server":
        args += ["--port", str(free_port())]
    with schema_out_of_step(settings.database_url, schema), child(args) as process:
        code = process.wait(30)
        output = process.output()
    assert code == 78, output
    assert SCHEMA_PROBLEMS[schema] in output
    assert "Traceback" not in output


SECRET = "s3cret"


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A port whose connections the kernel completes and no one ever answers:
    a database whose packets are dropped after the handshake, as its client sees it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def _with_password(url: str) -> str:
    """`url` with SECRET as its password, as a query parameter (the user part may be absent)."""
    parts = urlsplit(url)
    return parts._replace(query="&".join(filter(None, [parts.query, f"password={SECRET}"]))).geturl()


def _out_of_reach(stack: ExitStack, fault: str, settings) -> tuple[str, str, str]:
    """The database and Redis URLs of `fault`, and a pattern of the one line
    that must say what is wrong, with the password masked."""
    database_url, redis_url = settings.database_url, settings.redis_url
    if fault in ("redis refused", "redis cluster refused"):
        port = free_port()
        cluster = fault == "redis cluster refused"
        redis_url = (
            f"redis+cluster://:{SECRET}@127.0.0.1:{port}"
            if cluster
            else f"redis://:{SECRET}@127.0.0.1:{port}/0"
        )
        where = re.escape(redis_url.replace(SECRET, "***"))
        # errno 111: ECONNREFUSED; a cluster says first that no node answered.
        reason = (
            "Redis Cluster cannot be connected.*" if cluster else ""
        ) + rf"Error 111 connecting to 127\.0\.0\.1:{port}"
        return database_url, redis_url, f"cannot connect to Redis at {where}: {reason}"
    if fault == "redis silent":
        port = stack.enter_context(unanswered_port())
        redis_url = f"redis://:{SECRET}@127.0.0.1:{port}/0"
        where = re.escape(redis_url.replace(SECRET, "***"))
        return database_url, redis_url, f"Redis at {where} did not answer within {REDIS_STARTUP_TIMEOUT} s"
    if fault == "database unknown":
        database_url = _with_password(with_database_name(database_url, "no_such_database"))
        reason = 'database "no_such_database" does not exist'
    else:
        port = free_port() if fault == "database refused" else stack.enter_context(unanswered_port())
        database_url = f"postgresql://dashboard:{SECRET}@127.0.0.1:{port}/dashboard"
        reason = "Connection refused"
    where = re.escape(database_url.replace(SECRET, "***"))
    if fault == "database silent":
        return database_url, redis_url, f"PostgreSQL at {where} did not answer within {CLIENT_TIMEOUT} s"
    return database_url, redis_url, f"cannot connect to PostgreSQL at {where}: .*{reason}"


BACKEND_FAULTS = [
    "database refused",
    "database unknown",
    "database silent",
    "redis refused",
    "redis cluster refused",
    "redis silent",
]


@pytest.mark.slow
@pytest.mark.parametrize("fault", BACKEND_FAULTS)
@pytest.mark.parametrize("command", [["server", "check"], ["server", "run"], ["worker", "run"]], ids=" ".join)
def test_a_backend_out_of_reach_is_one_line_saying_which_and_why_and_exit_1(settings, fault, command):
    """Not 78: a restart may help once the backend is back. Not the port's
    fault, and no traceback. A silent database takes the pool's timeout; a
    silent Redis the start-up ping's, well before systemd would give up."""
    with ExitStack() as stack:
        database_url, redis_url, expected = _out_of_reach(stack, fault, settings)
        args = ["-m", command[0], "--database-url", database_url, "--redis-url", redis_url, *command[1:]]
        if command == ["server", "run"]:
            args += ["--port", str(free_port())]
        started = time.monotonic()
        process = stack.enter_context(child(args))
        code = process.wait(CLIENT_TIMEOUT + 10)
        elapsed = time.monotonic() - started
        output = process.output()
    assert code == 1, output
    if fault == "redis silent":
        assert elapsed < 10, output
    prefix = "not ready: " if command[1] == "check" else ""
    assert re.search(f"^Error: {prefix}{expected}", output, re.MULTILINE), output
    assert SECRET not in output
    assert "cannot serve on" not in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_silent_sentinels_share_one_start_up_bound(settings):
    """Not one read timeout per sentinel (and its retries): one bound for the
    start-up ping, whatever the deployment, and one line."""
    with ExitStack() as stack:
        ports = [stack.enter_context(unanswered_port()) for _ in range(3)]
        redis_url = "redis+sentinel://" + ",".join(f"127.0.0.1:{port}" for port in ports) + "/mymaster"
        args = ["-m", "server", "--database-url", settings.database_url, "--redis-url", redis_url, "check"]
        started = time.monotonic()
        process = stack.enter_context(child(args))
        code = process.wait(CLIENT_TIMEOUT + 20)
        elapsed = time.monotonic() - started
        output = process.output()
    assert code == 1, output
    [line] = output.splitlines()
    assert line == f"Error: not ready: Redis at {redis_url} did not answer within {REDIS_STARTUP_TIMEOUT} s"
    assert elapsed < 10, output


# Every admin command opens its pool the same way; one of each kind and program.
ADMIN_COMMANDS = [
    ["server", "migrate"],
    ["server", "demo"],
    ["server", "user", "create", "alice", "--password", "pw"],
    ["server", "dashboard", "list"],
    ["server", "export", "web-tier"],
    ["server", "usage"],
    ["worker", "prune", "--retention-days", "30"],
]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["database refused", "database unknown"])
@pytest.mark.parametrize("command", ADMIN_COMMANDS, ids=" ".join)
def test_an_admin_command_meeting_no_database_says_so_in_one_line(settings, fault, command):
    """As `run` and `check` do: the operator reads which database and why, not a traceback."""
    with ExitStack() as stack:
        database_url, redis_url, expected = _out_of_reach(stack, fault, settings)
        args = ["-m", command[0], "--database-url", database_url, "--redis-url", redis_url, *command[1:]]
        process = stack.enter_context(child(args))
        code = process.wait(CLIENT_TIMEOUT + 10)
        output = process.output()
    assert code == 1, output
    [line] = output.splitlines()
    assert re.match(f"Error: {expected}", line), output
    assert SECRET not in output


@pytest.mark.slow
def test_a_port_in_use_is_the_one_failure_blamed_on_the_port(settings):
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with child(["-m", "server", *urls, "run", "--port", str(port)]) as server:
            code = server.wait(30)
            output = server.output()
    assert code == 1, output
    assert re.search(rf"^Error: cannot serve on 127\.0\.0\.1:{port}: .*address already in use", output, re.M)
    assert "Traceback" not in output


def test_systemd_units_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # The units name the installed paths; point them at this checkout's.
    bin_dir = str(Path(sys.executable).parent) + "/"
    for unit in UNITS.glob("*.service"):
        text = unit.read_text().replace("/opt/live-dashboard/bin/", bin_dir)
        text = text.replace("EnvironmentFile=/etc/live-dashboard/", f"EnvironmentFile={UNITS}/")
        (tmp_path / unit.name).write_text(text)
    units = sorted(str(path) for path in tmp_path.glob("*.service"))
    assert len(units) == 2
    result = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    for unit in units:
        text = Path(unit).read_text()
        for setting in (
            "Type=notify",
            "WatchdogSec=",
            "Restart=on-failure",
            "RestartPreventExitStatus=78",
            "ProtectSystem=strict",
        ):
            assert setting in text, (unit, setting)
        # systemd would restart a failing ExecStartPre forever: it compares
        # RestartPreventExitStatus with the main process's status only.
        assert not re.search(r"^ExecStartPre=", text, re.MULTILINE), unit
        # /proc/stat stays visible: without it there are no process_* metrics.
        assert not re.search(r"^ProcSubset=pid", text, re.MULTILINE), unit

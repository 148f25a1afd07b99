"""The production path, as an operator walks it (README, "Running it for real").

A wheel is built from the checkout and installed with its dependencies into
a fresh virtualenv outside it; every command below runs from that install
alone, in a directory outside the source tree, with the shipped sample
settings (deploy/systemd/dashboard.env). The server runs with two processes
under a stand-in for systemd's notify socket and watchdog, the worker beside
it, and real nginx in front, configured from deploy/nginx/dashboard.conf with
only addresses, ports and certificate paths substituted. Through nginx: a
real Chromium page shows live values, a pushed value, and reconnects after
a server restart; the login limit counts the real client; the probes and
/metrics are not public.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import psutil
import psycopg2
import pytest
import redis
from playwright.async_api import Browser, BrowserContext, Response, expect

from common.config import Settings
from tests.processes import FakeSystemd, free_port
from tests.servers import servers, with_database_name

pytestmark = [pytest.mark.slow, pytest.mark.deployment, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ENV = ROOT / "deploy" / "systemd" / "dashboard.env"
SAMPLE_NGINX = ROOT / "deploy" / "nginx" / "dashboard.conf"
UNITS = ROOT / "deploy" / "systemd"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WATCHDOG_SECONDS = 2.0
PUSHED_VALUE = 4242.5


def _require(condition: bool, message: str) -> None:
    """CI sets DASHBOARD_REQUIRE_DEPLOYMENT: there a missing tool fails the run instead of skipping."""
    if not condition:
        if os.environ.get("DASHBOARD_REQUIRE_DEPLOYMENT"):
            pytest.fail(message)
        pytest.skip(message)


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)


@dataclass
class Install:
    """The wheel installed in a fresh virtualenv, and a directory outside the checkout to run in."""

    bin: Path
    home: Path

    def env(self, settings: dict[str, str] | None = None) -> dict[str, str]:
        """A clean environment: nothing of the test run's DASHBOARD_* or Python paths."""
        kept = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("DASHBOARD_", "PYTHON", "VIRTUAL_ENV", "NOTIFY_", "WATCHDOG_"))
        }
        return {**kept, "PATH": f"{self.bin}:{os.environ['PATH']}", **(settings or {})}

    def run(self, *args: str, settings: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return _run([str(self.bin / args[0]), *args[1:]], cwd=self.home, env=self.env(settings))


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    work = tmp_path_factory.mktemp("deployment")
    # A copy of what git would ship (tracked and new files, nothing ignored):
    # no build/ or egg-info of the checkout can leak into the wheel.
    source = work / "source"
    files = _run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    wheels = work / "wheels"
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)])
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("live_dashboard-*.whl")
    venv = work / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    installed = _run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)])
    assert installed.returncode == 0, installed.stderr
    home = work / "home"
    home.mkdir()
    return Install(bin=venv / "bin", home=home)


def test_installed_commands_start_outside_the_source_tree(install: Install) -> None:
    for command in ("dashboard-server", "dashboard-worker"):
        version = install.run(command, "--version")
        assert version.returncode == 0, version.stderr
        assert re.search(r"version \d+\.\d+", version.stdout)
        help_text = install.run(command, "--help")
        assert help_text.returncode == 0, help_text.stderr
        assert "DASHBOARD_" in help_text.stdout or "environment" in help_text.stdout.lower()
    # The install is what runs: its modules, not the checkout's.
    where = _run(
        [
            str(install.bin / "python"),
            "-c",
            "import server, templates; print(server.__file__, templates.__file__)",
        ],
        cwd=install.home,
        env=install.env(),
    )
    assert str(ROOT) not in where.stdout and "site-packages" in where.stdout, where.stdout


def test_without_urls_or_the_embedded_extra_every_command_says_both_ways_out(install: Install) -> None:
    for command in (
        ("dashboard-server", "check"),
        ("dashboard-worker", "tick"),
        ("dashboard-server", "migrate"),
    ):
        result = install.run(*command, "--help")  # help needs no database
        assert result.returncode == 0
        result = install.run(*command)
        assert result.returncode == 78, (command, result.stdout, result.stderr)
        assert "DASHBOARD_DATABASE_URL" in result.stderr
        assert "live-dashboard[embedded]" in result.stderr
        assert "Traceback" not in result.stderr


def test_systemd_units_verify_against_the_install(install: Install, tmp_path: Path) -> None:
    _require(shutil.which("systemd-analyze") is not None, "systemd-analyze is not installed")
    # As the README installs them: the units name /opt/live-dashboard and /etc/live-dashboard.
    for unit in UNITS.glob("*.service"):
        text = unit.read_text().replace("/opt/live-dashboard/bin/", f"{install.bin}/")
        text = text.replace("EnvironmentFile=/etc/live-dashboard/", f"EnvironmentFile={UNITS}/")
        (tmp_path / unit.name).write_text(text)
    units = sorted(str(path) for path in tmp_path.glob("*.service"))
    result = _run(["systemd-analyze", "verify", *units])
    assert (result.returncode, result.stderr) == (0, "")


# The running deployment ------------------------------------------------------


def _sample_settings(**overrides: str) -> dict[str, str]:
    """The shipped dashboard.env, as systemd's EnvironmentFile reads it, with overrides."""
    settings = {}
    for line in SAMPLE_ENV.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            settings[name] = value
    return {**settings, **overrides}


def _nginx_config(directory: Path, upstream_port: int, http_port: int, https_port: int) -> Path:
    """The sample site with only addresses, ports and certificate paths substituted, in a minimal nginx.conf."""
    certificate, key = directory / "cert.pem", directory / "key.pem"
    openssl = [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
    ]
    made = _run([*openssl, "-keyout", str(key), "-out", str(certificate)])
    assert made.returncode == 0, made.stderr
    site = SAMPLE_NGINX.read_text()
    substitutions = {
        "server 127.0.0.1:8080 ": f"server 127.0.0.1:{upstream_port} ",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": f"listen [::1]:{http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "listen [::]:443 ssl;": f"listen [::1]:{https_port} ssl;",
        "/etc/ssl/certs/dashboards.example.com.pem": str(certificate),
        "/etc/ssl/private/dashboards.example.com.key": str(key),
    }
    for old, new in substitutions.items():
        assert old in site, f"the sample nginx config no longer has {old!r}"
        site = site.replace(old, new)
    (directory / "dashboard.conf").write_text(site)
    temp = directory / "temp"
    temp.mkdir()
    paths = "\n".join(
        f"    {kind}_temp_path {temp}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = directory / "nginx.conf"
    # As root (CI), workers run as root too: the temp paths are in a 0700 directory of root's.
    user = "user root;" if os.geteuid() == 0 else ""
    main.write_text(
        f"""
{user}
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log {directory}/access.log;
{paths}
    include {directory}/dashboard.conf;
}}
"""
    )
    return main


class Process:
    """A process of the deployment, its output kept in a file."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


@dataclass
class Deployment:
    install: Install
    directory: Path
    settings: dict[str, str]
    server_port: int
    https_port: int
    systemd: FakeSystemd
    dashboard_id: int
    pushed_metric_id: int
    token: str
    processes: list[Process] = field(default_factory=list)
    server: Process | None = None

    @property
    def public(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def direct(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Process:
        process = Process(
            args, env or self.install.env(self.settings), self.install.home, self.directory / name
        )
        self.processes.append(process)
        return process

    def start_server(self) -> None:
        """`dashboard-server run` as systemd starts it: WATCHDOG_PID is its own pid."""
        command = shlex.quote(str(self.install.bin / "dashboard-server"))
        env = self.install.env({**self.settings, **self.systemd.env(WATCHDOG_SECONDS)})
        self.server = self.start("server.log", ["sh", "-c", f"WATCHDOG_PID=$$ exec {command} run"], env)
        self.systemd.wait_for("READY=1", 60)

    def server_children(self) -> list[psutil.Process]:
        assert self.server is not None
        found = psutil.Process(self.server.popen.pid).children()
        return [c for c in found if "spawn_main" in " ".join(c.cmdline())]


@pytest.fixture(scope="module")
def deployment(install: Install, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    _require(Path(NGINX).exists(), f"no nginx at {NGINX} (apt-get install nginx)")
    _require(shutil.which("openssl") is not None, "no openssl for the test certificate")
    directory = tmp_path_factory.mktemp("running")
    name = f"{urlsplit(servers().database_url).path.lstrip('/')}_deployment"
    database_url = with_database_name(servers().database_url, name)
    admin = psycopg2.connect(with_database_name(servers().database_url, "postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {name}")
    with redis.Redis.from_url(servers().redis_url) as client:
        client.flushdb()
    server_port, http_port, https_port = free_port(), free_port(), free_port()
    settings = _sample_settings(
        DASHBOARD_DATABASE_URL=database_url,
        DASHBOARD_REDIS_URL=servers().redis_url,
        DASHBOARD_PORT=str(server_port),
    )
    # The README's commands, in its order.
    for command in (("dashboard-server", "migrate"), ("dashboard-server", "check")):
        done = install.run(*command, settings=settings)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    demo = install.run("dashboard-server", "demo", settings=settings)
    assert demo.returncode == 0, demo.stderr
    slug, dashboard_id = re.search(r"demo dashboard (\S+) \(id (\d+)\)", demo.stdout).groups()
    added = install.run(
        "dashboard-server", "metric", "add", slug, "pushed", "--type", "gauge", settings=settings
    )
    assert added.returncode == 0, added.stderr
    metric_id = int(re.search(r"\(id (\d+)", added.stdout)[1])
    token = install.run("dashboard-server", "token", "create", slug, "deployment test", settings=settings)
    assert token.returncode == 0, token.stderr
    systemd = FakeSystemd(directory)
    running = Deployment(
        install=install,
        directory=directory,
        settings=settings,
        server_port=server_port,
        https_port=https_port,
        systemd=systemd,
        dashboard_id=int(dashboard_id),
        pushed_metric_id=metric_id,
        token=token.stdout.strip().splitlines()[-1],
    )
    try:
        running.start_server()
        running.start("worker.log", [str(install.bin / "dashboard-worker"), "run", "--interval", "0.5"])
        nginx_conf = _nginx_config(directory, server_port, http_port, https_port)
        nginx = [NGINX, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(nginx_conf)]
        tested = _run([*nginx, "-t"])
        assert tested.returncode == 0, tested.stderr
        running.start("nginx.log", [*nginx, "-g", "daemon off;"])
        _wait_for(f"{running.public}/login")
        yield running
    finally:
        for process in reversed(running.processes):
            process.stop()
        systemd.close()
        for process in running.processes:
            sys.stdout.write(f"--- {process.log.name} ---\n{process.output()[-20_000:]}\n")
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A browser that accepts the test's self-signed certificate."""
    created = await browser.new_context(ignore_https_errors=True)
    created.set_default_timeout(15_000)
    yield created
    await created.close()


def _insecure() -> ssl.SSLContext:
    """The test's self-signed certificate is accepted; everything else about TLS is real."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _wait_for(url: str, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2, context=_insecure()):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _session(source_address: str = "127.0.0.1") -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(ssl=_insecure(), local_addr=(source_address, 0))
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _log_in(session: aiohttp.ClientSession, base: str, username: str, password: str) -> int:
    async with session.get(f"{base}/login") as response:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await response.text())[1]
    data = {"username": username, "password": password, "csrf_token": token}
    async with session.post(f"{base}/login", data=data, allow_redirects=False) as response:
        return response.status


async def test_a_page_through_nginx_streams_live_and_pushed_values(
    deployment: Deployment,
    context: BrowserContext,
) -> None:
    page = await context.new_page()
    scripts: dict[str, str] = {}

    def note_script(response: Response) -> None:
        if response.request.resource_type == "script":
            scripts[response.url] = response.headers.get("content-type", "")

    page.on("response", note_script)
    await page.goto(f"{deployment.public}/login?next=/dashboards/{deployment.dashboard_id}/")
    await page.fill("input[name=username]", "demo")
    await page.fill("input[name=password]", "demo")
    await page.click("button[type=submit]")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    # The page's ES modules, those it imports too, came through nginx as JavaScript (the
    # only type a browser runs a module script with).
    assert any(url.endswith("/static/socket.js") for url in scripts)
    for url, content_type in scripts.items():
        assert content_type.split(";")[0] in ("text/javascript", "application/javascript"), url
    cards = await page.evaluate(
        "() => [...document.querySelectorAll('article.metric')].map(c => +c.dataset.metricId)"
    )
    first = cards[0]
    count = await page.evaluate("(id) => window.__dashboard.points(id).length", first)
    # Live values from the worker arrive through nginx's WebSocket proxying.
    await page.wait_for_function(
        "([id, n]) => window.__dashboard.points(id).length > n", arg=[first, count], timeout=15_000
    )
    async with _session() as session:
        response = await session.post(
            f"{deployment.public}/api/v1/metrics/{deployment.pushed_metric_id}/values",
            json={"value": PUSHED_VALUE},
            headers={"Authorization": f"Bearer {deployment.token}"},
        )
        assert response.status in (200, 201), await response.text()
    await page.wait_for_function(
        "([id, v]) => window.__dashboard.points(id).some((p) => p.v === v)",
        arg=[deployment.pushed_metric_id, PUSHED_VALUE],
        timeout=10_000,
    )


async def test_login_limit_counts_the_real_client_behind_nginx(deployment: Deployment) -> None:
    limit = Settings().login_failures_per_address
    async with _session("127.0.0.2") as attacker:
        # A new username each time: only the per-address limit is reached.
        statuses = [await _log_in(attacker, deployment.public, f"nobody{i}", "wrong") for i in range(limit)]
        assert set(statuses) == {401}
        assert await _log_in(attacker, deployment.public, "demo", "demo") == 429
    async with _session("127.0.0.3") as owner:
        assert await _log_in(owner, deployment.public, "demo", "demo") == 302
    assert deployment.server is not None
    log = deployment.server.output()
    assert '127.0.0.2 "POST /login HTTP/1.1" 401' in log
    assert '127.0.0.3 "POST /login HTTP/1.1" 302' in log


async def test_probes_and_process_metrics_are_not_public(deployment: Deployment) -> None:
    async with _session() as session:
        for path in (
            "/metrics",
            "/healthz",
            "/readyz",
            "//metrics",
            "/%6detrics",
            "/metrics/",
            "/readyz?x=1",
        ):
            async with session.get(f"{deployment.public}{path}", allow_redirects=False) as response:
                assert response.status == 403, path
        for path in ("/metrics", "/healthz", "/readyz"):
            async with session.get(f"{deployment.direct}{path}") as response:
                assert response.status == 200, path
        async with session.get(f"{deployment.direct}/metrics") as response:
            assert "dashboard_" in await response.text()


async def test_the_watchdog_is_pinged_only_while_every_server_process_turns(deployment: Deployment) -> None:
    systemd = deployment.systemd
    every = WATCHDOG_SECONDS / 2
    assert await asyncio.to_thread(systemd.count, "WATCHDOG=1", 3 * every) >= 2
    (hung, _other) = deployment.server_children()
    hung.suspend()
    try:
        await asyncio.to_thread(systemd.count, "WATCHDOG=1", every)  # one may be on its way
        assert await asyncio.to_thread(systemd.count, "WATCHDOG=1", 2 * every) == 0
    finally:
        hung.resume()
    assert await asyncio.to_thread(systemd.wait_for, "WATCHDOG=1", 2 * every) < 2 * every
    assert deployment.server is not None
    assert {pid for _message, pid in systemd.senders} == {deployment.server.popen.pid}


async def test_sigterm_closes_sockets_with_1001_and_the_page_reconnects(
    deployment: Deployment,
    context: BrowserContext,
) -> None:
    page = await context.new_page()
    await page.goto(f"{deployment.public}/login?next=/dashboards/{deployment.dashboard_id}/")
    await page.fill("input[name=username]", "viewer")
    await page.fill("input[name=password]", "viewer")
    await page.click("button[type=submit]")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    async with _session() as session:
        assert await _log_in(session, deployment.public, "demo", "demo") == 302
        ws = await session.ws_connect(
            f"wss://127.0.0.1:{deployment.https_port}/ws/dashboard/{deployment.dashboard_id}/",
            origin=deployment.public,
        )
        await ws.receive_json(timeout=10)
        assert deployment.server is not None
        assert deployment.server.stop() == 0
        while (message := await ws.receive(timeout=15)).type == aiohttp.WSMsgType.TEXT:
            pass
        assert (message.type, message.data) == (aiohttp.WSMsgType.CLOSE, 1001)
    await expect(page.locator("#connection")).not_to_have_attribute("data-state", "connected")
    deployment.start_server()
    await page.wait_for_function("() => window.__dashboard.connections >= 2", timeout=30_000)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")

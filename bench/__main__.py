"""Run the benchmarks and write bench/results/latest.json and bench/RESULTS.md.

    python -m bench            # the full run documented in bench/RESULTS.md
    python -m bench --quick    # a smaller run to check the harness

Fan-out: a publisher in this process publishes ticks of 10 values (the
worker's event format) on the dashboard's Redis channel at R ticks/s; a
separate load process (bench/wsload.py) holds C authenticated sockets to
a real `dashboard-server` and counts what arrives (bench/wsload.c, compiled with
the system's C compiler, or bench/wsload.py with `--load-client python`); this process samples the
server's CPU seconds and RSS from /proc around each window. The same load
runs against bench/naive_server.py in the same run, so the comparison is a
ratio on one machine state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import aiopg
import click
import psycopg2
from redis.asyncio import Redis
from yarl import URL

from bench import procstat, push, store
from bench import profile as profiling
from common import db
from common.events import channels_for, encode_values
from common.migrate import migrate
from common.passwords import hash_password

HERE = Path(__file__).parent
METRICS = 10
PUBLISH_STEP = 0.002  # seconds: at high rates, the ticks due in this long share a round trip
DRAIN = 2.0  # seconds after a window's last publish in which its messages still count
# A window is not kept up if its last third's values took more than twice as
# long as its first third's, plus this: the latency grew with the window.
GROWTH_ALLOWANCE_MS = 20.0
LOG_DIR = Path("/tmp/dashboard-bench-logs")  # server logs of the last run, for when a run fails
USERS_PER = 50  # connections per bench user (stays under per-user limits)
MAX_USERS = 100  # beyond USERS_PER * MAX_USERS sockets, users hold more each (the servers are told)
HIST_BASE = 1.02  # wsload.c's latency histogram
SOCKETS_PER_CLIENT = 17_000  # per C load client process (at most 20,000 descriptors each)
# Per loopback source address. connect() looks for a free ephemeral port by
# probing; towards one server port it stays cheap (20-30 us of kernel CPU)
# while fewer than about half of an address's 28,000 are taken, then costs
# 0.4 ms and more per socket (bench/RESULTS.md): 17,000 from one address made
# the load clients of a 100,000-socket run use 48 CPU-s of the box's two CPUs.
SOCKETS_PER_SOURCE = 5_000


@dataclass
class Target:
    name: str
    args: list[str]
    path: str
    initial_frames: int  # sent to each connection before live updates
    # Where the server's code is imported from: None for this checkout; an
    # older tree (`--before-src`) to measure before and after in one run.
    source: Path | None = None


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _recreate(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or name == "postgres":
        raise click.BadParameter(f"refusing to recreate database {name!r}")
    admin = psycopg2.connect(_with_db(url, "postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {name}")
    admin.close()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_http(url: str, timeout: float = 30) -> None:
    """Until the server answers anything over HTTP (a 400 for a plain GET of a socket path counts)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


class LoadClients:
    """The load client as one or more processes (`processes`), each with its
    share of the sockets and loopback source addresses of its own (127.0.N.1,
    .2, …, one per SOCKETS_PER_SOURCE sockets: a process may hold at most
    20,000 descriptors, an address has about 28,000 ephemeral ports towards
    one server port); their answers merged into one."""

    def __init__(self, command: list[str], processes: int, connections: int, args: list[str]) -> None:
        self.port = int(args[args.index("--port") + 1])
        self.processes = []
        for i in range(processes):
            share = connections // processes + (1 if i < connections % processes else 0)
            # Several processes: each from addresses of its own, fewer handshakes at once each.
            addresses = ",".join(
                f"127.0.{1 + i}.{1 + j}" for j in range(math.ceil(share / SOCKETS_PER_SOURCE))
            )
            source = ["--source", addresses, "--concurrency", "50"] if processes > 1 else []
            process = subprocess.Popen(
                [*command, "--connections", str(share), *source, *args],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            self.processes.append(process)

    async def answers(self) -> list[dict]:
        return await self._answers()

    async def _answers(self) -> list[dict]:
        return [json.loads(line) for line in await asyncio.gather(
            *(asyncio.to_thread(p.stdout.readline) for p in self.processes)
        )]  # fmt: skip

    async def connected(self) -> dict:
        lines = await asyncio.gather(*(asyncio.to_thread(p.stdout.readline) for p in self.processes))
        if not all(lines):
            # The client said why on stderr (a socket closed during its set-up).
            raise LoadClientFailed(f"{lines.count('')} of {len(lines)} load client(s) gave up during set-up")
        answers = [json.loads(line) for line in lines]
        return {
            # The last process to have all of its sockets set up.
            "connect_seconds": max(a["connect_seconds"] for a in answers),
            "client_cpu_seconds": sum(a.get("client_cpu_seconds") or 0 for a in answers),
        }

    def send(self, line: str) -> None:
        for process in self.processes:
            process.stdin.write(line + "\n")
            process.stdin.flush()

    async def window(self) -> dict:
        answers = await self._answers()
        if len(answers) == 1:
            return answers[0]
        merged = {
            key: sum(a[key] for a in answers) for key in ("alive", "frames", "updates", "latency_samples")
        }
        merged["client_cpu_seconds"] = sum(a["client_cpu_seconds"] for a in answers)
        histogram: dict[int, int] = {}
        for answer in answers:
            for bucket, count in answer.get("latency_histogram", []):
                histogram[bucket] = histogram.get(bucket, 0) + count
        for name, fraction in (("latency_p50_ms", 0.5), ("latency_p95_ms", 0.95), ("latency_p99_ms", 0.99)):
            merged[name] = _histogram_quantile(histogram, fraction)
        for part in ("early", "late"):
            if f"{part}_latency_histogram" in answers[0]:
                part_histogram: dict[int, int] = {}
                for answer in answers:
                    for bucket, count in answer[f"{part}_latency_histogram"]:
                        part_histogram[bucket] = part_histogram.get(bucket, 0) + count
                merged[f"{part}_latency_p50_ms"] = _histogram_quantile(part_histogram, 0.5)
        return merged

    def quit(self) -> None:
        for process in self.processes:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write("quit\n")
                process.stdin.flush()
        for process in self.processes:
            process.wait(60)


class LoadClientFailed(RuntimeError):
    """A load client gave up (a socket was closed while being set up)."""


def _histogram_quantile(histogram: dict[int, int], fraction: float) -> float | None:
    """The quantile of wsload.c's latency histogram (bucket b: about HIST_BASE**b µs), in ms."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen > rank:
            return round(HIST_BASE**bucket / 1000, 2)
    return round(HIST_BASE ** max(histogram) / 1000, 2)


class Bench:
    def __init__(
        self,
        database_url: str,
        redis_url: str,
        window: float,
        load_command: list[str],
        load_processes: int = 1,
        profile_dir: Path | None = None,
        profile_setup: bool = False,
    ) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.window = window
        self.load_command = load_command
        self.load_processes = load_processes
        # With py-spy at hand, each run's server is profiled at the half-saturation rate.
        self.py_spy = profiling.py_spy() if profile_dir is not None else None
        self.profile_dir = profile_dir
        # Also sample the servers while all sockets are set up (costs them a little).
        self.profile_setup = profile_setup
        self.storm = False  # end each fan-out run with a reconnect storm (`_storm`)
        self.fixed_rates = False  # `--rates`: only windows at the rates given
        self.drain = DRAIN  # `--drain`
        # A stored value per metric: where the storm's sockets resume from.
        self.positions: dict[int, int] = {}
        self.metrics: list[db.Metric] = []
        self.dashboard_id = 0
        self.cookies: list[str] = []
        self.users = 0
        self.next_value_id = 1

    def _client_processes(self, connections: int) -> int:
        """C load clients for `connections` sockets: each within a process's descriptors."""
        if self.load_command[0] == sys.executable:
            return 1  # bench/wsload.py spreads over --processes itself
        return max(self.load_processes, math.ceil(connections / SOCKETS_PER_CLIENT))

    async def prepare(self, max_connections: int) -> None:
        _recreate(self.database_url)
        async with db.create_pool(self.database_url) as pool:
            await migrate(pool)
            dashboard = await db.create_dashboard(pool, "Bench", "bench")
            self.dashboard_id = dashboard.id
            for i in range(METRICS):
                self.metrics.append(await db.create_metric(pool, dashboard.id, f"m{i}", "gauge", "u"))
            password = hash_password("bench")
            self.users = min(MAX_USERS, math.ceil(max_connections / USERS_PER))
            for i in range(self.users):
                user = await db.create_user(pool, f"bench{i}", password)
                await db.add_member(pool, dashboard.id, user.id)
            stored = await db.insert_values(pool, [(m.id, 0.0, datetime.now(UTC)) for m in self.metrics])
            self.positions = {value.metric_id: value.id for value in stored}
            self.next_value_id = max(self.positions.values()) + 1
        async with Redis.from_url(self.redis_url) as client:
            await client.flushdb()

    async def log_in_all(self, base: str) -> None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            for i in range(self.users):
                session.cookie_jar.clear()
                async with session.get(f"{base}/login") as response:
                    token = re.search(r'name="csrf_token" value="([^"]+)"', await response.text())[1]
                async with session.post(
                    f"{base}/login",
                    data={"username": f"bench{i}", "password": "bench", "csrf_token": token},
                    allow_redirects=False,
                ) as response:
                    if response.status != 302:
                        raise RuntimeError(f"login of bench{i} failed: {response.status}")
                self.cookies.append(session.cookie_jar.filter_cookies(URL(base))["dashboard_session"].value)

    async def publish(self, rate: float, seconds: float) -> int:
        """Publish `rate` ticks per second for `seconds`; returns ticks sent.

        The ticks due at a moment go out in one pipeline, waking at most every
        PUBLISH_STEP: one round trip per tick at thousands a second took half
        a CPU of the machine the server is measured on. Each tick is stamped
        just before it is sent, so latency still counts from its publish."""
        channel = channels_for(self.redis_url).dashboard(self.dashboard_id)
        total = max(1, round(rate * seconds))
        sent = 0
        async with Redis.from_url(self.redis_url) as client:
            start = time.monotonic()
            while sent < total:
                due = min(total, int((time.monotonic() - start) * rate) + 1) - sent
                if due <= 0:
                    await asyncio.sleep(PUBLISH_STEP)
                    continue
                pipe = client.pipeline(transaction=False)
                for _ in range(due):
                    now = datetime.now(UTC)
                    values = []
                    for metric in self.metrics:
                        values.append((metric, db.MetricValue(self.next_value_id, metric.id, 1.0, now)))
                        self.next_value_id += 1
                    pipe.publish(channel, encode_values(self.dashboard_id, values))
                await pipe.execute()
                sent += due
                delay = start + sent / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(max(delay, PUBLISH_STEP))
        return sent

    async def fanout(self, target: Target, connections: int, rates: list[float]) -> dict:
        """Connect C clients to a fresh server, then ramp the rate until saturation."""
        port = _free_port()
        log_path = LOG_DIR / f"{_slug(target.name)}-{connections}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        gc_log = Path(tempfile.mkdtemp(prefix="dashboard-bench-gc-"))

        def start_server() -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, *target.args, "--port", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=log_path.open("a"),
                **_server_options(target.source, gc_log),
            )

        server = start_server()
        try:
            await asyncio.to_thread(_wait_http, f"http://127.0.0.1:{port}{target.path}", 60)
            await asyncio.sleep(1.0)  # every worker process up
            pids = procstat.tree(server.pid)
            rss_idle = procstat.rss_bytes(pids)
            cpu_idle = procstat.cpu_seconds(pids)
            load = LoadClients(
                self.load_command,
                self._client_processes(connections),
                connections,
                [
                    "--port", str(port), "--path", target.path, "--settle", "1",
                    "--initial-frames", str(target.initial_frames),
                    "--processes", str(self.load_processes),
                    *[arg for cookie in self.cookies for arg in ("--cookie", cookie)],
                ],
            )  # fmt: skip
            try:
                recording = None
                if self.profile_setup and self.py_spy is not None and self.profile_dir is not None:
                    setup_stacks = self.profile_dir / f"{_slug(target.name)}-{connections}-setup.txt"
                    recording = profiling.Recording(self.py_spy, pids, setup_stacks)
                    await recording.start()
                connected = await load.connected()
                if recording is not None:
                    await recording.stop()
                pids = procstat.tree(server.pid)
                rss_connected = procstat.rss_bytes(pids)
                # Less noisy than the wall time on a shared machine: what setting
                # the sockets up cost the server (the settle second is idle).
                connect_cpu = procstat.cpu_seconds(pids) - cpu_idle
                result = {
                    "target": target.name,
                    "connections": connections,
                    "connect_auth_config_seconds": round(connected["connect_seconds"], 3),
                    "connect_server_cpu_ms_per_connection": round(connect_cpu * 1000 / connections, 3),
                    "connect_client_cpu_seconds": connected.get("client_cpu_seconds"),
                    "rss_idle_mb": round(rss_idle / 2**20, 1),
                    "rss_connected_mb": round(rss_connected / 2**20, 1),
                    "rss_per_connection_kb": round((rss_connected - rss_idle) / connections / 1024, 1),
                    "windows": [],
                }
                if recording is not None:
                    result["setup_profile"] = {
                        "stacks": str(setup_stacks.relative_to(HERE.parent))
                        if setup_stacks.is_relative_to(HERE.parent)
                        else str(setup_stacks),
                        **profiling.summarise(setup_stacks),
                    }
                # Saturation: the first rate at which clients no longer get
                # everything within a second (or get disconnected as too slow).
                windows = result["windows"]
                if self.fixed_rates:
                    # `--rates`: a window at each, no search for saturation.
                    await self._climb(load, pids, connections, rates, windows, quiesce=True, stop=False)
                else:
                    await self._sweep(load, pids, connections, rates, result)
                if self.storm:
                    await self._quiesce(load)
                    server, result["storm"] = await self._storm(
                        target, load, server, start_server, connections
                    )
            finally:
                load.quit()
        finally:
            for pid in procstat.tree(server.pid)[1:]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            server.terminate()
            server.wait(30)
        # Written by each server process as it exits (bench/gcpauses).
        result["gc_pauses"] = _gc_pauses(gc_log)
        _gc_in_windows(gc_log, [*result["windows"], result.get("half_saturation")])
        shutil.rmtree(gc_log)
        return result

    async def _sweep(
        self, load: LoadClients, pids: list[int], connections: int, rates: list[float], result: dict
    ) -> None:
        """Ramp the rate until saturation, then a window at half of it (and a profiled one)."""
        target_name = result["target"]
        windows = result["windows"]
        saturated_at = await self._climb(load, pids, connections, rates, windows)
        kept = [w["rate"] for w in windows if w["kept_up"]]
        if saturated_at is not None and kept:
            # Doubling steps leave saturation anywhere in a factor of 2:
            # narrowed to quarter octaves (19 %) between the two.
            finer = [round(max(kept) * 2 ** (step / 4), 1) for step in (1, 2, 3)]
            saturated_at = await self._climb(load, pids, connections, finer, windows, True) or saturated_at
        sustained = max((w["rate"] for w in windows if w["kept_up"]), default=None)
        result["saturated_at_rate"] = saturated_at
        # The highest rate kept up, and half of it: where latency is reported.
        result["sustained_rate"] = sustained
        half = (rates[-1] if saturated_at is None else sustained or saturated_at) / 2
        # A saturated window leaves a backlog that DRAIN does not cover:
        # it would be counted (and timed) in the next window.
        await self._quiesce(load)
        result["half_saturation"] = await self._window(load, pids, connections, half)
        if self.py_spy is not None and self.profile_dir is not None:
            # A window of its own: sampling costs the server a little.
            await self._quiesce(load)
            stacks = self.profile_dir / f"{_slug(target_name)}-{connections}.txt"
            profiled = await self._window(load, pids, connections, half, profile=stacks)
            result["profile"] = {
                "rate": half,
                "stacks": str(stacks.relative_to(HERE.parent))
                if stacks.is_relative_to(HERE.parent)
                else str(stacks),
                "window": profiled,
                **profiling.summarise(stacks),
            }

    async def _storm(
        self,
        target: Target,
        load: LoadClients,
        server: subprocess.Popen,
        start_server: Callable[[], subprocess.Popen],
        connections: int,
    ) -> tuple[subprocess.Popen, dict]:
        """Kill the server, start it again, and time until every socket is back with `resume`.

        Each socket reconnects with `?subscribe=none`, waits for its authentication,
        config and alerts, sends `resume` with the positions of the values stored in
        `prepare` and is live when the answer's `complete` arrives. Returns the new
        server and the storm's figures."""
        separator = "&" if "?" in target.path else "?"
        path = f"{target.path}{separator}subscribe=none"
        positions = [{"metric_id": m, "after_id": i} for m, i in self.positions.items()]
        resume = json.dumps({"action": "resume", "payload": {"positions": positions}}, separators=(",", ":"))
        load.send(f"storm 3 {path} {resume}")
        killed_at = time.monotonic()
        for pid in procstat.tree(server.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.wait(30)
        server = start_server()
        answers = asyncio.ensure_future(load.answers())
        await asyncio.to_thread(_wait_http, f"http://127.0.0.1:{load.port}{target.path}", 60)
        serving_at = time.monotonic()
        pids = procstat.tree(server.pid)
        cpu_serving = procstat.cpu_seconds(pids)
        storms = await asyncio.wait_for(answers, 300)
        live_at = time.monotonic()
        cpu = procstat.cpu_seconds(procstat.tree(server.pid)) - cpu_serving
        return server, {
            "sockets": connections,
            # From the kill: the server's own restart included.
            "seconds_from_kill": round(live_at - killed_at, 3),
            "seconds_from_serving": round(live_at - serving_at, 3),
            "seconds_per_client_process": [a["seconds"] for a in storms],
            "server_restart_seconds": round(serving_at - killed_at, 3),
            # What each socket's reconnect, checks and resume cost the new server.
            "server_cpu_ms_per_socket": round(cpu * 1000 / connections, 3),
            "connect_attempts": sum(a["connect_attempts"] for a in storms),
            "load_average": os.getloadavg()[0],
        }

    async def _climb(
        self,
        load: LoadClients,
        pids: list[int],
        connections: int,
        rates: list[float],
        windows: list[dict],
        quiesce: bool = False,
        stop: bool = True,
    ) -> float | None:
        """A window at each rate in turn (after the backlog clears, with `quiesce`),
        appended to `windows`, until one is not kept up: that rate, or None."""
        for rate in rates:
            if quiesce:
                await self._quiesce(load)
            window = await self._window(load, pids, connections, rate)
            windows.append(window)
            if stop and not window["kept_up"]:
                return rate
        return None

    async def _quiesce(self, load: LoadClients, longest: float = 60.0) -> None:
        """Wait (publishing nothing) until a second passes with no update arriving."""
        started = time.monotonic()
        while time.monotonic() - started < longest:
            load.send("go 1")
            if (await load.window())["updates"] == 0:
                return
        raise RuntimeError(f"updates still arriving {longest:.0f} s after the last publish")

    async def _window(
        self,
        load: LoadClients,
        pids: list[int],
        connections: int,
        rate: float,
        profile: Path | None = None,
    ) -> dict:
        """Publish for `window` seconds; count until DRAIN seconds after the last publish,
        so that every window's messages are counted in that window and no other.

        With `profile`, the server processes are sampled by py-spy meanwhile
        (bench/profile.py) and their collapsed stacks written there."""
        redis_pids = procstat.named("redis-server")
        user_before, system_before = procstat.cpu_split(pids)
        redis_before = procstat.cpu_seconds(redis_pids)
        publisher_before = _own_cpu_seconds()
        machine_before = procstat.machine_cpu()
        began_at = time.time()
        # The latencies of the values published in the window's first and last thirds apart:
        load.send(
            f"go {self.window + self.drain} {began_at + self.window / 3} {began_at + self.window * 2 / 3}"
        )

        async def publish() -> tuple[int, float]:
            # The server's CPU while values come in, apart from the drain after.
            sent = await self.publish(rate, self.window)
            return sent, procstat.cpu_seconds(pids)

        jobs = [publish(), load.window()]
        if profile is not None:
            jobs.append(profiling.record(self.py_spy, pids, self.window, profile))
        (published, cpu_at_publish_end), window, *_ = await asyncio.gather(*jobs)
        user_after, system_after = procstat.cpu_split(pids)
        user, system = user_after - user_before, system_after - system_before
        cpu = user + system
        machine_after = procstat.machine_cpu()
        machine = {kind: round(machine_after[kind] - machine_before[kind], 2) for kind in machine_after}
        expected = published * METRICS * connections
        delivered = window["updates"]
        per_second = delivered / self.window
        p99 = window["latency_p99_ms"]
        early, late = window.get("early_latency_p50_ms"), window.get("late_latency_p50_ms")
        # A queue that grows for as long as the rate lasts shows in a short window
        # as a p99 under the limit, but its values wait longer the later they come.
        grew = early is not None and late is not None and late > 2 * early + GROWTH_ALLOWANCE_MS
        kept_up = (
            window["alive"] == connections
            and delivered >= 0.95 * expected
            and p99 is not None
            and p99 < 1000
            and not grew
        )
        return {
            "rate": rate,
            "window_seconds": self.window,
            "offered_per_second": round(rate * METRICS * connections),
            "delivered_per_second": round(per_second),
            "delivered_fraction": round(delivered / expected, 3) if expected else None,
            "latency_p50_ms": window["latency_p50_ms"],
            "latency_p95_ms": window["latency_p95_ms"],
            "latency_p99_ms": p99,
            "early_latency_p50_ms": early,
            "late_latency_p50_ms": late,
            "latency_grew": grew,
            "server_cpu_seconds": round(cpu, 2),
            "server_system_cpu_seconds": round(system, 2),
            # Of the seconds values were published in (the drain after is mostly idle).
            "server_cpu_share": round((cpu_at_publish_end - user_before - system_before) / self.window, 2),
            "delivered_per_server_cpu_second": round(delivered / cpu) if cpu > 0 else None,
            "client_cpu_seconds": round(window["client_cpu_seconds"], 2),
            # Where the rest of the machine went meanwhile: the publisher (this
            # process), Redis, and the machine's CPU seconds by kind.
            "publisher_cpu_seconds": round(_own_cpu_seconds() - publisher_before, 2),
            "redis_cpu_seconds": round(procstat.cpu_seconds(redis_pids) - redis_before, 2),
            "machine_cpu_seconds": machine,
            "alive": window["alive"],
            "kept_up": kept_up,
            # When it ran: the garbage collections in it are counted once the server exits.
            "began_at": round(began_at, 3),
            "ended_at": round(time.time(), 3),
            "load_average": os.getloadavg()[0],
        }


async def _push(pool: aiopg.Pool, target: Target, seconds: float) -> list[dict]:
    """The push API of one server process, at 100 and 1,000 values per request (bench/push.py)."""
    metric_ids, token = await push.prepare(pool)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, *target.args, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.to_thread(_wait_http, f"http://127.0.0.1:{port}/login")
        pids = procstat.tree(server.pid)
        base = f"http://127.0.0.1:{port}"
        return [await push.run(base, pids, metric_ids, token, size, seconds) for size in (100, 1000)]
    finally:
        server.terminate()
        server.wait(30)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_options(source: Path | None, gc_log: Path) -> dict:
    """Popen options for a server: its pauses for garbage collection recorded in
    `gc_log` (bench/gcpauses), its code imported from `source` if given."""
    env = {**os.environ, "DASHBOARD_BENCH_GC_LOG": str(gc_log), "PYTHONPATH": str(HERE / "gcpauses")}
    if source is None:
        return {"env": env}
    # `-m` puts the working directory first on sys.path, ahead of this
    # checkout's editable install.
    return {"cwd": source, "env": {**env, "PYTHONPATH": f"{source}{os.pathsep}{env['PYTHONPATH']}"}}


def _gc_pauses(gc_log: Path) -> dict:
    """Collections per generation of all the server's processes: count, total and longest pause."""
    by_generation: dict[int, list[float]] = {}
    for path in gc_log.glob("*.json"):
        for generation, seconds, *_ in json.loads(path.read_text()):
            by_generation.setdefault(generation, []).append(seconds)
    return {
        f"gen{generation}": {
            "count": len(pauses),
            "total_ms": round(sum(pauses) * 1000, 1),
            "max_ms": round(max(pauses) * 1000, 1),
        }
        for generation, pauses in sorted(by_generation.items())
    }


def _gc_in_windows(gc_log: Path, windows: list[dict | None]) -> None:
    """Each window's full collections (any server process): how many, and the longest in ms."""
    full = [
        (began, seconds)
        for path in gc_log.glob("*.json")
        for generation, seconds, *rest in json.loads(path.read_text())
        for began in rest
        if generation == 2
    ]
    for window in windows:
        if window is None or "began_at" not in window:
            continue
        inside = [seconds for began, seconds in full if window["began_at"] <= began <= window["ended_at"]]
        window["full_collections"] = len(inside)
        window["longest_full_collection_ms"] = round(max(inside, default=0) * 1000, 1)


def _targets(
    database_url: str, redis_url: str, dashboard_id: int, before: Path | None = None
) -> dict[str, Target]:
    server = [
        "-m",
        "server",
        "--database-url",
        database_url,
        "--redis-url",
        redis_url,
        "--log-level",
        "warning",
        "run",
    ]
    return {
        # authentication, dashboard_config, one metric_history per metric and alerts come first
        "server": Target(
            "dashboard-server, 1 process", server, f"/ws/dashboard/{dashboard_id}/", 3 + METRICS
        ),
        "server2": Target(
            "dashboard-server --workers 2",
            [*server, "--workers", "2"],
            f"/ws/dashboard/{dashboard_id}/",
            3 + METRICS,
        ),
        # The same server, sockets opened with ?updates=batch (metric_updates messages).
        "batch": Target(
            "dashboard-server, 1 process, batched updates",
            server,
            f"/ws/dashboard/{dashboard_id}/?updates=batch",
            3 + METRICS,
        ),
        "batch2": Target(
            "dashboard-server --workers 2, batched updates",
            [*server, "--workers", "2"],
            f"/ws/dashboard/{dashboard_id}/?updates=batch",
            3 + METRICS,
        ),
        "naive": Target(
            "naive reference (send_str per client per message)",
            ["-m", "bench.naive_server", "--redis-url", redis_url, "--dashboard-id", str(dashboard_id)],
            "/ws",
            0,
        ),
        # A tree with the `alerts` message (3 + METRICS frames at set-up), as every one since 2026-12-01.
        "before": Target(
            f"dashboard-server from {before}, 1 process",
            server,
            f"/ws/dashboard/{dashboard_id}/",
            3 + METRICS,
            before,
        ),
        "beforebatch": Target(
            f"dashboard-server from {before}, 1 process, batched updates",
            server,
            f"/ws/dashboard/{dashboard_id}/?updates=batch",
            3 + METRICS,
            before,
        ),
    }


def _with_workers(targets: dict[str, Target], key: str, connections: int, users: int) -> Target:
    """The target of `key`: `serverN`/`batchN`/`beforebatchN` are `server`/`batch`/`beforebatch`
    with `--workers N` (as `server2` and `batch2` are); sockets per user allowed as the run needs."""
    workers = re.fullmatch(r"(server|batch|beforebatch)(\d+)", key)
    if key in targets:
        target = targets[key]
    elif workers:
        base = targets[workers[1]]
        n = workers[2]
        name = f"{base.name.split(',')[0]} --workers {n}" + (
            ", batched updates" if "batch" in workers[1] else ""
        )
        target = Target(name, [*base.args, "--workers", n], base.path, base.initial_frames, base.source)
    else:
        raise click.BadParameter(f"unknown target {key!r}", param_hint="--plan")
    per_user = math.ceil(connections / max(users, 1))
    if per_user > USERS_PER and key != "naive":
        target = Target(
            target.name,
            [*target.args, "--max-connections-per-user", str(per_user + 1)],
            target.path,
            target.initial_frames,
            target.source,
        )
    return target


@click.command()
@click.option(
    "--database-url",
    envvar="DASHBOARD_BENCH_DATABASE_URL",
    default="postgresql://postgres@127.0.0.1:5432/dashboard_bench",
    show_default=True,
    help="A database the benchmark may drop and recreate.",
)
@click.option(
    "--redis-url", envvar="DASHBOARD_BENCH_REDIS_URL", default="redis://127.0.0.1:6379/12", show_default=True
)
@click.option(
    "--quick",
    is_flag=True,
    help="Fewer connections and rows: checks the harness in a few minutes (bench/RESULTS.md is left alone).",
)
@click.option("--window", type=float, default=5.0, show_default=True, help="Seconds per measuring window.")
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    help="Where the JSON goes. [default: bench/results/latest.json; with --quick, bench/results/quick.json]",
)
@click.option(
    "--plan",
    help="Only these runs, e.g. `server:1000,before:1000` (fan-out targets: server, batch, server2, batchN,"
    " naive, before, beforebatch, beforebatchN; `store` for ingest and history); leaves bench/RESULTS.md alone.",
)
@click.option(
    "--before-src",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A tree of an earlier version (`git archive REV | tar -x -C DIR`): the `before` target runs"
    " its server, so a change is measured against it in the same run.",
)
@click.option(
    "--load-client",
    type=click.Choice(["c", "python"]),
    help="bench/wsload.c (built with the system's cc; the default where there is one) or bench/wsload.py.",
)
@click.option(
    "--profile/--no-profile",
    default=True,
    show_default=True,
    help="Sample each server with py-spy in an extra window at its half-saturation rate; the collapsed"
    " stacks go to a folder beside the JSON (`latest.json` → `latest-profiles/`).",
)
@click.option(
    "--rates",
    help="Only windows at these ticks/s (comma-separated), no saturation search: e.g. `1` for the"
    " 1 tick/s latency of a large run.",
)
@click.option(
    "--drain",
    type=float,
    default=DRAIN,
    show_default=True,
    help="Seconds after a window's last publish in which its values still count (longer for runs"
    " where a tick takes seconds to reach every socket).",
)
@click.option(
    "--storm", is_flag=True, help="End each fan-out run with a reconnect storm (kill, restart, resume)."
)
@click.option(
    "--profile-setup",
    is_flag=True,
    help="Also sample the servers with py-spy while the sockets are set up (`…-setup.txt` stacks).",
)
@click.option(
    "--load-processes",
    type=int,
    default=None,
    help="Processes the load client spreads its sockets over: for the Python client 2 by default;"
    " for the C client at least this many (1 by default), and one per 17,000 sockets.",
)
def main(
    database_url: str,
    redis_url: str,
    quick: bool,
    window: float,
    output: Path | None,
    plan: str | None,
    before_src: Path | None,
    load_client: str | None,
    profile: bool,
    load_processes: int | None,
    profile_setup: bool,
    rates: str | None,
    storm: bool,
    drain: float,
) -> None:
    """Fan-out sweep, worker ingest and history latency; results as JSON and markdown."""
    if load_client is None:
        load_client = "c" if shutil.which("cc") else "python"
    # 5,000 sockets need more descriptors than the usual soft limit; the
    # servers started from here inherit this.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if output is None:
        output = HERE / "results" / ("quick.json" if quick else "latest.json")
    profile_dir = output.with_name(f"{output.stem}-profiles") if profile else None
    if profile and profiling.py_spy() is None:
        click.echo("py-spy not found (pip install -e '.[bench]'): no profiles this run", err=True)
    runs = _parse_plan(plan, before_src) if plan else None
    options = Options(
        database_url,
        redis_url,
        quick,
        window,
        output,
        runs,
        before_src,
        load_client,
        load_processes,
        profile_dir,
        profile_setup,
        [float(rate) for rate in rates.split(",")] if rates else None,
        storm,
        drain,
    )
    asyncio.run(_main(options, " ".join(["python -m bench", *sys.argv[1:]])))


@dataclass(frozen=True)
class Options:
    database_url: str
    redis_url: str
    quick: bool
    window: float
    output: Path
    runs: list[tuple[str, int]] | None  # None: the full plan
    before_src: Path | None
    load_client: str
    load_processes: int | None
    profile_dir: Path | None
    profile_setup: bool = False
    rates: list[float] | None = None
    storm: bool = False
    drain: float = DRAIN


def _load_command(client: str, build_dir: Path) -> list[str]:
    """How to start the load client; the C one is compiled into `build_dir` first."""
    if client == "python":
        return [sys.executable, "-m", "bench.wsload"]
    binary = build_dir / "wsload"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(HERE / "wsload.c"), "-lm"], check=True)
    return [str(binary)]


def _parse_plan(plan: str, before_src: Path | None) -> list[tuple[str, int]]:
    runs = []
    for item in plan.split(","):
        key, _, count = item.strip().partition(":")
        if key == "store" and not count:
            runs.append((key, 0))
            continue
        if not re.fullmatch(r"(server|batch|beforebatch)\d*|naive|before", key) or not count.isdigit():
            raise click.BadParameter(f"{item!r}: expected TARGET:CONNECTIONS", param_hint="--plan")
        if key.startswith("before") and before_src is None:
            raise click.BadParameter("the `before` target needs --before-src", param_hint="--plan")
        runs.append((key, int(count)))
    return runs


async def _main(options: Options, command: str) -> None:
    connection_counts = [100, 1000] if options.quick else [100, 1000, 5000]
    # Up to where the server (or the load client beside it) can no longer keep up.
    rates = options.rates or [1, 2, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120]
    database_url, redis_url = options.database_url, options.redis_url
    plan = [("server", c) for c in connection_counts] + [("batch", 1000), ("naive", 1000), ("server2", 1000)]
    if not options.quick:
        plan += [("batch", 5000), ("naive", 5000), ("server2", 5000)]
    if options.runs is not None:
        plan = [run for run in options.runs if run[0] != "store"]
    with_store = options.runs is None or ("store", 0) in options.runs
    build_dir = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    load_command = _load_command(options.load_client, build_dir)
    bench = Bench(
        database_url,
        redis_url,
        options.window,
        load_command,
        options.load_processes or (1 if options.load_client == "c" else 2),
        options.profile_dir,
        options.profile_setup,
    )
    bench.storm = options.storm
    bench.drain = options.drain
    bench.fixed_rates = options.rates is not None
    await bench.prepare(max((c for _, c in plan), default=0))
    targets = _targets(database_url, redis_url, bench.dashboard_id, options.before_src)
    results: dict = {
        "command": command,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            # The machine may be shared: how busy it was when the run began.
            "load_average": os.getloadavg(),
        },
        "load_client": options.load_client,
        "load_processes": options.load_processes or (1 if options.load_client == "c" else 2),
        "fanout": [],
    }
    if plan:
        # Log in once through a server: sessions live in Redis and outlast restarts.
        port = _free_port()
        login_server = subprocess.Popen([sys.executable, *targets["server"].args, "--port", str(port)])
        try:
            await asyncio.to_thread(_wait_http, f"http://127.0.0.1:{port}/login")
            await bench.log_in_all(f"http://127.0.0.1:{port}")
        finally:
            login_server.terminate()
            login_server.wait(30)

    for key, connections in plan:
        target = _with_workers(targets, key, connections, bench.users)
        click.echo(f"fan-out: {target.name}, C={connections}", err=True)
        try:
            results["fanout"].append(await bench.fanout(target, connections, rates))
        except LoadClientFailed as exc:
            # Recorded, not fatal: the next runs of the plan still go.
            results["fanout"].append({"target": target.name, "connections": connections, "failed": str(exc)})
        # Written after each run: a long plan's finished runs survive a later failure.
        options.output.parent.mkdir(parents=True, exist_ok=True)
        options.output.write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(build_dir, ignore_errors=True)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    output = options.output
    output.parent.mkdir(parents=True, exist_ok=True)
    if not with_store:
        output.write_text(json.dumps(results, indent=2) + "\n")
        click.echo(f"wrote {output}", err=True)
        return

    async with db.create_pool(database_url) as pool:
        click.echo("ingest", err=True)
        all_metrics = bench.metrics
        more = [await db.create_metric(pool, bench.dashboard_id, f"ingest{i}", "gauge") for i in range(990)]
        ids = [m.id for m in all_metrics + more]
        ticks = 30 if options.quick else 300
        copier = db.Copier(database_url)
        try:
            ways = await store.compare_ingest(pool, database_url, ids, ticks, copier)
        finally:
            copier.close()
        copy, insert, raw = ways["copy"], ways["insert"], ways["raw"]
        results["ingest"] = {
            "rows": copy["rows"],
            "rows_per_tick": len(ids),
            "seconds": copy["seconds"],
            "rows_per_second": copy["rows_per_second"],
            "insert_rows_per_second": insert["rows_per_second"],
            "raw_copy_rows_per_second": raw["rows_per_second"],
            "share_of_raw_copy": round(raw["seconds"] / copy["seconds"], 3),
            "insert_share_of_raw_copy": round(raw["seconds"] / insert["seconds"], 3),
            "median_tick_ms": {way: done["median_tick_ms"] for way, done in ways.items()},
            "interleaved": "tick by tick, order rotating",
        }
        click.echo("push API", err=True)
        results["push"] = await _push(pool, targets["server"], 5 if options.quick else 10)
        rows_per_metric = 1_000 if options.quick else 10_000
        click.echo(f"history: filling {len(ids) * rows_per_metric:,} rows", err=True)
        fill_seconds = await store.fill(pool, ids, rows_per_metric)
        results["history"] = {
            "table_rows": len(ids) * rows_per_metric + 3 * results["ingest"]["rows"],
            "fill_seconds": round(fill_seconds, 1),
            **await store.history_latency(pool, ids, 500),
        }
    output.write_text(json.dumps(results, indent=2) + "\n")
    if options.runs is not None:
        click.echo(f"wrote {output} (a --plan run leaves bench/RESULTS.md alone)", err=True)
        return
    if options.quick:
        # A harness check: its small numbers must not replace the committed results.
        click.echo(f"wrote {output} (a --quick run leaves bench/RESULTS.md alone)", err=True)
        return
    from bench.report import write_markdown

    write_markdown(results, HERE / "RESULTS.md", HERE / "results" / "baseline.json")
    click.echo(f"wrote {output} and {HERE / 'RESULTS.md'}", err=True)


if __name__ == "__main__":
    main()

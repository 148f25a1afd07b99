"""What setting one dashboard socket up costs the server, in counts that a busy machine does not skew.

    python -m bench.setupcost --connections 2000 --rounds 3 --before-src /tmp/before
    python -m bench.setupcost --callgrind 300 --before-src /tmp/before

CPU seconds per socket drift with the machine's load (a shared machine at
load 10 and more gives figures two to three times apart between runs). This measures the
server's set-up of N sockets (authentication, config, history, alerts: what
bench/wsload.c waits for) in three ways, for this checkout and, with
`--before-src`, an earlier tree in the same run, rounds alternating:

- CPU seconds, user and system, from /proc (the load-dependent figure);
- system calls made, read and write side, from /proc/PID/io (each send,
  receive and epoll call: exact, whatever the load);
- with `--callgrind N`, the instructions the server executes in user space
  while N sockets are set up (valgrind's callgrind, collection switched on
  only around the set-up), exact and repeatable, but blind to the kernel.

The sockets of a round are closed before the next one; closing them is not
counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import click

from bench import procstat
from bench import profile as profiling
from bench.__main__ import METRICS, Bench, _free_port, _load_command, _targets, _wait_http

SETTLE = 0.5  # seconds after the client has every socket set up: work still under way finishes
AFTER_CLOSE = 3.5  # seconds from closing a round's sockets to the next round


def _strace_counts(text: str) -> dict[str, int]:
    """Calls per system call from `strace -c`'s table."""
    counts = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[-1].isidentifier() and fields[3].isdigit() and fields[-1] != "total":
            counts[fields[-1]] = int(fields[3])
    return counts


class Server:
    """One server process on a port of its own, from this checkout or `source`."""

    def __init__(self, name: str, args: list[str], source: Path | None, wrapper: list[str]) -> None:
        self.name = name
        self.source = source
        self.port = _free_port()
        env = dict(os.environ)
        options: dict = {}
        if source is not None:
            env["PYTHONPATH"] = str(source)
            options["cwd"] = source
        self.process = subprocess.Popen(
            [*wrapper, sys.executable, *args, "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            env=env,
            **options,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)


async def _set_up(load_command: list[str], server: Server, path: str, connections: int, cookies: list[str]):
    """Open `connections` sockets to `server` and wait until each has had its set-up frames."""
    client = subprocess.Popen(
        [
            *load_command,
            "--port",
            str(server.port),
            "--path",
            path,
            "--settle",
            "0",
            "--initial-frames",
            str(3 + METRICS),
            "--connections",
            str(connections),
            *[arg for cookie in cookies for arg in ("--cookie", cookie)],
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = await asyncio.to_thread(client.stdout.readline)
    if not line:
        client.kill()
        raise RuntimeError(f"the load client gave up setting up sockets to {server.name}")
    return client, json.loads(line)


def _close(client: subprocess.Popen) -> None:
    with contextlib.suppress(BrokenPipeError):
        client.stdin.write("quit\n")
        client.stdin.flush()
    client.wait(60)


async def _round(load_command: list[str], server: Server, path: str, connections: int, cookies: list[str]):
    user0, system0 = procstat.cpu_split([server.pid])
    client, connected = await _set_up(load_command, server, path, connections, cookies)
    await asyncio.sleep(SETTLE)
    user1, system1 = procstat.cpu_split([server.pid])
    _close(client)
    # The closes are handled, and the collection they make due (server/gcpolicy.py,
    # a second after) is over before the next round.
    await asyncio.sleep(AFTER_CLOSE)
    return {
        "server": server.name,
        "connections": connections,
        "seconds": connected["connect_seconds"],
        "cpu_ms_per_socket": round((user1 + system1 - user0 - system0) * 1000 / connections, 3),
        "user_ms_per_socket": round((user1 - user0) * 1000 / connections, 3),
        "system_ms_per_socket": round((system1 - system0) * 1000 / connections, 3),
        "load_average": os.getloadavg()[0],
    }


async def _callgrind(
    load_command: list[str],
    server: Server,
    path: str,
    connections: int,
    cookies: list[str],
    out: Path,
    keep: Path | None,
) -> dict:
    """Instructions the server executes while `connections` sockets are set up."""
    # A few sockets first, uncounted: code paths run once (imports, first queries) are not set-up.
    client, _ = await _set_up(load_command, server, path, 20, cookies)
    _close(client)
    await asyncio.sleep(2.0)
    await _callgrind_control(server.pid, "--zero")
    await _callgrind_control(server.pid, "--instr=on")
    client, _ = await _set_up(load_command, server, path, connections, cookies)
    await asyncio.sleep(SETTLE * 4)  # everything runs some 50 times slower
    await _callgrind_control(server.pid, "--instr=off")
    await _callgrind_control(server.pid, "--dump=setup")
    _close(client)
    # The one dump so far (`out.N`): counted from the zeroing to the dump.
    dumps = sorted(out.parent.glob(f"{out.name}.*"))
    if len(dumps) != 1:
        raise RuntimeError(f"expected one callgrind dump, found {dumps}")
    instructions = int(re.search(r"^totals: (\d+)", dumps[0].read_text(), re.M)[1])
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(dumps[0], keep / f"callgrind-{'after' if server.source is None else 'before'}.out")
    return {
        "server": server.name,
        "connections": connections,
        "instructions_per_socket": round(instructions / connections),
        "load_average": os.getloadavg()[0],
    }


async def _syscall_round(
    load_command: list[str], server: Server, path: str, connections: int, cookies: list[str]
) -> dict:
    """System calls per socket set up, counted by strace (exact; the round's CPU is not used)."""
    tracer = subprocess.Popen(
        ["strace", "-c", "-f", "-p", str(server.pid)], stderr=subprocess.PIPE, text=True
    )
    await asyncio.sleep(1.0)  # attached
    client, _ = await _set_up(load_command, server, path, connections, cookies)
    await asyncio.sleep(SETTLE * 2)
    tracer.send_signal(signal.SIGINT)
    _out, table = tracer.communicate(timeout=60)
    _close(client)
    await asyncio.sleep(1.0)
    counts = _strace_counts(table)
    per_socket = {name: round(calls / connections, 2) for name, calls in sorted(counts.items())}
    return {
        "server": server.name,
        "connections": connections,
        "syscalls_per_socket": round(sum(counts.values()) / connections, 2),
        "by_call_per_socket": {name: n for name, n in per_socket.items() if n >= 0.01},
    }


async def _callgrind_control(pid: int, command: str) -> None:
    await asyncio.to_thread(
        subprocess.run, ["callgrind_control", command, str(pid)], check=True, capture_output=True
    )


def _summary(rounds: list[dict], name: str) -> dict:
    mine = [r for r in rounds if r["server"] == name]
    keys = ("cpu_ms_per_socket", "user_ms_per_socket", "system_ms_per_socket", "seconds")
    return {f"median_{key}": round(statistics.median(r[key] for r in mine), 3) for key in keys}


@click.command()
@click.option(
    "--database-url",
    envvar="DASHBOARD_BENCH_DATABASE_URL",
    required=True,
    help="A database this may drop and recreate.",
)
@click.option("--redis-url", envvar="DASHBOARD_BENCH_REDIS_URL", required=True, help="Flushed first.")
@click.option("--connections", type=int, default=2000, show_default=True, help="Sockets per round.")
@click.option("--rounds", type=int, default=3, show_default=True, help="Rounds per server, alternating.")
@click.option(
    "--before-src",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A tree of an earlier version (`git archive REV | tar -x -C DIR`), measured alike.",
)
@click.option(
    "--callgrind",
    type=int,
    default=0,
    help="Instead: sockets set up under valgrind's callgrind (a few hundred), instructions counted.",
)
@click.option(
    "--stacks",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also a round per server sampled by py-spy: collapsed stacks to this folder.",
)
@click.option("--output", type=click.Path(path_type=Path), required=True, help="Where the JSON goes.")
def main(
    database_url: str,
    redis_url: str,
    connections: int,
    rounds: int,
    before_src: Path | None,
    callgrind: int,
    stacks: Path | None,
    output: Path,
) -> None:
    """Server CPU, system calls and (with --callgrind) instructions per socket set up."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    command = " ".join(["python -m bench.setupcost", *sys.argv[1:]])
    asyncio.run(
        _main(database_url, redis_url, connections, rounds, before_src, callgrind, stacks, output, command)
    )


async def _main(
    database_url: str,
    redis_url: str,
    connections: int,
    rounds: int,
    before_src: Path | None,
    callgrind: int,
    stacks: Path | None,
    output: Path,
    command: str,
) -> None:
    build_dir = Path(tempfile.mkdtemp(prefix="dashboard-setupcost-"))
    load_command = _load_command("c", build_dir)
    bench = Bench(database_url, redis_url, 1.0, load_command)
    await bench.prepare(max(connections, callgrind))
    targets = _targets(database_url, redis_url, bench.dashboard_id, before_src)
    target = targets["server"]
    per_user = -(-max(connections, callgrind) // bench.users) + 1
    args = [*target.args, "--max-connections-per-user", str(per_user)]
    names = ["after (this checkout)"] + ([f"before ({before_src})"] if before_src else [])
    sources = [None] + ([before_src] if before_src else [])
    out = build_dir / "callgrind.out"
    wrapper = (
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p"]
        if callgrind
        else []
    )
    result: dict = {
        "command": command,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }
    servers: list[Server] = []
    try:
        for name, source in zip(names, sources, strict=True):
            servers.append(Server(name, args, source, wrapper))
        for server in servers:
            await asyncio.to_thread(_wait_http, f"http://127.0.0.1:{server.port}/login", 300)
        await bench.log_in_all(f"http://127.0.0.1:{servers[0].port}")
        if callgrind:
            result["callgrind"] = []
            for server in servers:
                server_out = build_dir / f"callgrind.out.{server.pid}"
                measured = await _callgrind(
                    load_command, server, target.path, callgrind, bench.cookies, server_out, stacks
                )
                click.echo(json.dumps(measured), err=True)
                result["callgrind"].append(measured)
        else:
            # A warm-up round each, uncounted: first queries, imports, caches.
            for server in servers:
                await _round(load_command, server, target.path, min(200, connections), bench.cookies)
            result["rounds"] = []
            for i in range(rounds):
                for server in servers if i % 2 == 0 else servers[::-1]:
                    measured = await _round(load_command, server, target.path, connections, bench.cookies)
                    click.echo(json.dumps(measured), err=True)
                    result["rounds"].append(measured)
            result["summary"] = {name: _summary(result["rounds"], name) for name in names}
            result["syscalls"] = []
            for server in servers:
                counted = await _syscall_round(load_command, server, target.path, connections, bench.cookies)
                click.echo(json.dumps(counted), err=True)
                result["syscalls"].append(counted)
            executable = profiling.py_spy()
            if stacks is not None and executable is not None:
                result["profiles"] = []
                for i, server in enumerate(servers):
                    path = stacks / f"setup-{'after' if i == 0 else 'before'}.txt"
                    recording = profiling.Recording(executable, [server.pid], path)
                    await recording.start()
                    await asyncio.sleep(1.0)  # py-spy attached
                    client, _ = await _set_up(load_command, server, target.path, connections, bench.cookies)
                    await recording.stop()
                    _close(client)
                    await asyncio.sleep(1.0)
                    result["profiles"].append(
                        {"server": server.name, "stacks": str(path), **profiling.summarise(path)}
                    )
    finally:
        for server in servers:
            server.stop()
    result["machine"]["load_average_at_end"] = os.getloadavg()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    click.echo(f"wrote {output}", err=True)
    shutil.rmtree(build_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

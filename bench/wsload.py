"""A lean WebSocket load client: C connections, counting frames, sampling latency.

Runs as its own process (`python -m bench.wsload ...`), spreading the sockets
over `--processes` child processes, and prints one JSON line per event. It
speaks just enough RFC 6455 to receive unmasked server frames and answers
nothing but the server's pings, so that the client side costs as little CPU
as possible and the server is what gets measured.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import resource
import sys
import time
from datetime import datetime
from multiprocessing.connection import Connection

import click

_UPDATE_PREFIX = b'{"action":"metric_update",'
_BATCH_PREFIX = b'{"action":"metric_updates",'  # sockets opened with ?updates=batch
CONNECT_CONCURRENCY = 200  # sockets being opened at once, over all load processes


class Counter:
    def __init__(self, sample_every: int, initial_frames: int) -> None:
        self.initial_frames = initial_frames
        self.set_up = 0  # connections that have received their whole initial sequence
        self.all_set_up = asyncio.get_running_loop().create_future()
        self.expected = 0
        self.frames = 0
        self.updates = 0
        self.latencies: list[tuple[float, float]] = []  # (published at, seconds to arrive)
        self.sample_every = sample_every
        self.counting = False


class LoadProtocol(asyncio.Protocol):
    def __init__(self, counter: Counter, request: bytes, ready: asyncio.Future[None]) -> None:
        self.counter = counter
        self.request = request
        self.ready = ready
        self.buffer = bytearray()
        self.upgraded = False
        self.initial_left = counter.initial_frames
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed during handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[:12])
            if not status.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(bytes(buffer[: end + 4]).decode(errors="replace")))
                return
            del buffer[: end + 4]
            self.upgraded = True
            self.ready.set_result(None)
        counter = self.counter
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            opcode = buffer[offset] & 0x0F
            length = buffer[offset + 1] & 0x7F
            start = offset + 2
            if length == 126:
                if size - offset < 4:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
                start = offset + 4
            elif length == 127:
                if size - offset < 10:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
                start = offset + 10
            end = start + length
            if end > size:
                break
            if opcode == 1 and self.initial_left:
                # authentication, dashboard_config, metric_history..., alerts: set-up, not load.
                self.initial_left -= 1
                if not self.initial_left:
                    counter.set_up += 1
                    if counter.set_up == counter.expected and not counter.all_set_up.done():
                        counter.all_set_up.set_result(None)
            elif opcode == 1 and counter.counting:
                counter.frames += 1
                if buffer.startswith(_UPDATE_PREFIX, start):
                    counter.updates += 1
                    if counter.updates % counter.sample_every == 0:
                        payload = json.loads(bytes(buffer[start:end]))["payload"]
                        sent = datetime.fromisoformat(payload["timestamp"]).timestamp()
                        counter.latencies.append((sent, time.time() - sent))
                elif buffer.startswith(_BATCH_PREFIX, start):
                    for entry in json.loads(bytes(buffer[start:end]))["payload"]["updates"]:
                        for _ in entry["values"]:
                            counter.updates += 1
                            if counter.updates % counter.sample_every == 0:
                                sent = datetime.fromisoformat(entry["timestamp"]).timestamp()
                                counter.latencies.append((sent, time.time() - sent))
            elif opcode == 9 and self.transport is not None:  # ping: answer with a masked pong
                body = bytes(buffer[start:end])
                self.transport.write(bytes((0x8A, 0x80 | len(body))) + b"\0\0\0\0" + body)
            offset = end
        if offset:
            del buffer[:offset]


def upgrade_request(host: str, port: int, path: str, cookie: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nCookie: dashboard_session={cookie}\r\n\r\n"
    ).encode()


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def connect_all(
    host: str,
    port: int,
    path: str,
    cookies: list[str],
    connections: int,
    initial_frames: int,
    sample_every: int,
    concurrency: int,
) -> tuple[Counter, list[LoadProtocol]]:
    """Open the sockets; returns once every one has had its initial frames."""
    loop = asyncio.get_running_loop()
    counter = Counter(sample_every, initial_frames)
    counter.expected = connections
    if initial_frames == 0 or connections == 0:
        counter.all_set_up.set_result(None)
    protocols: list[LoadProtocol] = []
    limit = asyncio.Semaphore(concurrency)  # the server's accept backlog is finite

    async def open_one(index: int) -> None:
        async with limit:
            ready = loop.create_future()
            request = upgrade_request(host, port, path, cookies[index % len(cookies)])
            _, protocol = await loop.create_connection(
                lambda: LoadProtocol(counter, request, ready), host, port
            )
            await ready
            protocols.append(protocol)

    await asyncio.gather(*(open_one(i) for i in range(connections)))
    # Until every connection has its config and history: that is when a
    # dashboard is usable, and the server is done setting connections up.
    await counter.all_set_up
    return counter, protocols


async def _serve_share(pipe: Connection, share: dict) -> None:
    """One load process: its share of the sockets, measured on the parent's command."""
    loop = asyncio.get_running_loop()
    cpu_before = _cpu()
    started = time.perf_counter()
    counter, protocols = await connect_all(**share)
    pipe.send({"connect_seconds": time.perf_counter() - started, "client_cpu_seconds": _cpu() - cpu_before})
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command is None:
            break
        counter.frames = counter.updates = 0
        counter.latencies = []
        cpu_before = _cpu()
        counter.counting = True
        window_start = time.perf_counter()
        await asyncio.sleep(command)
        counter.counting = False
        pipe.send(
            {
                "alive": sum(1 for p in protocols if not p.closed.done()),
                "window_seconds": time.perf_counter() - window_start,
                "frames": counter.frames,
                "updates": counter.updates,
                "latencies": counter.latencies,
                "client_cpu_seconds": _cpu() - cpu_before,
            }
        )
    for protocol in protocols:
        if protocol.transport is not None:
            protocol.transport.close()


def _load_process(pipe: Connection, share: dict) -> None:
    _new_loop_policy()
    asyncio.run(_serve_share(pipe, share))


def _new_loop_policy() -> None:
    # uvloop, where installed (`pip install -e .[bench]`), makes the client's
    # share of each frame smaller, so less of the measured latency is the
    # client's own queueing. DASHBOARD_BENCH_CLIENT_LOOP=asyncio compares without it.
    if os.environ.get("DASHBOARD_BENCH_CLIENT_LOOP", "uvloop") != "uvloop":
        return
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _cpu() -> float:
    return sum(os.times()[:2])


def run(
    host: str,
    port: int,
    path: str,
    cookies: list[str],
    connections: int,
    settle: float,
    sample_every: int,
    initial_frames: int,
    processes: int,
) -> None:
    """Spread the sockets over `processes` load processes and relay the orchestrator's
    `go SECONDS` lines to them, printing their summed counts as one JSON line each.

    Several processes, so that no single client event loop is a queue in front of
    the sockets it reads: the latency measured is then the server's (the publish
    timestamp in each sampled update, to its arrival), less the client's backlog.
    """
    context = multiprocessing.get_context("fork")
    pipes, workers = [], []
    for index in range(processes):
        share = {
            "host": host, "port": port, "path": path, "cookies": cookies,
            "connections": connections // processes + (index < connections % processes),
            "initial_frames": initial_frames, "sample_every": sample_every,
            "concurrency": max(1, CONNECT_CONCURRENCY // processes),
        }  # fmt: skip
        ours, theirs = context.Pipe()
        worker = context.Process(target=_load_process, args=(theirs, share), daemon=True)
        worker.start()
        pipes.append(ours)
        workers.append(worker)
    connected = [pipe.recv() for pipe in pipes]
    time.sleep(settle)  # config and history arrive and are not counted
    _emit(
        {
            "event": "connected",
            "connect_seconds": max(c["connect_seconds"] for c in connected),
            "client_cpu_seconds": round(sum(c["client_cpu_seconds"] for c in connected), 3),
        }
    )
    # Each "go SECONDS" line from the orchestrator measures one window.
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] != "go":
            break
        for pipe in pipes:
            pipe.send(float(words[1]))
        shares = [pipe.recv() for pipe in pipes]
        samples = [sample for share in shares for sample in share["latencies"]]
        latencies = [seconds for _, seconds in samples]
        # `go SECONDS EARLY_BEFORE LATE_AFTER`: also the values published before / from then (wsload.c).
        split = [float(word) for word in words[2:4]]
        _emit(
            {
                "event": "window",
                **(
                    {
                        "early_latency_p50_ms": _ms(percentile([s for t, s in samples if t < split[0]], 0.5)),
                        "late_latency_p50_ms": _ms(percentile([s for t, s in samples if t >= split[1]], 0.5)),
                    }
                    if len(split) == 2
                    else {}
                ),
                "alive": sum(s["alive"] for s in shares),
                "window_seconds": max(s["window_seconds"] for s in shares),
                "frames": sum(s["frames"] for s in shares),
                "updates": sum(s["updates"] for s in shares),
                "latency_samples": len(latencies),
                "latency_p50_ms": _ms(percentile(latencies, 0.50)),
                "latency_p95_ms": _ms(percentile(latencies, 0.95)),
                "latency_p99_ms": _ms(percentile(latencies, 0.99)),
                "client_cpu_seconds": sum(s["client_cpu_seconds"] for s in shares),
                "client_processes": processes,
            }
        )
    for pipe in pipes:
        pipe.send(None)
    for worker in workers:
        worker.join(30)
    _emit({"event": "bye"})


def _emit(message: dict) -> None:
    print(json.dumps(message), flush=True)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


@click.command()
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=int, required=True)
@click.option("--path", required=True, help="e.g. /ws/dashboard/1/")
@click.option(
    "--cookie", "cookies", multiple=True, required=True, help="Session cookie value(s), used round-robin."
)
@click.option("--connections", type=int, required=True)
@click.option("--settle", type=float, default=2.0, help="Seconds between connecting and measuring.")
@click.option("--sample-every", type=int, default=50, help="Decode one update in N for latency.")
@click.option(
    "--initial-frames", type=int, default=0, help="Frames each connection gets before live updates."
)
@click.option("--processes", type=int, default=1, help="Load processes sharing the connections.")
def main(
    host: str,
    port: int,
    path: str,
    cookies: tuple[str, ...],
    connections: int,
    settle: float,
    sample_every: int,
    initial_frames: int,
    processes: int,
) -> None:
    """Open CONNECTIONS sockets; then, for each `go SECONDS` line on stdin, count
    what arrives for that long and print it as JSON. Any other line ends it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    run(host, port, path, list(cookies), connections, settle, sample_every, initial_frames, processes)


if __name__ == "__main__":
    main()

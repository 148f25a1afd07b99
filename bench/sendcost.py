"""What one send() to a loopback socket costs on this machine: the floor under the fan-out's latency.

    python -m bench.sendcost --sockets 5000 --rounds 20 --bytes 250 --output bench/results/sendcost.json

One tick reaches every socket with one write each, so a process's last socket
gets it at least sockets times the cost of one send after its first. This times a
bare loop of `socket.send` over N connected loopback sockets, with no server
around it: one round is one send to each socket (a tick), a reader process
drains the other ends meanwhile (as the load client does), and rounds are
spaced so that each starts with the reader idle, as at 1 tick/s. Reported per
send: CPU microseconds of the sending process, user and system, and wall
microseconds; per round: the wall time of N sends. On loopback a send also does
the receiving side's TCP work and wakes the reader, in the sender's time.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click


def _read(port: int, sockets: int, asleep: bool) -> None:
    """The reader: open `sockets` connections to the port, then drain them until all
    close; `asleep`: read nothing until then (no wake-ups, the data waits in the buffers)."""
    selector = selectors.DefaultSelector()
    connections = []
    for _ in range(sockets):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.setblocking(False)
        selector.register(conn, selectors.EVENT_READ)
        connections.append(conn)
    print("connected", flush=True)
    if asleep:
        sys.stdin.readline()
    open_count = sockets
    while open_count:
        for key, _ in selector.select():
            try:
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            if not data:
                selector.unregister(key.fileobj)
                key.fileobj.close()
                open_count -= 1


def measure(sockets: int, rounds: int, size: int, gap: float, reader_asleep: bool = False) -> dict:
    listener = socket.create_server(("127.0.0.1", 0), backlog=sockets)
    port = listener.getsockname()[1]
    reader = subprocess.Popen(
        [sys.executable, "-m", "bench.sendcost", "--read", str(port), "--sockets", str(sockets)]
        + (["--reader-asleep"] if reader_asleep else []),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        accepted = []
        for _ in range(sockets):
            conn, _ = listener.accept()
            # As asyncio's transports do: each write goes out at once.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.setblocking(False)
            accepted.append(conn)
        assert reader.stdout is not None
        reader.stdout.readline()
        payload = b"x" * size
        per_round = []
        for _ in range(rounds):
            time.sleep(gap)
            before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            for conn in accepted:
                conn.send(payload)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
            per_round.append((after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, wall))
        assert reader.stdin is not None
        reader.stdin.write("drain\n")
        reader.stdin.flush()
        for conn in accepted:
            conn.close()
        reader.wait(60)
    finally:
        if reader.poll() is None:
            reader.kill()
        listener.close()

    def median_us(index: int) -> float:
        return round(statistics.median(r[index] for r in per_round) / sockets * 1e6, 2)

    return {
        "sockets": sockets,
        "rounds": rounds,
        "bytes_per_send": size,
        "reader_asleep": reader_asleep,
        "user_us_per_send": median_us(0),
        "system_us_per_send": median_us(1),
        "wall_us_per_send": median_us(2),
        "round_wall_ms": round(statistics.median(r[2] for r in per_round) * 1000, 2),
        "load_average": os.getloadavg()[0],
    }


@click.command()
@click.option("--sockets", type=int, default=5000, show_default=True, help="Sockets written per round.")
@click.option("--rounds", type=int, default=20, show_default=True)
@click.option(
    "--bytes",
    "size",
    type=int,
    default=250,
    show_default=True,
    help="Bytes per send (a batched tick of 10 values).",
)
@click.option("--gap", type=float, default=0.3, show_default=True, help="Seconds between rounds.")
@click.option(
    "--reader-asleep",
    is_flag=True,
    help="The reader reads nothing until the end: sends that wake no one (rounds x bytes must fit a socket's buffer).",
)
@click.option("--output", type=click.Path(path_type=Path), help="Also write the result here as JSON.")
@click.option("--read", type=int, hidden=True, help="Run as the reader, connecting to this port.")
def main(
    sockets: int,
    rounds: int,
    size: int,
    gap: float,
    reader_asleep: bool,
    output: Path | None,
    read: int | None,
) -> None:
    """Time one send() per socket over many loopback sockets, as one tick's fan-out does."""
    if read is not None:
        _read(read, sockets, reader_asleep)
        return
    result = {
        "command": "python -m bench.sendcost " + " ".join(sys.argv[1:]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        **measure(sockets, rounds, size, gap, reader_asleep),
    }
    text = json.dumps(result, indent=2)
    click.echo(text)
    if output is not None:
        output.write_text(text + "\n")


if __name__ == "__main__":
    main()

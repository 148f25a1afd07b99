"""Where a server process spends its time: py-spy samples, summed by function.

`python -m bench` records the server at the half-saturation rate in a window
of its own (after the measured one, so sampling does not touch the figures
reported for it) and keeps the collapsed stacks beside the results JSON
(bench/results/latest-profiles/ for latest.json),
one line per stack, for flame graph tools (speedscope, flamegraph.pl) to draw.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path

SAMPLES_PER_SECOND = 200
TOP = 12
# What a sample was doing, by the first of these found on its stack (innermost
# frames are last, so more specific markers come first).
CATEGORIES = (
    ("writing to sockets (send system calls)", ("_SelectorSocketTransport.write", "ClientConnection.flush")),
    ("encoding update frames", ("from_events", "Update.frame", "batch_frame", "text_frame")),
    ("decoding Redis messages", ("decode_dashboard_event",)),
    ("handing updates to connections", ("Hub._deliver_pending", "FlushQueue")),
    ("reading Redis (redis-py)", ("Hub.run",)),
)


def py_spy() -> str | None:
    """The py-spy executable (the bench extra installs it next to this Python), or None."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


async def record(executable: str, pids: list[int], seconds: float, output: Path) -> None:
    """Sample every process in `pids` for `seconds`; collapsed stacks of all go to `output`."""
    output.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    for pid in pids:
        part = output.with_suffix(f".{pid}.txt")
        process = await asyncio.create_subprocess_exec(
            executable, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
            "--rate", str(SAMPLES_PER_SECOND), "--format", "raw", "--nonblocking",
            "--output", str(part),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        parts.append((process, part))
    stacks: Counter[str] = Counter()
    for process, part in parts:
        _, stderr = await process.communicate()
        if process.returncode != 0 or not part.exists():
            raise RuntimeError(f"py-spy failed: {stderr.decode(errors='replace').strip()}")
        stacks.update(_read(part))
        part.unlink()
    output.write_text("".join(f"{stack} {count}\n" for stack, count in stacks.most_common()))


class Recording:
    """py-spy sampling `pids` from `start()` until `stop()` (for a phase of unknown
    length, such as all sockets being set up); collapsed stacks of all go to `output`."""

    def __init__(self, executable: str, pids: list[int], output: Path) -> None:
        self._executable = executable
        self._pids = pids
        self._output = output
        self._parts: list[tuple[asyncio.subprocess.Process, Path]] = []

    async def start(self) -> None:
        self._output.parent.mkdir(parents=True, exist_ok=True)
        for pid in self._pids:
            part = self._output.with_suffix(f".{pid}.txt")
            process = await asyncio.create_subprocess_exec(
                self._executable, "record", "--pid", str(pid), "--rate", str(SAMPLES_PER_SECOND),
                "--format", "raw", "--nonblocking", "--output", str(part),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            self._parts.append((process, part))

    async def stop(self) -> None:
        stacks: Counter[str] = Counter()
        for process, part in self._parts:
            # py-spy writes what it sampled when interrupted.
            process.send_signal(signal.SIGINT)
            await process.communicate()
            if part.exists():
                stacks.update(_read(part))
                part.unlink()
        self._output.write_text("".join(f"{stack} {count}\n" for stack, count in stacks.most_common()))


def _read(path: Path) -> Counter[str]:
    stacks: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def summarise(path: Path) -> dict:
    """Self and inclusive shares of the busiest functions, from collapsed stacks.

    Self: the sample's innermost Python function (time in C code it called,
    system calls included, counts for it). Inclusive: samples with the function
    anywhere on the stack."""
    stacks = _read(path)
    total = sum(stacks.values())
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        kinds[_category(frames)] += count
        # The innermost frame is last; its line says which call the time went to.
        own[_function(frames[-1], line=True)] += count
        for function in {_function(frame) for frame in frames}:
            anywhere[function] += count

    def share(count: int) -> float:
        return round(count / total, 3) if total else 0.0

    return {
        "samples": total,
        "categories": [{"category": c, "share": share(n)} for c, n in kinds.most_common()],
        "self": [{"function": f, "share": share(c)} for f, c in own.most_common(TOP)],
        "inclusive": [{"function": f, "share": share(c)} for f, c in anywhere.most_common(TOP * 2)],
    }


def _category(frames: list[str]) -> str:
    names = [frame.partition(" (")[0] for frame in frames]
    for label, markers in CATEGORIES:
        if any(name.startswith(marker) for name in names for marker in markers):
            return label
    return "everything else (event loop, timers, other requests)"


def _function(frame: str, line: bool = False) -> str:
    """`flush (/…/server/live/connection.py:190)` → `flush (server/live/connection.py)`, or with the
    line kept: inclusive time is per function, self time per line (which call it went to)."""
    name, _, where = frame.partition(" (")
    if not where:
        return frame
    file, _, number = where.rstrip(")").rpartition(":")
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    else:
        for root in ("/server/", "/common/", "/bench/"):
            if root in file:
                file = root.strip("/") + "/" + file.split(root, 1)[1]
                break
    return f"{name} ({file}:{number})" if line and number else f"{name} ({file})"

"""CPU seconds and resident memory of a process tree, read from /proc."""

from __future__ import annotations

import os

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes."""
    return sum(cpu_split(pids))


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * _PAGE
        except OSError:
            continue
    return total


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by these processes: system time is
    the kernel working for them, mostly copying what they write to sockets."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / _TICKS, system / _TICKS


def named(name: str) -> list[int]:
    """Processes whose command name is `name` (e.g. every redis-server on the machine)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == name:
                        found.append(int(entry))
            except OSError:
                continue
    return found


# /proc/stat's columns after "cpu", grouped the way a reader asks "where did the CPUs go".
_MACHINE_COLUMNS = {
    "user": (0, 1),  # user, nice
    "system": (2,),
    "interrupts": (5, 6),  # irq, softirq: on loopback, much of the receiving side's work
    "idle": (3, 4),  # idle, iowait
    "steal": (7,),  # taken by the hypervisor
}


def machine_cpu() -> dict[str, float]:
    """CPU seconds of the whole machine so far, all CPUs summed, by kind."""
    with open("/proc/stat") as f:
        columns = [int(value) for value in f.readline().split()[1:]]
    return {
        kind: sum(columns[i] for i in indexes if i < len(columns)) / _TICKS
        for kind, indexes in _MACHINE_COLUMNS.items()
    }

"""The sources a metric's values can come from, shared by the CLI (to check a
choice) and the worker (to produce values; worker/sources.py reads them).

`random` is the demo generator. `system:<reading>` is a reading of the host
the worker runs on, through psutil. Counter readings only ever grow; gauge
readings can also feed a histogram (the distribution of the readings).
"""

from __future__ import annotations

from dataclasses import dataclass

RANDOM = "random"
SYSTEM_PREFIX = "system:"


@dataclass(frozen=True)
class SystemReading:
    metric_type: str  # "gauge" or "counter": what the reading is by nature
    unit: str
    description: str


SYSTEM_READINGS: dict[str, SystemReading] = {
    "cpu_percent": SystemReading("gauge", "%", "CPU utilisation since the previous tick"),
    "memory_used": SystemReading("gauge", "bytes", "Memory in use"),
    "memory_percent": SystemReading("gauge", "%", "Memory in use, of the total"),
    "load1": SystemReading("gauge", "", "Load average over 1 minute"),
    "load5": SystemReading("gauge", "", "Load average over 5 minutes"),
    "load15": SystemReading("gauge", "", "Load average over 15 minutes"),
    "net_bytes_sent": SystemReading("counter", "bytes", "Bytes sent on every network interface"),
    "net_bytes_recv": SystemReading("counter", "bytes", "Bytes received on every network interface"),
    "disk_read_bytes": SystemReading("counter", "bytes", "Bytes read from every disk"),
    "disk_write_bytes": SystemReading("counter", "bytes", "Bytes written to every disk"),
}

SOURCES = (RANDOM, *(SYSTEM_PREFIX + name for name in SYSTEM_READINGS))


def system_reading(source: str) -> SystemReading | None:
    """The reading a `system:` source names; None for `random`."""
    if source == RANDOM:
        return None
    return SYSTEM_READINGS[source.removeprefix(SYSTEM_PREFIX)]


def check_source(source: str, metric_type: str) -> None:
    """Raise ValueError, saying what would do, unless `source` can feed a metric of `metric_type`."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of: {', '.join(SOURCES)}")
    reading = system_reading(source)
    if reading is None:
        return
    allowed = ("counter",) if reading.metric_type == "counter" else ("gauge", "histogram")
    if metric_type not in allowed:
        raise ValueError(
            f"{source} is a {reading.metric_type}: it can feed a metric of type {' or '.join(allowed)},"
            f" not {metric_type}"
        )

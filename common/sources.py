"""The sources a metric's values can come from, defined once for the data
layer, the schemas, the CLI, the page and the worker (worker/sources.py
produces the generated ones).

`push` (the default) is the push API: programs send the values, the worker
never writes any, so real data is never mixed with generated data. `random`
is the demo generator, an explicit choice. `system:<reading>` is a reading of
the host the worker runs on, through psutil. Counter readings only ever grow;
gauge readings can also feed a histogram (the distribution of the readings).
"""

from __future__ import annotations

from dataclasses import dataclass

PUSH = "push"
RANDOM = "random"
SYSTEM_PREFIX = "system:"
# What a metric gets when no source is chosen: nothing invented.
DEFAULT_SOURCE = PUSH


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

SOURCES = (PUSH, RANDOM, *(SYSTEM_PREFIX + name for name in SYSTEM_READINGS))
# One line each for lists of choices (CLI, page) beside the readings' own descriptions.
SOURCE_DESCRIPTIONS = {
    PUSH: "Values pushed to the HTTP API; the worker writes none",
    RANDOM: "Random demo values shaped by the metric's type",
}


def system_reading(source: str) -> SystemReading | None:
    """The reading a `system:` source names; None for `push` and `random`."""
    if not source.startswith(SYSTEM_PREFIX):
        return None
    return SYSTEM_READINGS[source.removeprefix(SYSTEM_PREFIX)]


def is_generated(source: str) -> bool:
    """Whether the worker produces this source's values (every source but `push`)."""
    return source != PUSH


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

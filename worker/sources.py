"""Where generated metric values come from: the random demo generator, or this
host's readings through psutil (the catalogue is common/sources.py). Pushed
metrics get nothing here."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence

import psutil

from common.db import Metric
from common.sources import RANDOM, SYSTEM_PREFIX, is_generated

log = logging.getLogger(__name__)


def next_value(metric_type: str, previous: float | None, rng: random.Random, unit: str = "") -> float:
    """The next demo value of a metric given its last one, plausible for its type and unit:
    counters grow by whole events (errors far slower than requests), gauges wander from
    their last value, histograms are log-normal (a latency is never negative)."""
    factor = BYTE_FACTORS.get(unit)
    if metric_type == "counter":
        # Whole events even where an older version left a fraction: never a decrease.
        return math.ceil(previous or 0.0) + _counter_step(unit, factor, rng)
    if metric_type == "gauge":
        return _wander(unit, factor, previous, rng)
    if metric_type == "histogram":
        median, spread = HISTOGRAM_SHAPES.get(unit, (50.0, 0.4))
        if factor is not None:
            median, spread = 4096 / factor, 1.0  # request bodies: 4 KiB typical, some far larger
        return rng.lognormvariate(math.log(median), spread)
    raise ValueError(f"unknown metric type {metric_type!r}")


# Units of byte counts, in bytes.
BYTE_FACTORS = {"bytes": 1, "B": 1, "KB": 1024, "KiB": 1024, "MB": 1024**2, "MiB": 1024**2}
# A histogram's (median, log-normal sigma) by unit: latencies around 40 ms.
HISTOGRAM_SHAPES = {"ms": (40.0, 0.5), "s": (0.04, 0.5)}
REQUESTS_PER_TICK = (3, 8)  # a demo counter's step, uniform: about 5.5 a tick
ERROR_UNITS = ("err", "errors")
ERROR_SHARE = 0.01  # of requests: a demo error counter grows about this much slower


def _counter_step(unit: str, factor: int | None, rng: random.Random) -> int:
    if unit in ERROR_UNITS:
        return 1 if rng.random() < sum(REQUESTS_PER_TICK) / 2 * ERROR_SHARE else 0
    requests = rng.randint(*REQUESTS_PER_TICK)
    if factor is not None:  # the bytes of as many responses, about 4 KiB each
        return max(1, round(requests * rng.lognormvariate(math.log(4096), 1.0) / factor))
    return requests


def _wander(unit: str, factor: int | None, previous: float | None, rng: random.Random) -> float:
    if unit == "%":
        return min(100.0, max(0.0, rng.uniform(20, 60) if previous is None else previous + rng.gauss(0, 2)))
    if factor is not None:  # memory: about 512 MiB, drifting by a fraction of a percent
        start = 512 * 1024**2 / factor
        return max(0.0, start if previous is None else previous * (1 + rng.gauss(0, 0.003)))
    # Anything counted (jobs waiting): whole numbers, never below zero.
    return float(rng.randint(0, 20) if previous is None else max(0, round(previous + rng.gauss(0, 2))))


def _disk(field: str) -> float | None:
    counters = psutil.disk_io_counters()
    # None where the kernel shows no disks (some containers).
    return None if counters is None else float(getattr(counters, field))


READERS: dict[str, Callable[[], float | None]] = {
    # interval=None: utilisation since the previous call, i.e. over the last tick.
    "cpu_percent": lambda: psutil.cpu_percent(interval=None),
    "memory_used": lambda: float(psutil.virtual_memory().used),
    "memory_percent": lambda: psutil.virtual_memory().percent,
    "load1": lambda: psutil.getloadavg()[0],
    "load5": lambda: psutil.getloadavg()[1],
    "load15": lambda: psutil.getloadavg()[2],
    "net_bytes_sent": lambda: float(psutil.net_io_counters().bytes_sent),
    "net_bytes_recv": lambda: float(psutil.net_io_counters().bytes_recv),
    "disk_read_bytes": lambda: _disk("read_bytes"),
    "disk_write_bytes": lambda: _disk("write_bytes"),
}


class Sources:
    """Produces each tick's values, reading each system value once per tick."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        # The raw counter reading of the previous tick, per metric: stored
        # values grow by the difference, so they stay monotonic across resets.
        self._raw: dict[int, float] = {}
        self._missing: set[str] = set()
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement

    def produce(self, metrics: Sequence[Metric], last: dict[int, float]) -> dict[int, float]:
        """metric id -> its next value; pushed metrics and unavailable readings are left out."""
        readings: dict[str, float | None] = {}
        values: dict[int, float] = {}
        for metric in metrics:
            if not is_generated(metric.source):
                continue
            if metric.source == RANDOM:
                values[metric.id] = next_value(metric.type, last.get(metric.id), self._rng, metric.unit)
                continue
            name = metric.source.removeprefix(SYSTEM_PREFIX)
            if name not in readings:
                readings[name] = self._read(name)
            raw = readings[name]
            if raw is None:
                continue
            if metric.type == "counter":
                values[metric.id] = self._counter(metric.id, raw, last.get(metric.id))
            else:
                values[metric.id] = raw
        return values

    def _read(self, name: str) -> float | None:
        reader = READERS.get(name)
        value = reader() if reader else None
        if value is None and name not in self._missing:
            self._missing.add(name)
            log.warning("system reading %s is not available on this host; its metrics get no values", name)
        return value

    def _counter(self, metric_id: int, raw: float, previous: float | None) -> float:
        last_raw = self._raw.get(metric_id)
        self._raw[metric_id] = raw
        if previous is None:
            return raw
        if last_raw is None:
            # First reading since the worker started: continue from the stored
            # value, never below it (the host may have rebooted meanwhile).
            return max(previous, raw)
        # A reading below the last one means the kernel's counter restarted.
        return previous + (raw - last_raw if raw >= last_raw else raw)

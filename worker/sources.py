"""Where metric values come from. For now: random values shaped by metric type."""

from __future__ import annotations

import random


def next_value(metric_type: str, previous: float | None, rng: random.Random) -> float:
    """The next value of a metric given its last one (counters only ever grow)."""
    if metric_type == "counter":
        return (previous or 0.0) + rng.uniform(1, 10)
    if metric_type == "gauge":
        return rng.uniform(10, 100)
    if metric_type == "histogram":
        return rng.normalvariate(50, 15)
    raise ValueError(f"unknown metric type {metric_type!r}")

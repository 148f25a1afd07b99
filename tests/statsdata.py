"""Shared number generators for the statistics tests: synthetic data with known answers."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

from common import stats
from common.schemas import RANGES

RATE = 5.4  # the synthetic counter's, per second


def exact_percentile(values: list[float], percentile: float) -> float:
    """From the raw values themselves (no sketch, no numpy), with the rank common/stats.py uses."""
    ordered = sorted(values)
    return ordered[stats.rank_of(percentile, len(ordered))]


def latencies(now: datetime) -> list[tuple[datetime, float]]:
    """Eight days of log-normal latencies whose median drifts with age (each range has
    its own distribution): one every ~20 s, every ~2 s in the last hour."""
    rng = random.Random(15)
    rows = []
    age = 8 * 86400.0
    while age > 5:
        ts = now - timedelta(seconds=age)
        if _clear_of_range_starts(ts, now):
            median_ms = 20 + 12 * age / 86400
            rows.append((ts, rng.lognormvariate(math.log(median_ms), 0.6)))
        age -= rng.uniform(1, 3) if age < 3600 else rng.uniform(10, 30)
    return rows


def in_range(rows: list[tuple[datetime, float]], now: datetime, range_name: str) -> list[float]:
    since = now - timedelta(seconds=RANGES[range_name])
    return [value for ts, value in rows if ts >= since]


def counter_rows(now: datetime) -> tuple[list[tuple[datetime, float]], datetime]:
    """A counter counting RATE per second for eight days, one value every ~10 s,
    restarted from zero three and a half days ago."""
    rng = random.Random(7)
    start = now - timedelta(days=8)
    reset = now - timedelta(days=3.5)
    rows = []
    age = 8 * 86400.0
    while age > 2:
        ts = now - timedelta(seconds=age)
        counted_from = start if ts < reset else reset
        rows.append((ts, float(math.floor(RATE * (ts - counted_from).total_seconds()))))
        age -= rng.uniform(8, 12)
    return rows, reset


def _clear_of_range_starts(ts: datetime, now: datetime) -> bool:
    return all(abs(ts - (now - timedelta(seconds=s))) > MARGIN for s in RANGES.values())


# The data lies this far from each range's start, so that a range read a few
# seconds after `now` holds the same values as the one computed here.
MARGIN = timedelta(seconds=90)

"""Statistics of a range that stay true whatever the range: pure, no I/O.

Counters: the increase between consecutive values, a decrease being a reset
after which the counter counted up from zero (Prometheus `rate()`); the rate
is that increase over the time between the first and the last value.

Distributions: a mergeable log-scale sketch (DDSketch, VLDB 2019). A value x
with |x| >= MIN_MAGNITUDE falls in the key k with gamma^(k-1) < |x| <= gamma^k
(shifted by KEY_OFFSET so that keys start at 1, negated for negative values;
smaller magnitudes share key 0). Counting values per key loses nothing that
merging needs: the counts of two sketches add up key by key, and a percentile
read from them is within RELATIVE_ERROR of the true one. The SQL that keys
values in the database (common/db/rollups.py) is written from these numbers.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

RELATIVE_ERROR = 0.01
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
LN_GAMMA = math.log(GAMMA)
# Smaller magnitudes count as zero: far below any unit's resolution.
MIN_MAGNITUDE = 1e-9
KEY_OFFSET = 1 - math.ceil(math.log(MIN_MAGNITUDE) / LN_GAMMA)
# The largest finite float: an infinite value counts at it.
MAX_MAGNITUDE = sys.float_info.max
# The percentiles a histogram's card shows.
PERCENTILES = (50, 95, 99)


def sketch_key(value: float) -> int:
    """The sketch key `value` is counted under."""
    magnitude = abs(value)
    if magnitude < MIN_MAGNITUDE:
        return 0
    key = math.ceil(math.log(min(magnitude, MAX_MAGNITUDE)) / LN_GAMMA) + KEY_OFFSET
    return key if value > 0 else -key


def key_value(key: int) -> float:
    """The value a key stands for: within RELATIVE_ERROR of every value counted under it."""
    if key == 0:
        return 0.0
    magnitude = 2 * GAMMA ** (abs(key) - KEY_OFFSET) / (GAMMA + 1)
    return magnitude if key > 0 else -magnitude


def make_sketch(values: Iterable[float]) -> dict[int, int]:
    """{key: count} of the values."""
    sketch: dict[int, int] = {}
    for value in values:
        key = sketch_key(value)
        sketch[key] = sketch.get(key, 0) + 1
    return sketch


def rank_of(percentile: float, count: int) -> int:
    """The 0-based rank, in sorted order, of the value a percentile names (the lower one
    of the two around it): exact percentiles and sketches agree on this definition."""
    return math.floor(percentile / 100 * (count - 1))


def sketch_percentile(sketch: Mapping[int, int], percentile: float, low: float, high: float) -> float | None:
    """The percentile of the values counted in `sketch`, within RELATIVE_ERROR; `low` and
    `high` are their exact min and max (the answer is kept between them). None if empty."""
    total = sum(sketch.values())
    if not total:
        return None
    rank = rank_of(percentile, total)
    seen = 0
    for key in sorted(sketch):
        seen += sketch[key]
        if seen > rank:
            return min(max(key_value(key), low), high)
    return high  # not reached: the counts add up to the total


def sketch_message(sketch: Mapping[int, int]) -> dict[str, Any]:
    """A sketch as the protocol sends it: what a client needs to key its own values alike."""
    return {
        "relative_error": RELATIVE_ERROR,
        "gamma": GAMMA,
        "key_offset": KEY_OFFSET,
        "min_magnitude": MIN_MAGNITUDE,
        "bins": [[key, sketch[key]] for key in sorted(sketch)],
    }


def rise(previous: float | None, value: float) -> float:
    """A counter's increase from `previous` to `value`: a decrease is a reset, after
    which the counter counted `value` from zero."""
    if previous is None:
        return 0.0
    return value - previous if value >= previous else value


def counter_increase(values: Iterable[float]) -> float:
    """The increase of a counter over its consecutive values, resets included."""
    total = 0.0
    previous = None
    for value in values:
        total += rise(previous, value)
        previous = value
    return total


@dataclass(frozen=True)
class CounterSummary:
    """A counter over a range: its increase from the first to the last value in it."""

    first_ts: datetime
    last_ts: datetime
    last_value: float
    increase: float

    @property
    def rate(self) -> float | None:
        """Per second between the first and the last value; None with no time between them."""
        seconds = (self.last_ts - self.first_ts).total_seconds()
        return self.increase / seconds if seconds > 0 else None

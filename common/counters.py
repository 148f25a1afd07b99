"""Counters never decrease: where pushed values would break that.

Pure: the data layer (common/db/values.py) calls it with the counter's rows
locked, so the check and the insert are one step.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Decrease:
    """A pushed value that would make its counter decrease in time order."""

    index: int  # its position among the pushed rows
    metric_id: int
    value: float
    # The value it conflicts with: an earlier, larger one, or (`later`) a
    # stored later one that it exceeds.
    neighbour: float
    later: bool = False


def find_decreases(
    metric_id: int,
    stored: Sequence[tuple[datetime, int, float]],
    pushed: Sequence[tuple[int, datetime, float]],
) -> list[Decrease]:
    """The pushed (index, ts, value) values of one counter that would break its
    order among its stored (ts, id, value) neighbours.

    Stored rows must include the last one before the earliest pushed value, all
    of those in the pushed span and the first one after it. A pushed value goes
    after stored values of the same timestamp (it gets a larger id), and pushed
    values of one timestamp keep their order.
    """
    merged = sorted(
        [((ts, 0, value_id), value, None) for ts, value_id, value in stored]
        + [((ts, 1, index), value, index) for index, ts, value in pushed],
        key=lambda item: item[0],
    )
    found = []
    for (_, before, before_index), (_, after, after_index) in itertools.pairwise(merged):
        if after >= before:
            continue
        if after_index is not None:
            found.append(Decrease(after_index, metric_id, after, before))
        elif before_index is not None:
            found.append(Decrease(before_index, metric_id, before, after, later=True))
    return found

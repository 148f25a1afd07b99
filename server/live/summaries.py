"""The `summary` of a range in a `metric_history` answering `history`.

What a card states about the whole range, computed here so that it is the
same on every range (common/stats.py): a counter's increase and rate, a
histogram's percentiles and the sketch they come from, which a page extends
with later values. docs/protocol.md, "Ranges", describes the fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from common import stats
from common.db import Bucket, Metric, MetricValue


def raw_summary(metric: Metric, values: Sequence[MetricValue]) -> dict[str, Any]:
    """The summary of a range sent as its raw values (oldest first)."""
    if not values:
        return {"count": 0}
    counter = stats.CounterSummary(
        values[0].ts, values[-1].ts, values[-1].value, stats.counter_increase(v.value for v in values)
    )
    numbers = [v.value for v in values]
    return _summary(metric, len(values), counter, stats.make_sketch(numbers), min(numbers), max(numbers))


def bucket_summary(metric: Metric, buckets: Sequence[Bucket], sketch: Mapping[int, int]) -> dict[str, Any]:
    """The summary of a range sent as buckets (oldest first); `sketch`: its values' distribution."""
    if not buckets:
        return {"count": 0}
    counter = stats.CounterSummary(
        buckets[0].first_ts, buckets[-1].last_ts, buckets[-1].last, sum(b.increase for b in buckets)
    )
    count = sum(b.count for b in buckets)
    return _summary(metric, count, counter, sketch, min(b.min for b in buckets), max(b.max for b in buckets))


def _summary(
    metric: Metric,
    count: int,
    counter: stats.CounterSummary,
    sketch: Mapping[int, int],
    low: float,
    high: float,
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "count": count,
        "first_timestamp": counter.first_ts.isoformat(),
        "last_timestamp": counter.last_ts.isoformat(),
    }
    if metric.type == "counter":
        summary.update(increase=counter.increase, rate=counter.rate, last_value=counter.last_value)
    elif metric.type == "histogram":
        for p in stats.PERCENTILES:
            summary[f"p{p}"] = stats.sketch_percentile(sketch, p, low, high)
        summary["sketch"] = stats.sketch_message(sketch)
    return summary

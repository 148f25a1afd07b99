"""Redis channel names and the format of what the worker publishes on them.

The worker publishes one message per dashboard per tick, after the values are
committed to PostgreSQL, on that dashboard's channel. Each server process
subscribes to the channels of the dashboards its connections watch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from common.db import Metric, MetricValue

EVENT_VERSION = 1


def dashboard_channel(dashboard_id: int) -> str:
    """The channel carrying new values of one dashboard's metrics."""
    return f"dashboard:{dashboard_id}:values"


@dataclass(frozen=True)
class ValueEvent:
    """One stored value, with what a client needs to show it."""

    id: int
    metric_id: int
    metric_name: str
    unit: str
    value: float
    timestamp: str  # ISO 8601 with time zone


_VALUE_FIELDS = tuple(ValueEvent.__dataclass_fields__)


def encode_values(dashboard_id: int, values: Iterable[tuple[Metric, MetricValue]]) -> str:
    """The message published for a batch of committed values of one dashboard."""
    return json.dumps(
        {
            "v": EVENT_VERSION,
            "dashboard_id": dashboard_id,
            "values": [
                {
                    "id": stored.id,
                    "metric_id": metric.id,
                    "metric_name": metric.name,
                    "unit": metric.unit,
                    "value": stored.value,
                    "timestamp": stored.ts.isoformat(),
                }
                for metric, stored in values
            ],
        },
        separators=(",", ":"),
    )


def decode_values(data: bytes | str) -> tuple[int, list[ValueEvent]]:
    """(dashboard_id, values) of a published message; ValueError if malformed."""
    try:
        message = json.loads(data)
        if message.get("v") != EVENT_VERSION:
            raise ValueError(f"unsupported event version {message.get('v')!r}")
        return int(message["dashboard_id"]), [
            # Fields added by a newer worker are ignored, so the format can grow.
            ValueEvent(**{name: item[name] for name in _VALUE_FIELDS})
            for item in message["values"]
        ]
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed values event: {exc}") from None

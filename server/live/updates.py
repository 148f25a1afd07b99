"""Live values as finished frames, shared by every connection they go to.

Two forms (docs/protocol.md):
* `metric_update`, one message per value: the protocol's default. Its frame is
  built once per value, the first time a socket of that form needs it.
* `metric_updates`, the values a connection is due in one event-loop turn in
  one message, for clients that connect with `?updates=batch`. It leaves out
  what `dashboard_config` already says (name, unit) and writes a tick's
  timestamp once, so ten values of one tick are about a sixth of the bytes.
  Its frame is built once per loop turn for each set of subscribed metrics.

Bytes are what a busy server spends its time on: writing to sockets (the
kernel's copying) is most of its CPU under load (bench/RESULTS.md, profile).
"""

from __future__ import annotations

import json
import math

from common.events import ValueEvent
from common.schemas import encode_message
from server.live.frames import text_frame, text_frame_bytes

_BATCH_OPEN = b'{"action":"metric_updates","payload":{"updates":['
_BATCH_CLOSE = b"]}]}}"


class Update:
    """A live value as the hub hands it over, encoded in both forms.

    Its `metric_update` frame is built when first asked for: where every socket
    takes batches (the dashboard page does), it never is."""

    __slots__ = ("_event", "_frame", "item", "metric_id", "timestamp", "value_id")

    def __init__(self, event: ValueEvent, timestamp: bytes) -> None:
        self.metric_id = event.metric_id
        self.value_id = event.id
        self.timestamp = timestamp  # the value's timestamp as a JSON string, quotes included
        # `[metric_id,id,value]`, its entry in a `metric_updates` message. A finite
        # float's repr is its JSON; anything else (a malformed event) is refused
        # here rather than sent as text no client can parse.
        value = float(event.value)
        if not math.isfinite(value):
            raise ValueError(f"value {value} of metric {event.metric_id} is not a finite number")
        self.item = f"[{int(event.metric_id)},{int(event.id)},{value!r}]".encode()
        self._event: ValueEvent | None = event
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        """The whole `metric_update` frame."""
        if self._frame is None:
            event = self._event
            assert event is not None
            payload = {
                "metric_id": event.metric_id,
                "value": event.value,
                "timestamp": event.timestamp,
                "metric_name": event.metric_name,
                "unit": event.unit,
                "id": event.id,
            }
            self._frame = text_frame(encode_message("metric_update", payload))
            self._event = None
        return self._frame


def from_events(events: list[ValueEvent]) -> list[Update]:
    """The updates of one published message (a tick's values share a timestamp,
    encoded once for all of them); ValueError if a value is not a finite number."""
    updates = []
    last: tuple[str, bytes] = ("", b"")
    for event in events:
        if event.timestamp != last[0]:
            last = (event.timestamp, json.dumps(event.timestamp).encode())
        updates.append(Update(event, last[1]))
    return updates


def batch_frame(updates: list[Update]) -> bytes:
    """One `metric_updates` frame carrying `updates` (at least one), in order:
    consecutive values with the same timestamp (a tick's) share one entry."""
    parts = [_BATCH_OPEN]
    timestamp = None
    for update in updates:
        if update.timestamp != timestamp:
            if timestamp is not None:
                parts.append(b"]},")
            timestamp = update.timestamp
            parts += (b'{"timestamp":', timestamp, b',"values":[', update.item)
        else:
            parts += (b",", update.item)
    parts.append(_BATCH_CLOSE)
    return text_frame_bytes(b"".join(parts))

"""When the garbage collector may walk everything: not while sockets stream.

A full collection walks every object the process tracks and stops every
socket meanwhile: at 5,000 sockets 50-200 ms, the tail latency of the whole
process (bench/RESULTS.md). Most of those objects are the sockets' own,
made once at set-up and kept as long as the socket lives. So:

- after start-up (server/running.py) and again after each burst of socket
  set-ups, once no new socket came for `QUIET_SECONDS`, the young objects are
  collected and everything left is frozen (`gc.freeze`): full collections
  skip it from then on, and the next one starts counting from a small heap;
- frozen objects that become garbage in reference cycles are not freed
  until unfrozen: once as many sockets closed since the last freeze as a
  quarter of those frozen (at least `MIN_CHURN`), the next quiet moment
  unfreezes, collects everything once, and freezes again;
- the youngest generation is collected every `YOUNG_THRESHOLD` allocations
  instead of 700, so that a fan-out's short-lived objects die young instead
  of being promoted and piling up towards a full collection.
"""

from __future__ import annotations

import asyncio
import gc
import logging

from server.live.hub import Hub

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
QUIET_SECONDS = 1.0  # no new socket for this long: the burst is over
MIN_NEW = 200  # sockets set up since the last freeze before freezing again
MIN_CHURN = 1_000  # closed sockets that make a full collection worth its pause
YOUNG_THRESHOLD = 20_000
# Python's defaults for the older generations.
MIDDLE_THRESHOLD = 10
OLD_THRESHOLD = 10


def tune() -> None:
    """Generation thresholds for a process that holds many long-lived sockets."""
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)


class Freezer:
    """Freezes what socket set-ups left behind, once they are over (see the module docstring)."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._added_seen = hub.added_total
        self._added_at_freeze = hub.added_total
        self._removed_at_freeze = hub.removed_total
        self._frozen_sockets = 0
        self._quiet_since = 0.0

    def check(self, now: float) -> str | None:
        """Freeze (or unfreeze, collect and freeze) if due; what was done, or None."""
        hub = self._hub
        if hub.added_total != self._added_seen:
            self._added_seen = hub.added_total
            self._quiet_since = now
            return None
        if now - self._quiet_since < QUIET_SECONDS:
            return None
        new = hub.added_total - self._added_at_freeze
        closed = hub.removed_total - self._removed_at_freeze
        if closed >= max(MIN_CHURN, self._frozen_sockets // 4):
            gc.unfreeze()
            gc.collect()
            done = "collected"
        elif new >= MIN_NEW:
            gc.collect(1)
            done = "froze"
        else:
            return None
        gc.freeze()
        self._added_at_freeze = hub.added_total
        self._removed_at_freeze = hub.removed_total
        self._frozen_sockets = hub.added_total - hub.removed_total
        log.debug(
            "gc: %s with %d sockets open, %d objects frozen",
            done,
            self._frozen_sockets,
            gc.get_freeze_count(),
        )
        return done


async def freeze_after_bursts(hub: Hub) -> None:
    """Run a Freezer until cancelled."""
    freezer = Freezer(hub)
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(CHECK_SECONDS)
        freezer.check(loop.time())

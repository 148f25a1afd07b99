"""Lost publishes noticed and filled in, per dashboard, before sockets see a gap.

Values are published after they are committed, and a publish can fail (Redis
unreachable for a moment) while the values stay stored. Each stored batch has
the dashboard's next number, `seq`, taken under a row lock held until commit
(common/db/values.py), so per dashboard the batches commit in `seq` order and
their value ids grow in that order. The published message carries the number.

For each dashboard whose channel this process has joined, `LiveStreams` keeps
the number of the last batch handed to the hub and the newest value id in it,
starting from the database's when the channel is joined. A message numbered
past the next one means batches went missing (lost, or only late: another
publisher may be slower): what they stored is exactly the dashboard's values
with ids between the last one handed over and the message's first, all
committed already. Those are read and handed over first, then the message and
whatever came meanwhile, in order. A message numbered at or below the last one
handed over was filled in already and is dropped. So each socket gets every
stored value once, in id order, with no reload. When the read fails or the gap
is too long, the dashboard's sockets are closed with RESYNC, and clients
`resume` (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiopg

from common import db
from common.events import ValueBatch, ValueEvent

log = logging.getLogger(__name__)

# Values read to fill one gap at most; more means the sockets reconnect and resume instead.
MAX_FILLED = 10_000


class StoredStream(Protocol):
    """Where a dashboard's stored values are read back (the database; tests may count reads)."""

    async def position(self, dashboard_id: int) -> db.StreamPosition: ...

    async def between(
        self, dashboard_id: int, after_id: int, before_id: int, limit: int
    ) -> list[db.StoredValue] | None: ...


class DatabaseStream:
    """The dashboard's stored values, from PostgreSQL."""

    def __init__(self, pool: aiopg.Pool) -> None:
        self._pool = pool

    async def position(self, dashboard_id: int) -> db.StreamPosition:
        return await db.dashboard_position(self._pool, dashboard_id)

    async def between(
        self, dashboard_id: int, after_id: int, before_id: int, limit: int
    ) -> list[db.StoredValue] | None:
        return await db.dashboard_values_between(self._pool, dashboard_id, after_id, before_id, limit)


@dataclass
class _Stream:
    seq: int
    last_id: int
    # Messages that came while a gap is being filled, in arrival order.
    waiting: list[ValueBatch] = field(default_factory=list)
    filling: bool = False


class LiveStreams:
    """Per joined dashboard, hands the hub its published values in `seq` order,
    filling gaps from the database (see the module docstring)."""

    def __init__(
        self,
        stored: StoredStream | None,
        deliver: Callable[[int, list[ValueEvent]], None],
        lost: Callable[[int], None],
    ) -> None:
        self._stored = stored
        self._deliver = deliver
        self._lost = lost
        self._streams: dict[int, _Stream] = {}
        self._fills: set[asyncio.Task[None]] = set()
        self.gaps_filled = 0

    async def start(self, dashboard_id: int) -> None:
        """Count from the dashboard's last committed batch: call before joining
        its channel, so that any batch committed after this read is either
        received or seen missing."""
        if self._stored is None:
            return
        position = await self._stored.position(dashboard_id)
        self._streams[dashboard_id] = _Stream(position.seq, position.last_value_id)

    def stop(self, dashboard_id: int) -> None:
        """The channel was left: nothing more to count."""
        self._streams.pop(dashboard_id, None)

    def accept(self, dashboard_id: int, batch: ValueBatch) -> None:
        """A message received on the dashboard's channel."""
        stream = self._streams.get(dashboard_id)
        if stream is None:
            self._deliver(dashboard_id, batch.values)
        elif stream.filling:
            stream.waiting.append(batch)
        else:
            self._take(dashboard_id, stream, batch)

    def _take(self, dashboard_id: int, stream: _Stream, batch: ValueBatch) -> None:
        ids = [event.id for event in batch.values]
        if batch.seq is None:
            # From a publisher without numbers (an older release): passed on as
            # it comes; its ids are never read again to fill a gap.
            stream.last_id = max([stream.last_id, *ids])
            self._deliver(dashboard_id, batch.values)
        elif batch.seq <= stream.seq:
            log.debug("dashboard %d: batch %d was filled in already", dashboard_id, batch.seq)
        elif batch.seq == stream.seq + 1 or not ids:
            stream.seq = batch.seq
            stream.last_id = max([stream.last_id, *ids])
            self._deliver(dashboard_id, batch.values)
        else:
            stream.filling = True
            stream.waiting.append(batch)
            task = asyncio.ensure_future(self._fill(dashboard_id, stream, batch.seq, min(ids)))
            self._fills.add(task)
            task.add_done_callback(self._fills.discard)

    async def _fill(self, dashboard_id: int, stream: _Stream, seq: int, before_id: int) -> None:
        """Hand over what batches stream.seq+1 .. seq-1 stored, then what waited."""
        if self._stored is None:  # streams exist only with a store
            return
        missing = seq - stream.seq - 1
        try:
            found = await self._stored.between(dashboard_id, stream.last_id, before_id, MAX_FILLED)
        except db.UNAVAILABLE as exc:
            log.warning("dashboard %d: could not read %d missed batch(es): %s", dashboard_id, missing, exc)
            found = None
        if self._streams.get(dashboard_id) is not stream:
            return  # the channel was left meanwhile
        if found is None:
            log.warning(
                "dashboard %d: %d batch(es) missed and not filled in; sockets resync", dashboard_id, missing
            )
            self._lost(dashboard_id)
        else:
            log.info(
                "dashboard %d: filled in %d value(s) of %d missed batch(es)",
                dashboard_id,
                len(found),
                missing,
            )
            self.gaps_filled += 1
            if found:
                self._deliver(dashboard_id, [_event(item) for item in found])
        stream.seq = seq - 1
        stream.last_id = max(stream.last_id, before_id - 1)
        waiting, stream.waiting = stream.waiting, []
        stream.filling = False
        for index, batch in enumerate(waiting):
            self._take(dashboard_id, stream, batch)
            if stream.filling:  # another gap: the rest waits behind it
                stream.waiting += waiting[index + 1 :]
                return

    async def close(self) -> None:
        for task in tuple(self._fills):
            task.cancel()
        await asyncio.gather(*self._fills, return_exceptions=True)


def _event(item: db.StoredValue) -> ValueEvent:
    value = item.value
    return ValueEvent(
        value.id, value.metric_id, item.metric_name, item.unit, value.value, value.ts.isoformat()
    )

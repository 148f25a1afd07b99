"""One client's WebSocket seen from the fan-out side: its subscriptions and
its outbound buffer.

Frames arrive as finished bytes (built once per update by the hub). All
frames that pile up for a connection during one event-loop turn are joined
and handed to the transport in ONE write: the hub's once-per-turn hand-over
is written at once when nothing else waits; otherwise one callback per turn
(the `FlushQueue`) writes for every connection that has something waiting. While
the transport's own buffer is above its high-water mark (the client reads
slowly) frames wait here; once a connection has more than `max_buffered`
bytes waiting in total it is closed with SLOW_CONSUMER, so a client that stops reading neither grows the server's
memory without bound nor slows anyone else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from common.db import Dashboard, Metric, User
from server.live.closecodes import CloseCode
from server.live.frames import text_frame
from server.live.transport import WebSocket
from server.live.updates import Update, batch_frame

log = logging.getLogger(__name__)

# Above this many bytes in the transport's buffer we stop adding to it.
TRANSPORT_HIGH_WATER = 256 * 1024
# How soon to look again when the transport was too full to take more.
RETRY_SECONDS = 0.02
# A reply the client asked for (history) waits for the client to read: closed as
# a slow consumer only if its buffer has not shrunk for this long.
STALL_SECONDS = 10.0
# How long after a history live values it already holds are looked for: a value
# stored before the read is published at once, so it arrives within moments.
FLOOR_SECONDS = 10.0


class FlushQueue:
    """The connections with frames waiting, written out together once per event-loop turn.

    One scheduled callback for all of them, not one per connection: with
    thousands of sockets per update, a callback handle each cost CPU and, worse,
    garbage-collector work (they outlive a collection of the youngest objects
    during a long fan-out and pile up until full collections of every object
    in the process run, stalling all sockets for hundreds of milliseconds).
    """

    __slots__ = ("_dirty", "_handle")

    def __init__(self) -> None:
        self._dirty: list[ClientConnection] = []
        self._handle: asyncio.Handle | None = None

    def add(self, conn: ClientConnection) -> None:
        self._dirty.append(conn)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        self._handle = None
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.flush()


class ClientConnection:
    # Slots, not a __dict__: one of these lives as long as each socket.
    __slots__ = (
        "_closing",
        "_floor_expiry",
        "_floors",
        "_flush_pending",
        "_flushes",
        "_held",
        "_max_buffered",
        "_pending",
        "_pending_bytes",
        "_transport",
        "batched",
        "close_code",
        "dashboard",
        "dropped_frames",
        "metrics",
        "socket",
        "subscribed",
        "user",
    )

    def __init__(
        self,
        socket: WebSocket,
        user: User,
        dashboard: Dashboard,
        metrics: Mapping[int, Metric],
        max_buffered: int,
        flushes: FlushQueue,
        batched: bool = False,
    ) -> None:
        self.socket = socket
        self.user = user
        self.dashboard = dashboard
        # Shared with the dashboard's other connections (server/live/configcache.py).
        self.metrics = metrics
        # Replaced, never changed in place: the hub shares equal sets between connections.
        self.subscribed: frozenset[int] = frozenset()
        # Live values as one `metric_updates` message per loop turn (`?updates=batch`).
        self.batched = batched
        # Kept: the socket lets go of its transport when the connection is lost.
        if socket.transport is None:
            raise ConnectionResetError("client went away")
        self._transport = socket.transport
        self._flushes = flushes
        self._max_buffered = max_buffered
        # Emptied in place, never replaced: no new object per write.
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._flush_pending = False
        self._held: list[Update] | None = None
        # Per metric, the newest value id sent as history, until a newer live value
        # comes or FLOOR_SECONDS pass: while any is set, deliveries are filtered.
        self._floors: dict[int, int] = {}
        self._floor_expiry: asyncio.TimerHandle | None = None
        self._closing = False
        # Read once when the connection ends (server/telemetry.py), never per frame.
        self.dropped_frames = 0
        self.close_code: CloseCode | None = None

    def send(self, text: str) -> None:
        """Queue a message of this connection only (replies, history)."""
        self.send_frame(text_frame(text))

    def send_frame(self, frame: bytes) -> None:
        """Queue a finished frame; it goes out with the others of this loop turn."""
        # The socket may have closed on its own (a protocol error, the rate
        # limit): no frame may follow its close frame.
        if self._closing or self.socket.closing:
            self.dropped_frames += 1
            return
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        if self._pending_bytes + self._transport.get_write_buffer_size() > self._max_buffered:
            self._overflow()
        elif not self._flush_pending:
            self._flush_pending = True
            self._flushes.add(self)

    async def send_reply(self, frames: list[bytes]) -> None:
        """Queue the frames of an answer the client asked for, each once it fits
        under the transport's high-water mark: waits while the client reads
        what went before.

        Live values that do not fit close the socket (they would pile up for a
        client that does not keep up). An answer is different: the client asked
        for it and reads it, and a dashboard's history can be several times the
        buffer. It is written as the client takes it; only a client whose buffer
        does not shrink for STALL_SECONDS is closed as a slow consumer. What was
        queued before goes out first (a set-up's cork ends early: its answer is
        more than one write)."""
        # Up to the high-water mark only: what follows the answer (held live
        # values, `complete`) must still fit under `max_buffered`.
        if self._waiting_bytes() + sum(map(len, frames)) <= TRANSPORT_HIGH_WATER:
            # Most answers (every socket's set-up): queued at once, no wait.
            for frame in frames:
                self.send_frame(frame)
            return
        for frame in frames:
            await self._room_for(len(frame))
            self.send_frame(frame)

    async def _room_for(self, size: int) -> None:
        loop = asyncio.get_running_loop()
        progress_at, before = loop.time(), None
        while not self._closing and not self.socket.closing and not self._transport.is_closing():
            if self._waiting_bytes() + size <= TRANSPORT_HIGH_WATER:
                return
            if self._pending:
                self._write_pending()
            buffered = self._transport.get_write_buffer_size()
            if not buffered:
                return  # a frame above the mark on its own, after all that went before
            if before is None or buffered < before:
                progress_at = loop.time()  # the client read since the last look
                # Its pongs wait unread meanwhile (nothing is read from a
                # socket whose send buffer is full): reading is its sign of life.
                self.socket.heard_from()
            elif loop.time() - progress_at > STALL_SECONDS:
                self._overflow()
                return
            before = buffered
            await asyncio.sleep(RETRY_SECONDS)

    def _waiting_bytes(self) -> int:
        return self._pending_bytes + self._transport.get_write_buffer_size()

    def cork(self) -> None:
        """Keep what is sent from now on until `uncork` writes it at once (a
        socket's set-up: its handshake answer, authentication, config, history
        and alerts in one write, not five).

        While the socket holds `unsent` bytes, frames must wait here (`deliver`
        writes directly only when nothing waits): the set-up queues the config
        right after corking, so something waits until `uncork`."""
        if not self._pending:
            self._flush_pending = True  # so that send_frame schedules no flush

    def uncork(self) -> None:
        self.flush()

    def deliver(self, frames: bytes, updates: list[Update]) -> None:
        """Live updates from the hub: `frames` is the `updates` in this connection's form.

        While history is being sent they are kept aside, one by one."""
        if self._held is not None:
            self._held.extend(updates)
            if updates:
                # Sized in this connection's form: a batched one never needs the single frames.
                size = len(updates[-1].item) if self.batched else len(updates[-1].frame)
                if len(self._held) * size > self._max_buffered:
                    self._overflow()
            return
        if self._floors:
            kept = self._above_floors(updates)
            if len(kept) != len(updates):
                # The shared frames carry values the history already sent.
                if kept:
                    self._send_updates(kept)
                return
        if (
            not self._pending
            and not self._closing
            and not self.socket.closing
            and not self._transport.is_closing()
            and self._transport.get_write_buffer_size() <= TRANSPORT_HIGH_WATER
        ):
            # The hub hands over once per loop turn and nothing else waits for
            # this socket: this is the turn's one write, made now rather than
            # through the FlushQueue (a third of the per-socket Python work).
            self._transport.write(frames)
            return
        self.send_frame(frames)

    def hold(self) -> None:
        """Keep live updates aside until `release`: history must go out first."""
        self._held = []

    def release(self, last_sent: dict[int, int]) -> None:
        """Send the updates kept aside that the history did not already contain.

        `last_sent` maps metric id to the largest value id sent as history (ids
        are the one order: the hub hands values over by id, whatever their
        timestamps). A value stored before the history was read can still be on its way from
        Redis: until a newer value of the metric arrives (for FLOOR_SECONDS at
        most), live values at or below `last_sent` are dropped as already sent.
        """
        held, self._held = self._held or [], None
        self._floors.update(last_sent)
        due = self._above_floors(held)
        if due:
            self._send_updates(due)
        if self._floors:
            # Bounded in time: a metric with no new values would otherwise keep
            # every later delivery to this socket on the filtering path.
            if self._floor_expiry is not None:
                self._floor_expiry.cancel()
            self._floor_expiry = asyncio.get_running_loop().call_later(FLOOR_SECONDS, self._end_floors)

    def _end_floors(self) -> None:
        self._floor_expiry = None
        self._floors.clear()

    def _above_floors(self, updates: list[Update]) -> list[Update]:
        floors = self._floors
        kept = [update for update in updates if update.value_id > floors.get(update.metric_id, 0)]
        for update in kept:
            # Its values newer than the history flow now: no more to drop.
            floors.pop(update.metric_id, None)
        return kept

    def _send_updates(self, updates: list[Update]) -> None:
        if self.batched:
            self.send_frame(batch_frame(updates))
        else:
            for update in updates:
                self.send_frame(update.frame)

    def close_soon(self, code: CloseCode, reason: str) -> None:
        """Stop sending and close the socket with `code` (idempotent)."""
        if self._closing:
            return
        self._closing = True
        self.close_code = code
        if self._floor_expiry is not None:
            self._floor_expiry.cancel()
            self._floor_expiry = None
        self.dropped_frames += len(self._pending)
        self._pending.clear()
        if self._held:
            self.dropped_frames += len(self._held)
            self._held.clear()
        self._pending_bytes = 0
        self.socket.close(code, reason)

    def flush(self) -> None:
        """Write what is waiting in one piece (called by the FlushQueue)."""
        self._flush_pending = False
        if self._closing or self.socket.closing or self._transport.is_closing() or not self._pending:
            return
        if self._transport.get_write_buffer_size() > TRANSPORT_HIGH_WATER:
            self._flush_pending = True
            asyncio.get_running_loop().call_later(RETRY_SECONDS, self.flush)
            return
        self._write_pending()

    def _write_pending(self) -> None:
        pending = self._pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._pending_bytes = 0
        if self.socket.unsent:
            # The set-up's first write: the handshake's answer and the authentication go first.
            data, self.socket.unsent = self.socket.unsent + data, b""
        self._transport.write(data)

    def _overflow(self) -> None:
        log.warning(
            "closing slow client of user %s on dashboard %s: %d bytes waiting",
            self.user.username,
            self.dashboard.id,
            self._waiting_bytes(),
        )
        self.close_soon(CloseCode.SLOW_CONSUMER, "too slow: send buffer full")

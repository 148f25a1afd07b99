"""The process's single Redis subscription and the fan-out to local sockets.

A dashboard's channel is subscribed when its first local connection arrives
and left after its last one goes. Each published value is encoded once as a
`metric_update` frame. A dashboard's connections are grouped by the set of
metrics they are subscribed to (most watch all of them): for each group the
frames its set selects are joined once, and every connection of the group is
handed that one piece, so an update touches only its subscribers and costs
one call per connection per event-loop turn, however many values and
messages arrived in that turn.

One update to thousands of sockets is handed over in slices of
`FANOUT_SLICE` connections, one slice per event-loop turn, so that reading
Redis, socket set-ups and other dashboards' updates are not held up for the
whole fan-out. The slices form one queue (`_backlog`) of hand-overs: every
connection gets its updates in the order they were received, and whatever
must see all earlier updates delivered first (a subscription change, the end
of a hold, an alert, a control message) empties the queue at once
(`_deliver_pending`).

A connection is waiting in at most one hand-over (`Handover`). Updates that
arrive while a group's hand-overs are queued join them, and only the
connections not waiting already get a new one at the end: however fast
values come, each connection is written once per pass over the queue, with
everything that arrived meanwhile. Queuing a hand-over per arrival instead
wrote every connection once per loop turn that brought values, more writes
than turns could make: the queue, and every value's latency, then grew for as
long as the rate lasted (bench/RESULTS.md, "A queue that grew").

Values reach the fan-out through `LiveStreams` (server/live/gaps.py), which
hands each dashboard's batches over in the order they were stored and fills
in those whose publish was lost. Everything downstream (holds, floors,
`resume`) goes by that one order: value ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import redis.exceptions
from redis.asyncio.client import PubSub

from common.events import (
    AlertNotice,
    Channels,
    DashboardChanged,
    PreferencesChanged,
    Revocation,
    ValueEvent,
    decode_control,
    decode_dashboard_event,
)
from common.redisconn import RedisClient, uses_sharded_pubsub
from common.schemas import encode_message
from common.tasks import BackgroundTasks
from server.live.closecodes import CloseCode
from server.live.connection import ClientConnection, FlushQueue
from server.live.frames import text_frame
from server.live.gaps import LiveStreams, StoredStream
from server.live.updates import Update, batch_frame, from_events
from server.telemetry import ServerTelemetry

log = logging.getLogger(__name__)

# Longest wait, in seconds, between attempts to subscribe again after Redis went away.
MAX_BACKOFF = 5.0
# On a cluster, the subscription is one connection per shard, read in turn:
# each is waited on this long, which bounds the added latency per shard.
SHARDED_POLL_SECONDS = 0.02
# The listener gives the subscription connection up this often (Hub._io_lock),
# which bounds how long a new dashboard's SUBSCRIBE waits to be sent.
POLL_SECONDS = 0.1
# Distinct subscription sets kept for sharing (Hub._shared_set).
MAX_SHARED_SETS = 10_000
# Connections handed one update per event-loop turn before the rest wait for the
# next turn: about 5-10 ms of writes on loopback (bench/RESULTS.md).
FANOUT_SLICE = 1_000


# A subscription group: dashboard id, the metric ids subscribed to, batched or not.
GroupKey = tuple[int, frozenset[int], bool]


class Handover:
    """Updates on their way to some connections of one subscription group, all
    of them due the same updates: `connections[done:]` are still to be handed
    them, in slices over loop turns (Hub._hand_over); `connections[start:done]`
    have been handed them (those before `start` left at a `join`)."""

    __slots__ = ("_frames", "connections", "done", "key", "start", "updates")

    def __init__(
        self, key: GroupKey, updates: list[Update], connections: tuple[ClientConnection, ...]
    ) -> None:
        self.key = key
        self.updates = list(updates)  # its own: later ones are added in place (join)
        self.connections = connections
        self.start = 0
        self.done = 0
        self._frames: bytes | None = None

    def join(self, later: list[Update]) -> tuple[ClientConnection, ...]:
        """Add updates received later: the connections not handed these yet get
        all in one write. Returns those that have been handed them: they leave
        (the caller hands them `later` in a new hand-over). Indices, not a copy
        of the rest: a join costs what was handed since the last one."""
        self.updates += later
        self._frames = None
        handed = self.connections[self.start : self.done]
        self.start = self.done
        return handed

    def frames(self) -> bytes:
        """The updates as the group's connections take them, built once per change."""
        if self._frames is None:
            updates = self.updates
            if self.key[2]:
                self._frames = batch_frame(updates)
            elif len(updates) == 1:
                self._frames = updates[0].frame
            else:
                self._frames = b"".join(update.frame for update in updates)
        return self._frames


class GroupQueue:
    """A subscription group's hand-overs in the queue, oldest first, and its
    connections handed every update queued so far (none waits for anything)."""

    __slots__ = ("handed", "handovers")

    def __init__(self) -> None:
        self.handovers: deque[Handover] = deque()
        self.handed: list[ClientConnection] = []


class Hub:
    def __init__(
        self,
        redis_client: RedisClient,
        channels: Channels,
        telemetry: ServerTelemetry | None = None,
        stored: StoredStream | None = None,
    ) -> None:
        """`stored` is where lost publishes are read back from; without it they are not noticed."""
        self._redis = redis_client
        self._channels = channels
        self._telemetry = telemetry or ServerTelemetry()
        self._pubsub: PubSub = redis_client.pubsub()
        self._sharded = uses_sharded_pubsub(redis_client)
        # dashboard id -> (subscribed metric ids, batched) -> connections subscribed to
        # exactly those that take updates in that form (server/live/updates.py)
        self._groups: dict[int, dict[tuple[frozenset[int], bool], set[ClientConnection]]] = {}
        self._by_dashboard: dict[int, set[ClientConnection]] = defaultdict(set)
        self.flushes = FlushQueue()
        # Updates received and not yet handed to connections (`_deliver_pending`).
        self._pending: dict[int, list[Update]] = {}
        self._pending_timestamps: list[str] = []
        self._delivery: asyncio.Handle | None = None
        # Handed over in part (FANOUT_SLICE), oldest first; and, per group,
        # its hand-overs in the queue, in the same order.
        self._backlog: deque[Handover] = deque()
        self._queued: dict[GroupKey, GroupQueue] = {}
        # Connections ever added and removed (server/gcpolicy.py watches them).
        self.added_total = 0
        self.removed_total = 0
        self._subscription_sets: dict[frozenset[int], frozenset[int]] = {}
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        # Channel joins and leaves are serialised so that a leave racing a new
        # connection's join can never end up unsubscribed with a watcher left.
        self._channel_lock = asyncio.Lock()
        # One user of the subscription connection at a time. A SUBSCRIBE or
        # UNSUBSCRIBE that finds the connection lost reconnects it and reads
        # the handshake: alongside the listener's read, both read one stream,
        # redis-py raises (RuntimeError, or a reply read by the wrong one) and
        # the listener would die (tests/test_hub_reconnect.py).
        self._io_lock = asyncio.Lock()
        self._joined: set[str] = set()
        self._leaving = BackgroundTasks()
        self._closed = False  # set by close(): no more leaves are scheduled
        self._control_listeners: list[Callable[[Revocation], object]] = []
        self._change_listeners: list[Callable[[DashboardChanged], None]] = []
        self._preferences_listeners: list[Callable[[PreferencesChanged], None]] = []
        self._resync_listeners: list[Callable[[], None]] = []
        self._interrupted = False
        self.streams = LiveStreams(stored, self._queue_values, self._resync_dashboard)

    async def run(self) -> None:
        """Read the subscription until cancelled, reconnecting with backoff."""
        backoff = 0.1
        joined_control = False
        while True:
            try:
                # Inside the loop: Redis may be gone at start-up too. Once
                # joined, redis-py re-subscribes by itself on reconnect.
                if not joined_control:
                    await self._join(self._channels.control)
                    joined_control = True
                message = await self._next_message()
                backoff = 0.1
            except (redis.exceptions.RedisError, OSError) as exc:
                # redis-py reconnects and re-subscribes on the next read.
                log.warning("Redis subscription lost (%s); retrying in %.1fs", exc, backoff)
                if not isinstance(
                    exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError | OSError
                ):
                    # A reply out of place: start over on a fresh connection.
                    await self._reset_connection()
                self._telemetry.redis_errors.inc()
                self._interrupted = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if message is not None:
                self._handle(message)

    async def close(self) -> None:
        # A leave still pending would unsubscribe on a closed connection (or
        # after the loop closed): the subscription ends with the close anyway.
        self._closed = True
        await self._leaving.cancel_all()
        await self.streams.close()
        await self._pubsub.aclose()

    async def add(self, conn: ClientConnection) -> None:
        """Register a connection, subscribing to its dashboard's channel if needed.

        Returns once Redis confirmed the subscription, so that nothing published
        after this call can be missed.
        """
        dashboard_id = conn.dashboard.id
        self._by_dashboard[dashboard_id].add(conn)
        self.added_total += 1
        channel = self._channels.dashboard(dashboard_id)
        async with self._channel_lock:
            if channel not in self._joined:
                # Before joining: a batch committed after this read either
                # arrives or is seen missing by the next one that does.
                await self.streams.start(dashboard_id)
                self._confirmations[channel] = asyncio.get_running_loop().create_future()
                try:
                    await self._join(channel)
                except BaseException:
                    del self._confirmations[channel]
                    self.streams.stop(dashboard_id)
                    raise
                self._joined.add(channel)
            confirmed = self._confirmations.get(channel)
        if confirmed is not None:
            await asyncio.wait_for(asyncio.shield(confirmed), timeout=10)

    def remove(self, conn: ClientConnection) -> None:
        self.unsubscribe(conn, list(conn.subscribed))
        dashboard_id = conn.dashboard.id
        connections = self._by_dashboard.get(dashboard_id)
        if connections is None:
            return
        if conn in connections:
            connections.discard(conn)
            self.removed_total += 1
        if not connections:
            del self._by_dashboard[dashboard_id]
            if self._closed:
                return
            self._leaving.start(self._leave(self._channels.dashboard(dashboard_id), dashboard_id))

    def subscribe(self, conn: ClientConnection, metric_ids: list[int]) -> None:
        self._regroup(conn, conn.subscribed.union(metric_ids))

    def unsubscribe(self, conn: ClientConnection, metric_ids: list[int]) -> None:
        self._regroup(conn, conn.subscribed.difference(metric_ids))

    def release(self, conn: ClientConnection, last_sent: dict[int, int]) -> None:
        """End `conn`'s hold (ClientConnection.release) once its history is sent.

        What this process received before now goes to the held updates first:
        values handed over once per turn may be waiting here still, and the
        history may already hold them (the hold's filter drops those)."""
        self._deliver_pending()
        conn.release(last_sent)

    def _regroup(self, conn: ClientConnection, subscribed: frozenset[int]) -> None:
        # Values received before this change go by the subscriptions they met:
        # a history read after subscribing already holds them (they were
        # stored before they were published), so handing them over later
        # would send them twice.
        self._deliver_pending()
        dashboard_id = conn.dashboard.id
        groups = self._groups.setdefault(dashboard_id, {})
        if conn.subscribed:
            key = (conn.subscribed, conn.batched)
            group = groups.get(key)
            if group is not None:
                group.discard(conn)
                if not group:
                    del groups[key]
        conn.subscribed = self._shared_set(subscribed)
        if subscribed:
            groups.setdefault((conn.subscribed, conn.batched), set()).add(conn)
        if not groups:
            del self._groups[dashboard_id]

    def _shared_set(self, metric_ids: frozenset[int]) -> frozenset[int]:
        """One object for every connection subscribed to the same metrics (most
        watch all of their dashboard's): a set of ten ids is ~700 bytes, and
        memory per idle connection is a target."""
        if len(self._subscription_sets) > MAX_SHARED_SETS:
            self._subscription_sets.clear()  # connections keep theirs; new ones are shared anew
        return self._subscription_sets.setdefault(metric_ids, metric_ids)

    def connections_of(self, dashboard_id: int) -> list[ClientConnection]:
        """This process's open connections to the dashboard (a snapshot)."""
        return list(self._by_dashboard.get(dashboard_id, ()))

    def connection_count(self) -> int:
        return sum(len(connections) for connections in self._by_dashboard.values())

    async def _leave(self, channel: str, dashboard_id: int) -> None:
        async with self._channel_lock:
            # A new connection may have arrived while this was scheduled.
            if dashboard_id in self._by_dashboard or channel not in self._joined:
                return
            self._joined.discard(channel)
            self._confirmations.pop(channel, None)
            self.streams.stop(dashboard_id)
            try:
                await self._part(channel)
            except redis.exceptions.RedisError as exc:
                log.warning("could not unsubscribe from %s: %s", channel, exc)

    # How the subscription is made ----------------------------------------------
    # SUBSCRIBE on one server or Sentinel's master; SSUBSCRIBE on a cluster, so
    # each channel's traffic stays on the shard that owns it (common/redisconn.py).

    async def _join(self, channel: str) -> None:
        async with self._io_lock:
            if self._sharded:
                await self._pubsub.ssubscribe(channel)
            else:
                await self._pubsub.subscribe(channel)

    async def _part(self, channel: str) -> None:
        async with self._io_lock:
            if self._sharded:
                await self._pubsub.sunsubscribe(channel)
            else:
                await self._pubsub.unsubscribe(channel)

    async def _next_message(self) -> dict[str, Any] | None:
        message: dict[str, Any] | None
        async with self._io_lock:
            if self._sharded:
                message = await self._pubsub.get_sharded_message(timeout=SHARDED_POLL_SECONDS)
            else:
                message = await self._pubsub.get_message(timeout=POLL_SECONDS)
        return message

    async def _reset_connection(self) -> None:
        async with self._io_lock:
            if self._pubsub.connection is not None:
                await self._pubsub.connection.disconnect()

    # ---------------------------------------------------------------------------

    def _handle(self, message: dict[str, Any]) -> None:
        # Sharded confirmations and messages are handled as their classic twins.
        kind = {"ssubscribe": "subscribe", "smessage": "message"}.get(message["type"], message["type"])
        channel = message["channel"].decode()
        if kind == "subscribe":
            confirmed = self._confirmations.pop(channel, None)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
            if self._interrupted:
                self._resubscribed()
        elif kind == "message" and channel == self._channels.control:
            # A config change or a revocation must not overtake values published before it.
            self._deliver_pending()
            self._on_control_message(message["data"])
        elif kind == "message":
            self._fan_out(message["data"])

    def _fan_out(self, data: bytes) -> None:
        try:
            dashboard_id, batch = decode_dashboard_event(data)
        except ValueError as exc:
            log.error("ignoring unreadable event: %s", exc)
            return
        if isinstance(batch, AlertNotice):
            self._send_alert(dashboard_id, batch)
            return
        self.streams.accept(dashboard_id, batch)

    def _queue_values(self, dashboard_id: int, values: list[ValueEvent]) -> None:
        """Values of the dashboard, in the order stored, to hand over at the end of this turn."""
        if dashboard_id not in self._groups:
            return
        try:
            # Encoded once, as finished bytes, shared by every subscriber.
            updates = from_events(values)
        except (TypeError, ValueError) as exc:
            log.error("ignoring unreadable event: %s", exc)
            return
        pending = self._pending.get(dashboard_id)
        if pending is None:
            pending = self._pending[dashboard_id] = []
        pending += updates
        self._pending_timestamps += [event.timestamp for event in values]
        # Handed over once per loop turn: when messages come faster than one
        # per turn, a connection gets all of them in one call, not one each.
        self._schedule_delivery()

    def _schedule_delivery(self) -> None:
        if self._delivery is None:
            self._delivery = asyncio.get_running_loop().call_soon(self._deliver_turn)

    def _deliver_turn(self) -> None:
        self._delivery = None
        self._hand_over(FANOUT_SLICE)

    def _deliver_pending(self) -> None:
        """Hand everything received so far to its subscribers now, in order."""
        self._hand_over(None)

    def _hand_over(self, budget: int | None) -> None:
        """Hand over the updates received since the last turn after those still
        in the backlog: to `budget` connections, or all with None."""
        if self._delivery is not None:
            self._delivery.cancel()
            self._delivery = None
        if self._pending:
            self._queue_pending()
        backlog = self._backlog
        while backlog:
            handover = backlog[0]
            connections, done = handover.connections, handover.done
            end = len(connections) if budget is None else min(len(connections), done + budget)
            frames, updates = handover.frames(), handover.updates
            # deliver() writes, or schedules a close: it never calls back into
            # the hub, so the queue stays as it is until `done` is saved below.
            for index in range(done, end):
                connections[index].deliver(frames, updates)
            if budget is not None:
                budget -= end - done
            if end < len(connections):
                handover.done = end
            else:
                backlog.popleft()
                queued = self._queued[handover.key]
                queued.handovers.popleft()  # the oldest of its group: the queue is first in, first out
                if queued.handovers:
                    queued.handed += connections[handover.start :]
                else:
                    del self._queued[handover.key]
            if budget is not None and budget <= 0:
                break
        if backlog:
            self._schedule_delivery()

    def _queue_pending(self) -> None:
        """Hand the updates received since the last turn to each subscription
        group's connections (as of now): those still waiting get them with
        what they wait for, the others in a new hand-over at the end."""
        pending, self._pending = self._pending, {}
        timestamps, self._pending_timestamps = self._pending_timestamps, []
        sent = 0
        for dashboard_id, updates in pending.items():
            for (subscribed, batched), group in tuple(self._groups.get(dashboard_id, {}).items()):
                selected = [update for update in updates if update.metric_id in subscribed]
                if not selected:
                    continue
                key = (dashboard_id, subscribed, batched)
                queued = self._queued.get(key)
                if queued is None:
                    waiting: tuple[ClientConnection, ...] = tuple(group)
                else:
                    # The group is unchanged since these were queued: a change
                    # of its members empties the backlog first (_regroup). Its
                    # connections are each either waiting in one of its hand-overs
                    # or handed everything: as many steps as were handed over.
                    for handover in queued.handovers:
                        queued.handed += handover.join(selected)
                    waiting, queued.handed = tuple(queued.handed), []
                if waiting:
                    handover = Handover(key, selected, waiting)
                    self._backlog.append(handover)
                    if queued is None:
                        queued = self._queued[key] = GroupQueue()
                    queued.handovers.append(handover)
                sent += len(selected) * len(group)
        # Once per turn, not per connection: the hot loop stays bare.
        if sent:
            self._telemetry.fanned_out(timestamps, sent)

    def _resync_dashboard(self, dashboard_id: int) -> None:
        """A gap that could not be filled in: the dashboard's sockets reconnect and resume."""
        self._deliver_pending()
        for conn in tuple(self._by_dashboard.get(dashboard_id, ())):
            conn.close_soon(CloseCode.RESYNC, "live updates interrupted: reconnect")

    def _send_alert(self, dashboard_id: int, notice: AlertNotice) -> None:
        # The values published before the alert go out before it.
        self._deliver_pending()
        # Every socket of the dashboard, subscribed to the metric or not: the
        # page lists alerts of all its metrics. Sockets exist only for members.
        connections = self._by_dashboard.get(dashboard_id)
        if not connections:
            return
        payload = {name: value for name, value in notice.__dict__.items() if value is not None}
        frame = text_frame(encode_message("alert", payload))
        for conn in tuple(connections):
            conn.send_frame(frame)

    # Control channel and reconnects -------------------------------------------
    # Kept apart from the fan-out: these only notify listeners (server/live/revocation.py).

    def on_control(self, listener: Callable[[Revocation], object]) -> None:
        """Call `listener` with every revocation announced on the control channel."""
        self._control_listeners.append(listener)

    def on_dashboard_changed(self, listener: Callable[[DashboardChanged], None]) -> None:
        """Call `listener` with every dashboard edit announced on the control channel."""
        self._change_listeners.append(listener)

    def on_preferences_changed(self, listener: Callable[[PreferencesChanged], None]) -> None:
        """Call `listener` with every change of someone's preferences announced on the control channel."""
        self._preferences_listeners.append(listener)

    def on_resync(self, listener: Callable[[], None]) -> None:
        """Call `listener` when the subscription is back after a Redis outage:
        whatever was published meanwhile never reached this process."""
        self._resync_listeners.append(listener)

    def _on_control_message(self, data: bytes) -> None:
        try:
            control = decode_control(data)
        except ValueError as exc:
            log.error("ignoring unreadable control message: %s", exc)
            return
        if isinstance(control, Revocation):
            for listener in self._control_listeners:
                listener(control)
        elif isinstance(control, DashboardChanged):
            for on_change in self._change_listeners:
                on_change(control)
        elif isinstance(control, PreferencesChanged):
            for on_preferences in self._preferences_listeners:
                on_preferences(control)

    def _resubscribed(self) -> None:
        # redis-py re-subscribes every channel in one SUBSCRIBE on reconnect,
        # so the first confirmation means all of them are active again.
        self._interrupted = False
        log.warning("Redis subscription restored; asking clients to resync")
        for listener in self._resync_listeners:
            listener()

"""The hub's hand-over queue under values that come faster than a pass over the sockets.

The hub writes an update to `FANOUT_SLICE` connections per loop turn. When
values arrive in every turn, a connection must still be written once per pass
over the queue with everything that arrived meanwhile, not once per turn that
brought values: that would take more turns than there are, and the queue, and
every value's latency, would grow for as long as the rate lasts.

These drive the hub's queue turn by turn with connections that record what
they are handed (the sockets behind them are what the other fan-out tests
exercise end to end, tests/test_batched_updates.py).
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from common.events import ValueEvent, channels_for
from common.redisconn import connect_redis
from server.live.hub import Hub
from server.live.updates import Update

SLICE = 3
DASHBOARD = 7


@dataclass(eq=False)
class _Dashboard:
    id: int


@dataclass(eq=False)
class RecordingConnection:
    """What the hub needs of a connection, and what it was handed, turn by turn."""

    batched: bool
    dashboard: _Dashboard = field(default_factory=lambda: _Dashboard(DASHBOARD))
    subscribed: frozenset[int] = frozenset()
    now: list[int] = field(default_factory=lambda: [0])  # the current turn, shared
    writes: list[tuple[int, bytes, list[int]]] = field(default_factory=list)

    def deliver(self, frames: bytes, updates: list[Update]) -> None:
        self.writes.append((self.now[0], frames, [update.value_id for update in updates]))


def _frame_value_ids(frames: bytes) -> list[int]:
    """The value ids in finished text frames (one or several concatenated)."""
    ids: list[int] = []
    while frames:
        length = frames[1] & 0x7F
        start = 2
        if length == 126:
            length, start = int.from_bytes(frames[2:4], "big"), 4
        elif length == 127:
            length, start = int.from_bytes(frames[2:10], "big"), 10
        message = json.loads(frames[start : start + length])
        if message["action"] == "metric_updates":
            ids += [item[1] for entry in message["payload"]["updates"] for item in entry["values"]]
        else:
            ids.append(message["payload"]["id"])
        frames = frames[start + length :]
    return ids


@pytest.fixture
async def hub(settings, monkeypatch):
    monkeypatch.setattr("server.live.hub.FANOUT_SLICE", SLICE)
    client = connect_redis(settings.redis_url, max_connections=2)
    hub = Hub(client, channels_for(settings.redis_url))
    yield hub
    await hub.close()
    await client.aclose()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_values_arriving_every_turn_reach_each_connection_once_per_pass_in_order(hub, seed):
    """Two groups (all metrics, batched; one metric, a frame per value), values
    in most turns for 200 turns, one connection moving to a third group half
    way: each connection gets exactly its values, in order, each within one
    pass over the queue of its arrival, in about one write per pass; and no
    connection is ever waiting in two hand-overs."""
    rng = random.Random(seed)
    now = [0]
    everything = [RecordingConnection(batched=True, now=now) for _ in range(10)]
    one_metric = [RecordingConnection(batched=False, now=now) for _ in range(4)]
    for conn in everything:
        hub.subscribe(conn, [1, 2])
    for conn in one_metric:
        hub.subscribe(conn, [2])
    arrived: dict[int, int] = {}  # value id -> the turn it reached the hub
    metric_of: dict[int, int] = {}
    next_id = 1
    turns = 200
    mover = everything[3]
    moved_at = turns // 2  # from then on, metric 2 only (values before go by the old subscription)
    for turn in range(turns):
        now[0] = turn
        if turn == moved_at:
            hub.unsubscribe(mover, [1])
        if rng.random() < 0.8:
            events = []
            for _ in range(rng.randint(1, 4)):
                metric_of[next_id] = rng.choice([1, 2])
                events.append(
                    ValueEvent(next_id, metric_of[next_id], "m", "u", 1.5, "2026-12-07T12:00:00+00:00")
                )
                arrived[next_id] = turn
                next_id += 1
            hub._queue_values(DASHBOARD, events)
        hub._deliver_turn()
        waiting = Counter(conn for handover in hub._backlog for conn in handover.connections[handover.done :])
        assert max(waiting.values(), default=0) <= 1, "a connection waits in two hand-overs"
        for queued in hub._queued.values():
            assert queued.handovers, "a group queue left with nothing queued"
            assert not waiting.keys() & set(queued.handed), "a connection both waiting and handed all"
    now[0] = turns
    hub._deliver_pending()
    assert not hub._backlog and not hub._queued

    connections = len(everything) + len(one_metric)
    one_pass = math.ceil(connections / SLICE)
    for conn, metrics in [*((c, {1, 2}) for c in everything), *((c, {2}) for c in one_metric)]:
        expected = [
            value_id
            for value_id in arrived
            if metric_of[value_id] in (metrics if conn is not mover or arrived[value_id] < moved_at else {2})
        ]
        handed = [value_id for _, _, ids in conn.writes for value_id in ids]
        assert handed == expected, "a value lost, repeated or out of order"
        assert [i for _, frames, _ in conn.writes for i in _frame_value_ids(frames)] == expected
        for turn, _, ids in conn.writes:
            assert all(turn - arrived[value_id] <= one_pass for value_id in ids), "a value waited past a pass"
        # One write per pass, give or take the passes' edges; one per turn with values before.
        assert len(conn.writes) <= turns / one_pass * 1.5 + 2

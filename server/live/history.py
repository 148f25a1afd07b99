"""History for a dashboard socket: what `metric_history` holds, and the hand-over to live values.

Three kinds of history (docs/protocol.md): the values stored last (on connect
and `subscribe`), a range (`history`), and what was stored after a position
(`resume`). `send_histories` subscribes first and holds live values back
until the history is sent: the no-gap/no-duplicate hand-over that
server/live/__init__.py describes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from common import db
from common.db import Metric, MetricValue
from common.schemas import ProtocolError, encode_message
from common.vocabulary import RANGES
from server.keys import DB_KEY, HISTORY_TURNS_KEY, HUB_KEY, READS_KEY, SETTINGS_KEY, TELEMETRY_KEY
from server.live.connection import ClientConnection
from server.live.frames import text_frame
from server.live.summaries import bucket_summary, merge_sketches, raw_summary

log = logging.getLogger(__name__)

MAX_POINTS = 300  # per metric in a `history` answer: raw values, or this many buckets at most
MAX_RECOVERED = 1000  # values per metric `resume` sends; a longer gap is reported as not recovered
# A from/to range is sent as raw values when it holds at most this many of a metric's values
# and starts within RAW_HORIZON, where raw values are always kept (the shortest retention is a day).
MAX_RAW = 1000
RAW_HORIZON = timedelta(days=1)
# A history a client asks for (a range, `resume`, `subscribe`) can cost the process
# a read of about a thousand values of each of a hundred metrics, made into objects,
# encoded on the event loop and written as the client reads it: this many of one
# user's at once, whatever their sockets and tabs (server/ratelimit.py, PerUserTurns).
# Per process: with --workers N a user has N times as many.
HISTORY_TURNS_PER_USER = 2

# Per metric: its finished `metric_history` frame, and the id of the newest value in it.
HistoryFrames = dict[int, tuple[bytes, int | None]]
HistoryLoader = Callable[[list[int]], Awaitable[HistoryFrames]]


def _raw_values(values: list[MetricValue]) -> dict[str, Any]:
    return {
        "values": [{"id": v.id, "value": v.value, "timestamp": v.ts.isoformat()} for v in values],
        "last_id": values[-1].id if values else None,
    }


def _history_frames(metrics: Mapping[int, Metric], histories: dict[int, dict[str, Any]]) -> HistoryFrames:
    """Each metric's `metric_history` frame: its own fields, then what `histories` holds for it."""
    frames: HistoryFrames = {}
    for metric_id, history in histories.items():
        metric = metrics[metric_id]
        payload = {"metric_id": metric_id, "metric_name": metric.name, "unit": metric.unit, **history}
        frames[metric_id] = (text_frame(encode_message("metric_history", payload)), payload["last_id"])
    return frames


def latest_loader(app: web.Application, metrics: Mapping[int, Metric]) -> HistoryLoader:
    """The values stored last (`history_limit` of them, by id): the history sent on connect and `subscribe`.

    Read and encoded once for all the sockets asking together (server/live/sharedreads.py).
    """

    async def load(metric_ids: list[int]) -> HistoryFrames:
        limit = app[SETTINGS_KEY].history_limit
        latest = await db.latest_values(app[DB_KEY], metric_ids, limit)
        return _history_frames(metrics, {i: _raw_values(values) for i, values in latest.items()})

    async def shared(metric_ids: list[int]) -> HistoryFrames:
        # `metrics` is the shared mapping of one config version (server/live/configcache.py):
        # its identity, kept alive by `load` while the read is pending, names the version.
        key = ("latest", id(metrics), tuple(metric_ids))
        return await app[READS_KEY].read(key, lambda: load(metric_ids))

    return shared


@dataclass(frozen=True)
class Window:
    """The range a `history` asks for: [since, until), or from `since` on when `until` is None
    (it ends now, and the values stored later extend it: live). `range_name` for the old form."""

    since: datetime
    until: datetime | None
    range_name: str | None = None

    @property
    def live(self) -> bool:
        return self.until is None


def requested_window(payload: Mapping[str, Any], now: datetime) -> Window:
    """The window of a validated `history` payload (common/schemas.py::HistorySchema).
    A `to` at or after now ends now: the range is live."""
    if payload.get("range"):
        return Window(now - timedelta(seconds=RANGES[payload["range"]]), None, payload["range"])
    until = payload.get("until")
    return Window(payload["since"], until if until is not None and until < now else None)


def range_bucket_seconds(range_name: str) -> int:
    """0 (raw values) for the shortest range, else a bucket size giving at most MAX_POINTS buckets;
    whole minutes from a minute up, so that buckets are made of per-minute rollups."""
    seconds = RANGES[range_name]
    if seconds <= MAX_POINTS:
        return 0
    size = -(-seconds // MAX_POINTS)
    return size if size < 60 else -(-size // 60) * 60


def window_bucket_seconds(window: Window, now: datetime) -> int:
    """Buckets of a from/to range: whole minutes, as few as give at most MAX_POINTS buckets."""
    span = ((window.until or now) - window.since).total_seconds()
    return max(1, math.ceil(span / 60 / MAX_POINTS)) * 60


def range_loader(app: web.Application, metrics: Mapping[int, Metric], window: Window) -> HistoryLoader:
    """Values of the window: raw when few enough, else min/max/avg buckets; with its summary."""

    async def load(metric_ids: list[int]) -> HistoryFrames:
        return _history_frames(metrics, await _range_histories(app, metrics, window, metric_ids))

    return load


async def _range_histories(
    app: web.Application, metrics: Mapping[int, Metric], window: Window, metric_ids: list[int]
) -> dict[int, dict[str, Any]]:
    pool = app[DB_KEY]
    now = datetime.now(UTC)
    raw: dict[int, list[MetricValue]] = {}
    if window.range_name is not None:
        bucket_seconds = range_bucket_seconds(window.range_name)
        if not bucket_seconds:
            raw = await db.latest_values(pool, metric_ids, MAX_RECOVERED, since=window.since)
    else:
        bucket_seconds = window_bucket_seconds(window, now)
        if window.since >= now - RAW_HORIZON:
            found = await db.values_between(pool, metric_ids, window.since, window.until, MAX_RAW + 1)
            # By id, the order values were stored in (as every history sends them).
            raw = {i: sorted(v, key=lambda v: v.id) for i, v in found.items() if len(v) <= MAX_RAW}
    common = _window_fields(window)
    histories = {
        metric_id: {
            **_raw_values(values),
            **common,
            "bucket_seconds": 0,
            "summary": _raw_summary(metrics[metric_id], values),
        }
        for metric_id, values in raw.items()
    }
    bucketed = [metric_id for metric_id in metric_ids if metric_id not in raw]
    if not bucketed:
        return histories
    buckets = await db.bucketed_values(pool, bucketed, window.since, bucket_seconds, window.until)
    histograms = [metric_id for metric_id in bucketed if metrics[metric_id].type == "histogram"]
    # Per bucket for the heatmap; merged, the range's distribution for the summary.
    sketches = await db.bucket_sketches(pool, histograms, window.since, bucket_seconds, window.until)
    for metric_id, of_metric in buckets.items():
        histories[metric_id] = {
            "values": [_bucket_value(metrics[metric_id], b, sketches.get(metric_id)) for b in of_metric],
            "last_id": max((b.last_id for b in of_metric), default=None),
            **common,
            "bucket_seconds": bucket_seconds,
            "summary": bucket_summary(
                metrics[metric_id], of_metric, merge_sketches(sketches.get(metric_id, {}).values())
            ),
        }
    return histories


def _window_fields(window: Window) -> dict[str, Any]:
    fields: dict[str, Any] = {"range": window.range_name} if window.range_name else {}
    fields["from"] = window.since.isoformat()
    fields["to"] = window.until.isoformat() if window.until is not None else None
    fields["live"] = window.live
    return fields


def _raw_summary(metric: Metric, values: list[MetricValue]) -> dict[str, Any]:
    # In time order: a counter's increases are between values measured one after the other.
    return raw_summary(metric, sorted(values, key=lambda v: (v.ts, v.id)))


def _bucket_value(
    metric: Metric, bucket: db.Bucket, sketches: Mapping[datetime, Mapping[int, int]] | None = None
) -> dict[str, Any]:
    value = {
        "value": bucket.avg,
        "timestamp": bucket.start.isoformat(),
        "min": bucket.min,
        "max": bucket.max,
        "count": bucket.count,
    }
    if metric.type == "counter":
        # Since the value before the bucket: the buckets' increases add up to the range's.
        value["increase"] = bucket.increase
    elif metric.type == "histogram" and sketches is not None:
        # The bucket's values by sketch key (docs/protocol.md "Ranges"): a heatmap's column.
        found = sketches.get(bucket.start, {})
        value["sketch"] = [[key, found[key]] for key in sorted(found)]
    return value


def resume_loader(
    app: web.Application, metrics: Mapping[int, Metric], positions: dict[int, int]
) -> HistoryLoader:
    """What was stored after each position (larger ids), or `recovered: false` when that cannot be told."""

    async def load(metric_ids: list[int]) -> HistoryFrames:
        missed = await db.values_after(app[DB_KEY], {i: positions[i] for i in metric_ids}, MAX_RECOVERED)
        answers: dict[int, dict[str, Any]] = {}
        for metric_id in metric_ids:
            values = missed[metric_id]
            if values is None:
                answers[metric_id] = {"values": [], "last_id": None, "recovered": False}
            else:
                answers[metric_id] = {**_raw_values(values), "recovered": True}
                answers[metric_id]["last_id"] = values[-1].id if values else positions[metric_id]
        return _history_frames(metrics, answers)

    async def shared(metric_ids: list[int]) -> HistoryFrames:
        # After a restart most clients of a dashboard hold the same newest
        # values: their `resume`s ask the same thing, read once (as `latest_loader`).
        key = ("resume", id(metrics), tuple((i, positions[i]) for i in metric_ids))
        return await app[READS_KEY].read(key, lambda: load(metric_ids))

    return shared


async def send_histories(
    app: web.Application, conn: ClientConnection, metric_ids: list[int], load: HistoryLoader
) -> None:
    """Subscribe to the metrics, then send their history, then live updates.

    Live updates arriving while history is read are held back and released
    afterwards minus those the history already accounts for (ids up to its
    `last_id`, the largest it holds): no gap, no duplicate.
    """
    conn.hold()
    last_sent: dict[int, int] = {}
    try:
        app[HUB_KEY].subscribe(conn, metric_ids)
        histories = await load(metric_ids)
        await conn.send_reply([histories[metric_id][0] for metric_id in metric_ids])
        for metric_id in metric_ids:
            last_id = histories[metric_id][1]
            if last_id is not None:
                last_sent[metric_id] = last_id
    finally:
        app[HUB_KEY].release(conn, last_sent)


async def answer_with_histories(
    app: web.Application, conn: ClientConnection, metric_ids: list[int], load: HistoryLoader
) -> None:
    """`send_histories` for a client's request (`history`, `resume`, `subscribe`),
    a few of one user's at once: with the database away the client gets an
    error and nothing changes, so it can simply ask again."""
    newly = [metric_id for metric_id in metric_ids if metric_id not in conn.subscribed]
    try:
        async with app[HISTORY_TURNS_KEY].turn(conn.user.id):
            await send_histories(app, conn, metric_ids, load)
    except db.UNAVAILABLE as exc:
        app[HUB_KEY].unsubscribe(conn, newly)
        log.warning("history unavailable: %s", exc)
        app[TELEMETRY_KEY].backend_error(exc)
        raise ProtocolError(
            "history unavailable: the database is not reachable, retry later",
            {"database": ["unavailable"]},
        ) from None

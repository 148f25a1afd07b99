"""Exports of stored values as CSV or JSON, produced chunk by chunk.

The server's download and `dashboard-server export` write the same bytes.
Rows come from db.export_batches, so memory holds one batch whatever the
size of the export. Both formats list the values metric by metric (in the
dashboard's metric order), each metric's oldest first.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiopg

from common import db
from common.db import Dashboard, Metric, MetricValue

FORMATS = ("csv", "json")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
CSV_COLUMNS = ("metric_id", "metric", "unit", "timestamp", "value")
DEFAULT_SPAN = timedelta(hours=24)
TIME_HELP = "ISO 8601 time (without a zone: UTC), `now`, or a span before now such as 90s, 30m, 24h or 7d."
# What makes a spreadsheet read a cell as a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_SPAN = re.compile(r"(\d{1,9})([smhd])")
_SPAN_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class ExportRange:
    since: datetime
    until: datetime


class RangeError(ValueError):
    """An export range that cannot be read; `field` is `since` or `until`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def parse_time(text: str, now: datetime) -> datetime:
    """A point in time from an ISO 8601 string, `now`, or a span before `now` (`24h`).
    ValueError if it is none of these, or beyond what a datetime holds."""
    text = text.strip()
    if text == "now":
        return now
    span = _SPAN.fullmatch(text)
    try:
        if span:
            return now - timedelta(**{_SPAN_UNITS[span[2]]: int(span[1])})
        parsed = datetime.fromisoformat(text)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        # In UTC it must still be a datetime (0001-01-01T00:00+14:00 is not),
        # or comparing and storing it fails later.
        parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"out of range: {text[:40]!r}") from None
    except ValueError:
        raise ValueError(f"not a time: {text[:40]!r} ({TIME_HELP})") from None
    return parsed


def export_range(since: str | None, until: str | None, now: datetime | None = None) -> ExportRange:
    """[since, until) from user input; by default the last 24 hours.
    RangeError naming the field if one cannot be read, or the range is empty or reversed."""
    now = now or datetime.now(UTC)
    end = _field_time("until", until, now) if until else now
    try:
        start = _field_time("since", since, now) if since else end - DEFAULT_SPAN
    except OverflowError:  # the default since: 24 hours before the earliest time there is
        raise RangeError("until", "too early to export the 24 hours before it") from None
    if start >= end:
        raise RangeError("since", "must be before until")
    return ExportRange(start, end)


def _field_time(field: str, text: str, now: datetime) -> datetime:
    try:
        return parse_time(text, now)
    except ValueError as exc:
        raise RangeError(field, str(exc)) from None


def filename(dashboard: Dashboard, metric: Metric | None, span: ExportRange, file_format: str) -> str:
    """A download name saying what is inside: slug, metric, start time."""
    stamp = span.since.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    what = re.sub(r"[^A-Za-z0-9_.-]+", "_", metric.name) if metric else "all"
    return f"{dashboard.slug}-{what}-{stamp}.{file_format}"


async def csv_chunks(
    metrics: Sequence[Metric], batches: AsyncIterator[list[MetricValue]]
) -> AsyncIterator[bytes]:
    """A header, then one chunk per batch. The csv module quotes names holding
    commas, quotes or line breaks (RFC 4180); spreadsheet_text keeps names and
    units from running as formulas."""
    # The text cells of each metric, made safe once; values stay numbers (-1.5 is not a formula).
    text_cells = {m.id: (spreadsheet_text(m.name), spreadsheet_text(m.unit)) for m in metrics}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield _drain(buffer)
    async for batch in batches:
        for item in batch:
            name, unit = text_cells[item.metric_id]
            writer.writerow((item.metric_id, name, unit, item.ts.isoformat(), repr(item.value)))
        yield _drain(buffer)


def spreadsheet_text(text: str) -> str:
    """A text cell a spreadsheet shows as text, never runs as a formula (OWASP
    "CSV Injection"): one that would start a formula gets a leading single quote."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


async def json_chunks(
    dashboard: Dashboard,
    metrics: Sequence[Metric],
    span: ExportRange,
    batches: AsyncIterator[list[MetricValue]],
) -> AsyncIterator[bytes]:
    """One JSON document, written as it is read: the header object, then the
    `values` array one batch at a time, then the closing brackets. A client
    that gets a cut-off download gets invalid JSON, never a silently short one."""
    head = {
        "dashboard": {"id": dashboard.id, "slug": dashboard.slug, "name": dashboard.name},
        "since": span.since.isoformat(),
        "until": span.until.isoformat(),
        "metrics": [{"id": m.id, "name": m.name, "type": m.type, "unit": m.unit} for m in metrics],
    }
    # The header without its closing brace, so the values array can follow.
    yield json.dumps(head)[:-1].encode() + b', "values": ['
    first = True
    async for batch in batches:
        items = ",".join(
            json.dumps({"metric_id": v.metric_id, "timestamp": v.ts.isoformat(), "value": v.value})
            for v in batch
        )
        yield (items if first else "," + items).encode()
        first = False
    yield b"]}\n"


def export_chunks(
    pool: aiopg.Pool, dashboard: Dashboard, metrics: Sequence[Metric], span: ExportRange, file_format: str
) -> AsyncIterator[bytes]:
    """The whole export of these metrics of the dashboard over `span`, in `file_format`, chunk by chunk."""
    batches = db.export_batches(pool, [m.id for m in metrics], span.since, span.until)
    if file_format == "csv":
        return csv_chunks(metrics, batches)
    return json_chunks(dashboard, metrics, span, batches)


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data

"""Replays every verifier's log against what PostgreSQL holds at the end.

Per client and metric, what the client holds must at every moment be a run
of consecutive stored values (in id order, the order stored):

* a `metric_history` is such a run ending at its `last_id`; when it has
  fewer than the history limit it starts at the metric's first value, and a
  jump past values the client held before is allowed only for a full one
  (the server keeps no more for a fresh page);
* a `resume` answer with `recovered: true` is exactly what was stored after
  `after_id` up to its `last_id`; `recovered: false` only where more than
  1000 values (MAX_RECOVERED) came after `after_id`, counted up to the
  `last_id` of the reload that follows;
* every live value is the stored successor of the one held before it.

So a value shown but not stored, a duplicate, a reordering or a gap each
break the run. At the end each client must hold the newest stored value of
every metric, and every pushed number the API acknowledged must be stored
(twice only if its first answer was lost).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from chaos.clients import Verifier
from chaos.load import Pusher

MAX_RECOVERED = 1000
RELOAD_LIMIT = 1000


@dataclass
class Violation:
    client: int | None
    metric_id: int | None
    message: str
    event: int | None = None  # index in the client's log
    at: float | None = None


@dataclass
class _Held:
    """What a client holds of one metric during the replay."""

    last: int | None = None  # position (in stored order) of the newest value held
    state: str = "none"  # none: nothing known; held: `last` is held; empty: the metric had no value


class Checker:
    def __init__(self, stored: dict[int, list[tuple[int, float]]], history_limit: int) -> None:
        self.stored = stored
        self.position = {m: {vid: i for i, (vid, _) in enumerate(rows)} for m, rows in stored.items()}
        self.history_limit = history_limit
        self.violations: list[Violation] = []
        self.checked = 0
        self.counts: Counter[str] = Counter()

    def check_client(self, verifier: Verifier) -> None:
        for metric_id in verifier.board.metric_ids:
            self._replay(verifier, metric_id)

    def _fail(self, verifier: Verifier, metric_id: int, index: int, message: str) -> None:
        at = verifier.events[index][0]
        self.violations.append(Violation(verifier.number, metric_id, message, index, at))

    def _stored(
        self, verifier: Verifier, metric_id: int, index: int, values: list[tuple[int, float]]
    ) -> bool:
        rows, where = self.stored[metric_id], self.position[metric_id]
        for value_id, value in values:
            self.checked += 1
            if value_id not in where or rows[where[value_id]][1] != value:
                self._fail(verifier, metric_id, index, f"value id {value_id} = {value} shown but not stored")
                return False
        return True

    def _run(self, verifier: Verifier, metric_id: int, index: int, values: list, start: int | None) -> bool:
        """values are consecutive stored values, and the first follows `start` (a position) if given."""
        where = self.position[metric_id]
        positions = [where[vid] for vid, _ in values]
        expected = list(range(positions[0], positions[0] + len(positions))) if positions else []
        if positions != expected:
            self._fail(
                verifier,
                metric_id,
                index,
                f"not consecutive stored values: ids {[v for v, _ in values][:20]}",
            )
            return False
        if start is not None and positions and positions[0] != start + 1:
            what = "gap" if positions[0] > start + 1 else "duplicate or reorder"
            rows = self.stored[metric_id]
            self._fail(
                verifier,
                metric_id,
                index,
                f"{what}: after id {rows[start][0]} came id {values[0][0]}"
                f" ({positions[0] - start - 1:+d} stored values between)",
            )
            return False
        return True

    def _replay(self, verifier: Verifier, metric_id: int) -> None:
        held = _Held()
        handlers = {
            "history": self._on_history,
            "reload": self._on_history,
            "resumed": self._on_resumed,
            "lost": self._on_lost,
            "live": self._on_live,
        }
        for index, (_, _, kind, event_metric, data) in enumerate(verifier.events):
            if event_metric == metric_id and kind in handlers:
                if kind != "live":
                    self.counts[kind] += 1
                if not handlers[kind](verifier, metric_id, index, kind, data, held):
                    return
        rows = self.stored[metric_id]
        if held.state != "held" or held.last != len(rows) - 1:
            newest = rows[-1][0] if rows else None
            mine = rows[held.last][0] if held.last is not None else None
            self._fail(
                verifier,
                metric_id,
                len(verifier.events) - 1,
                f"ends holding id {mine}, newest stored is {newest}",
            )

    def _on_history(
        self, verifier: Verifier, metric_id: int, index: int, kind: str, data, held: _Held
    ) -> bool:
        """A `metric_history` that replaces what the client held (a fresh one, or a `history` reload)."""
        where = self.position[metric_id]
        values, last_id = data
        if not self._stored(verifier, metric_id, index, values) or not self._run(
            verifier, metric_id, index, values, None
        ):
            return False
        if values and values[-1][0] != last_id:
            self._fail(verifier, metric_id, index, f"last_id {last_id} is not the last value's id")
            return False
        short = len(values) < self.history_limit
        if kind == "history" and values and short and where[values[0][0]] != 0:
            self._fail(verifier, metric_id, index, "a short history that misses older values")
            return False
        if kind == "history" and held.state == "held" and values:
            jump = where[values[0][0]] - held.last - 1
            if jump > 0 and short:
                self._fail(verifier, metric_id, index, f"history skipped {jump} values")
                return False
            if jump > 0:
                self.counts["history past the limit"] += 1
        if values:
            held.last, held.state = where[values[-1][0]], "held"
        else:
            held.last, held.state = None, "empty" if kind == "history" else "none"
        return True

    def _on_resumed(
        self, verifier: Verifier, metric_id: int, index: int, kind: str, data, held: _Held
    ) -> bool:
        """A `resume` answer with `recovered: true`: exactly what was stored after `after_id`."""
        where = self.position[metric_id]
        after_id, values, last_id = data
        if held.state != "held" or after_id not in where or where[after_id] != held.last:
            self._fail(verifier, metric_id, index, f"resumed after {after_id}, which is not what it held")
            return False
        if not self._stored(verifier, metric_id, index, values) or not self._run(
            verifier, metric_id, index, values, held.last
        ):
            return False
        if last_id != (values[-1][0] if values else after_id):
            self._fail(verifier, metric_id, index, f"resume's last_id {last_id} does not match its values")
            return False
        if values:
            held.last = where[values[-1][0]]
        return True

    def _on_lost(self, verifier: Verifier, metric_id: int, index: int, kind: str, data, held: _Held) -> bool:
        self._check_lost(verifier, metric_id, index, data)
        held.last, held.state = None, "none"
        return True

    def _on_live(self, verifier: Verifier, metric_id: int, index: int, kind: str, data, held: _Held) -> bool:
        """A live value: the stored successor of the one held before it."""
        if not self._stored(verifier, metric_id, index, [data]):
            return False
        if held.state == "none":
            return True  # after recovered: false, before the reload replaces it
        start = -1 if held.state == "empty" else held.last
        if not self._run(verifier, metric_id, index, [data], start):
            return False
        held.last, held.state = self.position[metric_id][data[0]], "held"
        return True

    def _check_lost(self, verifier: Verifier, metric_id: int, index: int, after_id: int) -> None:
        where = self.position[metric_id]
        if after_id not in where:
            return  # the value is gone: nothing to resume from
        for _, _, kind, event_metric, data in verifier.events[index + 1 :]:
            if event_metric == metric_id and kind == "reload":
                _, last_id = data
                if last_id is None or last_id not in where:
                    return
                gap = where[last_id] - where[after_id]
                if gap <= MAX_RECOVERED:
                    self._fail(verifier, metric_id, index, f"recovered: false for a gap of only {gap} values")
                return

    def check_pushes(self, pusher: Pusher) -> None:
        numbers = Counter(int(value) for _, value in self.stored[pusher.board.pushed_id])
        missing = sorted(pusher.acked - set(numbers))
        if missing:
            self.violations.append(
                Violation(None, pusher.board.pushed_id, f"acknowledged pushes not stored: {missing[:20]}")
            )
        twice = sorted(n for n, count in numbers.items() if count > 1 and n not in pusher.ambiguous)
        if twice:
            self.violations.append(
                Violation(None, pusher.board.pushed_id, f"pushed once, stored more than once: {twice[:20]}")
            )
        never = sorted(n for n in numbers if n >= pusher.next_seq or n < 1)
        if never:
            self.violations.append(
                Violation(None, pusher.board.pushed_id, f"stored but never pushed: {never[:20]}")
            )


def context(verifier: Verifier, violation: Violation, faults: list, around: int = 12) -> dict[str, Any]:
    """The client's log around a violation and the faults near it in time."""
    index = violation.event or 0
    start = max(0, index - around)
    events = [
        {"t": round(t, 3), "connection": c, "kind": k, "metric_id": m, "data": _short(d)}
        for t, c, k, m, d in verifier.events[start : index + 3]
        if m in (None, violation.metric_id)
    ]
    near = [
        {
            "kind": f.kind,
            "target": f.target,
            "started": round(f.started, 3),
            "ended": f.ended and round(f.ended, 3),
        }
        for f in faults
        if violation.at is not None and abs(f.started - violation.at) < 30
    ]
    return {"client": verifier.number, "form": verifier.form, "events": events, "faults_near": near}


def _short(data: Any) -> Any:
    if isinstance(data, tuple) and data and isinstance(data[0], list):
        values = data[0]
        summary = [values[0], "...", values[-1]] if len(values) > 4 else values
        return [f"{len(values)} values", summary, *data[1:]]
    if isinstance(data, tuple) and len(data) == 3 and isinstance(data[1], list):
        after, values, last = data
        return [after, f"{len(values)} values", values[:2], last]
    return data

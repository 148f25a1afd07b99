"""The page's pure modules, case by case, and socket.js's close codes, in the real Chromium.

One page (en-US, Europe/Paris: numbers and times as a user there sees them)
imports each module with `await import(...)`, the files served from
server/static/ as the server serves them; every case states a call and what
it gives. No server, database or socket: the whole file takes seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Route, sync_playwright

from common import vocabulary
from server.live.closecodes import CloseCode
from tests.browser.pages import CHROMIUM_ARGS

pytestmark = [pytest.mark.browser]

STATIC = Path(__file__).resolve().parents[2] / "server" / "static"
ORIGIN = "http://page-modules.test"
# As base.html writes it: the vocabularies for the modules that read them.
PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<script type="application/json" id="vocabulary">'
    + json.dumps(vocabulary.as_json()).replace("<", "\\u003c")
    + "</script></head><body></body></html>"
)

# 2026-12-07 09:30:00 UTC, a Monday: 10:30 in Paris (UTC+01:00).
NOW = 1_796_635_800_000
HOUR = 3_600_000
DAY = 24 * HOUR
DASH = "\u2013"  # the en dash: "no number", and between two times


@dataclass(frozen=True)
class Raises:
    """The call throws an Error with this message."""

    message: str


@dataclass(frozen=True)
class Case:
    call: str
    args: tuple[Any, ...]
    expected: Any

    @property
    def name(self) -> str:
        return f"{self.call}{json.dumps(list(self.args), ensure_ascii=False)}"


FORMAT = [
    # Numbers: two decimals, one from 100 on, compact from 100,000 on.
    Case("formatValue", (0,), "0"),
    Case("formatValue", (0.123456,), "0.12"),
    Case("formatValue", (-0.005,), "-0.01"),
    Case("formatValue", (42,), "42"),
    Case("formatValue", (123.456,), "123.5"),
    Case("formatValue", (1234.567,), "1,234.6"),
    Case("formatValue", (99999.9,), "99,999.9"),
    Case("formatValue", (100000,), "100K"),
    Case("formatValue", (1500000,), "1.5M"),
    Case("formatValue", (-2500000000,), "-2.5B"),
    Case("formatValue", (None,), DASH),
    Case("formatValue", ("12",), DASH),
    # Bytes: binary units, whatever the size.
    Case("isBytes", ("B",), True),
    Case("isBytes", ("bytes",), True),
    Case("isBytes", ("b",), False),
    Case("isBytes", ("KiB",), False),
    Case("formatBytes", (0,), "0 bytes"),
    Case("formatBytes", (1023,), "1,023 bytes"),
    Case("formatBytes", (1024,), "1 KiB"),
    Case("formatBytes", (1536,), "1.5 KiB"),
    Case("formatBytes", (1610612736,), "1.5 GiB"),
    Case("formatBytes", (-2048,), "-2 KiB"),
    Case("formatBytes", (1.2e21,), "1,065,814.1 PiB"),
    Case("formatBytes", (None,), DASH),
    Case("withUnit", (1536, "B"), ["1.5", "KiB"]),
    Case("withUnit", (1536, "ms"), ["1,536", "ms"]),
    Case("withUnit", (None, "B"), [DASH, "B"]),
    Case("withUnit", (5, ""), ["5", ""]),
    Case("formatStat", (1536, "bytes"), "1.5 KiB"),
    Case("formatStat", (1536, "ms"), "1,536"),
    # A value with its unit, or a counter's rate per second.
    Case("statText", (42, "ms"), "42 ms"),
    Case("statText", (2.5, ""), "2.5"),
    Case("statText", (42, "req", True), "42 req/s"),
    Case("statText", (2.5, "", True), "2.5/s"),
    Case("statText", (3145728, "B", True), "3 MiB/s"),
    Case("statText", (None, "ms"), DASH),
    Case("statText", (None, "ms", True), DASH),
    # Ages: seconds under two minutes, minutes under two hours, then hours.
    Case("formatAge", (0,), "0 s"),
    Case("formatAge", (-5000,), "0 s"),
    Case("formatAge", (1499,), "1 s"),
    Case("formatAge", (119000,), "119 s"),
    Case("formatAge", (120000,), "2 min"),
    Case("formatAge", (7199000,), "120 min"),
    Case("formatAge", (7200000,), "2 h"),
    Case("formatAge", (90000000,), "25 h"),
    # Time ticks (seconds) in the browser's zone, as precise as their step needs.
    Case("timeTicks", ([1796635800, 1796635810, 1796635820], 300), ["10:30:00", "10:30:10", "10:30:20"]),
    Case("timeTicks", ([1796635800], 30), ["10:30:00"]),
    Case("timeTicks", ([1796635800, 1796636400], 3600), ["10:30", "10:40"]),
    Case("timeTicks", ([1796684400, 1796688000], 86400), ["00:00", "01:00"]),
    Case("timeTicks", ([1796614200, 1796635800], 3 * 86400), ["Mon 04:30", "Mon 10:30"]),
    Case("timeTicks", ([1796428800, 1796515200], 7 * 86400), ["5 Sat", "6 Sun"]),
    # A tooltip's time: to the second, or a bucket's start to its end.
    Case("pointTime", (1796635805, 0), "Mon 10:30:05"),
    Case("pointTime", (1796635800, 300), f"Mon 10:30:00 {DASH} 10:35"),
    Case("clockTime", (NOW + 5123,), "10:30:05"),
]

TIMERANGE = [
    # Expressions: now, now minus a span, local times, times with an offset.
    Case("parseTime", ("now", NOW), NOW),
    Case("parseTime", ("now-6h", NOW), NOW - 6 * HOUR),
    Case("parseTime", (" now - 90 m ", NOW), NOW - 90 * 60_000),
    Case("parseTime", ("now-2w", NOW), NOW - 14 * DAY),
    Case("parseTime", ("2026-12-07 09:30", NOW), NOW - HOUR),
    Case("parseTime", ("2026-12-07T09:30:15", NOW), NOW - HOUR + 15_000),
    Case("parseTime", ("2026-12-07T09:30:00Z", NOW), NOW),
    Case("parseTime", ("2026-12-07T09:30:00+02:00", NOW), NOW - 2 * HOUR),
    Case("parseTime", ("2026-02-31 10:00", NOW), Raises("no such time: 2026-02-31 10:00")),
    # Paris skips 02:00-03:00 that night: refused rather than moved.
    Case("parseTime", ("2026-03-29 02:30", NOW), Raises("no such time: 2026-03-29 02:30")),
    Case(
        "parseTime", ("yesterday", NOW), Raises('not a time: "yesterday" (try now-6h, or 2026-12-07 09:30)')
    ),
    Case("parseTime", ("now-6y", NOW), Raises('not a time: "now-6y" (try now-6h, or 2026-12-07 09:30)')),
    Case("isRelative", (" now-2d ",), True),
    Case("isRelative", ("2026-12-07 09:30",), False),
    # Views resolved at NOW.
    Case("resolve", ({"range": "1h"}, NOW), {"from": NOW - HOUR, "to": NOW, "live": True, "span": HOUR}),
    Case(
        "resolve",
        ({"from": "now-2d", "to": "now-1d"}, NOW),
        {"from": NOW - 2 * DAY, "to": NOW - DAY, "live": False, "span": DAY},
    ),
    Case(
        "resolve",
        ({"from": "now-1h", "to": "2026-12-07T12:00:00Z"}, NOW),
        {"from": NOW - HOUR, "to": NOW, "live": True, "span": HOUR},
    ),
    # What the server would refuse, in the words the picker shows.
    Case("problem", ({"range": "24h"}, NOW), None),
    Case("problem", ({"from": "now-6h", "to": "now"}, NOW), None),
    Case("problem", ({"range": "2h"}, NOW), "unknown range 2h"),
    Case("problem", ({"from": "now-1h", "to": "now-2h"}, NOW), "the end must be after the start"),
    Case(
        "problem",
        ({"from": "now-1h", "to": "2026-12-09T00:00:00Z"}, NOW),
        "the end is more than a day from now",
    ),
    Case(
        "problem",
        ({"from": "2010-01-01T00:00:00Z", "to": "2010-01-02T00:00:00Z"}, NOW),
        "the start is more than ten years ago",
    ),
    Case(
        "problem",
        ({"from": "now-5s", "to": "now"}, NOW),
        "the range must span at least 10 seconds before now",
    ),
    Case("problem", ({"from": "now-500d", "to": "now"}, NOW), "the range must span at most 400 days"),
    Case(
        "problem",
        ({"from": "soon", "to": "now"}, NOW),
        'not a time: "soon" (try now-6h, or 2026-12-07 09:30)',
    ),
    # The `history` request's fields.
    Case("historyFields", ({"range": "5m"}, NOW), {"range": "5m"}),
    Case("historyFields", ({"from": "now-6h", "to": "now"}, NOW), {"from": "2026-12-07T03:30:00.000Z"}),
    Case(
        "historyFields",
        ({"from": "now-2d", "to": "now-1d"}, NOW),
        {"from": "2026-12-05T09:30:00.000Z", "to": "2026-12-06T09:30:00.000Z"},
    ),
    Case("formatSpan", (6 * HOUR,), "6h"),
    Case("formatSpan", (90 * 60_000,), "90m"),
    Case("formatSpan", (14 * DAY,), "2w"),
    Case("formatSpan", (1500,), "2s"),
    Case("formatSpan", (DAY + HOUR + 61_000,), "90061s"),
    # Zooming and moving.
    Case(
        "zoomTo",
        (NOW - HOUR, NOW - 2 * HOUR, NOW),
        {"from": "2026-12-07T07:30:00.000Z", "to": "2026-12-07T08:30:00.000Z"},
    ),
    Case(
        "zoomTo",
        (NOW - 1000, NOW + 5000, NOW),
        {"from": "2026-12-07T09:29:50.000Z", "to": "2026-12-07T09:30:00.000Z"},
    ),
    Case("zoomOut", ({"range": "1h"}, NOW), {"from": "now-2h", "to": "now"}),
    Case(
        "zoomOut",
        ({"from": "2026-12-07T06:00:00.000Z", "to": "2026-12-07T07:00:00.000Z"}, NOW),
        {"from": "2026-12-07T05:30:00.000Z", "to": "2026-12-07T07:30:00.000Z"},
    ),
    Case(
        "zoomOut",
        ({"from": "2026-12-07T08:00:00.000Z", "to": "2026-12-07T09:00:00.000Z"}, NOW),
        {"from": "now-2h", "to": "now"},
    ),
    Case(
        "shift",
        ({"range": "1h"}, -1, NOW),
        {"from": "2026-12-07T08:00:00.000Z", "to": "2026-12-07T09:00:00.000Z"},
    ),
    Case("shift", ({"range": "1h"}, 1, NOW), {"range": "1h"}),
    Case(
        "shift",
        ({"from": "2026-12-07T08:00:00.000Z", "to": "2026-12-07T09:00:00.000Z"}, 1, NOW),
        {"from": "now-1h", "to": "now"},
    ),
    # The URL's hash.
    Case("viewFromHash", ("#range=24h", NOW), {"range": "24h"}),
    Case("viewFromHash", ("#from=now-6h&panel=3", NOW), {"from": "now-6h", "to": "now"}),
    Case(
        "viewFromHash", ("#from=2026-12-07%2009%3A30&to=now", NOW), {"from": "2026-12-07 09:30", "to": "now"}
    ),
    Case("viewFromHash", ("#range=2h", NOW), None),
    Case("viewFromHash", ("#from=garbage", NOW), None),
    Case("viewFromHash", ("", NOW), None),
    Case(
        "hashWithView", ("#panel=3&range=1h", {"from": "now-6h", "to": "now"}), "#from=now-6h&to=now&panel=3"
    ),
    Case("hashWithView", ("", {"range": "5m"}), "#range=5m"),
    Case(
        "hashWithView",
        ("#kiosk", {"from": "2026-12-07 09:30", "to": "now"}),
        "#from=2026-12-07%2009:30&to=now&kiosk",
    ),
    # Times for people, in the browser's zone.
    Case("formatLocal", (NOW,), "2026-12-07 10:30:00"),
    Case("utcOffset", (NOW,), "UTC+01:00"),
    Case("utcOffset", (1_782_907_200_000,), "UTC+02:00"),
    Case("zoneName", (NOW,), "Europe/Paris (UTC+01:00)"),
    Case("describe", ({"range": "24h"}, NOW), "Last 24 hours"),
    Case("describe", ({"from": "now-6h", "to": "now"}, NOW), "Last 6h"),
    Case(
        "describe",
        ({"from": "2026-12-05T00:00:00.000Z", "to": "2026-12-06T00:00:00.000Z"}, NOW),
        "2026-12-05 01:00:00 to 2026-12-06 01:00:00",
    ),
    Case("describe", ({"from": "2026-12-07T08:00:00.000Z", "to": "now"}, NOW), "2026-12-07 09:00:00 to now"),
]


def _card(xs: list[float], **fields: Any) -> dict[str, Any]:
    """A card's points (series.js), raw unless `bucket` is given."""
    n = len(xs)
    card: dict[str, Any] = {"bucket": 0, "xs": xs, "ys": [1] * n, "mins": [1] * n, "maxs": [1] * n}
    card.update(counts=[1] * n, ids=list(range(1, n + 1)), incs=[0] * n, sketches=[None] * n)
    card.update(fields)
    return card


SERIES = [
    Case("parseTime", ("2026-12-07T09:30:00Z",), NOW / 1000),
    Case("parseTime", ("2026-12-07T10:30:00.500+01:00",), NOW / 1000 + 0.5),
    Case("extent", ([3, None, -1, 7],), [-1, 7]),
    # Buckets weigh as many values as they hold.
    Case("average", (_card([0, 60], ys=[1, 4], counts=[1, 3]),), 3.25),
    # A counter's rate over the range: its increases over the time they took.
    Case("counterRate", (_card([0, 10, 20], incs=[0, 5, 15]),), 1),
    Case(
        "counterRate",
        (_card([0, 60], bucket=60, incs=[30, 30], summary={"firstX": 10, "lastX": 100}),),
        60 / 90,
    ),
    # Raw: over the last 1/30 of the range (10 s of 5 min), at least the step before.
    Case("counterRates", (_card([0, 5, 10, 15, 30], incs=[0, 5, 5, 5, 30]), 300), [None, 1, 1, 1, 2]),
    Case("counterRates", (_card([0, 5, 10, 15, 30], incs=[0, 5, 5, 5, 30]), 600), [None, 1, 1, 1, 1.75]),
    # Buckets: per bucket; the newest only as far as its newest value (and the usual gap).
    Case(
        "counterRates",
        (_card([0, 60, 120], bucket=60, incs=[60, 120, 30], summary={"lastX": 130}, gap=5), 3600),
        [1, 2, 2],
    ),
    Case("lastValue", (_card([0, 10], ys=[4, 9]),), 9),
    Case("lastValue", (_card([0, 60], bucket=60, ys=[4, 9]),), None),
    Case("lastValue", (_card([0, 60], bucket=60, summary={"lastValue": 11}),), 11),
    # Older than the span before the newest point: dropped.
    Case(
        "trim",
        (_card([0, 100, 200, 400], ys=[1, 2, 3, 4]), 250),
        _card([200, 400], ys=[3, 4], ids=[3, 4]),
    ),
    # A back-dated value goes where its time is; the newest stays the newest.
    Case(
        "addPoint",
        (_card([10, 30], ys=[1, 3], latest=3, lastId=2), 7, 20, 2, 0, False),
        _card([10, 20, 30], ys=[1, 2, 3], mins=[1, 2, 1], maxs=[1, 2, 1], ids=[1, 7, 2], latest=3, lastId=7),
    ),
    # Into its bucket: the average, min, max, count, id and increase follow.
    Case(
        "addPoint",
        (
            _card([0, 60], bucket=60, ys=[1, 2], maxs=[1, 2], mins=[1, 2], heatmap=False, summary=None),
            3,
            75,
            4,
            2,
            True,
        ),
        _card(
            [0, 60],
            bucket=60,
            ys=[1, 3],
            mins=[1, 2],
            maxs=[1, 4],
            counts=[1, 2],
            ids=[1, 3],
            incs=[0, 2],
            heatmap=False,
            summary=None,
            newestX=75,
            latest=4,
            lastId=3,
        ),
    ),
    # A history: its points, and a counter's increases from one value to the next (a reset at 3).
    Case(
        "replacePoints",
        (
            {},
            {
                "values": [
                    {"id": 1, "value": 5, "timestamp": "2026-12-07T09:30:00Z"},
                    {"id": 2, "value": 3, "timestamp": "2026-12-07T09:30:01Z"},
                ],
                "last_id": 2,
            },
            300,
        ),
        _card(
            [NOW / 1000, NOW / 1000 + 1],
            ys=[5, 3],
            mins=[5, 3],
            maxs=[5, 3],
            incs=[0, 3],
            summary=None,
            past=False,
            lastId=2,
            latest=3,
        ),
    ),
]

# Each case's call, in the page: its value (a call that returns nothing, as series.js's
# on a card, gives its first argument as the call left it), or the message of what it threw.
CALL_ALL = """async ([url, calls]) => {
  const module = await import(url);
  return calls.map(([name, args]) => {
    try {
      const value = module[name](...args);
      return { value: value === undefined ? args[0] : value };
    } catch (error) {
      return { error: String(error.message) };
    }
  });
}"""


class ModulePage:
    """A Chromium page on a made-up origin that serves server/static/ from disk."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def evaluate(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def outcomes(self, module: str, cases: list[Case]) -> dict[str, Any]:
        calls = [[case.call, list(case.args)] for case in cases]
        results = self.evaluate(CALL_ALL, [f"/static/{module}", calls])
        return {case.name: result for case, result in zip(cases, results, strict=True)}


def _serve(route: Route) -> None:
    path = urlsplit(route.request.url).path
    if path == "/":
        route.fulfill(content_type="text/html", body=PAGE)
        return
    file = STATIC / path.removeprefix("/static/")
    if path.startswith("/static/") and file.is_file() and file.parent == STATIC:
        route.fulfill(content_type="text/javascript", body=file.read_text())
        return
    route.fulfill(status=404, body="")


@pytest.fixture(scope="module")
def modules(chromium: str) -> Iterator[ModulePage]:
    """One page for the whole file."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(locale="en-US", timezone_id="Europe/Paris")
        page = context.new_page()
        page.route(f"{ORIGIN}/**", _serve)
        page.goto(f"{ORIGIN}/")
        yield ModulePage(page)
        browser.close()


@pytest.fixture(scope="module")
def format_outcomes(modules: ModulePage) -> dict[str, Any]:
    return modules.outcomes("format.js", FORMAT)


@pytest.fixture(scope="module")
def series_outcomes(modules: ModulePage) -> dict[str, Any]:
    return modules.outcomes("series.js", SERIES)


@pytest.fixture(scope="module")
def timerange_outcomes(modules: ModulePage) -> dict[str, Any]:
    return modules.outcomes("timerange.js", TIMERANGE)


def _expected(case: Case) -> dict[str, Any]:
    if isinstance(case.expected, Raises):
        return {"error": case.expected.message}
    return {"value": case.expected}


@pytest.mark.parametrize("case", FORMAT, ids=lambda case: case.name[:100])
def test_format(case: Case, format_outcomes: dict[str, Any]) -> None:
    assert format_outcomes[case.name] == _expected(case)


@pytest.mark.parametrize("case", TIMERANGE, ids=lambda case: case.name[:100])
def test_timerange(case: Case, timerange_outcomes: dict[str, Any]) -> None:
    assert timerange_outcomes[case.name] == _expected(case)


@pytest.mark.parametrize("case", SERIES, ids=lambda case: case.name[:100])
def test_series(case: Case, series_outcomes: dict[str, Any]) -> None:
    assert series_outcomes[case.name] == _expected(case)


def test_the_cases_have_distinct_names() -> None:
    for cases in (FORMAT, TIMERANGE, SERIES):
        names = [case.name for case in cases]
        assert len(names) == len(set(names))


def test_the_socket_knows_every_close_code_of_the_server(modules: ModulePage) -> None:
    table = modules.evaluate("async (url) => (await import(url)).CLOSE_CODES", "/static/socket.js")
    # Every name and value of server/live/closecodes.py, nothing more.
    assert {name: entry["code"] for name, entry in table.items()} == {
        code.name: code.value for code in CloseCode
    }
    assert all(isinstance(entry["reconnect"], bool) for entry in table.values())
    # 40xx: the client may reconnect (closecodes.py); after 4401 and 4403 the page stops.
    assert all(entry["reconnect"] for entry in table.values() if 4000 <= entry["code"] < 4100)
    stops = sorted(name for name, entry in table.items() if not entry["reconnect"])
    assert stops == ["FORBIDDEN", "UNAUTHENTICATED"]

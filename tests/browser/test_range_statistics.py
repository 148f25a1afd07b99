"""What a card states about a range is what the raw values give, on every range:
a histogram's p50/p95/p99 and a counter's rate, as Chromium shows them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.async_api import Page, expect

from common import db, stats
from common.schemas import RANGES
from tests.browser.pages import log_in, screenshot
from tests.statsdata import RATE, counter_rows, exact_percentile, in_range, latencies
from worker.rollups import roll_up

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def _stat(page: Page, metric: db.Metric, name: str) -> float:
    """The number a card shows for one statistic ("84.79", "5.4 req/s")."""
    locator = page.locator(f"[data-metric-id='{metric.id}'] [data-stat={name}] .stat-value")
    await expect(locator).not_to_have_text("\u2013")
    return float((await locator.inner_text()).split()[0].replace(",", ""))


async def test_cards_show_the_raw_values_percentiles_and_rate_on_every_range(
    server, context, pool, make_user, make_dashboard, make_metric
):
    alice = await make_user("alice")
    board = await make_dashboard("web", members=(alice,))
    latency = await make_metric(board, "latency", "histogram", "ms")
    requests = await make_metric(board, "requests", "counter", "req")
    now = datetime.now(UTC)
    latency_rows = latencies(now)
    counts, _ = counter_rows(now)
    rows = [(latency.id, v, ts) for ts, v in latency_rows] + [(requests.id, v, ts) for ts, v in counts]
    for start in range(0, len(rows), 10_000):
        await db.insert_values(pool, rows[start : start + 10_000])
    await roll_up(pool)

    page = await context.new_page()
    await log_in(page, server.base, "alice")
    for range_name in RANGES:
        page = await context.new_page()
        await page.goto(f"{server.base}/dashboards/{board.id}/#range={range_name}")
        raw = in_range(latency_rows, now, range_name)
        for p in stats.PERCENTILES:
            shown = await _stat(page, latency, f"p{p}")
            # The sketch's error, and the rounding to two decimals of what is shown.
            assert shown == pytest.approx(exact_percentile(raw, p), rel=stats.RELATIVE_ERROR, abs=0.006), (
                range_name,
                p,
            )
        assert await _stat(page, latency, "values") == len(raw)
        assert await _stat(page, requests, "rate") == pytest.approx(RATE, rel=0.02), range_name
        await screenshot(page, f"range-statistics-{range_name}")
        await page.close()

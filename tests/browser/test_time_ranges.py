"""Any time range in Chromium: drag to zoom (every card follows), zoom out, earlier and
later, the from-to picker with relative expressions, times in the browser's zone named,
a link that opens exactly the same view, and a past range that live values leave alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect

from common import db
from server.cli.demo import create_demo
from tests.browser.pages import backfill, log_in, points, screenshot, wait_for
from worker.rollups import roll_up

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ZONE = "America/New_York"  # the browser's, so that "times in your zone" is tested away from UTC


async def _demo(pool) -> tuple[db.Dashboard, list[db.Metric]]:
    demo = await create_demo(pool)
    metrics = await db.list_metrics(pool, demo.dashboard.id)
    await backfill(pool, metrics, hours=50, step_seconds=60)
    await backfill(pool, metrics, hours=1, step_seconds=5)
    await roll_up(pool)
    return demo.dashboard, metrics


async def _page(browser: Browser, server, url: str) -> Page:
    """A new browser (its own cookies) logged in as demo, opened at `url` as a link would be."""
    context = await browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id=ZONE)
    context.set_default_timeout(20_000)
    await log_in(await context.new_page(), server.base, "demo", "demo")
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    return page


async def _windows(page: Page, metrics: list[db.Metric]) -> dict[int, tuple[float, float]]:
    """Each time chart's x scale, in seconds."""
    found = {}
    for metric in metrics:
        if metric.type != "histogram":
            chart = await page.evaluate("(id) => window.__dashboard.chart(id)", metric.id)
            found[metric.id] = (chart["xMin"], chart["xMax"])
    return found


async def _view(page: Page) -> dict:
    return await page.evaluate("() => window.__dashboard.view")


async def _all_cards_show(page: Page, metrics, start: float, end: float, tolerance: float = 1.0) -> None:
    """Every time chart's x scale is [start, end], once the histories have come."""
    await wait_for(
        page,
        "([ids, start, end, tol]) => ids.every((id) => { const c = window.__dashboard.chart(id);"
        " return c !== null && Math.abs(c.xMin - start) <= tol && Math.abs(c.xMax - end) <= tol; })",
        [[m.id for m in metrics if m.type != "histogram"], start, end, tolerance],
    )


async def _all_cards_hold(page: Page, metrics, start: float, end: float) -> None:
    """Every card's values (or buckets) lie in [start, end), once the histories have come."""
    await wait_for(
        page,
        "([ids, start, end]) => ids.every((id) => { const p = window.__dashboard.points(id);"
        " return p.length > 0 && p.every((q) => q.t >= start && q.t < end); })",
        [[m.id for m in metrics], start, end],
    )


async def _drag(page: Page, metric: db.Metric, start: float, end: float) -> None:
    """Drag across a chart from `start` to `end` (shares of its width)."""
    box = await page.locator(f"[data-metric-id='{metric.id}'] .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    await page.mouse.move(box["x"] + box["width"] * start, y)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * (start + end) / 2, y, steps=4)
    await page.mouse.move(box["x"] + box["width"] * end, y, steps=4)
    await page.mouse.up()


async def test_drag_zooms_every_card_then_zoom_out_and_shift(server, start_worker, browser, pool):
    board, metrics = await _demo(pool)
    start_worker(interval=1.0)
    page = await _page(browser, server, f"{server.base}/dashboards/{board.id}/#range=24h")
    cpu = next(m for m in metrics if m.name == "cpu")
    await wait_for(page, "(id) => window.__dashboard.points(id).length > 10", cpu.id)
    x_min, x_max = (await _windows(page, [cpu]))[cpu.id]

    await _drag(page, cpu, 0.3, 0.6)
    view = await _view(page)
    assert view.get("from") and view.get("to") and "range" not in view
    start, end = x_min + 0.3 * (x_max - x_min), x_min + 0.6 * (x_max - x_min)
    # The chosen span, to the pixel (the plot is about 1300 px wide for 24 h).
    pixel = (x_max - x_min) / 1000
    assert datetime.fromisoformat(view["from"]).timestamp() == pytest.approx(start, abs=2 * pixel)
    assert datetime.fromisoformat(view["to"]).timestamp() == pytest.approx(end, abs=2 * pixel)
    start, end = (datetime.fromisoformat(view[k]).timestamp() for k in ("from", "to"))
    await _all_cards_show(page, metrics, start, end)
    # Every card holds that range's values (a bucket may start up to its size before it).
    await _all_cards_hold(page, metrics, start - 3600, end)
    assert "from=" in page.url and "to=" in page.url
    await expect(page.locator("#range-label")).to_contain_text(" to ")
    await expect(page.locator("[data-range][aria-pressed=true]")).to_have_count(0)
    await screenshot(page, "dashboard-zoomed-range")

    # A past range: live values keep coming to the socket, but the charts stay as they are.
    before = {m.id: await points(page, m.id) for m in metrics}
    await page.wait_for_timeout(3000)
    assert {m.id: await points(page, m.id) for m in metrics} == before
    await _all_cards_show(page, metrics, start, end, tolerance=0.001)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")

    # Zoom out: twice the span around the same middle.
    span = end - start
    await page.click("#range-zoom-out")
    middle = (start + end) / 2
    await _all_cards_show(page, metrics, middle - span, middle + span)
    # Earlier by half a span, then later again.
    await page.click("#range-earlier")
    await _all_cards_show(page, metrics, middle - 2 * span, middle)
    await page.click("#range-later")
    await _all_cards_show(page, metrics, middle - span, middle + span)
    # A double-click zooms out too; reaching now, the range is live again ("the last …").
    await page.dblclick(f"[data-metric-id='{cpu.id}'] .u-over")
    await wait_for(page, "() => window.__dashboard.view.to === 'now'")
    assert (await _view(page))["from"].startswith("now-")
    now = datetime.now(UTC).timestamp()
    await _all_cards_show(page, metrics, middle - 2 * span, now, tolerance=5)


async def test_picker_relative_ranges_and_a_shared_link(server, start_worker, browser, pool):
    board, metrics = await _demo(pool)
    start_worker(interval=1.0)
    page = await _page(browser, server, f"{server.base}/dashboards/{board.id}/")
    cpu = next(m for m in metrics if m.name == "cpu")
    await expect(page.locator("#range-zone")).to_contain_text(ZONE)
    await expect(page.locator("#range-zone")).to_contain_text("UTC-0")

    # `now-6h` to now: the last six hours, live.
    await page.click("#range-picker summary")
    await page.fill("#range-form input[name=from]", "now-6h")
    await page.fill("#range-form input[name=to]", "now")
    await page.click("#range-form button[type=submit]")
    assert (await _view(page)) == {"from": "now-6h", "to": "now"}
    assert page.url.endswith("#from=now-6h&to=now")
    await expect(page.locator("#range-label")).to_have_text("Last 6h")
    await wait_for(
        page,
        "(id) => { const c = window.__dashboard.chart(id); return c !== null && Math.abs(c.xMax - c.xMin - 6 * 3600) < 2"
        " && Math.abs(c.xMax - Date.now() / 1000) < 3; }",
        cpu.id,
    )
    await wait_for(page, "(id) => window.__dashboard.points(id).length > 60", cpu.id)
    newest = (await points(page, cpu.id))[-1]["id"]
    # Live: the worker's values are added.
    await wait_for(
        page, "([id, last]) => (window.__dashboard.points(id).at(-1)?.id ?? 0) > last", [cpu.id, newest]
    )

    # A link to it opens the same view, still relative (it moves with the clock).
    shared = await _page(browser, server, page.url)
    assert (await _view(shared)) == {"from": "now-6h", "to": "now"}
    await wait_for(
        shared,
        "(id) => { const c = window.__dashboard.chart(id); return c !== null && Math.abs(c.xMax - c.xMin - 6 * 3600) < 2; }",
        cpu.id,
    )

    # now-2d to now-1d: a day that ended a day ago, not live.
    await page.click("#range-picker summary")
    await page.click("#range-form [data-from='now-2d'][data-to='now-1d']")
    assert (await _view(page)) == {"from": "now-2d", "to": "now-1d"}
    now = datetime.now(UTC).timestamp()
    await _all_cards_show(page, metrics, now - 2 * 86400, now - 86400, tolerance=5)
    # Older than a day: five-minute buckets of the rollups.
    await _all_cards_hold(page, metrics, now - 2 * 86400 - 310, now - 86400 + 5)
    before = (await points(page, cpu.id), await _windows(page, metrics))
    await page.wait_for_timeout(2500)
    # Neither the values nor the axes move: it stays that day while in view.
    assert (await points(page, cpu.id), await _windows(page, metrics)) == before

    # Absolute, typed in the browser's zone: stored in the URL in UTC, exports ask in UTC.
    local = ZoneInfo(ZONE)
    since = (datetime.now(UTC) - timedelta(hours=30)).replace(second=0, microsecond=0)
    until = since + timedelta(hours=3)
    typed = [t.astimezone(local).strftime("%Y-%m-%d %H:%M") for t in (since, until)]
    await page.click("#range-picker summary")
    await page.fill("#range-form input[name=from]", typed[0])
    await page.fill("#range-form input[name=to]", typed[1])
    await screenshot(page, "dashboard-range-picker")
    await page.click("#range-form button[type=submit]")
    iso = [t.strftime("%Y-%m-%dT%H:%M:%S.000Z") for t in (since, until)]
    assert (await _view(page)) == {"from": iso[0], "to": iso[1]}
    await _all_cards_show(page, metrics, since.timestamp(), until.timestamp())
    await _all_cards_hold(page, metrics, since.timestamp() - 60, until.timestamp())
    await expect(page.locator("#range-label")).to_have_text(f"{typed[0]}:00 to {typed[1]}:00")
    href = await page.locator("#export a[data-format=csv]").get_attribute("href")
    assert f"since={iso[0].replace(':', '%3A')}" in href and f"until={iso[1].replace(':', '%3A')}" in href

    # Its link opens exactly that range, in another browser.
    shared = await _page(browser, server, page.url)
    assert (await _view(shared)) == {"from": iso[0], "to": iso[1]}
    await _all_cards_show(shared, metrics, since.timestamp(), until.timestamp())
    await _all_cards_hold(shared, metrics, since.timestamp() - 60, until.timestamp())
    assert await points(shared, cpu.id) == await points(page, cpu.id)

    # What the server would refuse is said at once, and nothing changes.
    await page.click("#range-picker summary")
    await page.fill("#range-form input[name=from]", "yesterday")
    await page.click("#range-form button[type=submit]")
    await expect(page.locator("#range-form .range-error")).to_contain_text("not a time")
    await page.fill("#range-form input[name=from]", "now-1h")
    await page.fill("#range-form input[name=to]", "now-2h")
    await page.click("#range-form button[type=submit]")
    await expect(page.locator("#range-form .range-error")).to_contain_text("after the start")
    assert (await _view(page)) == {"from": iso[0], "to": iso[1]}

    # A preset again: live, and the URL says so.
    await page.keyboard.press("Escape")
    await page.click("[data-range='5m']")
    assert page.url.endswith("#range=5m")
    newest = (await points(page, cpu.id))[-1]["id"] if await points(page, cpu.id) else 0
    await wait_for(
        page, "([id, last]) => (window.__dashboard.points(id).at(-1) || {id: 0}).id > last", [cpu.id, newest]
    )

"""The charts' tools in Chromium (issue 15): exact values under the pointer with a
crosshair on every card, legends and axes with units, text alternatives, ticks on a
phone, counters as a rate or their total, a histogram's heatmap on long ranges,
shareable views (range and focused card in the URL), full screen, kiosk, and alerts
on the charts, in the title and in the favicon."""

from __future__ import annotations

import math
import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Page, expect

from common import db
from server.cli.demo import create_demo
from tests.browser.pages import backfill, log_in, screenshot, until_chart
from worker.rollups import roll_up

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def marks(page: Page, metric_id: int) -> dict:
    return await page.evaluate("(id) => window.__dashboard.chartMarks(id)", metric_id)


def watch_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


async def demo_page(server, context, pool, *, hours: float = 0.2, path_suffix: str = "") -> tuple:
    demo = await create_demo(pool)
    metrics = {m.name: m for m in await db.list_metrics(pool, demo.dashboard.id)}
    await backfill(pool, list(metrics.values()), hours=hours, step_seconds=2)
    page = await context.new_page()
    errors = watch_errors(page)
    await log_in(page, server.base, "demo", "demo", f"/dashboards/{demo.dashboard.id}/{path_suffix}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    for metric in metrics.values():
        await expect(page.locator(f"article[data-metric-id='{metric.id}'] .value")).not_to_have_text("\u2013")
    return demo, metrics, page, errors


async def hover_chart(page: Page, metric_id: int, fraction: float = 0.6) -> None:
    over = page.locator(f"article[data-metric-id='{metric_id}'] .u-over")
    await over.scroll_into_view_if_needed()
    box = await over.bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)


async def test_hover_shows_time_and_value_with_unit_and_every_card_follows(
    server, context, pool, start_worker
):
    _, metrics, page, errors = await demo_page(server, context, pool)
    start_worker(interval=1.0)
    cpu, memory, requests = metrics["cpu"], metrics["memory"], metrics["requests"]

    await hover_chart(page, cpu.id)
    tip = page.locator(f"article[data-metric-id='{cpu.id}'] .chart-tip")
    await expect(tip).to_be_visible()
    await expect(tip).to_contain_text(re.compile(r"\d\d:\d\d:\d\d"))  # when
    await expect(tip).to_contain_text(re.compile(r"\d %$"))  # what, with its unit
    # The other cards show the crosshair at the same time, and no tooltip of their own.
    other = page.locator(f"article[data-metric-id='{memory.id}']")
    await expect(other.locator(".u-cursor-x")).not_to_have_class(re.compile("u-off"))
    # At the same time (a pixel of a 5-minute chart is about a second).
    at = (await marks(page, cpu.id))["cursorTime"]
    assert at and (await marks(page, memory.id))["cursorTime"] == pytest.approx(at, abs=3)
    await expect(other.locator(".chart-tip")).to_be_hidden()
    await screenshot(page, "charts-tooltip-light")

    # A counter's tooltip: its rate per second.
    await hover_chart(page, requests.id)
    await expect(page.locator(f"article[data-metric-id='{requests.id}'] .chart-tip")).to_contain_text("req/s")
    await page.mouse.move(5, 5)
    await expect(page.locator(".chart-tip:visible")).to_have_count(0)

    # Legends: last, min, avg, max with units (bytes in binary units); a counter's rate.
    card = page.locator(f"article[data-metric-id='{cpu.id}']")
    for stat in ("last", "min", "avg", "max"):
        await expect(card.locator(f"[data-stat={stat}] .stat-value")).to_have_text(re.compile(r"^[\d.,]+ %$"))
    await expect(
        page.locator(f"article[data-metric-id='{memory.id}'] [data-stat=avg] .stat-value")
    ).to_have_text(re.compile(r"^[\d.,]+ (KiB|MiB|GiB)$"))
    for stat in ("last", "min", "rate", "max"):
        await expect(
            page.locator(f"article[data-metric-id='{requests.id}'] [data-stat={stat}] .stat-value")
        ).to_have_text(re.compile(r"^[\d.,]+ req/s$"))
    latency = page.locator(f"article[data-metric-id='{metrics['latency'].id}']")
    await expect(latency.locator("[data-stat=p99] .stat-value")).to_have_text(re.compile(r"^[\d.,]+ ms$"))

    # Every chart has a text alternative: what it shows and the latest value with its unit.
    for metric in metrics.values():
        chart = page.locator(f"article[data-metric-id='{metric.id}'] .chart")
        await expect(chart).to_have_attribute("role", "img")
        await expect(chart).to_have_attribute("aria-label", re.compile(rf"^{metric.name}, .*latest [\d.,]+"))
    await expect(card.locator(".chart")).to_have_attribute("aria-label", re.compile(r"latest [\d.,]+ %$"))
    assert not errors


async def test_a_counter_draws_its_rate_and_its_total_on_request(server, context, pool):
    _, metrics, page, errors = await demo_page(server, context, pool)
    requests = metrics["requests"]
    card = page.locator(f"article[data-metric-id='{requests.id}']")
    toggle = card.locator(".metric-total")
    assert (await marks(page, requests.id))["showsRate"] is True
    await expect(toggle).to_have_attribute("aria-pressed", "false")
    await expect(page.locator(f"article[data-metric-id='{metrics['cpu'].id}'] .metric-total")).to_be_hidden()
    rate_top = (await marks(page, requests.id))["yMax"]

    await toggle.click()
    await expect(toggle).to_have_attribute("aria-pressed", "true")
    # The total's axis reaches the counter's value, far above its rate per second. The chart
    # is made anew and drawn on the next animation frame: wait for that drawing.
    points = await page.evaluate("(id) => window.__dashboard.points(id)", requests.id)
    assert points[-1]["v"] > rate_top
    await until_chart(page, requests.id, f"m.showsRate === false && m.yMax >= {points[-1]['v']!r}")
    await expect(card.locator("[data-stat=last] .stat-value")).to_have_text(re.compile(r"^[\d.,KM]+ req$"))
    await toggle.click()
    assert (await marks(page, requests.id))["showsRate"] is True
    assert not errors


async def test_a_phone_shows_three_time_ticks_on_every_range_and_a_tap_shows_the_value(server, browser, pool):
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    try:
        _, metrics, page, errors = await demo_page(server, context, pool, hours=1)
        cpu = metrics["cpu"]
        for range_name in ("5m", "1h", "24h", "7d"):
            await page.click(f"[data-range='{range_name}']")
            await page.wait_for_function("(r) => window.__dashboard.range === r", arg=range_name)
            await page.wait_for_timeout(300)
            for metric in (cpu, metrics["requests"]):
                assert (await marks(page, metric.id))["timeTicks"] >= 3, (range_name, metric.name)
        await page.click("[data-range='5m']")
        over = page.locator(f"article[data-metric-id='{cpu.id}'] .u-over")
        await over.scroll_into_view_if_needed()
        box = await over.bounding_box()
        await page.touchscreen.tap(box["x"] + box["width"] * 0.7, box["y"] + box["height"] / 2)
        await expect(page.locator(f"article[data-metric-id='{cpu.id}'] .chart-tip")).to_contain_text("%")
        await screenshot(page, "charts-phone")
        assert not errors
    finally:
        await context.close()


async def test_a_shared_link_opens_the_same_range_and_card_and_kiosk_hides_the_chrome(server, context, pool):
    demo, metrics, page, errors = await demo_page(server, context, pool)
    cpu, memory = metrics["cpu"], metrics["memory"]
    base = f"{server.base}/dashboards/{demo.dashboard.id}/"

    # Full screen: one card over the page, in the URL; Escape gives the grid back.
    await page.click(f"[data-metric-id='{memory.id}'] .metric-focus")
    focused = page.locator(f"article[data-metric-id='{memory.id}']")
    await expect(focused).to_have_class(re.compile(r"\bfocused\b"))
    assert (await marks(page, memory.id))["height"] > 400
    assert page.url.endswith(f"#range=5m&panel={memory.id}")
    await screenshot(page, "charts-full-screen")
    await page.keyboard.press("Escape")
    await expect(focused).not_to_have_class(re.compile(r"\bfocused\b"))
    assert page.url.endswith("#range=5m")
    await page.click("[data-range='1h']")
    assert page.url.endswith("#range=1h")

    # The link opens exactly that view: the range, and the card full screen.
    shared = await context.new_page()
    shared_errors = watch_errors(shared)
    await shared.goto(f"{base}#range=24h&panel={cpu.id}")
    await expect(shared.locator("[data-range='24h']")).to_have_attribute("aria-pressed", "true")
    await expect(shared.locator(f"article[data-metric-id='{cpu.id}']")).to_have_class(
        re.compile(r"\bfocused\b")
    )
    await until_chart(shared, cpu.id, "m.height > 400")
    assert await shared.evaluate("window.__dashboard.range") == "24h"
    # Over the others: what is under the middle of the page is that card.
    assert await shared.evaluate(
        "(id) => document.elementFromPoint(innerWidth / 2, innerHeight / 2).closest('article').dataset.metricId == id",
        cpu.id,
    )

    # Kiosk: no top bar, no panels, no controls; the charts, their state and the time of the last values.
    kiosk = await context.new_page()
    kiosk_errors = watch_errors(kiosk)
    await kiosk.goto(f"{base}?kiosk#range=1h")
    await expect(kiosk.locator("#connection")).to_have_attribute("data-state", "connected")
    for chrome in (".topbar", "#edit-panel", "#view-panel", ".range", "#export"):
        await expect(kiosk.locator(chrome)).to_be_hidden()
    await expect(kiosk.locator("article.metric")).to_have_count(len(metrics))
    await expect(kiosk.locator("[data-range='1h']")).to_have_attribute("aria-pressed", "true")
    await expect(kiosk.locator("#last-updated")).to_have_text(re.compile(r"^Updated \d\d:\d\d:\d\d$"))
    await kiosk.set_viewport_size({"width": 1920, "height": 1080})
    await screenshot(kiosk, "charts-kiosk")
    # Without ?kiosk the chrome is there.
    await expect(page.locator(".topbar")).to_be_visible()
    await expect(page.locator("#view-panel")).to_be_visible()
    assert not errors and not shared_errors and not kiosk_errors


async def test_last_updated_time_is_shown_while_values_stream(server, context, pool, start_worker):
    _, _, page, errors = await demo_page(server, context, pool)
    start_worker(interval=1.0)
    updated = page.locator("#last-updated")
    await expect(updated).to_be_visible()  # from the history already
    first = await updated.locator("time").get_attribute("datetime")
    await page.wait_for_function(
        "(first) => document.querySelector('#last-updated time').dateTime > first", arg=first
    )
    await expect(updated).to_have_text(re.compile(r"^Updated \d\d:\d\d:\d\d$"))
    assert not errors


async def test_alert_rules_draw_on_their_charts_and_count_in_title_and_favicon(
    server, context, pool, start_worker
):
    demo = await create_demo(pool)
    board = demo.dashboard
    long_name = "review_latency_p99_for_the_checkout_service"
    await db.create_metric(pool, board.id, long_name, "gauge", "ms", "long", "random")
    metrics = {m.name: m for m in await db.list_metrics(pool, board.id)}
    cpu, slow = metrics["cpu"], metrics[long_name]
    await backfill(pool, [cpu, slow], hours=0.1, step_seconds=2)
    # Both fire on the worker's first values (demo cpu and latencies stay above 0.5).
    cpu_rule = await db.create_alert_rule(pool, cpu.id, "above", 0.5)
    await db.create_alert_rule(pool, slow.id, "above", 0.5)
    start_worker(interval=0.5)
    page = await context.new_page()
    errors = watch_errors(page)
    await log_in(page, server.base, "demo", "demo", f"/dashboards/{board.id}/")
    await expect(page).to_have_title(f"(2 firing) {board.name} · Live dashboards", timeout=20_000)
    icon = await page.locator("link[rel=icon]").get_attribute("href")
    assert icon and icon.startswith("data:image/png")

    # The threshold on the chart of the metric with the rule; its firing period and event.
    await until_chart(page, cpu.id, "m.events > 0")
    shown = await marks(page, cpu.id)
    assert shown["thresholds"] == [{"value": cpu_rule.threshold, "firing": True}]
    assert shown["periods"] >= 1
    assert shown["yMin"] <= cpu_rule.threshold
    assert (await marks(page, metrics["memory"].id))["thresholds"] == []

    # The badge wraps under the name; the name is never cut short.
    card = page.locator(f"article[data-metric-id='{slow.id}']")
    await expect(card.locator(".alert-badge")).to_have_text("alert firing")
    name = card.locator(".metric-name")
    await expect(name).to_have_text(long_name)
    assert await name.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
    name_box, badge_box = await name.bounding_box(), await card.locator(".alert-badge").bounding_box()
    assert name_box and badge_box and name_box["width"] > 0
    await screenshot(page, "charts-alerts")

    # The Alerts list stays reachable with the Edit drawer open.
    await page.click("#edit-panel summary")
    await expect(page.locator("#edit-panel")).to_have_attribute("open", "")
    alerts = page.locator("#alerts")
    await alerts.scroll_into_view_if_needed()
    await expect(alerts).to_be_in_viewport()
    box = await alerts.bounding_box()
    assert box
    inside = await page.evaluate(
        "([x, y]) => !!document.elementFromPoint(x, y)?.closest('#alerts')",
        [box["x"] + 20, box["y"] + min(box["height"] / 2, 20)],
    )
    assert inside, "the Edit drawer covers the Alerts list"
    # On a phone the drawer is the whole screen: its link leads to the list.
    await page.set_viewport_size({"width": 390, "height": 844})
    jump = page.locator("#edit-alerts-jump")
    await expect(jump).to_have_text("Alerts: 2 firing")
    await jump.click()
    await expect(alerts).to_be_in_viewport()
    await expect(page.locator("#alert-list li[data-state=firing]")).to_have_count(2)
    assert not errors


async def test_a_histogram_on_24_hours_draws_a_heatmap_from_the_buckets_distributions(server, context, pool):
    demo = await create_demo(pool)
    latency = next(m for m in await db.list_metrics(pool, demo.dashboard.id) if m.name == "latency")
    rng = random.Random(3)
    now = datetime.now(UTC)
    rows = []
    for i in range(26 * 60 * 2):  # every 30 s for 26 hours; the median rises in the afternoon
        at = now - timedelta(seconds=30 * i)
        median = 40 + 25 * math.sin(i / 240)
        rows.append((latency.id, rng.lognormvariate(math.log(median), 0.35), at))
    await db.insert_values(pool, rows)
    await roll_up(pool)
    page = await context.new_page()
    errors = watch_errors(page)
    await log_in(page, server.base, "demo", "demo")
    await page.goto(f"{server.base}/dashboards/{demo.dashboard.id}/#range=24h")
    await until_chart(page, latency.id, "m.heatmap && m.heatmap.max > 0")
    heat = (await marks(page, latency.id))["heatmap"]
    assert heat["buckets"] >= 280  # 5-minute columns over the day
    await hover_chart(page, latency.id, 0.5)
    tip = page.locator(f"article[data-metric-id='{latency.id}'] .chart-tip")
    await expect(tip).to_contain_text("values")
    await expect(tip).to_contain_text("ms")
    card = page.locator(f"article[data-metric-id='{latency.id}']")
    await card.screenshot(
        path=str((await screenshot(page, "charts-heatmap-24h")).with_name("charts-heatmap-24h-card.png"))
    )
    # Back to 5 minutes: the distribution of the raw values again.
    await page.click("[data-range='5m']")
    await until_chart(page, latency.id, "m.heatmap === null")
    assert not errors


async def test_dark_theme_screenshot_with_a_tooltip(server, context, pool):
    _, metrics, page, errors = await demo_page(server, context, pool, hours=0.5)
    await page.click("#theme-toggle")
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await page.wait_for_timeout(300)
    await hover_chart(page, metrics["cpu"].id)
    await expect(page.locator(f"article[data-metric-id='{metrics['cpu'].id}'] .chart-tip")).to_be_visible()
    await screenshot(page, "charts-dark")
    await page.click("#theme-toggle")  # the user's theme back as it was
    await expect(page.locator("html")).to_have_attribute("data-theme", "light")
    await hover_chart(page, metrics["cpu"].id)
    await screenshot(page, "charts-light")
    assert not errors

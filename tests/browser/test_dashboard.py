"""The dashboard page in Chromium: live values from a worker, recovery after
a server restart, logout, lost membership, and the states of an empty board."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import expect
from redis.asyncio import Redis

from common import db
from common.ingest import store_and_publish
from common.sources import RANDOM
from server.cli.demo import create_demo
from tests.browser.pages import backfill, log_in, points, screenshot, wait_for
from tests.helpers import each_stored_since
from tests.servers import servers

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_live_dashboard_shows_config_and_values_from_the_worker(server, start_worker, context, pool):
    demo = await create_demo(pool)
    metrics = await db.list_metrics(pool, demo.dashboard.id)
    await backfill(pool, metrics, hours=2, step_seconds=1)
    start_worker(interval=1.0)
    page = await context.new_page()
    await log_in(page, server.base, "demo", "demo", f"/dashboards/{demo.dashboard.id}/")

    cards = page.locator("article.metric")
    await expect(cards).to_have_count(len(metrics))
    for card, metric in zip(await cards.all(), metrics, strict=True):
        await expect(card.locator(".metric-name")).to_have_text(metric.name)
        await expect(card.locator(".metric-type")).to_have_text(metric.type)
        # Byte counts read in binary units (1.5 GiB): the unit shown is the one they scale to.
        unit = re.compile(r"^(bytes|KiB|MiB|GiB|TiB)$") if metric.unit == "bytes" else metric.unit
        await expect(card.locator(".unit")).to_have_text(unit)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")

    # Values arrive live from the worker, in place: same page, same cards.
    cpu = next(m for m in metrics if m.name == "cpu")
    before = (await points(page, cpu.id))[-1]["id"]
    await wait_for(
        page, "([id, last]) => (window.__dashboard.points(id).at(-1)?.id ?? 0) > last", [cpu.id, before]
    )
    newest = (await points(page, cpu.id))[-1]
    stored = {v.id: v.value for v in (await db.latest_values(pool, [cpu.id], 5))[cpu.id]}
    assert stored[newest["id"]] == newest["v"]
    await expect(page.locator(f"[data-metric-id='{cpu.id}'] .value")).not_to_have_text("\u2013")
    requests = next(m for m in metrics if m.name == "requests")
    await expect(
        page.locator(f"[data-metric-id='{requests.id}'] [data-stat=rate] .stat-value")
    ).to_contain_text("/s")
    latency = next(m for m in metrics if m.name == "latency")
    for p in ("p50", "p95", "p99"):
        await expect(page.locator(f"[data-metric-id='{latency.id}'] [data-stat={p}]")).to_be_visible()
    await page.wait_for_timeout(1500)  # a few more live values for the picture
    await screenshot(page, "dashboard")

    # A longer range comes bucketed from the server, then continues live.
    await page.click("[data-range='1h']")
    await wait_for(page, "(id) => window.__dashboard.points(id).some((p) => p.id === null)", cpu.id)
    bucketed = await points(page, cpu.id)
    assert 250 <= len(bucketed) <= 302
    await wait_for(
        page,
        "([id, t]) => (window.__dashboard.points(id).at(-1)?.t ?? 0) > t",
        [cpu.id, bucketed[-1]["t"]],
        20_000,
    )
    await screenshot(page, "dashboard-1h")
    assert page.url.endswith("#range=1h")

    await page.set_viewport_size({"width": 420, "height": 900})
    await page.wait_for_timeout(300)
    await screenshot(page, "dashboard-phone")


async def test_page_reconnects_after_a_server_restart_without_a_gap(
    server, start_worker, context, pool, make_user, make_dashboard, make_metric
):
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    gauge = await make_metric(ops, "cpu", "gauge", "%", source=RANDOM)
    counter = await make_metric(ops, "hits", "counter", "req", source=RANDOM)
    worker = start_worker(interval=0.25)
    page = await context.new_page()
    await log_in(page, server.base, "alice", next_path=f"/dashboards/{ops.id}/")
    await wait_for(page, "(id) => window.__dashboard.points(id).length >= 4", gauge.id)

    server.kill()
    killed_at = datetime.now(UTC)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    # The worker keeps storing values nobody receives.
    await each_stored_since(
        pool, [gauge, counter], killed_at, 4, "four ticks stored while the server is down"
    )
    restarted_at = datetime.now(UTC)
    await server.start()
    await wait_for(page, "() => window.__dashboard.connections === 2", within_ms=30_000)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    # Filled by `resume` (both metrics recovered), not by reloading the range.
    await wait_for(page, "() => window.__dashboard.resumed + window.__dashboard.reloaded >= 2")
    assert await page.evaluate("[window.__dashboard.resumed, window.__dashboard.reloaded]") == [2, 0]
    await each_stored_since(pool, [gauge, counter], datetime.now(UTC), 2, "live values after the resume")
    worker.terminate()
    worker.wait()

    for metric in (gauge, counter):
        stored = (await db.latest_values(pool, [metric.id], 10_000))[metric.id]
        await wait_for(
            page,
            "([id, last]) => window.__dashboard.points(id).at(-1)?.id === last",
            [metric.id, stored[-1].id],
        )
        shown = await points(page, metric.id)
        window = [(v.id, v.value) for v in stored if v.id >= shown[0]["id"]]
        assert [(p["id"], p["v"]) for p in shown] == window, f"gap or duplicate in {metric.name}"
        missed = [v.id for v in stored if killed_at < v.ts < restarted_at]
        assert missed, "the worker stored nothing while the server was down"
        assert set(missed) <= {p["id"] for p in shown}


async def test_logout_elsewhere_closes_the_socket_and_shows_signed_out(
    server, context, pool, make_user, make_dashboard, make_metric
):
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,), name="<img src=x onerror=alert(1)> Ops")
    await make_metric(ops, "<b>bold</b>", "gauge", "<i>u</i>")
    page = await context.new_page()
    await log_in(page, server.base, "alice", next_path=f"/dashboards/{ops.id}/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    # Server texts are text: no element was made from them.
    await expect(page.locator(".metric-name")).to_have_text("<b>bold</b>")
    await expect(page.locator(".unit")).to_have_text("<i>u</i>")
    await expect(page.locator("#dashboard-name")).to_have_text("<img src=x onerror=alert(1)> Ops")
    assert await page.locator("main b, main i, main img").count() == 0
    # A pushed metric without values says so (alice only views: no command for her).
    await expect(page.locator(".metric.no-data .feed")).to_contain_text("No values have arrived yet")

    other = await context.new_page()
    await other.goto(f"{server.base}/dashboards/")
    await other.click("#logout")
    await other.wait_for_url("**/login")

    await expect(page.locator("#state")).to_have_attribute("data-state", "signed-out")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    assert 4401 in await page.evaluate("window.__dashboard.closes")
    login_link = page.locator("#state a")
    await expect(login_link).to_have_attribute("href", f"/login?next=%2Fdashboards%2F{ops.id}%2F")
    # The top bar no longer shows who was logged in, nor offers to log out.
    await expect(page.locator(".topbar .who")).to_be_hidden()
    await expect(page.locator("#logout")).to_be_hidden()
    await screenshot(page, "dashboard-signed-out")


async def test_member_removed_while_watching_gets_the_forbidden_state(
    server, context, pool, make_user, make_dashboard, make_metric
):
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    await make_metric(ops, "cpu")
    page = await context.new_page()
    await log_in(page, server.base, "alice", next_path=f"/dashboards/{ops.id}/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    await db.remove_member(pool, ops.id, alice.id)
    await page.evaluate("window.__dashboard.dropConnection()")
    await expect(page.locator("#state")).to_have_attribute("data-state", "forbidden")
    await expect(page.locator("#state")).to_contain_text("no longer a member")
    assert 4403 in await page.evaluate("window.__dashboard.closes")


async def test_non_member_and_empty_dashboard_states(server, context, make_user, make_dashboard):
    alice = await make_user("alice")
    await make_user("bob")
    empty = await make_dashboard("empty", members=(alice,))
    page = await context.new_page()
    await log_in(page, server.base, "bob", next_path=f"/dashboards/{empty.id}/")
    await expect(page.locator("#state")).to_have_attribute("data-state", "forbidden")

    page = await (await context.browser.new_context()).new_page()
    await log_in(page, server.base, "alice", next_path=f"/dashboards/{empty.id}/")
    await expect(page.locator("#state")).to_have_attribute("data-state", "empty")
    # alice is a viewer: nothing for her to add (editors: tests/browser/test_ux.py).
    await expect(page.locator("#state")).to_contain_text("Its editors have not added any metrics yet")
    await screenshot(page, "dashboard-empty")
    await page.context.close()


async def test_alert_badge_and_list_follow_alert_messages(server, context, pool):
    demo = await create_demo(pool)
    cpu = next(m for m in await db.list_metrics(pool, demo.dashboard.id) if m.name == "cpu")
    rule = await db.create_alert_rule(pool, cpu.id, "above", 1000.0)
    page = await context.new_page()
    await log_in(page, server.base, "demo", "demo", f"/dashboards/{demo.dashboard.id}/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    badge = page.locator(f"[data-metric-id='{cpu.id}'] .alert-badge")
    item = page.locator(f"#alert-list li[data-rule-id='{rule.id}']")
    await expect(badge).to_have_attribute("data-state", "ok")
    await expect(item).to_have_attribute("data-state", "ok")

    redis_client = Redis.from_url(servers().redis_url)
    try:
        now = datetime.now(UTC)
        await store_and_publish(
            pool, redis_client, servers().channels, {cpu.id: cpu}, [(cpu.id, 5000.0, now)]
        )
        await expect(badge).to_have_attribute("data-state", "firing")
        await expect(item.locator(".alert-state")).to_have_text("firing")
        await expect(item.locator(".alert-detail")).to_contain_text("value 5,000")
        later = now + timedelta(seconds=1)
        await store_and_publish(
            pool, redis_client, servers().channels, {cpu.id: cpu}, [(cpu.id, 10.0, later)]
        )
        await expect(badge).to_have_attribute("data-state", "ok")
        await expect(item.locator(".alert-state")).to_have_text("ok")
    finally:
        await redis_client.aclose()


async def test_badge_goes_stale_in_a_short_outage_and_live_again_when_values_flow(
    server, start_worker, context, make_user, make_dashboard, make_metric
):
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    gauge = await make_metric(ops, "cpu", "gauge", "%", source=RANDOM)
    start_worker(interval=0.5)
    page = await context.new_page()
    await log_in(page, server.base, "alice", next_path=f"/dashboards/{ops.id}/")
    await wait_for(page, "(id) => window.__dashboard.points(id).length >= 6", gauge.id)
    badge, age, grid = page.locator("#connection"), page.locator("#connection-age"), page.locator("#metrics")
    await expect(badge).to_have_attribute("data-state", "connected")
    await expect(age).to_be_hidden()

    # Nothing arrives, the socket stays open: Stale within seconds, with the age, cards dimmed.
    await context.set_offline(True)
    offline_at = asyncio.get_running_loop().time()
    await expect(badge).to_have_attribute("data-state", "stale", timeout=7_000)
    await expect(badge).to_have_text("Stale")
    await expect(age).to_have_text(re.compile(r"^last update \d+ s ago$"))
    await expect(grid).to_have_class(re.compile(r"\bstale\b"))
    # The time axis follows the clock, not the newest value: the silence shows as a gap.
    before = await page.evaluate("(id) => window.__dashboard.chart(id)", gauge.id)
    newest = (await points(page, gauge.id))[-1]["t"]
    await page.wait_for_timeout(2_500)
    after = await page.evaluate("(id) => window.__dashboard.chart(id)", gauge.id)
    assert after["xMax"] - before["xMax"] >= 1.5
    assert after["xMin"] - before["xMin"] >= 1.5
    assert (await points(page, gauge.id))[-1]["t"] == newest, "values arrived while offline"
    assert after["xMax"] - newest >= 4
    await expect(age).to_have_text(re.compile(r"^last update ([4-9]|1\d) s ago$"))
    await screenshot(page, "dashboard-stale")
    await asyncio.sleep(max(0.0, 10 - (asyncio.get_running_loop().time() - offline_at)))

    await context.set_offline(False)
    await expect(badge).to_have_attribute("data-state", "connected", timeout=2_000)
    await expect(badge).to_have_text("Live")
    await expect(age).to_be_hidden()
    await expect(grid).not_to_have_class(re.compile(r"\bstale\b"))
    await wait_for(
        page, "([id, t]) => (window.__dashboard.points(id).at(-1)?.t ?? 0) > t", [gauge.id, newest]
    )
    await screenshot(page, "dashboard-live-again")

"""The Edit panel opens as a drawer: beside the charts on a wide screen (the
first chart stays in view and uncovered, a new metric's card scrolls into
view), the full width on a phone. Chromium against a real server process."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from server.cli.demo import create_demo
from tests.browser.pages import log_in, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_the_drawer_leaves_the_charts_in_view_and_shows_a_new_card(server, context, pool):
    demo = await create_demo(pool)
    page = await context.new_page()
    await log_in(page, server.base, "demo", "demo", f"/dashboards/{demo.dashboard.id}/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    drawer = page.locator("#edit-panel")

    await page.click("#edit-panel summary")
    await expect(page.locator("#edit-metrics li").first).to_be_visible()
    await page.wait_for_timeout(300)  # charts settle to their new width

    viewport = page.viewport_size
    panel = await drawer.bounding_box()
    assert panel["x"] + panel["width"] == pytest.approx(viewport["width"], abs=1)
    assert (
        panel["height"] == pytest.approx(viewport["height"], abs=1) and panel["width"] < viewport["width"] / 2
    )
    chart = await page.locator("article.metric .chart").first.bounding_box()
    assert chart["y"] >= 0 and chart["y"] + chart["height"] <= viewport["height"], chart
    assert chart["x"] + chart["width"] <= panel["x"], (chart, panel)  # beside the drawer, not under it
    await expect(page.locator("#logout")).to_be_in_viewport()  # the top bar moves over too
    await screenshot(page, "edit-drawer")

    await page.fill("#edit-add-metric input[name=name]", "zz_new_metric")
    await page.click("#edit-add-metric button[type=submit]")
    card = page.locator("article.metric", has_text="zz_new_metric")
    await expect(card).to_be_in_viewport()
    box = await card.bounding_box()
    assert box["x"] + box["width"] <= panel["x"]
    await expect(page.locator("#edit-panel .edit-saved")).to_have_text("Saved")

    await page.locator("#edit-add-metric input[name=name]").press("Escape")
    await expect(drawer).not_to_have_attribute("open", "")
    await expect(page.locator("#edit-panel summary")).to_be_focused()


async def test_on_a_phone_the_drawer_takes_the_width_and_closes_from_its_top(server, browser: Browser, pool):
    demo = await create_demo(pool)
    phone = await browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    try:
        page = await phone.new_page()
        await log_in(page, server.base, "demo", "demo", f"/dashboards/{demo.dashboard.id}/")
        await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
        await page.click("#edit-panel summary")
        await expect(page.locator("#edit-metrics li").first).to_be_visible()

        panel = await page.locator("#edit-panel").bounding_box()
        assert (panel["x"], panel["width"]) == (0, 390)
        # Scrolled down the drawer, its summary still leads back.
        await page.locator("#edit-add-token").scroll_into_view_if_needed()
        close = page.get_by_text("Close editor")
        await expect(close).to_be_in_viewport()
        await screenshot(page, "edit-drawer-phone")
        await close.click()
        await expect(page.locator("article.metric .chart").first).to_be_in_viewport()
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        await phone.close()

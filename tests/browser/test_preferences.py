"""Preferences in Chromium: a viewer hides, moves and restyles cards, picks a
default range and the dark theme on one device; their page on another device
follows live, a reload shows the same, and another user sees none of it."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from common import db
from server.cli.demo import create_demo
from tests.browser.pages import backfill, log_in, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.browser]

DARK_BACKGROUND = "rgb(13, 17, 23)"  # --bg of the dark theme in app.css


async def shown_names(page: Page) -> list[str]:
    return await page.evaluate(
        """() => Array.from(document.querySelectorAll("article.metric"))
             .filter((card) => !card.hidden).map((card) => card.querySelector(".metric-name").textContent)"""
    )


async def background(page: Page) -> str:
    return await page.evaluate("() => getComputedStyle(document.body).backgroundColor")


async def open_as(browser: Browser, base: str, username: str, path: str) -> tuple[BrowserContext, Page]:
    """A separate browser (own cookies): another device."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    page = await context.new_page()
    await log_in(page, base, username, username, path)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    return context, page


async def test_preferences_apply_on_every_device_and_after_reload(server, context, browser: Browser, pool):
    demo = await create_demo(pool)
    metrics = await db.list_metrics(pool, demo.dashboard.id)
    names = [m.name for m in metrics]
    await backfill(pool, metrics, hours=1, step_seconds=30)
    path = f"/dashboards/{demo.dashboard.id}/"
    laptop = await context.new_page()
    await log_in(laptop, server.base, "viewer", "viewer", path)
    await expect(laptop.locator("#connection")).to_have_attribute("data-state", "connected")
    phone_context, phone = await open_as(browser, server.base, "viewer", path)
    other_context, other = await open_as(browser, server.base, "demo", path)
    try:
        assert await shown_names(laptop) == names

        # Hide one card from the View panel and another with its own button; move one up.
        await laptop.click("#view-panel summary")
        await laptop.uncheck("#pref-cards input[aria-label='Show cpu']")
        await laptop.locator("article.metric", has_text="errors").locator(".metric-hide").click()
        await expect(laptop.locator("#view-summary")).to_have_text("· 2 hidden")
        await laptop.click("#pref-cards button[aria-label='Move latency up']")
        await expect(laptop.locator("#pref-cards li").nth(names.index("latency") - 1)).to_have_text(
            "latency↑↓"
        )
        await screenshot(laptop, "dashboard-view-panel")
        expected = [n for n in names if n not in ("cpu", "errors")]
        expected.remove("latency")
        expected.insert(expected.index("queue_depth"), "latency")
        await laptop.select_option("#pref-style", "points")
        await laptop.select_option("#pref-range", "1h")
        await expect(laptop.locator("#theme-toggle")).to_have_text("Dark theme")
        await laptop.click("#theme-toggle")
        # The button says what the next click does, on every page of the user.
        for page in (laptop, phone):
            await expect(page.locator("#theme-toggle")).to_have_text("Light theme")

        for page in (laptop, phone):
            await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
            await expect(page.locator("#dashboard")).to_have_attribute("data-chart-style", "points")
            await expect(page.locator("button[data-range='1h']")).to_have_attribute("aria-pressed", "true")
            await page.wait_for_function(
                "(n) => document.querySelectorAll('article.metric[hidden]').length === n", arg=2
            )
            assert await shown_names(page) == expected
            assert await background(page) == DARK_BACKGROUND
        await screenshot(phone, "dashboard-dark-preferences")

        # Another user's page is untouched.
        await expect(other.locator("html")).to_have_attribute("data-theme", "light")
        assert await shown_names(other) == names
        assert await other.evaluate("() => window.__dashboard.range") == "5m"

        # A fresh load (no #range in the address) shows the same at once: the theme
        # comes with the HTML, so the page is never drawn light first.
        response = await laptop.goto(server.base + path)
        assert response is not None and 'data-theme="dark"' in await response.text()
        await expect(laptop.locator("#connection")).to_have_attribute("data-state", "connected")
        await expect(laptop.locator("article.metric")).to_have_count(len(names))
        assert await shown_names(laptop) == expected
        assert await laptop.evaluate("() => window.__dashboard.range") == "1h"
        await expect(laptop.locator("#dashboard")).to_have_attribute("data-chart-style", "points")
        await expect(laptop.locator("#pref-range")).to_have_value("1h")
        await expect(laptop.locator("#pref-style")).to_have_value("points")

        # The dashboard list honours the theme too, and switching back there reaches the phone.
        await laptop.goto(server.base + "/dashboards/")
        assert await background(laptop) == DARK_BACKGROUND
        await laptop.click("#theme-toggle")
        await expect(laptop.locator("html")).to_have_attribute("data-theme", "light")
        await expect(phone.locator("html")).to_have_attribute("data-theme", "light")

        # Showing a card again, from the phone this time.
        await phone.click("#view-panel summary")
        await phone.check("#pref-cards input[aria-label='Show cpu']")
        await expect(laptop.locator("#view-summary")).to_have_count(0)  # the list page has no panel
        await expect(phone.locator("article.metric", has_text="cpu")).to_be_visible()
        await expect(phone.locator("#view-summary")).to_have_text("· 1 hidden")
    finally:
        await phone_context.close()
        await other_context.close()


async def test_pages_before_login_follow_the_systems_theme_then_the_users(
    server, browser: Browser, make_user
):
    await make_user("dora")
    for scheme in ("dark", "light"):
        context = await browser.new_context(color_scheme=scheme)
        try:
            page = await context.new_page()
            await page.goto(server.base + "/login")
            await expect(page.locator("html")).to_have_attribute("data-theme", scheme)
            assert (await background(page) == DARK_BACKGROUND) == (scheme == "dark")
            await page.goto(server.base + "/no/such/page")
            await expect(page.locator("html")).to_have_attribute("data-theme", scheme)
            # Logged in, the user's own theme (light until they choose) wins over the system's.
            await log_in(page, server.base, "dora", "secret-pw", "/dashboards/")
            await expect(page.locator("html")).to_have_attribute("data-theme", "light")
        finally:
            await context.close()

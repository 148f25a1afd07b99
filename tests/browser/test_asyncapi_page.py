"""/asyncapi/ in Chromium: readable without logging in, links between messages and schemas."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.pages import SCREENSHOTS

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_the_protocol_page_reads_without_login_or_script(server, browser):
    # Scripts off: the page must not need any.
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    try:
        page = await context.new_page()
        await page.goto(f"{server.base}/asyncapi/")
        await expect(page.locator("h1")).to_contain_text("Live dashboards WebSocket")
        await expect(page.locator(".server-url")).to_have_text(
            f"ws://127.0.0.1:{server.port}/ws/dashboard/{{dashboardId}}/"
        )
        await expect(page.locator("#security")).to_contain_text("dashboard_session")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "asyncapi.png"))
        # A message's payload links to its schema's table.
        resume = page.locator("#message-resume")
        await expect(resume.locator("table.fields tbody tr")).to_have_count(1)
        await resume.locator("table.fields a", has_text="Position").click()
        assert page.url.endswith("#schema-Position")
        position = page.locator("#schema-Position")
        await expect(position).to_be_in_viewport()
        await expect(position.locator("tbody tr")).to_have_count(2)
        await resume.scroll_into_view_if_needed()
        await page.screenshot(path=str(SCREENSHOTS / "asyncapi-message.png"))
        # Nothing overflows the page sideways (wide tables scroll in their card).
        assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        await context.close()

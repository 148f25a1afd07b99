"""The Edit panel's retention field in Chromium: set, shown back, cleared to the global setting."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import expect

from common import db
from server.cli.demo import create_demo
from tests.browser.pages import log_in

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def _retention(pool, dashboard_id: int, wanted: int | None) -> int | None:
    for _ in range(50):
        found = (await db.get_dashboard(pool, dashboard_id)).retention_days
        if found == wanted:
            break
        await asyncio.sleep(0.1)
    return found


async def test_an_editor_sets_the_retention_from_the_panel(server, context, pool):
    demo = await create_demo(pool)
    path = f"/dashboards/{demo.dashboard.id}/"
    page = await context.new_page()
    await log_in(page, server.base, "demo", "demo", path)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    await page.click("#edit-panel summary")
    field = page.locator("#edit-settings input[name=retention_days]")
    await expect(field).to_have_value("")
    await expect(field).to_have_attribute("placeholder", "global")

    await field.fill("30")
    await page.click("#edit-settings button[type=submit]")
    assert await _retention(pool, demo.dashboard.id, 30) == 30
    await expect(page.locator(".edit-error")).to_be_hidden()

    await page.locator("body").click()  # focus out of the form: the pushed config refills it
    await expect(field).to_have_value("30")

    # Emptied: back to the worker's global setting.
    await page.fill("#edit-settings input[name=name]", "Renamed")
    await field.fill("")
    await page.click("#edit-settings button[type=submit]")
    assert await _retention(pool, demo.dashboard.id, None) is None
    await page.locator("body").click()
    await expect(field).to_have_value("")
    await expect(page.locator("#dashboard-name")).to_have_text("Renamed")

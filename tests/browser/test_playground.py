"""The WebSocket playground in Chromium."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from server.cli.demo import create_demo
from tests.browser.pages import log_in, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_playground_connects_and_a_ping_gets_a_pong(server, start_worker, context, pool):
    demo = await create_demo(pool)
    start_worker(interval=1.0)
    page = await context.new_page()
    await log_in(page, server.base, "demo", "demo", "/playground/")
    # The protocol is listed from the AsyncAPI document, with its client examples.
    for action in ("subscribe", "unsubscribe", "ping", "history", "resume", "metric_update"):
        await expect(page.locator(f".message-type[data-action={action}]")).to_have_count(1)
    await expect(page.locator("#dashboard-select option")).to_have_text(
        [f"{demo.dashboard.name} (id {demo.dashboard.id})", f"{demo.machine.name} (id {demo.machine.id})"]
    )

    await page.click("#connect")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    await page.wait_for_function(
        "() => window.__playground.received.some((m) => m.action === 'metric_update')"
    )
    await page.click("#examples [data-example=ping]")
    await page.click("#send")
    await page.wait_for_function("() => window.__playground.received.some((m) => m.action === 'pong')")
    pong = await page.evaluate("() => window.__playground.received.find((m) => m.action === 'pong')")
    assert pong == {"action": "pong", "payload": {"t": 1767225600000}}
    await expect(page.locator("#log li[data-direction=in] .action", has_text="pong")).to_have_count(1)

    # The resume example is filled with this dashboard's real ids.
    await page.click("#examples [data-example=resume]")
    await page.click("#send")
    await page.wait_for_function(
        "() => window.__playground.received.filter((m) => m.action === 'complete').length >= 2"
    )
    errors = await page.evaluate("() => window.__playground.received.filter((m) => m.action === 'error')")
    assert errors == []
    await screenshot(page, "playground")

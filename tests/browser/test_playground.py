"""The WebSocket playground in Chromium."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from common import db
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


async def _connected(page, server, *options: str):
    """Log in as the demo user, tick the connect options, connect."""
    await log_in(page, server.base, "demo", "demo", "/playground/")
    await expect(page.locator(".message-type")).to_have_count(16)
    for option in options:
        await page.check(option)
    await page.click("#connect")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")


COUNT = "(action) => window.__playground.received.filter((m) => m.action === action).length"
AT_LEAST = "([action, n]) => window.__playground.received.filter((m) => m.action === action).length >= n"


async def _received(page, action: str) -> int:
    return await page.evaluate(COUNT, action)


async def _wait_for(page, action: str, count: int = 1) -> None:
    """Until `count` messages of `action` came in, in all."""
    await page.wait_for_function(AT_LEAST, arg=[action, count])


async def _wait_for_more(page, action: str, more: int = 2) -> None:
    """Until `more` further messages of `action` came in."""
    await _wait_for(page, action, await _received(page, action) + more)


async def test_the_log_can_be_filtered_paused_kept_still_and_compacted(server, start_worker, context, pool):
    demo = await create_demo(pool)
    hostile = "<img src=x onerror=window.__xss=1>"
    await db.update_dashboard(pool, demo.dashboard.id, demo.dashboard.name, hostile)
    start_worker(interval=0.5)
    page = await context.new_page()
    await _connected(page, server)
    await _wait_for_more(page, "metric_update")
    # Server data is text: the description is shown as written, never parsed as HTML.
    await expect(page.locator("#log li[data-action=dashboard_config] pre")).to_contain_text(hostile)
    assert await page.locator("#log img").count() == 0
    assert await page.evaluate("() => window.__xss") is None

    # Filter by action: only the pong is shown, and later updates stay hidden.
    await page.click("#examples [data-example=ping]")
    await page.click("#send")
    await _wait_for(page, "pong")
    await page.select_option("#log-filter", "pong")
    await _wait_for_more(page, "metric_update")
    shown = page.locator("#log li:not([hidden])")
    await expect(shown).to_have_count(1)
    await expect(shown).to_have_attribute("data-action", "pong")
    assert await page.locator("#log li[data-action=metric_update]").count() > 2
    await page.select_option("#log-filter", "")
    assert await page.locator("#log li[hidden]").count() == 0

    # Pause: messages still arrive but the log does not grow; resume shows them and goes on.
    await page.click("#pause")
    await expect(page.locator("#pause")).to_have_attribute("aria-pressed", "true")
    entries = await page.locator("#log li").count()
    await _wait_for_more(page, "metric_update", 4)
    assert await page.locator("#log li").count() == entries
    await expect(page.locator("#paused-note")).to_contain_text("held")
    await page.click("#pause")
    await expect(page.locator("#pause")).to_have_text("Pause")
    resumed = await page.locator("#log li").count()
    assert resumed >= entries + 4
    await _wait_for_more(page, "metric_update")
    assert await page.locator("#log li").count() > resumed

    # Auto-scroll off: the entry being read stays where it is while new ones come in.
    await page.uncheck("#auto-scroll")
    await page.evaluate("() => { document.getElementById('log').scrollTop = 300; }")
    reading = """() => {
      const log = document.getElementById('log');
      const item = [...log.children].find((li) => li.offsetTop - log.offsetTop >= log.scrollTop);
      item.dataset.reading = 'yes';
      return item.getBoundingClientRect().top;
    }"""
    top = await page.evaluate(reading)
    await _wait_for_more(page, "metric_update", 3)
    moved = await page.evaluate(
        "() => document.querySelector('#log [data-reading]').getBoundingClientRect().top"
    )
    assert abs(moved - top) <= 1
    assert await page.evaluate("() => document.getElementById('log').scrollTop") > 300
    # On again: the newest entry is in view.
    await page.check("#auto-scroll")
    await _wait_for_more(page, "metric_update")
    assert await page.evaluate("() => document.getElementById('log').scrollTop") == 0

    # Compact: one line per message, the ones already there and the ones that come.
    await page.check("#compact")
    await _wait_for_more(page, "metric_update")
    one_line = """() => [...document.querySelectorAll('#log li')].every((li) => {
      const pre = li.querySelector('pre');
      const line = li.querySelector('.meta').getBoundingClientRect().height;
      return (!pre || !pre.textContent.includes('\\n')) && li.getBoundingClientRect().height < 2 * line + 8;
    })"""
    assert await page.evaluate(one_line)
    entry = page.locator("#log li[data-action=metric_update] pre").first
    assert "\n" not in await entry.text_content()
    await screenshot(page, "playground-compact")


async def test_the_batch_option_gets_metric_updates_instead_of_metric_update(
    server, start_worker, context, pool
):
    await create_demo(pool)
    start_worker(interval=0.5)
    page = await context.new_page()
    await _connected(page, server, "#updates-batch")
    await expect(page.locator("#log li[data-action=connecting] pre")).to_contain_text("?updates=batch")
    await _wait_for(page, "metric_updates", 2)
    assert await _received(page, "metric_update") == 0
    await expect(page.locator("#log li[data-action=metric_updates]").first).to_be_visible()


async def test_subscribe_none_gets_no_updates_until_it_subscribes(server, start_worker, context, pool):
    await create_demo(pool)
    start_worker(interval=0.5)
    page = await context.new_page()
    await _connected(page, server, "#subscribe-none")
    await expect(page.locator("#log li[data-action=connecting] pre")).to_contain_text("?subscribe=none")
    await _wait_for(page, "alerts", 1)
    await page.wait_for_timeout(2500)  # five of the worker's ticks
    for action in ("metric_update", "metric_updates", "metric_history"):
        assert await _received(page, action) == 0, action
    await page.click("#examples [data-example=subscribe]")
    await page.click("#send")
    await _wait_for(page, "metric_history", 1)
    await _wait_for(page, "metric_update", 1)


async def test_the_json_notice_clears_and_message_types_stay_in_their_card(server, context, pool):
    await create_demo(pool)
    page = await context.new_page()
    await _connected(page, server)
    notice = page.locator("#composer-error")
    await page.fill("#composer", '{"action": "ping",')
    await page.click("#send")
    await expect(notice).to_have_text("Not valid JSON: sent as is.")
    # Loading an example (valid JSON) clears it.
    await page.click("#examples [data-example=ping]")
    await expect(notice).to_have_text("")
    # So does typing the JSON right; half-typed input leaves it.
    await page.fill("#composer", "nope")
    await page.click("#send")
    await expect(notice).not_to_have_text("")
    await page.fill("#composer", '{"action": "ping"')
    await expect(notice).not_to_have_text("")
    await page.fill("#composer", '{"action": "ping"}')
    await expect(notice).to_have_text("")

    # Every message type expanded: its schema scrolls inside the card, the card keeps its width.
    card = page.locator("#message-types").locator("xpath=..")
    width = (await card.bounding_box())["width"]
    for summary in await page.locator(".message-type summary").all():
        await summary.click()
    card_box = await card.bounding_box()
    assert card_box["width"] == width
    for details in await page.locator(".message-type").all():
        box = await details.bounding_box()
        assert box["x"] + box["width"] <= card_box["x"] + card_box["width"]
    assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")

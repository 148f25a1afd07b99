"""The Edit panel's contact points: create a webhook, see its secret once, send a test,
read the outcome in the delivery log, and choose whom a rule notifies."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from common import db
from server.cli.demo import create_demo
from tests.browser.pages import log_in, open_panel
from tests.notifyreceiver import receiver
from worker.notify.delivery import deliver_once
from worker.notify.guard import AllowList
from worker.notify.senders import open_sender

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_an_editor_adds_tests_and_wires_a_webhook(server, context, pool):
    demo = await create_demo(pool)
    board = demo.dashboard
    metric = (await db.list_metrics(pool, board.id))[0]
    rule = await db.create_alert_rule(pool, metric.id, "above", 1e9)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await log_in(page, server.base, "demo", "demo", f"/dashboards/{board.id}/")
    await open_panel(page)

    async with receiver() as hook:
        await page.fill("#edit-add-contact input[name=name]", "on-call <b>hook</b>")
        await page.select_option("#edit-add-contact select[name=kind]", "webhook")
        await page.fill("#edit-add-contact input[name=target]", hook.url)
        await page.click("#edit-add-contact button[type=submit]")
        await expect(page.locator("#contact-secret")).to_be_visible()
        secret = await page.locator(".contact-secret-value").input_value()
        assert len(secret) >= 40
        item = page.locator("#edit-contacts li")
        await expect(item.locator(".contact-name")).to_have_text("on-call <b>hook</b>")  # as text
        await page.click("#contact-secret .contact-secret-done")
        await expect(page.locator("#contact-secret")).to_be_hidden()

        await item.locator("button", has_text="Send test").click()
        # The worker's part, here in the test process; the page polls for the log.
        async with open_sender(AllowList.parse(["127.0.0.1"])) as sender:
            for _ in range(50):
                if await deliver_once(pool, sender):
                    break
                await page.wait_for_timeout(100)
        await expect(page.locator("#edit-deliveries li .delivery-outcome")).to_have_text(
            "delivered", timeout=10_000
        )
        assert len(hook.received) == 1

    await page.select_option("#edit-rule-contacts select[name=rule_id]", str(rule.id))
    await page.select_option(
        "#edit-rule-contacts select[name=contact_point_ids]", label="on-call <b>hook</b>"
    )
    await page.fill("#edit-rule-contacts input[name=repeat_minutes]", "15")
    await page.click("#edit-rule-contacts button[type=submit]")
    [contact] = await db.list_contact_points(pool, board.id)
    for _ in range(50):
        [wired] = [r for r in await db.list_rule_notifications(pool, board.id) if r.rule_id == rule.id]
        if wired.contact_point_ids:
            break
        await page.wait_for_timeout(100)
    assert (wired.contact_point_ids, wired.repeat_seconds) == ([contact.id], 900)
    await expect(page.locator("#edit-deliveries li")).to_have_count(1)
    assert errors == []

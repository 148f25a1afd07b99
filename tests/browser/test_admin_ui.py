"""API tokens, alert rules and metric sources from the Edit panel, and the
alert list after a reconnect, in Chromium against real server processes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from playwright.async_api import Browser, expect
from redis.asyncio import Redis

from common import db
from common.ingest import store_and_publish
from common.sources import PUSH
from server.cli.demo import create_demo
from tests.browser.pages import log_in, open_panel, screenshot
from tests.servers import servers

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_an_editor_creates_copies_and_revokes_a_token(server, context, pool):
    demo = await create_demo(pool)
    board = demo.dashboard
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base)
    page = await context.new_page()
    await log_in(page, server.base, "demo", "demo", f"/dashboards/{board.id}/")
    await open_panel(page)

    await page.fill("#edit-add-token input[name=name]", "deploy <b>script</b>")
    await page.click("#edit-add-token button[type=submit]")
    box = page.locator("#token-secret")
    await expect(box).to_be_visible()
    await expect(box.locator(".token-secret-name")).to_have_text("deploy <b>script</b>")
    secret = await box.locator(".token-secret-value").input_value()
    assert secret.startswith("dsh_")
    await box.locator(".token-copy").click()
    await expect(box.locator(".token-copied")).to_be_visible()
    assert await page.evaluate("navigator.clipboard.readText()") == secret
    item = page.locator("#edit-tokens li")
    await expect(item).to_have_count(1)
    await expect(item.locator(".token-name")).to_have_text("deploy <b>script</b>")
    await expect(item.locator(".token-prefix")).to_have_text(secret[:10] + "…")
    await expect(item.locator(".token-creator")).to_have_text("by demo")  # revoked if demo stops editing
    await expect(item).to_have_attribute("data-state", "active")
    await screenshot(page, "edit-token-created")

    # The token works, then Done forgets the secret; a fresh page never has it.
    # The demo's metrics are generated (pushes to them are refused): one fed by pushes.
    metric = await db.create_metric(pool, board.id, "deploys", "counter", "", "", PUSH)
    async with aiohttp.ClientSession() as session:
        pushed = await session.post(
            f"{server.base}/api/v1/metrics/{metric.id}/values",
            json={"value": 1.0},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert pushed.status == 201
    await box.locator(".token-done").click()
    await expect(box).to_be_hidden()
    assert await box.locator(".token-secret-value").input_value() == ""
    await page.reload()
    await open_panel(page)
    await expect(item.locator(".token-used")).to_contain_text("last used")
    assert secret not in await page.content()

    await item.get_by_role("button", name="Revoke token deploy <b>script</b>").click()
    await page.locator("#confirm-dialog .confirm-ok").click()
    await expect(item).to_have_attribute("data-state", "revoked")
    # A revoked token can only leave the list.
    await expect(item.get_by_role("button")).to_have_text(["Remove"])
    (stored,) = await db.list_api_tokens(pool, board.id)
    assert stored.revoked_at is not None


async def test_an_editor_adds_a_rule_and_a_viewer_sees_it_fire(
    server, context, browser: Browser, pool, start_worker
):
    demo = await create_demo(pool)
    board = demo.dashboard
    cpu = next(m for m in await db.list_metrics(pool, board.id) if m.name == "cpu")
    path = f"/dashboards/{board.id}/"
    editor = await context.new_page()
    await log_in(editor, server.base, "demo", "demo", path)
    viewer_context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        viewer = await viewer_context.new_page()
        await log_in(viewer, server.base, "viewer", "viewer", path)
        await expect(viewer.locator("#connection")).to_have_attribute("data-state", "connected")
        await expect(viewer.locator("#alerts")).to_be_hidden()
        await expect(viewer.locator("#edit-alerts, #edit-tokens")).to_have_count(0)

        await open_panel(editor)
        form = editor.locator("#edit-add-alert")
        await form.locator("select[name=metric_id]").select_option(label="cpu")
        await form.locator("select[name=condition]").select_option("below")
        await form.locator("input[name=threshold]").fill("1000")  # demo cpu values stay below 100
        await form.locator("input[name=for_seconds]").fill("0")
        await form.locator("button[type=submit]").click()
        rule_item = editor.locator("#edit-alerts li")
        await expect(rule_item).to_have_count(1)
        await expect(rule_item.locator(".alert-rule")).to_have_text("cpu below 1000 for 0s")
        (rule,) = await db.list_alert_rules(pool, board.id)
        assert (rule.metric_id, rule.condition, rule.threshold) == (cpu.id, "below", 1000.0)

        # Pushed to the viewer's page with no reload; the worker's values fire it.
        listed = viewer.locator(f"#alert-list li[data-rule-id='{rule.id}']")
        await expect(listed).to_have_attribute("data-state", "ok")
        start_worker(0.5)
        await expect(listed).to_have_attribute("data-state", "firing", timeout=20_000)
        await expect(viewer.locator(f"[data-metric-id='{cpu.id}'] .alert-badge")).to_have_text("alert firing")
        await expect(viewer.locator("#alert-history li[data-state='firing']")).to_have_count(1)
        await expect(rule_item).to_have_attribute("data-state", "firing")
        await screenshot(viewer, "alert-firing-viewer")

        await rule_item.get_by_role("button").click()
        await editor.locator("#confirm-dialog .confirm-ok").click()
        await expect(rule_item).to_have_count(0)
        await expect(viewer.locator("#alert-list li")).to_have_count(0)
        await expect(viewer.locator("#alerts")).to_be_hidden()
        assert await db.list_alert_rules(pool, board.id) == []
    finally:
        await viewer_context.close()


async def test_the_page_shows_what_resolved_while_it_was_disconnected(server, context, pool):
    demo = await create_demo(pool)
    cpu = next(m for m in await db.list_metrics(pool, demo.dashboard.id) if m.name == "cpu")
    rule = await db.create_alert_rule(pool, cpu.id, "above", 1000.0)
    page = await context.new_page()
    await log_in(page, server.base, "demo", "demo", f"/dashboards/{demo.dashboard.id}/")
    item = page.locator(f"#alert-list li[data-rule-id='{rule.id}']")
    redis_client = Redis.from_url(servers().redis_url)
    try:
        now = datetime.now(UTC)
        await store_and_publish(
            pool, redis_client, servers().channels, {cpu.id: cpu}, [(cpu.id, 5000.0, now)]
        )
        await expect(item).to_have_attribute("data-state", "firing")

        # The server dies; meanwhile the rule resolves, and no page hears it.
        server.kill()
        await expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
        later = now + timedelta(seconds=1)
        await store_and_publish(
            pool, redis_client, servers().channels, {cpu.id: cpu}, [(cpu.id, 10.0, later)]
        )
        await server.start()
        await expect(page.locator("#connection")).to_have_attribute("data-state", "connected", timeout=30_000)
        await expect(item).to_have_attribute("data-state", "ok")
        await expect(page.locator(f"[data-metric-id='{cpu.id}'] .alert-badge")).to_have_attribute(
            "data-state", "ok"
        )
        history = page.locator("#alert-history li")
        await expect(history).to_have_count(2)
        await expect(history.first).to_have_attribute("data-state", "resolved")
        await expect(history.first.locator(".alert-detail")).to_have_text("value 10")
    finally:
        await redis_client.aclose()

"""A pushed metric with no values says, on its card, how to feed it: the exact
command for an editor (which works as shown), a sentence for a viewer."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from playwright.async_api import expect

from common import db
from common.tokens import display_prefix, new_token, token_hash
from tests.browser.pages import log_in, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_an_empty_pushed_metric_shows_how_to_feed_it(
    server, context, pool, make_user, make_dashboard, make_metric
):
    ed, vi = await make_user("ed"), await make_user("vi")
    ops = await make_dashboard("ops")
    await db.add_member(pool, ops.id, ed.id, db.EDITOR)
    await db.add_member(pool, ops.id, vi.id, db.VIEWER)
    jobs = await make_metric(ops, "jobs", "counter", "jobs")
    queue = await make_metric(ops, "queue", "gauge")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    await log_in(page, server.base, "ed", next_path=f"/dashboards/{ops.id}/")

    card = page.locator(f"[data-metric-id='{jobs.id}']")
    command = card.locator(".feed-command")
    expected = (
        f"curl -X POST {server.base}/api/v1/metrics/{jobs.id}/values"
        ' -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json"'
        " -d '{\"value\": 1}'"
    )
    await expect(command).to_be_visible()
    await expect(command).to_have_text(expected)
    await expect(card.locator(".waiting")).to_be_hidden()
    await screenshot(page, "push-feed-editor")

    # "Make a token" opens the Edit panel at the token form, ready to type in.
    await card.get_by_role("link", name="Make a token").click()
    await expect(page.locator("#edit-panel")).to_have_attribute("open", "")
    await expect(page.locator("#edit-add-token input[name=name]")).to_be_focused()

    # The command works as shown, with a token in $TOKEN; the card then shows the value.
    secret = new_token()
    await db.create_api_token(pool, ops.id, "shell", token_hash(secret), display_prefix(secret))
    ran = await asyncio.to_thread(
        subprocess.run,
        ["sh", "-c", await command.text_content()],
        env={**os.environ, "TOKEN": secret},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert '"stored": 1' in ran.stdout, (shlex.quote(ran.stdout), ran.stderr)
    await expect(card.locator(".value")).to_have_text("1")
    await expect(card.locator(".feed")).to_be_hidden()

    viewer = await (await context.browser.new_context()).new_page()
    await log_in(viewer, server.base, "vi", next_path=f"/dashboards/{ops.id}/")
    empty = viewer.locator(f"[data-metric-id='{queue.id}'] .feed")
    await expect(empty).to_be_visible()
    await expect(empty).to_have_text(
        "No values have arrived yet. They show here as soon as a program pushes them."
    )
    assert await viewer.locator(".feed-command, .feed-token").count() == 0
    await viewer.context.close()
    assert errors == []


async def test_a_back_dated_push_shows_at_its_time_on_an_open_page(
    server, context, pool, make_user, make_dashboard, make_metric
):
    ed = await make_user("ed")
    ops = await make_dashboard("ops", members=(ed,))
    queue = await make_metric(ops, "queue", "gauge")
    secret = new_token()
    await db.create_api_token(pool, ops.id, "ci", token_hash(secret), display_prefix(secret))
    page = await context.new_page()
    await log_in(page, server.base, "ed", next_path=f"/dashboards/{ops.id}/")
    await expect(page.locator(f"[data-metric-id='{queue.id}'] .feed")).to_be_visible()
    now = datetime.now(UTC)
    # Stored in this order; the second was measured two minutes before the first.
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {secret}"}) as session:
        for value, ts in [(1.0, now), (2.0, now - timedelta(minutes=2)), (3.0, now + timedelta(seconds=1))]:
            body = {"value": value, "timestamp": ts.isoformat()}
            async with session.post(f"{server.base}/api/v1/metrics/{queue.id}/values", json=body) as response:
                assert response.status == 201
    await expect(page.locator(f"[data-metric-id='{queue.id}'] .value")).to_have_text("3")
    points = await page.evaluate("(id) => window.__dashboard.points(id).map((p) => p.v)", queue.id)
    # Drawn by time: the back-dated value is first, not dropped.
    assert points == [2.0, 1.0, 3.0]

"""The Edit panel in Chromium: an editor renames the dashboard and adds a
metric, and another open page follows live; a viewer sees no controls."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from common import db
from server.cli.demo import create_demo
from tests.browser.pages import log_in, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_editor_renames_and_a_viewers_page_follows_live(server, context, browser: Browser, pool):
    demo = await create_demo(pool)
    path = f"/dashboards/{demo.dashboard.id}/"
    editor = await context.new_page()
    await log_in(editor, server.base, "demo", "demo", path)
    viewer_context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        viewer = await viewer_context.new_page()
        await log_in(viewer, server.base, "viewer", "viewer", path)
        await expect(viewer.locator("#connection")).to_have_attribute("data-state", "connected")
        await expect(viewer.locator("#edit-panel")).to_have_count(0)
        await expect(viewer.locator("#edit-panel, #edit-metrics, #edit-members")).to_have_count(0)

        await expect(editor.locator("#connection")).to_have_attribute("data-state", "connected")
        await editor.click("#edit-panel summary")
        await expect(editor.locator("#edit-members li")).to_have_count(2)
        await editor.fill("#edit-settings input[name=name]", "Renamed <b>live</b>")
        await editor.click("#edit-settings button[type=submit]")
        # Text only: the markup shows as typed, on both pages.
        for page in (editor, viewer):
            await expect(page.locator("#dashboard-name")).to_have_text("Renamed <b>live</b>")
        assert (await db.get_dashboard(pool, demo.dashboard.id)).name == "Renamed <b>live</b>"

        cards = viewer.locator("article.metric")
        count = await cards.count()
        await editor.fill("#edit-add-metric input[name=name]", "queue_wait")
        await editor.select_option("#edit-add-metric select[name=type]", "histogram")
        await editor.click("#edit-add-metric button[type=submit]")
        await expect(cards).to_have_count(count + 1)
        await expect(cards.last.locator(".metric-name")).to_have_text("queue_wait")
        await expect(editor.locator("#edit-metrics li")).to_have_count(count + 1)
        await screenshot(editor, "dashboard-edit")

        # A request made by hand from the viewer's page is refused too (here by the CSRF check;
        # tests/test_editing.py checks the 403 a viewer with the right token gets).
        status = await viewer.evaluate(
            """async (base) => (await fetch(base + "settings", {method: "POST",
                 headers: {"Content-Type": "application/json", "X-CSRF-Token": "x"},
                 body: JSON.stringify({name: "nope"})})).status""",
            path,
        )
        assert status == 403
    finally:
        await viewer_context.close()


async def test_a_user_creates_a_dashboard_from_the_list_and_adds_a_metric(server, context, pool, make_user):
    await make_user("carol")
    page = await context.new_page()
    await log_in(page, server.base, "carol", "secret-pw", "/dashboards/")
    # Carol has no dashboard yet: the form to make one is open.
    await expect(page.locator("#new-dashboard")).to_have_attribute("open", "")
    await page.fill("#new-dashboard input[name=name]", "   ")  # only spaces: refused by the server
    await page.click("#new-dashboard button[type=submit]")
    await expect(page.locator("#new-dashboard .field-error")).to_have_count(1)
    assert await db.list_dashboards(pool) == []

    await page.fill("#new-dashboard input[name=name]", "Carol's <i>board</i>")
    await page.click("#new-dashboard button[type=submit]")
    await expect(page.locator("#dashboard-name")).to_have_text("Carol's <i>board</i>")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    # A new, empty dashboard opens its Edit panel: adding metrics is the next step.
    await expect(page.locator("#edit-panel")).to_have_attribute("open", "")
    await page.fill("#edit-add-metric input[name=name]", "signups")
    await page.select_option("#edit-add-metric select[name=type]", "counter")
    await page.click("#edit-add-metric button[type=submit]")
    await expect(page.locator("article.metric .metric-name")).to_have_text(["signups"])
    await screenshot(page, "dashboard-created")
    await page.goto(server.base + "/dashboards/")
    await expect(page.locator(".dashboard-list a")).to_have_text(["Carol's <i>board</i>"])


async def test_what_an_editor_is_typing_survives_another_editors_change(
    server, context, browser: Browser, pool
):
    demo = await create_demo(pool)
    path = f"/dashboards/{demo.dashboard.id}/"
    metrics = await db.list_metrics(pool, demo.dashboard.id)
    first, second = metrics[0], metrics[1]
    await db.add_member(
        pool, demo.dashboard.id, (await db.get_user_by_username(pool, "viewer")).id, db.EDITOR
    )
    await db.set_member_role(
        pool, demo.dashboard.id, (await db.get_user_by_username(pool, "viewer")).id, db.EDITOR
    )
    typing = await context.new_page()
    await log_in(typing, server.base, "demo", "demo", path)
    other_context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        other = await other_context.new_page()
        await log_in(other, server.base, "viewer", "viewer", path)
        for page in (typing, other):
            await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
            await page.click("#edit-panel summary") if not await page.locator(
                "#edit-panel[open]"
            ).count() else None
        first_name = typing.locator(f"#edit-metrics li[data-metric-id='{first.id}'] [data-role=name]")
        second_name = typing.locator(f"#edit-metrics li[data-metric-id='{second.id}'] [data-role=name]")
        await first_name.fill("half-typed name")
        await second_name.fill("my idea")

        # The other editor renames the dashboard and the second metric: the list is rebuilt.
        await other.fill("#edit-settings input[name=name]", "Renamed elsewhere")
        await other.click("#edit-settings button[type=submit]")
        await expect(typing.locator("#dashboard-name")).to_have_text("Renamed elsewhere")
        other_second = other.locator(f"#edit-metrics li[data-metric-id='{second.id}']")
        await other_second.locator("[data-role=name]").fill("their_name")
        await other_second.locator("[data-role=save]").click()
        await expect(
            typing.locator(f"article.metric[data-metric-id='{second.id}'] .metric-name")
        ).to_have_text("their_name")
        # Unsaved text of a field nobody else changed stays; the field they changed shows theirs.
        await expect(first_name).to_have_value("half-typed name")
        await expect(second_name).to_have_value("their_name")
    finally:
        await other_context.close()

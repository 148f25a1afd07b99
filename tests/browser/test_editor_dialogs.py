"""The Edit panel finished: "Saved" after a change, an in-page dialog naming
what a destructive action deletes (the dashboard only once its name is typed),
a metric's description, revoked tokens leaving the list, and no "Remove" next
to the last editor. Chromium against a real server process."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from common import db
from common.tokens import display_prefix, new_token, token_hash
from server.cli.demo import create_demo
from tests.browser.pages import log_in, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def open_editor(page: Page, base: str, dashboard_id: int) -> None:
    # window.confirm would block the page and this test: the page must never call it.
    page.on("dialog", lambda dialog: pytest.fail(f"a browser dialog: {dialog.message}"))
    await log_in(page, base, "demo", "demo", f"/dashboards/{dashboard_id}/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    await page.click("#edit-panel summary")
    await expect(page.locator("#edit-metrics li").first).to_be_visible()


async def test_a_saved_description_says_saved_and_shows_on_the_card(server, context, pool):
    demo = await create_demo(pool)
    cpu = next(m for m in await db.list_metrics(pool, demo.dashboard.id) if m.name == "cpu")
    page = await context.new_page()
    await open_editor(page, server.base, demo.dashboard.id)
    row = page.locator(f"#edit-metrics li[data-metric-id='{cpu.id}']")

    await row.locator("[data-role=description]").fill("All cores <i>together</i>")
    await row.locator("[data-role=save]").click()

    await expect(page.locator("#edit-panel .edit-saved")).to_have_text("Saved")
    await expect(page.locator("#edit-panel .edit-saved")).to_be_visible()
    card = page.locator(f"article.metric[data-metric-id='{cpu.id}']")
    await expect(card.locator(".metric-description")).to_have_text("All cores <i>together</i>")
    stored = next(m for m in await db.list_metrics(pool, demo.dashboard.id) if m.id == cpu.id)
    assert stored.description == "All cores <i>together</i>"

    # An error replaces it, next to its field as before.
    await row.locator("[data-role=name]").fill("   ")
    await row.locator("[data-role=save]").click()
    await expect(page.locator("#edit-panel .edit-error")).to_contain_text("name")
    await expect(page.locator("#edit-panel .edit-saved")).to_be_hidden()


async def test_removing_a_metric_asks_in_a_dialog_naming_it(server, context, pool):
    demo = await create_demo(pool)
    cpu = next(m for m in await db.list_metrics(pool, demo.dashboard.id) if m.name == "cpu")
    page = await context.new_page()
    await open_editor(page, server.base, demo.dashboard.id)
    dialog = page.locator("#confirm-dialog")

    await page.get_by_role("button", name="Remove cpu").click()
    await expect(dialog).to_be_visible()
    await expect(dialog.locator(".confirm-title")).to_have_text("Remove metric cpu?")
    await expect(dialog.locator(".confirm-message")).to_contain_text("cpu is removed with all its values")
    await screenshot(page, "edit-dialog-remove-metric")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    assert cpu.id in [m.id for m in await db.list_metrics(pool, demo.dashboard.id)]

    await page.get_by_role("button", name="Remove cpu").click()
    await dialog.get_by_role("button", name="Remove cpu").click()
    await expect(page.locator(f"article.metric[data-metric-id='{cpu.id}']")).to_have_count(0)
    assert cpu.id not in [m.id for m in await db.list_metrics(pool, demo.dashboard.id)]


async def test_members_are_removed_through_the_dialog_but_never_the_last_editor(server, context, pool):
    demo = await create_demo(pool)
    page = await context.new_page()
    await open_editor(page, server.base, demo.dashboard.id)
    members = page.locator("#edit-members li")
    await expect(members).to_have_count(2)
    # demo is the only editor: no Remove next to them; the viewer has one.
    await expect(members.filter(has_text="demo").get_by_role("button")).to_have_count(0)

    await page.get_by_role("button", name="Remove viewer").click()
    dialog = page.locator("#confirm-dialog")
    await expect(dialog.locator(".confirm-title")).to_have_text(f"Remove viewer from {demo.dashboard.name}?")
    await page.keyboard.press("Escape")  # Escape cancels
    await expect(dialog).to_be_hidden()
    await expect(members).to_have_count(2)
    await page.get_by_role("button", name="Remove viewer").click()
    await dialog.locator(".confirm-ok").click()

    await expect(members).to_have_count(1)
    assert [m.user.username for m in await db.list_members(pool, demo.dashboard.id)] == ["demo"]


async def test_a_token_is_revoked_through_the_dialog_then_removed_from_the_list(server, context, pool):
    demo = await create_demo(pool)
    secret = new_token()
    await db.create_api_token(pool, demo.dashboard.id, "ci", token_hash(secret), display_prefix(secret))
    page = await context.new_page()
    await open_editor(page, server.base, demo.dashboard.id)
    item = page.locator("#edit-tokens li")

    await item.get_by_role("button", name="Revoke token ci").click()
    dialog = page.locator("#confirm-dialog")
    await expect(dialog.locator(".confirm-title")).to_have_text("Revoke the token ci?")
    await expect(dialog.locator(".confirm-message")).to_contain_text(display_prefix(secret))
    await dialog.locator(".confirm-ok").click()
    await expect(item).to_have_attribute("data-state", "revoked")

    await item.get_by_role("button", name="Remove revoked token ci from the list").click()
    await expect(item).to_have_count(0)
    await expect(page.locator("#edit-tokens-empty")).to_be_visible()
    assert await db.list_api_tokens(pool, demo.dashboard.id) == []


async def test_a_dashboard_is_deleted_only_once_its_name_is_typed(server, context, pool):
    demo = await create_demo(pool)
    board = demo.dashboard
    page = await context.new_page()
    await open_editor(page, server.base, board.id)
    dialog = page.locator("#confirm-dialog")
    ok = dialog.locator(".confirm-ok")

    await page.click("#edit-delete-dashboard")
    await expect(dialog.locator(".confirm-title")).to_have_text(f"Delete the dashboard {board.name}?")
    await expect(dialog.locator(".confirm-expected")).to_have_text(board.name)
    await expect(ok).to_be_disabled()
    typed = dialog.locator("input[name=typed]")
    await expect(typed).to_be_focused()
    await typed.fill(board.name[:-1])
    await expect(ok).to_be_disabled()
    await typed.press("Enter")  # refused: the dialog stays, nothing is deleted
    await expect(dialog).to_be_visible()
    await screenshot(page, "edit-dialog-delete-dashboard")
    assert await db.get_dashboard(pool, board.id) is not None

    await typed.fill(board.name)
    await expect(ok).to_be_enabled()
    await ok.click()

    await page.wait_for_url(f"{server.base}/dashboards/")
    assert await db.get_dashboard(pool, board.id) is None
    await expect(page.locator(".dashboard-list a")).not_to_contain_text([board.name])

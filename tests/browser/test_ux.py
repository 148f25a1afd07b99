"""The whole UI as a user goes through it, in both themes and at a phone's
width: no script errors, every control labelled, nothing wider than the
screen; and what the charts, the Edit panel and the empty states tell them."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Browser, Page, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from redis.asyncio import Redis

from common import db
from common.events import DashboardChanged, announce_dashboard_changed
from server.cli.demo import create_demo
from tests.browser.pages import log_in, screenshot, until_chart
from tests.servers import servers

pytestmark = [pytest.mark.slow, pytest.mark.browser]

DARK = {"--gauge": "#4493f8", "--counter": "#3fb950"}  # app.css, :root[data-theme="dark"]
LIGHT = {"--gauge": "#0969da", "--counter": "#1a7f37"}

# Form controls with no name a screen reader could read out.
UNLABELLED = """() => Array.from(document.querySelectorAll("input, select, textarea, button"))
  .filter((el) => el.type !== "hidden" && el.offsetParent !== null)
  .filter((el) => !(el.labels && Array.from(el.labels).some((l) => l.textContent.trim()))
    && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby")
    && !(el.tagName === "BUTTON" && el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 120))"""
OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


class Watched:
    """A page's script errors and console complaints, but not the HTTP status of a page itself."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        self.expected_statuses: set[str] = set()
        page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))
        page.on("console", self._console)

    def _console(self, message) -> None:
        if message.type not in ("error", "warning"):
            return
        # A 404 page, or 401 after a wrong password, logs its own status: that is the page's answer.
        if (
            message.text.startswith("Failed to load resource")
            and message.location.get("url") in self.expected_statuses
        ):
            return
        self.problems.append(f"console.{message.type}: {message.text} at {message.location.get('url')}")


async def set_theme(page: Page, theme: str) -> None:
    await page.evaluate(
        """async (theme) => {
          const toggle = document.getElementById("theme-toggle");
          const answer = await fetch(toggle.dataset.url, {method: "PATCH", body: JSON.stringify({theme}),
            headers: {"Content-Type": "application/json", "X-CSRF-Token": toggle.dataset.csrf}});
          if (!answer.ok) throw new Error("theme not saved");
        }""",
        theme,
    )


async def look(page: Page, name: str, width: int) -> None:
    """Every visible control has a label, nothing is wider than the window; then the picture."""
    assert await page.evaluate(UNLABELLED) == [], name
    assert await page.evaluate(OVERFLOW) <= 0, f"{name} is wider than {width}px"
    await screenshot(page, name)


async def tour(browser: Browser, base: str, board: int, theme: str, width: int) -> list[str]:
    """Every page and panel as the editor, the viewer and a non-member see them."""
    tag = f"{theme}-{width}"
    context = await browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(15_000)
    page = await context.new_page()
    watched = Watched(page)
    watched.expected_statuses |= {f"{base}/no/such/page", f"{base}/dashboards/{board}/", f"{base}/login"}
    page.on("dialog", lambda dialog: dialog.dismiss())
    await page.goto(f"{base}/login")
    await look(page, f"ux-login-{tag}", width)
    await log_in(page, base, "demo", "demo")
    await set_theme(page, theme)
    await page.goto(f"{base}/dashboards/")
    await page.click("#new-dashboard summary")
    await look(page, f"ux-list-{tag}", width)

    await page.goto(f"{base}/dashboards/{board}/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    for chosen in ("1h", "24h", "7d", "5m"):
        await page.click(f"[data-range='{chosen}']")
        await page.wait_for_function("(r) => window.__dashboard.range === r", arg=chosen)
    await page.click("#view-panel summary")
    await page.click("#edit-panel summary")
    await expect(page.locator("#edit-tokens-empty")).to_be_visible()  # loaded on opening
    await page.wait_for_timeout(300)  # charts settle to their width
    await look(page, f"ux-dashboard-editor-{tag}", width)

    await page.goto(f"{base}/playground/")
    await expect(page.locator("#log-empty")).to_be_visible()
    await page.click("#connect")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#log-empty")).to_be_hidden()
    await look(page, f"ux-playground-{tag}", width)
    await page.goto(f"{base}/no/such/page")
    await look(page, f"ux-not-found-{tag}", width)
    await context.close()

    for username in ("viewer", "outsider"):
        context = await browser.new_context(viewport={"width": width, "height": 900})
        context.set_default_timeout(15_000)
        other = await context.new_page()
        seen = Watched(other)
        seen.expected_statuses = watched.expected_statuses
        await log_in(other, base, username, username)
        await set_theme(other, theme)
        await other.goto(f"{base}/dashboards/{board}/")
        await other.wait_for_timeout(500)
        await look(other, f"ux-dashboard-{username}-{tag}", width)
        watched.problems += seen.problems
        await context.close()
    return watched.problems


# One test per theme and width: each tour takes about 20 s, and a failure names its own.
@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("width", [1440, 420])
async def test_every_page_in_both_themes_and_on_a_phone_without_errors(
    server, start_worker, browser, pool, width, theme
):
    demo = await create_demo(pool)
    start_worker(interval=1.0)
    assert await tour(browser, server.base, demo.dashboard.id, theme, width) == []


async def chart(page: Page, metric_id: int) -> dict:
    return await page.evaluate("(id) => window.__dashboard.chart(id)", metric_id)


async def test_charts_span_the_chosen_range_in_the_themes_colours(server, context, pool):
    demo = await create_demo(pool)
    metrics = {m.name: m for m in await db.list_metrics(pool, demo.dashboard.id)}
    cpu, latency = metrics["cpu"], metrics["latency"]
    now = datetime.now(UTC)
    # Half a minute of values: one or two of a 24-hour range's 300-second buckets.
    await db.insert_values(
        pool,
        [(m.id, 10.0 + i, now - timedelta(seconds=30 - i)) for m in (cpu, latency) for i in range(30)],
    )
    page = await context.new_page()
    await log_in(page, server.base, "demo", "demo", f"/dashboards/{demo.dashboard.id}/")
    await page.click("[data-range='24h']")
    await page.wait_for_function(
        "(id) => window.__dashboard.range === '24h' && [1, 2].includes(window.__dashboard.points(id).length)",
        arg=cpu.id,
    )  # one bucket, or two if the half minute straddles a boundary
    shown = await chart(page, cpu.id)
    # The whole day, ending now: not a span stretched around the one bucket there is.
    assert shown["xMax"] - shown["xMin"] == pytest.approx(86400, abs=1)
    assert shown["xMax"] == pytest.approx(now.timestamp(), abs=60)
    assert shown["stroke"] == LIGHT["--gauge"]
    # The histogram's last bar is drawn whole: the scale ends after its bin.
    await page.click("[data-range='5m']")
    await page.wait_for_function("(id) => window.__dashboard.points(id).length === 30", arg=latency.id)
    # Charts redraw on the next animation frame: wait for the redraw, not just the data.
    with suppress(PlaywrightTimeoutError):
        await until_chart(page, latency.id, "m.xMax === 39", view="chart")
    bars = await chart(page, latency.id)
    assert bars["xMax"] == pytest.approx(39.0)  # the end of the last bin: the largest value
    await screenshot(page, "ux-chart-24h-light")

    await page.click("#theme-toggle")
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await until_chart(page, cpu.id, "m.stroke === '#4493f8'", view="chart")
    assert (await chart(page, metrics["requests"].id))["stroke"] == DARK["--counter"]


async def test_byte_counts_read_in_binary_units_and_rates_carry_the_unit(server, context, pool, make_user):
    alice = await make_user("alice")
    board = await db.create_dashboard(pool, "Host", "host", "")
    await db.add_member(pool, board.id, alice.id)
    memory = await db.create_metric(pool, board.id, "memory_used", "gauge", "bytes", "")
    sent = await db.create_metric(pool, board.id, "net_bytes_sent", "counter", "bytes", "")
    requests = await db.create_metric(pool, board.id, "requests", "counter", "req", "")
    now = datetime.now(UTC)
    rows = [(memory.id, 1.5 * 1024**3, now - timedelta(seconds=5))]
    for i in range(11):  # 2 MiB and 3 requests a second
        at = now - timedelta(seconds=10 - i)
        rows += [(sent.id, 2 * 1024**2 * i, at), (requests.id, 3.0 * i, at)]
    await db.insert_values(pool, rows)
    page = await context.new_page()
    await log_in(page, server.base, "alice", next_path=f"/dashboards/{board.id}/")
    card = page.locator(f"[data-metric-id='{memory.id}']")
    await expect(card.locator(".value")).to_have_text("1.5")
    await expect(card.locator(".unit")).to_have_text("GiB")
    await expect(card.locator("[data-stat=max] .stat-value")).to_have_text("1.5 GiB")
    rate = page.locator(f"[data-metric-id='{sent.id}'] [data-stat=rate] .stat-value")
    await expect(rate).to_have_text("2 MiB/s")
    await expect(page.locator(f"[data-metric-id='{requests.id}'] [data-stat=rate] .stat-value")).to_have_text(
        "3 req/s"
    )
    await screenshot(page, "ux-bytes")


async def open_edit_panel(page: Page) -> None:
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    await page.click("#edit-panel summary")
    await expect(page.locator("#edit-metrics li").first).to_be_visible()


async def test_edit_panel_errors_show_by_their_form_and_say_what_is_wrong(server, context, pool):
    demo = await create_demo(pool)
    page = await context.new_page()
    await page.set_viewport_size({"width": 1440, "height": 700})
    await log_in(page, server.base, "demo", "demo", f"/dashboards/{demo.dashboard.id}/")
    await open_edit_panel(page)
    error = page.locator("#edit-panel .edit-error")

    await page.fill("#edit-add-member input[name=username]", "nobody")
    await page.click("#edit-add-member button[type=submit]")
    # Right under the form used, in view, naming the field as the form labels it.
    await expect(page.locator("#edit-add-member + .edit-error")).to_have_text(
        "Username: no user 'nobody': check the name, or create the account first (dashboard-server user create)"
    )
    await expect(error).to_be_in_viewport()

    await page.fill("#edit-add-metric input[name=name]", "cpu")
    await page.click("#edit-add-metric button[type=submit]")
    await expect(page.locator("#edit-add-metric + .edit-error")).to_contain_text("Name: ")

    # Lost connection: said so, no script error, nothing else changes.
    failures = []
    page.on("pageerror", lambda e: failures.append(str(e)))
    await context.set_offline(True)
    await page.fill("#edit-add-token input[name=name]", "deploy")
    await page.click("#edit-add-token button[type=submit]")
    await expect(page.locator("#edit-add-token + .edit-error")).to_have_text(
        "Not saved: the server did not answer. Check your connection, then try again."
    )
    await expect(error).to_be_in_viewport()
    await page.click("#edit-settings button[type=submit]")
    await expect(page.locator("#edit-settings + .edit-error")).to_contain_text("Not saved")
    await context.set_offline(False)
    await screenshot(page, "ux-edit-error")
    assert failures == []
    assert [t.name for t in await db.list_api_tokens(pool, demo.dashboard.id)] == []


async def test_empty_states_say_what_to_do_next(server, context, pool, make_user, make_dashboard):
    editor, viewer = await make_user("erin"), await make_user("victor")
    await make_user("nora")
    empty = await make_dashboard("empty", members=(viewer,))
    await db.add_member(pool, empty.id, editor.id, db.EDITOR)

    page = await context.new_page()
    await log_in(page, server.base, "erin", next_path=f"/dashboards/{empty.id}/")
    state = page.locator("#state")
    await expect(state).to_have_attribute("data-state", "empty")
    await expect(state).to_contain_text("Add the first one in the Edit panel above")
    await expect(page.locator("#edit-panel")).to_have_attribute("open", "")
    await expect(page.locator("#edit-alerts-empty")).to_be_visible()
    await expect(page.locator("#edit-tokens-empty")).to_be_visible()
    await page.fill("#edit-add-metric input[name=name]", "cpu")
    await page.click("#edit-add-metric button[type=submit]")
    await expect(page.locator("#edit-add-alert select[name=metric_id] option")).to_have_count(1)
    await page.fill("#edit-add-alert input[name=threshold]", "90")
    await page.click("#edit-add-alert button[type=submit]")
    await expect(page.locator("#edit-alerts li")).to_have_count(1)
    await expect(page.locator("#edit-alerts-empty")).to_be_hidden()
    await page.fill("#edit-add-token input[name=name]", "deploy")
    await page.click("#edit-add-token button[type=submit]")
    await expect(page.locator("#edit-tokens-empty")).to_be_hidden()

    # A viewer of an empty dashboard is not told to run a command only editors may.
    other = await (await context.browser.new_context()).new_page()
    await db.delete_metric(pool, empty.id, (await db.list_metrics(pool, empty.id))[0].id)
    # Announced, as the Edit panel and the CLI do: servers cache each dashboard's config.
    async with Redis.from_url(servers().redis_url) as redis_client:
        await announce_dashboard_changed(redis_client, servers().channels, DashboardChanged(empty.id))
    await log_in(other, server.base, "victor", next_path=f"/dashboards/{empty.id}/")
    await expect(other.locator("#state")).to_contain_text("Its editors have not added any metrics yet")
    await expect(other.locator("#state")).not_to_contain_text("dashboard-server")

    # Someone with no dashboard at all finds the form to make one open.
    await other.click("#logout")
    await log_in(other, server.base, "nora")
    await expect(other.locator("#new-dashboard")).to_have_attribute("open", "")
    await expect(other.locator("#new-dashboard input[name=name]")).to_be_visible()
    await other.context.close()


async def test_a_wrong_password_keeps_the_name_and_asks_for_the_password_again(server, context, make_user):
    await make_user("alice")
    page = await context.new_page()
    await page.goto(f"{server.base}/login")
    await page.fill("input[name=username]", "alice")
    await page.fill("input[name=password]", "wrong")
    await page.click("button[type=submit]")
    await expect(page.locator(".login .error")).to_have_text("Invalid username or password.")
    await expect(page.locator("input[name=username]")).to_have_value("alice")
    await expect(page.locator("input[name=password]")).to_be_focused()
    await page.keyboard.type("secret-pw")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{server.base}/dashboards/")


async def test_moving_a_card_with_the_keyboard_keeps_the_focus_on_it(server, context, pool):
    demo = await create_demo(pool)
    names = [m.name for m in await db.list_metrics(pool, demo.dashboard.id)]
    page = await context.new_page()
    await log_in(page, server.base, "demo", "demo", f"/dashboards/{demo.dashboard.id}/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")

    # The View panel (this user's order): Enter twice moves the card down twice.
    await page.click("#view-panel summary")
    down = page.locator(f"#pref-cards [aria-label='Move {names[0]} down']")
    await down.focus()
    for position in (1, 2):
        await page.keyboard.press("Enter")
        await expect(page.locator("#pref-cards li").nth(position)).to_have_attribute(
            "data-metric-id", await down.evaluate("(b) => b.closest('li').dataset.metricId")
        )
        await expect(down).to_be_focused()
    await page.click("#view-panel summary")

    # The Edit panel (the dashboard's order): the same, and up from the top hands over to down.
    await page.click("#edit-panel summary")
    up = page.locator(f"#edit-metrics [aria-label='Move {names[1]} up']")
    await up.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#edit-metrics li").first.locator("input").first).to_have_value(names[1])
    await expect(page.locator(f"#edit-metrics [aria-label='Move {names[1]} down']")).to_be_focused()

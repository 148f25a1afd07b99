"""What the browser tests share: logging in through the form, screenshots, panels, history."""

from __future__ import annotations

import os
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.async_api import Page, expect

from common import db
from worker.sources import next_value

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


async def log_in(
    page: Page, base: str, username: str, password: str = "secret-pw", next_path: str = ""
) -> None:
    """Log in through the real form."""
    await page.goto(f"{base}/login" + (f"?next={next_path}" if next_path else ""))
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    assert "/login" not in page.url, f"login failed for {username}"


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def open_panel(page: Page) -> None:
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    await page.click("#edit-panel summary")
    await expect(page.locator("#edit-metrics li").first).to_be_visible()


async def backfill(pool, metrics: list[db.Metric], hours: float, step_seconds: float) -> None:
    """Past values as the worker would have made them, so every range has something to show."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    steps = int(hours * 3600 / step_seconds)
    rows = []
    for metric in metrics:
        previous = None
        for i in range(steps, 0, -1):
            previous = next_value(metric.type, previous, rng, metric.unit)
            rows.append((metric.id, previous, now - timedelta(seconds=i * step_seconds)))
    await db.insert_values(pool, rows)


async def wait_for(page: Page, expression: str, arg: object = None, within_ms: float = 15_000) -> None:
    await page.wait_for_function(expression, arg=arg, timeout=within_ms)


async def until_chart(page: Page, metric_id: int, condition: str, view: str = "chartMarks") -> None:
    """Wait until `condition`, a JavaScript expression over `m` (what `window.__dashboard[view](id)`
    returns), holds. A card the page has not built yet, before its config arrives, is "not yet",
    not an error that ends the wait."""
    await page.wait_for_function(
        f"(id) => {{ const m = window.__dashboard && window.__dashboard.{view}(id); return m != null && ({condition}); }}",
        arg=metric_id,
    )


async def points(page: Page, metric_id: int) -> list[dict]:
    return await page.evaluate("(id) => window.__dashboard.points(id)", metric_id)


# Browser downloads are not available: use the system's Chromium.
CHROMIUM = os.environ.get("DASHBOARD_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

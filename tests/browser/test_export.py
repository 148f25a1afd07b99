"""The Export control on the dashboard page, downloading in Chromium."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import expect

from common import db
from tests.browser.pages import log_in, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_export_links_follow_the_range_and_download(
    server, context, pool, make_user, make_dashboard, make_metric
):
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    cpu = await make_metric(ops, "cpu", "gauge", "%")
    now = datetime.now(UTC)
    # One value in the last 5 minutes, one only in the last hour.
    await db.insert_values(pool, [(cpu.id, 40.0, now - timedelta(minutes=30)), (cpu.id, 42.0, now)])
    page = await context.new_page()
    await log_in(page, server.base, "alice", next_path=f"/dashboards/{ops.id}/")
    csv_link = page.locator("#export a[data-format=csv]")
    await expect(csv_link).to_have_attribute("href", f"/dashboards/{ops.id}/export?format=csv&since=5m")
    card_link = page.locator(f'[data-metric-id="{cpu.id}"] .metric-export')
    await expect(card_link).to_have_attribute(
        "href", f"/dashboards/{ops.id}/export?format=csv&since=5m&metric={cpu.id}"
    )
    await screenshot(page, "dashboard-export")

    await page.click("[data-range='1h']")
    await expect(csv_link).to_have_attribute("href", f"/dashboards/{ops.id}/export?format=csv&since=1h")
    async with page.expect_download() as started:
        await csv_link.click()
    download = await started.value
    assert download.suggested_filename.startswith("ops-all-") and download.suggested_filename.endswith(".csv")
    lines = (await asyncio.to_thread(Path(await download.path()).read_text)).splitlines()
    assert lines[0] == "metric_id,metric,unit,timestamp,value"
    assert [line.rsplit(",", 1)[1] for line in lines[1:]] == ["40.0", "42.0"]

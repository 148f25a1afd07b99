"""The dashboard page under a sustained stream, in real Chromium.

    python -m bench.page [--metrics 30] [--rate 20] [--minutes 2] [--tooltip]

A real `dashboard-server` serves a dashboard of N gauges; this process
publishes a value for every metric R times a second (R=20 for 2 minutes is
as many updates as 40 minutes at the 1/s the issue describes); Chromium
(Playwright, Debian's binary) shows the page. Every 10 s the JS heap is
measured after a forced garbage collection, with the frames drawn and the
long tasks (> 50 ms) seen since the previous sample. With --tooltip the pointer
rests on the first chart the whole time, so its tooltip and every card's synced
crosshair are redrawn with each value (issue 15: at least 30 frames a second with
12 cards). Writes bench/results/page.json (page-tooltip.json with --tooltip); a
flat heap and a steady frame rate are the point.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from playwright.async_api import async_playwright
from redis.asyncio import Redis

from bench.__main__ import HERE, _free_port, _recreate, _wait_http
from common import db
from common.events import channels_for, encode_values
from common.migrate import migrate
from common.passwords import hash_password
from tests.browser.pages import CHROMIUM, CHROMIUM_ARGS

_PROBE = """() => {
  window.__bench = { frames: 0, longTasks: 0, longest: 0 };
  const tick = () => { window.__bench.frames += 1; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      window.__bench.longTasks += 1;
      window.__bench.longest = Math.max(window.__bench.longest, entry.duration);
    }
  }).observe({ type: "longtask", buffered: false });
}"""


async def _publish(
    redis_url: str, dashboard_id: int, metrics: list[db.Metric], rate: float, stop: asyncio.Event
) -> int:
    sent, value_id = 0, 10_000_000
    async with Redis.from_url(redis_url) as client:
        start = time.monotonic()
        while not stop.is_set():
            now = datetime.now(UTC)
            values = []
            for i, metric in enumerate(metrics):
                value_id += 1
                values.append((metric, db.MetricValue(value_id, metric.id, 50.0 + (sent * 7 + i) % 50, now)))
            await client.publish(
                channels_for(redis_url).dashboard(dashboard_id), encode_values(dashboard_id, values)
            )
            sent += 1
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    return sent


async def _show_tooltip(page) -> None:
    """Rest the pointer on the first chart: its tooltip shows, the other cards' crosshairs follow."""
    over = page.locator("article.metric .u-over").first
    box = await over.bounding_box()
    if box is None:
        raise click.ClickException("no chart to hover")
    await page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
    await page.locator("article.metric .chart-tip").first.wait_for(state="visible")


async def _run(
    database_url: str, redis_url: str, metric_count: int, rate: float, minutes: float, tooltip: bool
) -> dict:
    _recreate(database_url)
    async with db.create_pool(database_url) as pool:
        await migrate(pool)
        dashboard = await db.create_dashboard(pool, "Page bench", "page-bench")
        metrics = [
            await db.create_metric(pool, dashboard.id, f"g{i}", "gauge", "u") for i in range(metric_count)
        ]
        user = await db.create_user(pool, "pagebench", hash_password("pagebench"))
        await db.add_member(pool, dashboard.id, user.id)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "--database-url", database_url, "--redis-url", redis_url,
         "--log-level", "warning", "run", "--port", str(port)],
    )  # fmt: skip
    samples = []
    try:
        await asyncio.to_thread(_wait_http, f"{base}/login")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1440, "height": 1050})
            await page.goto(f"{base}/login?next=/dashboards/{dashboard.id}/")
            await page.fill("input[name=username]", "pagebench")
            await page.fill("input[name=password]", "pagebench")
            await page.click("button[type=submit]")
            await page.wait_for_selector("#connection[data-state=connected]")
            await page.evaluate(_PROBE)
            if tooltip:
                # Values first, so the pointer rests on a drawn line.
                await page.wait_for_function("() => window.__dashboard.metricIds().length > 0")
                await page.wait_for_timeout(2000)
            cdp = await page.context.new_cdp_session(page)
            await cdp.send("Performance.enable")
            stop = asyncio.Event()
            publisher = asyncio.create_task(_publish(redis_url, dashboard.id, metrics, rate, stop))
            if tooltip:
                await asyncio.sleep(1)
                await _show_tooltip(page)
            started = time.monotonic()
            while time.monotonic() - started < minutes * 60:
                await asyncio.sleep(10)
                await cdp.send("HeapProfiler.collectGarbage")
                heap = {m["name"]: m["value"] for m in (await cdp.send("Performance.getMetrics"))["metrics"]}
                probe = await page.evaluate(
                    "() => { const b = {...window.__bench}; window.__bench.frames = 0; window.__bench.longTasks = 0; window.__bench.longest = 0; return b; }"
                )
                points = await page.evaluate("(id) => window.__dashboard.points(id).length", metrics[0].id)
                samples.append({
                    "seconds": round(time.monotonic() - started),
                    "js_heap_mb": round(heap["JSHeapUsedSize"] / 2**20, 2),
                    "dom_nodes": int(heap["Nodes"]),
                    "fps": round(probe["frames"] / 10, 1),
                    "long_tasks": probe["longTasks"],
                    "longest_task_ms": round(probe["longest"]),
                    "points_in_first_chart": points,
                    "tooltip_shown": await page.locator(".chart-tip:visible").count() == 1,
                })  # fmt: skip
                click.echo(json.dumps(samples[-1]), err=True)
            stop.set()
            ticks = await publisher
            await browser.close()
    finally:
        server.terminate()
        server.wait(30)
    heaps = [s["js_heap_mb"] for s in samples]
    fps = [s["fps"] for s in samples]
    return {
        "command": " ".join(["python -m bench.page", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": metric_count,
        "ticks_per_second": rate,
        "tooltip": tooltip,
        "fps_min_median": [min(fps), sorted(fps)[len(fps) // 2]] if fps else None,
        "updates_delivered_to_page": ticks * metric_count,
        "equivalent_minutes_at_1_per_second": round(ticks / 60, 1),
        "heap_mb_first_last_max": [heaps[0], heaps[-1], max(heaps)] if heaps else None,
        "samples": samples,
    }


@click.command()
@click.option(
    "--database-url",
    envvar="DASHBOARD_BENCH_DATABASE_URL",
    default="postgresql://postgres@127.0.0.1:5432/dashboard_bench_page",
)
@click.option("--redis-url", envvar="DASHBOARD_BENCH_REDIS_URL", default="redis://127.0.0.1:6379/12")
@click.option("--metrics", "metric_count", type=int, default=30, show_default=True)
@click.option("--rate", type=float, default=20.0, show_default=True, help="Values per metric per second.")
@click.option("--minutes", type=float, default=2.0, show_default=True)
@click.option("--tooltip", is_flag=True, help="Keep a chart's tooltip (and the synced crosshairs) shown.")
@click.option(
    "--output", type=click.Path(path_type=Path), help="Default: bench/results/page.json (page-tooltip.json)."
)
def main(
    database_url: str,
    redis_url: str,
    metric_count: int,
    rate: float,
    minutes: float,
    tooltip: bool,
    output: Path | None,
) -> None:
    """Stream values into an open dashboard page and sample its heap and frame rate."""
    result = asyncio.run(_run(database_url, redis_url, metric_count, rate, minutes, tooltip))
    out = output or HERE / "results" / ("page-tooltip.json" if tooltip else "page.json")
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    click.echo(f"wrote {out}", err=True)


if __name__ == "__main__":
    main()

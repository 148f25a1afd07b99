"""Real Chromium (Debian's, through Playwright) against real server and
worker processes. Screenshots go to test-output/screenshots/ on every run."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from common.config import Settings
from tests.processes import Child, child, free_port, wait_for_http

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
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


def _urls(settings: Settings) -> list[str]:
    return ["--database-url", settings.database_url or "", "--redis-url", settings.redis_url or ""]


class ServerProcess:
    """`dashboard-server run` on a fixed port, which a test may kill and start again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._running: Iterator[Child] | None = None
        self.process: Child | None = None

    async def start(self) -> None:
        args = ["-m", "server", *_urls(self.settings), "run", "--port", str(self.port)]
        self._running = child(args)
        self.process = self._running.__enter__()
        await asyncio.to_thread(wait_for_http, f"{self.base}/login", self.process)

    def kill(self) -> None:
        """SIGKILL: no close frames, as when a machine dies."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.stop()

    def stop(self) -> None:
        if self._running is not None:
            self._running.__exit__(None, None, None)
            self._running = None
            self.process = None


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[ServerProcess]:
    running = ServerProcess(settings)
    await running.start()
    yield running
    running.stop()


@pytest.fixture
def start_worker(settings: Settings) -> Iterator:
    """Start `dashboard-worker run` at an interval; stopped after the test."""
    started = []

    def _start(interval: float = 0.5) -> Child:
        running = child(["-m", "worker", *_urls(settings), "run", "--interval", str(interval)])
        started.append(running)
        return running.__enter__()

    yield _start
    for running in reversed(started):
        running.__exit__(None, None, None)


@pytest.fixture
def chromium() -> str:
    """The Chromium binary; CI sets DASHBOARD_REQUIRE_BROWSER so that a missing one fails there."""
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set DASHBOARD_TEST_CHROMIUM)"
        if os.environ.get("DASHBOARD_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    created = await browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
    created.set_default_timeout(15_000)
    yield created
    await created.close()


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

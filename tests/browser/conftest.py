"""Real Chromium (Debian's, through Playwright) against real server and
worker processes. Screenshots go to test-output/screenshots/ on every run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, BrowserContext

from common.config import Settings
from tests.processes import Child, child, free_port, wait_for_http


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
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    created = await browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
    created.set_default_timeout(15_000)
    yield created
    await created.close()

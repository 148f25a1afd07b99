"""A real HTTP receiver on loopback for notification tests: records requests, answers as told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    # Statuses of the next answers, first first; 200 once they run out.
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver at http://127.0.0.1:PORT/hook, stopped on exit."""
    state = Receiver("")

    async def hook(request: web.Request) -> web.Response:
        state.received.append(Received(request.path, dict(request.headers), await request.read()))
        if state.delay:
            await asyncio.sleep(state.delay)
        status = state.statuses.pop(0) if state.statuses else 200
        return web.Response(status=status, text=f"answer {status}")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield state
    finally:
        await runner.cleanup()

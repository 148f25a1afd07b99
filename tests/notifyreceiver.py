"""A real HTTP receiver on loopback for notification tests: records requests, answers as told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web

from common.ingest import store_and_publish
from common.redisconn import connect_redis
from tests.servers import servers
from worker.notify.delivery import Backoff


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


FAST = Backoff(first=0.05, most=0.05)


async def store_values(pool, board, *values: float) -> None:
    """Values through the real ingest path (store, publish, evaluate the rules)."""
    client = connect_redis(servers().redis_url)
    start = datetime.now(UTC) - timedelta(seconds=len(values))
    rows = [(board["temp"].id, v, start + timedelta(seconds=i)) for i, v in enumerate(values)]
    try:
        await store_and_publish(pool, client, servers().channels, {board["temp"].id: board["temp"]}, rows)
    finally:
        await client.aclose()


SECRET = "s3cret-signing-key"

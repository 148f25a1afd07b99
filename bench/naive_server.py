"""The reference the fan-out is measured against, in the same run: a bare
aiohttp server that forwards each update with `await ws.send_str(msg)` per
client per message (the chat-demo pattern), one Redis subscription.

Run: python -m bench.naive_server --port P --redis-url URL --dashboard-id N
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import suppress

import click
from aiohttp import web
from redis.asyncio import Redis

from common.events import channels_for, decode_values
from common.schemas import encode_message

CLIENTS_KEY = web.AppKey("clients", weakref.WeakSet[web.WebSocketResponse])
CONFIG_KEY = web.AppKey("config", tuple)


async def socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    request.app[CLIENTS_KEY].add(ws)
    async for _ in ws:
        pass
    return ws


async def listen(app: web.Application) -> AsyncIterator[None]:
    redis_url, dashboard_id = app[CONFIG_KEY]
    client = Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channels_for(redis_url).dashboard(dashboard_id))

    async def forward() -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            _, values = decode_values(message["data"])
            for event in values:
                text = encode_message(
                    "metric_update",
                    {
                        "metric_id": event.metric_id,
                        "value": event.value,
                        "timestamp": event.timestamp,
                        "metric_name": event.metric_name,
                        "unit": event.unit,
                    },
                )
                for ws in list(app[CLIENTS_KEY]):
                    with suppress(ConnectionError):
                        await ws.send_str(text)

    task = asyncio.create_task(forward())
    yield
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
    await pubsub.aclose()
    await client.aclose()


@click.command()
@click.option("--port", type=int, required=True)
@click.option("--redis-url", required=True)
@click.option("--dashboard-id", type=int, required=True)
def main(port: int, redis_url: str, dashboard_id: int) -> None:
    app = web.Application()
    app[CLIENTS_KEY] = weakref.WeakSet()
    app[CONFIG_KEY] = (redis_url, dashboard_id)
    app.router.add_get("/ws", socket)
    app.cleanup_ctx.append(listen)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()

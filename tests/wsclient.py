"""Small helpers for talking the dashboard protocol in tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType


async def receive(ws: ClientWebSocketResponse, within: float = 5.0) -> dict[str, Any]:
    """The next JSON message; fails the test on close or silence."""
    message = await asyncio.wait_for(ws.receive(), within)
    assert message.type == WSMsgType.TEXT, f"expected a text frame, got {message.type} {message.data!r}"
    return json.loads(message.data)


async def receive_until(
    ws: ClientWebSocketResponse, action: str, within: float = 5.0
) -> list[dict[str, Any]]:
    """Messages up to and including the first with `action`."""
    seen = []
    while True:
        message = await receive(ws, within)
        seen.append(message)
        if message["action"] == action:
            return seen


async def expect_silence(ws: ClientWebSocketResponse, seconds: float = 0.3) -> None:
    """Nothing arrives within `seconds`."""
    try:
        message = await asyncio.wait_for(ws.receive(), seconds)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected message: {message.type} {message.data!r}")


async def read_connect_sequence(ws: ClientWebSocketResponse, metric_count: int) -> list[dict[str, Any]]:
    """authentication, dashboard_config, one metric_history per metric, then alerts."""
    return [await receive(ws) for _ in range(3 + metric_count)]

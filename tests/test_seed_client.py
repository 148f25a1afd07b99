"""The Chanx dashboard example's own client works against us unchanged.

That example (huynguyengl99/chanx, docs/examples/dashboard.rst) is the seed of
our protocol. Its clients send exactly these frames: pydantic's model_dump of
`SubscribeMessage(payload=[...])` and `PingMessage()` (whose payload is null), and
its playground's `{"action": "ping"}`. Its page reads `authentication`,
`dashboard_config`, `metric_history`, `metric_update` and `error`, and ignores
the rest; its test client reads until each `complete`.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from common.sources import RANDOM
from tests.helpers import browser_log_in
from tests.processes import child, free_port, wait_for_http
from tests.wsclient import read_connect_sequence, receive, receive_until

# What the example's messages carry (its MetricUpdatePayload, MetricHistoryPayload,
# get_dashboard_data and AuthenticationPayload); ours may carry more.
UPDATE_FIELDS = {"metric_id", "value", "timestamp", "metric_name", "unit"}
HISTORY_FIELDS = {"metric_id", "values", "metric_name", "unit"}
CONFIG_METRIC_FIELDS = {"id", "name", "description", "type", "unit"}


def seed_frame(action: str, payload: object) -> str:
    """A frame as the example's client writes it: `{"action", "payload"}`, payload null included."""
    return json.dumps({"action": action, "payload": payload})


async def answer(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[dict], list[dict]]:
    """(the answer up to `complete`, the live updates that came in between)."""
    messages = await receive_until(ws, "complete", within=10)
    updates = [m for m in messages if m["action"] == "metric_update"]
    return [m for m in messages if m["action"] != "metric_update"], updates


async def updates_for(ws: aiohttp.ClientWebSocketResponse, count: int) -> set[int]:
    """The metric ids of the next `count` updates (nothing else may arrive)."""
    seen = [await receive(ws, within=15) for _ in range(count)]
    assert {m["action"] for m in seen} == {"metric_update"}, seen
    for update in seen:
        assert set(update["payload"]) >= UPDATE_FIELDS, update
    return {m["payload"]["metric_id"] for m in seen}


@pytest.mark.slow
async def test_the_seed_clients_session_against_a_real_server_and_worker(
    settings, make_user, make_dashboard, make_metric
):
    alice = await make_user("alice")
    dashboard = await make_dashboard("ops", members=(alice,))
    a, b, c = [await make_metric(dashboard, name, source=RANDOM) for name in ("cpu", "memory", "disk")]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    with (
        child(["-m", "server", *urls, "run", "--port", str(port)]) as server,
        child(["-m", "worker", *urls, "run", "--interval", "0.2"]),
    ):
        await asyncio.to_thread(wait_for_http, f"{base}/login", server)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            await browser_log_in(session, base, "alice", "secret-pw")
            # The example's page: `${protocol}${window.location.host}/ws/dashboard/${dashboardId}/`.
            ws = await session.ws_connect(f"{base}/ws/dashboard/{dashboard.id}/", origin=base)
            auth, config, *histories, alerts = await read_connect_sequence(ws, 3)
            assert auth["action"] == "authentication"
            assert auth["payload"]["status_code"] == 200
            assert config["action"] == "dashboard_config"
            assert [m["id"] for m in config["payload"]["metrics"]] == [a.id, b.id, c.id]
            assert all(set(m) >= CONFIG_METRIC_FIELDS for m in config["payload"]["metrics"])
            assert [h["payload"]["metric_id"] for h in histories] == [a.id, b.id, c.id]
            assert all(set(h["payload"]) >= HISTORY_FIELDS for h in histories)
            assert alerts["action"] == "alerts"  # not known to the example's page: ignored there

            # Connected means subscribed to all: leave them, then subscribe to two.
            await ws.send_str(seed_frame("unsubscribe", [a.id, b.id, c.id]))
            assert (await answer(ws))[0] == [{"action": "complete"}]
            # A socket that watches all three sees the worker's next values; a
            # value goes to all its subscribers in one fan-out, so had `ws` still
            # been one, it would have that value queued before a pong asked for now.
            watch = await session.ws_connect(f"{base}/ws/dashboard/{dashboard.id}/", origin=base)
            await read_connect_sequence(watch, 3)
            seen: set[int] = set()
            while seen != {a.id, b.id, c.id}:
                seen |= await updates_for(watch, 1)
            await watch.close()
            await ws.send_str(seed_frame("ping", None))
            assert await answer(ws) == ([{"action": "pong"}, {"action": "complete"}], [])

            await ws.send_str(seed_frame("subscribe", [a.id, b.id]))
            replies, _ = await answer(ws)
            assert [(m["action"], m.get("payload", {}).get("metric_id")) for m in replies] == [
                ("metric_history", a.id),
                ("metric_history", b.id),
                ("complete", None),
            ]
            assert await updates_for(ws, 8) == {a.id, b.id}

            await ws.send_str(seed_frame("unsubscribe", [a.id]))
            replies, _ = await answer(ws)
            assert replies == [{"action": "complete"}]
            assert await updates_for(ws, 4) == {b.id}

            # PingMessage() as the example's test client sends it, then as its playground does.
            await ws.send_str(seed_frame("ping", None))
            replies, _ = await answer(ws)
            assert replies == [{"action": "pong"}, {"action": "complete"}]
            await ws.send_str('{"action": "ping"}')
            replies, _ = await answer(ws)
            assert replies == [{"action": "pong"}, {"action": "complete"}]
            await ws.close()

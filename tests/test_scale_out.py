"""Past one machine: two server instances on their own ports, one Redis, two workers.

Clients on both instances get every value exactly once and in order; a killed
worker's dashboards move to the other; a killed server's clients reconnect to
the other instance and `resume` the values they missed.
"""

from __future__ import annotations

import asyncio
import signal
from contextlib import ExitStack, suppress

import aiohttp
import pytest

from common import db
from common.passwords import hash_password
from common.sources import RANDOM
from tests.helpers import FAILOVER_SECONDS, browser_log_in, eventually, wait_for_leases
from tests.processes import child, free_port, wait_for_http

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


class ResumingClient:
    """A page that reconnects to the next instance and resumes from its newest value ids."""

    def __init__(self, session: aiohttp.ClientSession, bases: list[str], dashboard_id: int) -> None:
        self.session, self.bases, self.dashboard_id = session, bases, dashboard_id
        self.ids: dict[int, list[int]] = {}  # metric id -> value ids in the order received
        self.connections: list[str] = []
        self.updates = 0

    async def run(self) -> None:
        attempt = 0
        while True:
            base = self.bases[attempt % len(self.bases)]
            attempt += 1
            resuming = bool(self.ids)
            query = "?subscribe=none" if resuming else ""
            try:
                ws = await self.session.ws_connect(
                    f"{base}/ws/dashboard/{self.dashboard_id}/{query}", origin=base
                )
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
                continue
            self.connections.append(base)
            async for message in ws:
                await self._handle(ws, message.json(), resuming)
            await asyncio.sleep(0.1)

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, message: dict, resuming: bool) -> None:
        action, payload = message["action"], message.get("payload")
        if action == "dashboard_config" and resuming:
            positions = [{"metric_id": m, "after_id": ids[-1]} for m, ids in self.ids.items()]
            await ws.send_json({"action": "resume", "payload": {"positions": positions}})
        elif action == "metric_history":
            assert payload.get("recovered", True), f"gap not recovered: {payload}"
            self.ids.setdefault(payload["metric_id"], []).extend(v["id"] for v in payload["values"])
        elif action == "metric_update":
            self.ids.setdefault(payload["metric_id"], []).append(payload["id"])
            self.updates += 1
        elif action == "error":
            raise AssertionError(payload)

    async def wait_for_updates(self, count: int, within: float = 20) -> None:
        target = self.updates + count
        await eventually(lambda: self.updates >= target, within, f"{count} more updates")

    def holds_newest(self, newest: dict[int, list[db.MetricValue]]) -> bool:
        return all(self.ids.get(m, [])[-1:] == [values[-1].id] for m, values in newest.items() if values)


async def test_two_instances_two_workers_failover_of_each(settings, pool):
    alice = await db.create_user(pool, "alice", hash_password("secret-pw"))
    metric_ids = {}
    for i in range(4):
        dashboard = await db.create_dashboard(pool, f"D{i}", f"d{i}")
        await db.add_member(pool, dashboard.id, alice.id)
        metric_ids[dashboard.id] = [
            (await db.create_metric(pool, dashboard.id, name, "counter", "", "", RANDOM)).id
            for name in ("a", "b")
        ]
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    with ExitStack() as stack:
        servers = [
            stack.enter_context(child(["-m", "server", *urls, "run", "--port", str(port)])) for port in ports
        ]
        for base, server in zip(bases, servers, strict=True):
            await asyncio.to_thread(wait_for_http, f"{base}/healthz", server)
        workers = [
            stack.enter_context(child(["-m", "worker", *urls, "run", "--interval", "0.2"])) for _ in range(2)
        ]
        await wait_for_leases(pool, lambda held: sorted(map(len, held.values())) == [2, 2], within=20)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            # One login: the session lives in the shared Redis, valid on both instances.
            await browser_log_in(session, bases[0], "alice", "secret-pw")
            clients = [
                ResumingClient(session, [bases[i], bases[1 - i]], dashboard_id)
                for i in range(2)
                for dashboard_id in metric_ids
            ]
            running = [asyncio.create_task(c.run()) for c in clients]
            try:
                await asyncio.gather(*(c.wait_for_updates(10) for c in clients))

                workers[0].send_signal(signal.SIGKILL)
                moved_in = await wait_for_leases(
                    pool, lambda held: sorted(map(len, held.values())) == [4], within=FAILOVER_SECONDS + 5
                )
                assert moved_in < FAILOVER_SECONDS
                await asyncio.gather(*(c.wait_for_updates(10) for c in clients))

                servers[0].send_signal(signal.SIGKILL)
                await asyncio.gather(*(c.wait_for_updates(10) for c in clients))
                workers[1].terminate()
                assert await asyncio.to_thread(workers[1].wait, 10) == 0
                # Everything stored has reached every client (instead of a fixed wait).
                all_ids = [m for ids in metric_ids.values() for m in ids]

                async def everyone_has_the_newest() -> bool:
                    newest = await db.latest_values(pool, all_ids, 1)
                    return all(
                        c.holds_newest({m: newest[m] for m in metric_ids[c.dashboard_id]}) for c in clients
                    )

                await eventually(everyone_has_the_newest, 15, "every client has the newest values")
            finally:
                for task in running:
                    task.cancel()
                for task in running:
                    with suppress(asyncio.CancelledError):
                        await task
    moved = [c for c in clients if c.bases[0] == bases[0]]
    assert all(c.connections == [bases[0], bases[1]] for c in moved), [c.connections for c in moved]
    assert all(c.connections == [bases[1]] for c in clients if c not in moved)
    stored = await db.latest_values(pool, [m for ids in metric_ids.values() for m in ids], 100_000)
    for client in clients:
        for metric_id in metric_ids[client.dashboard_id]:
            received = client.ids[metric_id]
            expected = [v.id for v in stored[metric_id]]
            # Exactly the stored values from the first received to the newest, once each, in order.
            assert received == expected[expected.index(received[0]) :], f"metric {metric_id}"

"""The push API under batched requests: values stored per second by one server process.

A dashboard of 10 pushed gauges and an API token; `CLIENTS` concurrent
clients in this process POST /api/v1/values with `per_request` values each
(timestamps left to the server) for `seconds`. Every request is stored in
one transaction, published after the commit, and answered with the stored
values (server/api.py), as in production. The server's CPU-seconds are read
from /proc around the run: values per server CPU-second is what one process
(one CPU at most) can take; values per second is what it took on this
machine, shared with PostgreSQL and this client.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import aiopg

from bench import procstat
from common import db
from common.tokens import display_prefix, new_token, token_hash

CLIENTS = 8
METRICS = 10


async def prepare(pool: aiopg.Pool) -> tuple[list[int], str]:
    """A dashboard of pushed gauges and a token for it: (metric ids, token)."""
    dashboard = await db.create_dashboard(pool, "Push bench", "push-bench")
    metrics = [
        await db.create_metric(pool, dashboard.id, f"p{i}", "gauge", source="push") for i in range(METRICS)
    ]
    secret = new_token()
    await db.create_api_token(pool, dashboard.id, "bench", token_hash(secret), display_prefix(secret))
    return [metric.id for metric in metrics], secret


async def run(
    base: str, server_pids: list[int], metric_ids: list[int], token: str, per_request: int, seconds: float
) -> dict:
    """Push for `seconds` with CLIENTS concurrent requests of `per_request` values each."""
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "values": [
            {"metric_id": metric_ids[i % len(metric_ids)], "value": float(i)} for i in range(per_request)
        ]
    }
    stored = 0
    requests = 0
    latencies: list[float] = []

    async def client(session: aiohttp.ClientSession, until: float) -> None:
        nonlocal stored, requests
        while time.monotonic() < until:
            started = time.monotonic()
            async with session.post(f"{base}/api/v1/values", json=body, headers=headers) as response:
                answer = await response.json()
                if response.status != 201:
                    raise RuntimeError(f"push refused: {response.status} {answer}")
            latencies.append(time.monotonic() - started)
            stored += answer["stored"]
            requests += 1

    async with aiohttp.ClientSession() as session:
        # One request first: the token and metric caches warm, as in a long-running process.
        await client(session, time.monotonic())
        stored = requests = 0
        latencies.clear()
        cpu_before = procstat.cpu_seconds(server_pids)
        started = time.monotonic()
        until = started + seconds
        await asyncio.gather(*(client(session, until) for _ in range(CLIENTS)))
        elapsed = time.monotonic() - started
        cpu = procstat.cpu_seconds(server_pids) - cpu_before
    latencies.sort()
    return {
        "values_per_request": per_request,
        "clients": CLIENTS,
        "seconds": round(elapsed, 2),
        "requests": requests,
        "values_stored": stored,
        "values_per_second": round(stored / elapsed),
        "server_cpu_seconds": round(cpu, 2),
        "values_per_server_cpu_second": round(stored / cpu) if cpu else None,
        "request_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
        "request_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1) if latencies else None,
    }

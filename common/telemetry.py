"""The Prometheus side of both processes: the process's own collectors and
answering a scrape of a registry.

Each process (and each app in the tests) keeps its own CollectorRegistry
instead of prometheus-client's global one, so that building a second app in
one process never collides on metric names. Every registry also gets the
process (RSS, CPU, open fds, start time), garbage-collector and platform
collectors and `dashboard_build_info{version}`; the `_created` series of
counters and histograms are left out (they double the series and no
dashboard reads them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import prometheus_client
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

from common.version import __version__


def process_registry() -> CollectorRegistry:
    """A new registry holding this process's own collectors and its build info."""
    prometheus_client.disable_created_metrics()
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    build = Gauge("dashboard_build_info", "The running release (always 1)", ["version"], registry=registry)
    build.labels(version=__version__).set(1)
    return registry


def exposition(request: web.Request, registry: CollectorRegistry) -> web.Response:
    """The registry's samples in the text format the scraper asked for (Accept)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    # Set as a header: aiohttp's content_type= refuses parameters like version=.
    return web.Response(body=encoder(registry), headers={"Content-Type": content_type})


@asynccontextmanager
async def serve_registry(registry: CollectorRegistry, host: str, port: int) -> AsyncIterator[None]:
    """Serve GET /metrics of `registry` on host:port while the block runs."""

    async def scrape(request: web.Request) -> web.Response:
        return exposition(request, registry)

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield
    finally:
        await runner.cleanup()

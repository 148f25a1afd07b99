"""The Prometheus side of both processes: answering a scrape of a registry.

Each process (and each app in the tests) keeps its own CollectorRegistry
instead of prometheus-client's global one, so that building a second app in
one process never collides on metric names.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder


def exposition(request: web.Request, registry: CollectorRegistry) -> web.Response:
    """The registry's samples in the text format the scraper asked for (Accept)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    # Set as a header: aiohttp's content_type= refuses parameters like version=.
    return web.Response(body=encoder(registry), headers={"Content-Type": content_type})

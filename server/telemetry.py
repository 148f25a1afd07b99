"""The server's telemetry, its own Prometheus numbers, served at /metrics.

Counting stays out of the per-connection path where it can: a fan-out adds
the number of recipients once per value, and a connection's dropped frames
are added once, when it ends.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import psycopg2
import redis.exceptions
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import Counter, Gauge, Histogram

from common.telemetry import process_registry
from server.live.closecodes import CloseCode

# From a value's timestamp to its frame being handed to the connections:
# worker tick, commit, publish and the Redis hop (milliseconds to seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerTelemetry:
    """One registry per app, holding every sample /metrics shows."""

    def __init__(self) -> None:
        self.registry = process_registry()
        self.open_connections = Gauge(
            "dashboard_open_connections", "Dashboard WebSockets open on this process", registry=self.registry
        )
        self.messages_sent = Counter(
            "dashboard_messages_sent", "Live update frames handed to connections", registry=self.registry
        )
        self.messages_dropped = Counter(
            "dashboard_messages_dropped",
            "Frames discarded because their connection was closing or too slow",
            registry=self.registry,
        )
        self.slow_client_closes = Counter(
            "dashboard_slow_client_closes",
            "Connections closed because their send buffer was full (4008)",
            registry=self.registry,
        )
        self.config_reads = Counter(
            "dashboard_config_reads",
            "Dashboard configs read from PostgreSQL for sockets (config cache misses)",
            registry=self.registry,
        )
        self.publish_latency = Histogram(
            "dashboard_publish_to_send_seconds",
            "From a value's timestamp to its frame being queued for the connections (up to one pass over them before written)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.password_checks = Counter(
            "dashboard_password_checks", "Login passwords checked against their hash", registry=self.registry
        )
        self.login_refusals = Counter(
            "dashboard_login_refusals",
            "Logins refused before any password check: backoff, address or busy",
            ["reason"],
            registry=self.registry,
        )
        self.backend_errors = Counter(
            "dashboard_backend_errors",
            "Errors talking to PostgreSQL or Redis",
            ["backend"],
            registry=self.registry,
        )
        # Created now, so both series read 0 from the first scrape on.
        self.database_errors = self.backend_errors.labels(backend="database")
        self.redis_errors = self.backend_errors.labels(backend="redis")

    def fanned_out(self, timestamps: list[str], frames_sent: int) -> None:
        """The values stamped `timestamps` went out as `frames_sent` frames in all."""
        self.messages_sent.inc(frames_sent)
        now = time.time()
        for timestamp in timestamps:
            try:
                stamped = datetime.fromisoformat(timestamp).timestamp()
            except ValueError:
                continue
            self.publish_latency.observe(max(0.0, now - stamped))

    def connection_ended(self, dropped_frames: int, close_code: int | None) -> None:
        if dropped_frames:
            self.messages_dropped.inc(dropped_frames)
        if close_code == CloseCode.SLOW_CONSUMER:
            self.slow_client_closes.inc()

    def backend_error(self, exc: BaseException) -> None:
        """Count `exc` if it came from Redis or PostgreSQL (anything else is not ours to count)."""
        if isinstance(exc, redis.exceptions.RedisError):
            self.redis_errors.inc()
        elif isinstance(exc, psycopg2.Error):
            self.database_errors.inc()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def errors_middleware(
    telemetry: ServerTelemetry,
) -> Middleware:
    """Count database and Redis errors that escape a request handler."""

    @web.middleware
    async def count_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except (psycopg2.Error, redis.exceptions.RedisError) as exc:
            telemetry.backend_error(exc)
            raise

    return count_errors

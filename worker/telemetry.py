"""The worker's telemetry (its own Prometheus numbers), served for Prometheus on `--metrics-port`."""

from __future__ import annotations

import psycopg2
import redis.exceptions
from prometheus_client import Counter, Gauge, Histogram

from common.telemetry import process_registry

# A tick is one SELECT, one INSERT and one PUBLISH: milliseconds when healthy.
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class WorkerTelemetry:
    def __init__(self) -> None:
        self.registry = process_registry()
        self.tick_duration = Histogram(
            "dashboard_worker_tick_seconds",
            "Time one tick took: produce, store, publish",
            buckets=TICK_BUCKETS,
            registry=self.registry,
        )
        self.tick_lag = Gauge(
            "dashboard_worker_tick_lag_seconds",
            "How late the last tick started against its schedule",
            registry=self.registry,
        )
        self.values_stored = Counter(
            "dashboard_worker_values_stored", "Values stored (and then published)", registry=self.registry
        )
        self.unsaved_values = Gauge(
            "dashboard_worker_unsaved_values",
            "Values kept in memory while the database is unreachable",
            registry=self.registry,
        )
        self.backend_errors = Counter(
            "dashboard_worker_backend_errors",
            "Errors talking to PostgreSQL or Redis",
            ["backend"],
            registry=self.registry,
        )
        self.database_errors = self.backend_errors.labels(backend="database")
        self.redis_errors = self.backend_errors.labels(backend="redis")

    def backend_error(self, exc: BaseException) -> None:
        if isinstance(exc, redis.exceptions.RedisError):
            self.redis_errors.inc()
        elif isinstance(exc, psycopg2.Error | OSError | TimeoutError):
            # The worker talks to Redis only through redis-py, so a bare
            # OSError or timeout here is the database's (db.UNAVAILABLE).
            self.database_errors.inc()

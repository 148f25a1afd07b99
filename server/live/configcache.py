"""Each watched dashboard's config, read once per process rather than per socket.

Thousands of sockets opening on one dashboard (a reconnect storm after an
instance died) would otherwise each read the same metric list and encode the
same `dashboard_config`. Here it is read once, and its frame built once, then
shared until the dashboard changes.

Freshness: an edit commits, then announces the dashboard on the control
channel (server/live/configpush.py), whose handler calls `invalidate` before it
pushes the new config. A read that overlapped an invalidation of its
dashboard is read again, so `get` never returns a config older than the last
change this process heard of. Generations are kept per dashboard: one
dashboard edited in a loop makes only its own reads start over, never
another dashboard's. Edits nobody announced (Redis away at that moment) show
after MAX_AGE_SECONDS at most.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import aiopg
from prometheus_client import Counter

from common import db
from common.schemas import encode_message
from server.live.frames import text_frame

MAX_AGE_SECONDS = 30.0


@dataclass(frozen=True, eq=False)
class DashboardConfig:
    """One version of a dashboard's config, shared by all its local sockets."""

    dashboard: db.Dashboard
    # Read-only and shared: memory per idle connection is a target.
    metrics: Mapping[int, db.Metric]
    frame: bytes  # the finished `dashboard_config` frame
    read_at: float  # time.monotonic()


def config_payload(dashboard: db.Dashboard, metrics: list[db.Metric]) -> dict[str, Any]:
    """The `dashboard_config` message's payload; metrics in the dashboard's order."""
    return {
        "id": dashboard.id,
        "name": dashboard.name,
        "description": dashboard.description,
        "metrics": [
            {
                "id": m.id,
                "name": m.name,
                "description": m.description,
                "type": m.type,
                "unit": m.unit,
                "source": m.source,
            }
            for m in metrics
        ],
        "retention_days": dashboard.retention_days,
    }


class ConfigCache:
    def __init__(self, pool: aiopg.Pool, reads: Counter) -> None:
        self._pool = pool
        # Counts the reads from PostgreSQL (telemetry: how well the cache works).
        self._read_count = reads
        self._configs: dict[int, DashboardConfig] = {}
        # One read at a time per dashboard, shared by everyone who asks meanwhile.
        self._reads: dict[int, asyncio.Future[DashboardConfig | None]] = {}
        # Bumped by the dashboard's invalidations, so a read that overlapped one
        # is redone; `_epoch` by `clear`, for every dashboard at once.
        self._generations: dict[int, int] = {}
        self._epoch = 0

    async def get(self, dashboard_id: int) -> DashboardConfig | None:
        """The dashboard's current config; None if it does not exist."""
        config = self._configs.get(dashboard_id)
        if config is not None and time.monotonic() - config.read_at < MAX_AGE_SECONDS:
            return config
        while True:
            generation = self._generation(dashboard_id)
            read = self._reads.get(dashboard_id)
            if read is None:
                read = asyncio.ensure_future(self._read(dashboard_id))
                self._reads[dashboard_id] = read
                read.add_done_callback(lambda done: self._read_done(dashboard_id, done))
            # Shielded: one socket giving up must not cancel the others' read.
            config = await asyncio.shield(read)
            if generation == self._generation(dashboard_id):
                return config

    def invalidate(self, dashboard_id: int) -> None:
        """The dashboard changed (or is gone): read it again when next asked."""
        # One int per dashboard ever edited while this process ran: bounded by the dashboards.
        self._generations[dashboard_id] = self._generations.get(dashboard_id, 0) + 1
        self._configs.pop(dashboard_id, None)
        self._reads.pop(dashboard_id, None)

    def clear(self) -> None:
        """Forget every config: changes may have been announced while we could not hear."""
        self._epoch += 1
        self._configs.clear()
        self._reads.clear()

    def _generation(self, dashboard_id: int) -> tuple[int, int]:
        return self._epoch, self._generations.get(dashboard_id, 0)

    async def _read(self, dashboard_id: int) -> DashboardConfig | None:
        generation = self._generation(dashboard_id)
        self._read_count.inc()
        dashboard = await db.get_dashboard(self._pool, dashboard_id)
        if dashboard is None:
            return None
        metrics = await db.list_metrics(self._pool, dashboard_id)
        config = DashboardConfig(
            dashboard,
            MappingProxyType({metric.id: metric for metric in metrics}),
            text_frame(encode_message("dashboard_config", config_payload(dashboard, metrics))),
            time.monotonic(),
        )
        if generation == self._generation(dashboard_id):
            self._forget_old()
            self._configs[dashboard_id] = config
        return config

    def _read_done(self, dashboard_id: int, done: asyncio.Future[DashboardConfig | None]) -> None:
        if self._reads.get(dashboard_id) is done:
            del self._reads[dashboard_id]
        if not done.cancelled():
            done.exception()  # retrieved: the askers got it; not "never retrieved"

    def _forget_old(self) -> None:
        # Dashboards nobody opened for a while; runs only when a config is stored.
        oldest = time.monotonic() - MAX_AGE_SECONDS
        for dashboard_id in [i for i, c in self._configs.items() if c.read_at < oldest]:
            del self._configs[dashboard_id]

"""The one path by which values enter the system: store, commit, then publish.

Used by the worker's ticks and by the HTTP push API alike. Publishing only
after PostgreSQL committed means a client is never shown a value the
database does not have; a failed publish loses nothing, since clients get
stored values as history when they (re)connect.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import aiopg
import redis.exceptions

from common import db
from common.events import dashboard_channel, encode_values
from common.redisconn import RedisClient, uses_sharded_pubsub

log = logging.getLogger(__name__)


async def store_and_publish(
    pool: aiopg.Pool,
    redis_client: RedisClient,
    metrics: Mapping[int, db.Metric],
    rows: Sequence[tuple[int, float, datetime]],
    on_publish_error: Callable[[Exception], None] | None = None,
) -> list[db.MetricValue]:
    """Store (metric_id, value, ts) rows in one transaction, then publish them:
    one message per dashboard. `metrics` must hold every metric named in rows.
    A failed publish is logged and passed to `on_publish_error` (for counting)."""
    stored = await db.insert_values(pool, rows)
    by_dashboard: dict[int, list[tuple[db.Metric, db.MetricValue]]] = defaultdict(list)
    for item in stored:
        metric = metrics[item.metric_id]
        by_dashboard[metric.dashboard_id].append((metric, item))
    try:
        async with redis_client.pipeline(transaction=False) as pipe:
            # On a cluster each message goes to the shard owning its channel.
            publish = pipe.spublish if uses_sharded_pubsub(redis_client) else pipe.publish
            for dashboard_id, values in by_dashboard.items():
                publish(dashboard_channel(dashboard_id), encode_values(dashboard_id, values))
            await pipe.execute()
    except (redis.exceptions.RedisError, OSError) as exc:
        log.error("could not publish %d dashboard update(s): %s", len(by_dashboard), exc)
        if on_publish_error is not None:
            on_publish_error(exc)
    return stored

"""The one path by which values enter the system: store, commit, then publish.

Used by the worker's ticks (store_and_publish) and by the HTTP push API (its
own checked insert, then publish_stored) alike. Publishing only
after PostgreSQL committed means a client is never shown a value the
database does not have. A failed publish loses nothing for open sockets
either: each message carries its dashboard's batch number (`seq`, given by
the insert), and a server that sees one skipped reads the missing values
back (server/live/gaps.py).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import aiopg

from common import alerts, db
from common.events import Channels, encode_alert, encode_values
from common.failures import REDIS_UNAVAILABLE
from common.redisconn import RedisClient, uses_sharded_pubsub

log = logging.getLogger(__name__)


async def store_and_publish(
    pool: aiopg.Pool,
    redis_client: RedisClient,
    channels: Channels,
    metrics: Mapping[int, db.Metric],
    rows: Sequence[tuple[int, float, datetime]],
    on_publish_error: Callable[[Exception], None] | None = None,
    fence: Mapping[int, int] | None = None,
    copier: db.Copier | None = None,
) -> list[db.MetricValue]:
    """Store (metric_id, value, ts) rows in one transaction, then publish those
    stored: one message per dashboard. `metrics` must hold every metric named in
    rows; `fence` is a worker's lease tokens (db.insert_values). A failed publish
    is logged and passed to `on_publish_error` (for counting). With a `copier`
    (the worker's) every batch goes by COPY (common/db/copyin.py): the same
    guarantees, and a batch whose commit answer a broken connection lost is
    found stored or not, never stored twice."""
    if copier is not None:
        stored = await copier.store(rows, fence)
    else:
        stored = await db.insert_values(pool, rows, fence=fence)
    await publish_stored(pool, redis_client, channels, metrics, stored, on_publish_error)
    return stored


async def publish_stored(
    pool: aiopg.Pool,
    redis_client: RedisClient,
    channels: Channels,
    metrics: Mapping[int, db.Metric],
    stored: Sequence[db.MetricValue],
    on_publish_error: Callable[[Exception], None] | None = None,
) -> None:
    """Publish committed values, one message per dashboard, then step their
    alert rules. For values stored by other means than store_and_publish (the
    push API's checked insert)."""
    by_dashboard: dict[int, list[tuple[db.Metric, db.MetricValue]]] = defaultdict(list)
    for item in stored:
        metric = metrics[item.metric_id]
        by_dashboard[metric.dashboard_id].append((metric, item))
    try:
        async with redis_client.pipeline(transaction=False) as pipe:
            # On a cluster each message goes to the shard owning its channel.
            publish = pipe.spublish if uses_sharded_pubsub(redis_client) else pipe.publish
            for dashboard_id, values in by_dashboard.items():
                publish(channels.dashboard(dashboard_id), encode_values(dashboard_id, values))
            await pipe.execute()
    except REDIS_UNAVAILABLE as exc:
        log.error("could not publish %d dashboard update(s): %s", len(by_dashboard), exc)
        if on_publish_error is not None:
            on_publish_error(exc)
    await _evaluate_alerts(pool, redis_client, channels, metrics, stored, on_publish_error)


async def _evaluate_alerts(
    pool: aiopg.Pool,
    redis_client: RedisClient,
    channels: Channels,
    metrics: Mapping[int, db.Metric],
    stored: Sequence[db.MetricValue],
    on_publish_error: Callable[[Exception], None] | None,
) -> None:
    """Step the stored values' alert rules; store, then publish, each transition.

    After the values' own commit and publish: a failure here never loses or
    delays values. The rules' state is in their rows, so a failed evaluation
    is taken up again by the next values of the metric.
    """
    by_metric: dict[int, list[db.MetricValue]] = defaultdict(list)
    for item in stored:
        by_metric[item.metric_id].append(item)
    rules_by_id: dict[int, db.AlertRule] = {}

    def run(rules: list[db.AlertRule]) -> db.AlertOutcome:
        rules_by_id.update((rule.id, rule) for rule in rules)
        return alerts.evaluate(rules, by_metric)

    try:
        events = await db.evaluate_alert_rules(pool, list(by_metric), run)
    except db.UNAVAILABLE as exc:
        log.error("could not evaluate alert rules: %s", exc)
        return
    if not events:
        return
    try:
        async with redis_client.pipeline(transaction=False) as pipe:
            publish = pipe.spublish if uses_sharded_pubsub(redis_client) else pipe.publish
            for event in events:
                rule = rules_by_id[event.rule_id]
                metric = metrics[rule.metric_id]
                log.info("alert rule %d %s at %s (value %s)", rule.id, event.state, event.at, event.value)
                publish(
                    channels.dashboard(metric.dashboard_id),
                    encode_alert(metric.dashboard_id, metric, rule, event),
                )
            await pipe.execute()
    except REDIS_UNAVAILABLE as exc:
        log.error("could not publish %d alert event(s): %s", len(events), exc)
        if on_publish_error is not None:
            on_publish_error(exc)

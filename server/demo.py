"""Demo data: one dashboard with metrics of every type, a member and a non-member."""

from __future__ import annotations

from dataclasses import dataclass

import aiopg

from common import db
from common.passwords import hash_password

DEMO_SLUG = "demo"
DEMO_METRICS = [
    ("requests", "counter", "req", "HTTP requests served"),
    ("errors", "counter", "err", "Requests that failed"),
    ("bytes_sent", "counter", "KB", "Response bytes sent"),
    ("cpu", "gauge", "%", "CPU utilisation"),
    ("memory", "gauge", "MB", "Resident memory"),
    ("queue_depth", "gauge", "jobs", "Jobs waiting"),
    ("latency", "histogram", "ms", "Request latency"),
    ("payload_size", "histogram", "KB", "Request body size"),
    ("db_query_time", "histogram", "ms", "Database query time"),
]


@dataclass(frozen=True)
class DemoLogins:
    member: tuple[str, str]
    non_member: tuple[str, str]
    dashboard: db.Dashboard


async def create_demo(pool: aiopg.Pool) -> DemoLogins:
    """Create what is missing of the demo setup; running it twice changes nothing."""
    member = await _ensure_user(pool, "demo", "demo")
    await _ensure_user(pool, "outsider", "outsider")
    try:
        dashboard = await db.create_dashboard(
            pool, "Service health (demo)", DEMO_SLUG, "Random values from dashboard-worker"
        )
    except db.AlreadyExists:
        dashboard = await db.get_dashboard_by_slug(pool, DEMO_SLUG)
    existing = {metric.name for metric in await db.list_metrics(pool, dashboard.id)}
    for name, metric_type, unit, description in DEMO_METRICS:
        if name not in existing:
            await db.create_metric(pool, dashboard.id, name, metric_type, unit, description)
    await db.add_member(pool, dashboard.id, member.id)
    return DemoLogins(("demo", "demo"), ("outsider", "outsider"), dashboard)


async def _ensure_user(pool: aiopg.Pool, username: str, password: str) -> db.User:
    try:
        return await db.create_user(pool, username, hash_password(password))
    except db.AlreadyExists:
        return await db.get_user_by_username(pool, username)

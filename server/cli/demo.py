"""Demo data: a dashboard of random values with metrics of every type, a
"This machine" dashboard of the worker host's real readings, an editor
(demo), a viewer and a non-member."""

from __future__ import annotations

from dataclasses import dataclass

import aiopg

from common import db
from common.passwords import hash_password
from common.sources import RANDOM, system_reading

DEMO_SLUG = "demo"
# The logins create_demo makes, each with its name as its password.
DEMO_USERNAMES = ("demo", "viewer", "outsider")
DEMO_METRICS = [
    ("requests", "counter", "req", "HTTP requests served"),
    ("errors", "counter", "err", "Requests that failed"),
    ("bytes_sent", "counter", "bytes", "Response bytes sent"),
    ("cpu", "gauge", "%", "CPU utilisation"),
    ("memory", "gauge", "bytes", "Resident memory"),
    ("queue_depth", "gauge", "jobs", "Jobs waiting"),
    ("latency", "histogram", "ms", "Request latency"),
    ("payload_size", "histogram", "bytes", "Request body size"),
    ("db_query_time", "histogram", "ms", "Database query time"),
]
MACHINE_SLUG = "this-machine"
# (name, source): type, unit and description come with the reading.
MACHINE_METRICS = [
    ("cpu_percent", "system:cpu_percent"),
    ("memory_used", "system:memory_used"),
    ("load1", "system:load1"),
    ("net_bytes_sent", "system:net_bytes_sent"),
    ("net_bytes_recv", "system:net_bytes_recv"),
    ("disk_read_bytes", "system:disk_read_bytes"),
    ("disk_write_bytes", "system:disk_write_bytes"),
]


@dataclass(frozen=True)
class DemoLogins:
    member: tuple[str, str]
    non_member: tuple[str, str]
    dashboard: db.Dashboard
    machine: db.Dashboard
    viewer: tuple[str, str] = ("viewer", "viewer")  # may watch the demo dashboard, not change it


async def create_demo(pool: aiopg.Pool) -> DemoLogins:
    """Create what is missing of the demo setup; running it twice changes nothing."""
    member = await _ensure_user(pool, "demo", "demo")
    viewer = await _ensure_user(pool, "viewer", "viewer")
    await _ensure_user(pool, "outsider", "outsider")
    dashboard, existing = await _ensure_dashboard(
        pool, "Service health (demo)", DEMO_SLUG, "Random values from dashboard-worker"
    )
    for name, metric_type, unit, description in DEMO_METRICS:
        if name not in existing:
            # Demo values: random, chosen explicitly (a new metric waits for pushes).
            await db.create_metric(pool, dashboard.id, name, metric_type, unit, description, RANDOM)
    await db.add_member(pool, dashboard.id, member.id, db.EDITOR)
    await db.add_member(pool, dashboard.id, viewer.id, db.VIEWER)
    machine = await _ensure_machine_dashboard(pool)
    await db.add_member(pool, machine.id, member.id, db.EDITOR)
    return DemoLogins(("demo", "demo"), ("outsider", "outsider"), dashboard, machine, ("viewer", "viewer"))


async def real_users(pool: aiopg.Pool) -> int:
    """How many users are not the demo's: a real deployment's, beside whom
    logins with known passwords would let anyone in."""
    return await db.count_users_except(pool, DEMO_USERNAMES)


async def _ensure_dashboard(
    pool: aiopg.Pool, name: str, slug: str, description: str
) -> tuple[db.Dashboard, set[str]]:
    """The dashboard `slug` (created if missing) and the names of its metrics."""
    try:
        dashboard = await db.create_dashboard(pool, name, slug, description)
    except db.AlreadyExists:
        dashboard = await db.get_dashboard_by_slug(pool, slug)
    return dashboard, {metric.name for metric in await db.list_metrics(pool, dashboard.id)}


async def _ensure_machine_dashboard(pool: aiopg.Pool) -> db.Dashboard:
    """The dashboard of the worker host's own CPU, memory, load, network and disks."""
    machine, existing = await _ensure_dashboard(
        pool, "This machine", MACHINE_SLUG, "The worker's host, read through psutil"
    )
    for name, source in MACHINE_METRICS:
        reading = system_reading(source)
        if name not in existing and reading is not None:
            await db.create_metric(
                pool, machine.id, name, reading.metric_type, reading.unit, reading.description, source
            )
    return machine


async def _ensure_user(pool: aiopg.Pool, username: str, password: str) -> db.User:
    try:
        return await db.create_user(pool, username, hash_password(password))
    except db.AlreadyExists:
        return await db.get_user_by_username(pool, username)

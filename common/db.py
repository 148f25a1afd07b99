"""All SQL of the service: small verb-named functions over an aiopg pool.

Every statement is parameterised. Functions raise the domain errors below,
which the CLIs and views translate at their edge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime

import aiopg
import psycopg2.errors

from common.sources import RANDOM, check_source

METRIC_TYPES = ("counter", "gauge", "histogram")
# What a query raises when the database is down, restarting or too slow
# (the pool's timeout): callers answer "try again later" instead of crashing.
UNAVAILABLE = (psycopg2.Error, OSError, TimeoutError)


class NotFound(LookupError):
    """The named user, dashboard or metric does not exist."""


class AlreadyExists(ValueError):
    """A unique name (username, slug, metric name on a dashboard) is taken."""


class LastEditor(ValueError):
    """The change would leave a dashboard with no editor (no one could manage it from the UI)."""


@dataclass(frozen=True)
class User:
    id: int
    username: str


@dataclass(frozen=True)
class Credentials:
    user: User
    password_hash: str


@dataclass(frozen=True)
class Dashboard:
    id: int
    name: str
    slug: str
    description: str
    created_at: datetime


# What a member may do: viewers watch; editors also change the dashboard,
# its metrics and its members.
ROLES = ("viewer", "editor")
VIEWER, EDITOR = ROLES


@dataclass(frozen=True)
class Membership:
    dashboard: Dashboard
    role: str


@dataclass(frozen=True)
class Member:
    user: User
    role: str


@dataclass(frozen=True)
class Metric:
    id: int
    dashboard_id: int
    name: str
    description: str
    type: str
    unit: str
    # Where the worker takes values from: "random" or "system:<reading>" (common/sources.py).
    source: str = "random"


@dataclass(frozen=True)
class MetricValue:
    id: int
    metric_id: int
    value: float
    ts: datetime


@asynccontextmanager
async def create_pool(dsn: str, *, minsize: int = 1, maxsize: int = 10) -> AsyncIterator[aiopg.Pool]:
    """A connection pool whose sessions speak UTC, closed on exit."""
    # timeout bounds every statement's wait, so a database that went away
    # surfaces as an error instead of a hung request.
    async with aiopg.create_pool(
        dsn, minsize=minsize, maxsize=maxsize, timeout=10, options="-c timezone=UTC"
    ) as pool:
        yield pool


# Users ---------------------------------------------------------------------


async def create_user(pool: aiopg.Pool, username: str, password_hash: str) -> User:
    async with pool.acquire() as conn, conn.cursor() as cur:
        try:
            await cur.execute(
                "INSERT INTO users (username, password_hash) VALUES (%s, %s) RETURNING id",
                (username, password_hash),
            )
        except psycopg2.errors.UniqueViolation:
            raise AlreadyExists(f"user {username!r} already exists") from None
        (user_id,) = await cur.fetchone()
    return User(user_id, username)


async def get_credentials(pool: aiopg.Pool, username: str) -> Credentials | None:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT id, username, password_hash FROM users WHERE username = %s", (username,))
        row = await cur.fetchone()
    return Credentials(User(row[0], row[1]), row[2]) if row else None


async def set_password_hash(pool: aiopg.Pool, user_id: int, password_hash: str) -> None:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id))


async def get_user(pool: aiopg.Pool, user_id: int) -> User | None:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT id, username FROM users WHERE id = %s", (user_id,))
        row = await cur.fetchone()
    return User(*row) if row else None


async def get_user_by_username(pool: aiopg.Pool, username: str) -> User:
    credentials = await get_credentials(pool, username)
    if credentials is None:
        raise NotFound(f"no user {username!r}")
    return credentials.user


async def list_users(pool: aiopg.Pool) -> list[User]:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT id, username FROM users ORDER BY username")
        return [User(*row) for row in await cur.fetchall()]


# Dashboards and membership ---------------------------------------------------

_DASHBOARD_COLUMNS = "d.id, d.name, d.slug, d.description, d.created_at"


async def create_dashboard(pool: aiopg.Pool, name: str, slug: str, description: str = "") -> Dashboard:
    async with pool.acquire() as conn, conn.cursor() as cur:
        try:
            await cur.execute(
                "INSERT INTO dashboards AS d (name, slug, description) VALUES (%s, %s, %s)"
                f" RETURNING {_DASHBOARD_COLUMNS}",
                (name, slug, description),
            )
        except psycopg2.errors.UniqueViolation:
            raise AlreadyExists(f"dashboard {slug!r} already exists") from None
        return Dashboard(*await cur.fetchone())


async def get_dashboard_by_slug(pool: aiopg.Pool, slug: str) -> Dashboard:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(f"SELECT {_DASHBOARD_COLUMNS} FROM dashboards d WHERE slug = %s", (slug,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no dashboard {slug!r}")
    return Dashboard(*row)


async def list_dashboards(pool: aiopg.Pool) -> list[Dashboard]:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(f"SELECT {_DASHBOARD_COLUMNS} FROM dashboards d ORDER BY d.name, d.id")
        return [Dashboard(*row) for row in await cur.fetchall()]


async def list_user_dashboards(pool: aiopg.Pool, user_id: int) -> list[Dashboard]:
    """The dashboards this user is a member of, by name."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"SELECT {_DASHBOARD_COLUMNS} FROM dashboards d"
            " JOIN dashboard_members m ON m.dashboard_id = d.id"
            " WHERE m.user_id = %s ORDER BY d.name, d.id",
            (user_id,),
        )
        return [Dashboard(*row) for row in await cur.fetchall()]


async def get_member_dashboard(pool: aiopg.Pool, dashboard_id: int, user_id: int) -> Dashboard | None:
    """The dashboard if the user is its member; None if not, or if it does not exist.

    The two cases are deliberately indistinguishable to callers.
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"SELECT {_DASHBOARD_COLUMNS} FROM dashboards d"
            " JOIN dashboard_members m ON m.dashboard_id = d.id"
            " WHERE d.id = %s AND m.user_id = %s",
            (dashboard_id, user_id),
        )
        row = await cur.fetchone()
    return Dashboard(*row) if row else None


async def get_membership(pool: aiopg.Pool, dashboard_id: int, user_id: int) -> Membership | None:
    """The dashboard and the user's role on it; None if not a member, or no such dashboard."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"SELECT {_DASHBOARD_COLUMNS}, m.role FROM dashboards d"
            " JOIN dashboard_members m ON m.dashboard_id = d.id"
            " WHERE d.id = %s AND m.user_id = %s",
            (dashboard_id, user_id),
        )
        row = await cur.fetchone()
    return Membership(Dashboard(*row[:5]), row[5]) if row else None


async def get_dashboard(pool: aiopg.Pool, dashboard_id: int) -> Dashboard | None:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(f"SELECT {_DASHBOARD_COLUMNS} FROM dashboards d WHERE d.id = %s", (dashboard_id,))
        row = await cur.fetchone()
    return Dashboard(*row) if row else None


async def update_dashboard(pool: aiopg.Pool, dashboard_id: int, name: str, description: str) -> Dashboard:
    """Rename and describe a dashboard; NotFound if it is gone."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "UPDATE dashboards AS d SET name = %s, description = %s WHERE id = %s"
            f" RETURNING {_DASHBOARD_COLUMNS}",
            (name, description, dashboard_id),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no dashboard {dashboard_id}")
    return Dashboard(*row)


async def add_member(pool: aiopg.Pool, dashboard_id: int, user_id: int, role: str = VIEWER) -> bool:
    """Make the user a member with this role; False if they already were (role unchanged)."""
    _check_role(role)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO dashboard_members (dashboard_id, user_id, role) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (dashboard_id, user_id, role),
        )
        return cur.rowcount == 1


async def list_members(pool: aiopg.Pool, dashboard_id: int) -> list[Member]:
    """The dashboard's members with their roles, by username."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT u.id, u.username, m.role FROM dashboard_members m JOIN users u ON u.id = m.user_id"
            " WHERE m.dashboard_id = %s ORDER BY u.username",
            (dashboard_id,),
        )
        return [Member(User(row[0], row[1]), row[2]) for row in await cur.fetchall()]


async def set_member_role(pool: aiopg.Pool, dashboard_id: int, user_id: int, role: str) -> None:
    """Change a member's role; NotFound if not a member, LastEditor if it would leave no editor."""
    _check_role(role)
    async with pool.acquire() as conn, conn.cursor() as cur:
        # One statement: the "another editor remains" check and the change
        # see the same snapshot, and the row lock serialises racing demotions.
        await cur.execute(
            "UPDATE dashboard_members SET role = %(role)s"
            " WHERE dashboard_id = %(d)s AND user_id = %(u)s"
            " AND (%(role)s = 'editor' OR EXISTS (SELECT 1 FROM dashboard_members"
            "      WHERE dashboard_id = %(d)s AND user_id <> %(u)s AND role = 'editor'))"
            " RETURNING user_id",
            {"role": role, "d": dashboard_id, "u": user_id},
        )
        if await cur.fetchone() is not None:
            return
    await _explain_refusal(pool, dashboard_id, user_id)


async def _explain_refusal(pool: aiopg.Pool, dashboard_id: int, user_id: int) -> None:
    """Why a change to a membership matched no row: it is absent, or the last editor's."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT 1 FROM dashboard_members WHERE dashboard_id = %s AND user_id = %s",
            (dashboard_id, user_id),
        )
        if await cur.fetchone() is None:
            raise NotFound("not a member of this dashboard")
    raise LastEditor("a dashboard needs at least one editor: make someone else an editor first")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")


async def remove_member(
    pool: aiopg.Pool, dashboard_id: int, user_id: int, *, keep_editor: bool = False
) -> bool:
    """End the membership; False if there was none.

    With `keep_editor`, LastEditor instead of removing the dashboard's last
    editor (the UI's rule; administrators may leave a dashboard editor-less).
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "DELETE FROM dashboard_members WHERE dashboard_id = %(d)s AND user_id = %(u)s"
            " AND (NOT %(keep)s OR role <> 'editor' OR EXISTS (SELECT 1 FROM dashboard_members"
            "      WHERE dashboard_id = %(d)s AND user_id <> %(u)s AND role = 'editor'))",
            {"d": dashboard_id, "u": user_id, "keep": keep_editor},
        )
        if cur.rowcount == 1 or not keep_editor:
            return cur.rowcount == 1
    with suppress(NotFound):  # no membership: nothing to remove
        await _explain_refusal(pool, dashboard_id, user_id)  # a member: raises LastEditor
    return False


# Metrics and values ----------------------------------------------------------

_METRIC_COLUMNS = "id, dashboard_id, name, description, type, unit, source"
# How a dashboard's metrics are shown: as its editors ordered them.
_METRIC_ORDER = "position, id"


async def create_metric(
    pool: aiopg.Pool,
    dashboard_id: int,
    name: str,
    metric_type: str,
    unit: str = "",
    description: str = "",
    source: str = RANDOM,
) -> Metric:
    """Add a metric; ValueError for an unknown type or a source that cannot feed it."""
    if metric_type not in METRIC_TYPES:
        raise ValueError(f"metric type must be one of {', '.join(METRIC_TYPES)}")
    check_source(source, metric_type)
    async with pool.acquire() as conn, conn.cursor() as cur:
        try:
            await cur.execute(
                # `position` comes from its sequence: last in the dashboard's order.
                "INSERT INTO metrics (dashboard_id, name, description, type, unit, source)"
                f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_METRIC_COLUMNS}",
                (dashboard_id, name, description, metric_type, unit, source),
            )
        except psycopg2.errors.UniqueViolation:
            raise AlreadyExists(f"metric {name!r} already exists on this dashboard") from None
        return Metric(*await cur.fetchone())


async def list_metrics(pool: aiopg.Pool, dashboard_id: int) -> list[Metric]:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"SELECT {_METRIC_COLUMNS} FROM metrics WHERE dashboard_id = %s ORDER BY {_METRIC_ORDER}",
            (dashboard_id,),
        )
        return [Metric(*row) for row in await cur.fetchall()]


async def update_metric(
    pool: aiopg.Pool, dashboard_id: int, metric_id: int, name: str, unit: str, description: str
) -> Metric:
    """Rename or re-describe a metric of this dashboard (its type and source stay).

    NotFound if the dashboard has no such metric; AlreadyExists if the name is taken.
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        try:
            await cur.execute(
                "UPDATE metrics SET name = %s, unit = %s, description = %s"
                f" WHERE id = %s AND dashboard_id = %s RETURNING {_METRIC_COLUMNS}",
                (name, unit, description, metric_id, dashboard_id),
            )
        except psycopg2.errors.UniqueViolation:
            raise AlreadyExists(f"metric {name!r} already exists on this dashboard") from None
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no metric {metric_id} on this dashboard")
    return Metric(*row)


async def delete_metric(pool: aiopg.Pool, dashboard_id: int, metric_id: int) -> bool:
    """Delete a metric of this dashboard with its values; False if it has no such metric."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "DELETE FROM metrics WHERE id = %s AND dashboard_id = %s", (metric_id, dashboard_id)
        )
        return cur.rowcount == 1


async def reorder_metrics(pool: aiopg.Pool, dashboard_id: int, metric_ids: Sequence[int]) -> None:
    """Show the dashboard's metrics in this order.

    `metric_ids` must be exactly the dashboard's metrics (ValueError otherwise),
    so an order made from a stale list is refused rather than half applied.
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        # One statement: the check and the update see the same metrics.
        await cur.execute(
            "WITH wanted AS (SELECT id, n FROM unnest(%(ids)s::bigint[]) WITH ORDINALITY AS w(id, n)),"
            " current AS (SELECT id FROM metrics WHERE dashboard_id = %(d)s),"
            " valid AS (SELECT (SELECT array_agg(id ORDER BY id) FROM current)"
            "   IS NOT DISTINCT FROM (SELECT array_agg(DISTINCT id ORDER BY id) FROM wanted)"
            "   AND (SELECT count(*) FROM wanted) = (SELECT count(*) FROM current) AS ok)"
            " UPDATE metrics m SET position = wanted.n FROM wanted, valid"
            " WHERE m.id = wanted.id AND m.dashboard_id = %(d)s AND valid.ok",
            {"ids": list(metric_ids), "d": dashboard_id},
        )
        if cur.rowcount == len(metric_ids) and metric_ids:
            return
    raise ValueError("the order must list every metric of the dashboard exactly once")


async def list_all_metrics(pool: aiopg.Pool) -> list[Metric]:
    """Every metric of every dashboard: what the worker produces values for."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(f"SELECT {_METRIC_COLUMNS} FROM metrics ORDER BY id")
        return [Metric(*row) for row in await cur.fetchall()]


async def latest_values(
    pool: aiopg.Pool, metric_ids: Sequence[int], limit: int, *, since: datetime | None = None
) -> dict[int, list[MetricValue]]:
    """The newest `limit` values of each metric (stored at or after `since`, when
    given), oldest first, in one round trip."""
    result: dict[int, list[MetricValue]] = {metric_id: [] for metric_id in metric_ids}
    if not metric_ids:
        return result
    # A fixed choice of two statement texts; the values are parameters.
    since_clause = " AND ts >= %(since)s" if since is not None else ""
    async with pool.acquire() as conn, conn.cursor() as cur:
        # LATERAL runs the per-metric "newest N" as an index scan for each id.
        await cur.execute(
            "SELECT v.id, m.id, v.value, v.ts"
            " FROM unnest(%(ids)s::bigint[]) AS m(id)"
            " CROSS JOIN LATERAL ("
            "   SELECT id, value, ts FROM metric_values"
            f"   WHERE metric_id = m.id{since_clause} ORDER BY ts DESC, id DESC LIMIT %(limit)s"
            " ) v",
            {"ids": list(metric_ids), "limit": limit, "since": since},
        )
        rows = await cur.fetchall()
    for row in reversed(rows):
        result[row[1]].append(MetricValue(*row))
    return result


async def last_values(pool: aiopg.Pool, metric_ids: Sequence[int]) -> dict[int, float]:
    """The newest value of each metric that has one (the worker's counter state)."""
    latest = await latest_values(pool, metric_ids, 1)
    return {metric_id: values[-1].value for metric_id, values in latest.items() if values}


async def insert_values(pool: aiopg.Pool, values: Sequence[tuple[int, float, datetime]]) -> list[MetricValue]:
    """Store (metric_id, value, ts) rows in one statement and one transaction.

    Returns the stored rows once committed, in the order given.
    """
    if not values:
        return []
    metric_ids, numbers, stamps = (list(column) for column in zip(*values, strict=True))
    async with pool.acquire() as conn, conn.cursor() as cur:
        # One multi-row INSERT: a single round trip and commit per tick.
        await cur.execute(
            "INSERT INTO metric_values (metric_id, value, ts)"
            " SELECT * FROM unnest(%s::bigint[], %s::double precision[], %s::timestamptz[])"
            " RETURNING id, metric_id, value, ts",
            (metric_ids, numbers, stamps),
        )
        rows = await cur.fetchall()
    rows.sort(key=lambda row: row[0])
    return [MetricValue(*row) for row in rows]


# Alerts ----------------------------------------------------------------------

ALERT_CONDITIONS = ("above", "below")


@dataclass(frozen=True)
class AlertRule:
    id: int
    metric_id: int
    condition: str  # one of ALERT_CONDITIONS
    threshold: float
    for_seconds: int
    created_by: int | None
    # Evaluation state, kept in the row (migrations/0005_alerts.sql says why).
    state: str = "ok"  # "ok" or "firing"
    condition_since: datetime | None = None
    evaluated_ts: datetime | None = None


@dataclass(frozen=True)
class AlertEvent:
    id: int
    rule_id: int
    state: str  # "firing" or "resolved"
    value: float
    at: datetime


_RULE_COLUMNS = (
    "id, metric_id, condition, threshold, for_seconds, created_by, state, condition_since, evaluated_ts"
)


async def create_alert_rule(
    pool: aiopg.Pool,
    metric_id: int,
    condition: str,
    threshold: float,
    for_seconds: int = 0,
    created_by: int | None = None,
) -> AlertRule:
    """Add a threshold rule to a metric; ValueError for an unknown condition or negative duration."""
    if condition not in ALERT_CONDITIONS:
        raise ValueError(f"condition must be one of {', '.join(ALERT_CONDITIONS)}")
    if for_seconds < 0:
        raise ValueError("for_seconds must not be negative")
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO alert_rules (metric_id, condition, threshold, for_seconds, created_by)"
            f" VALUES (%s, %s, %s, %s, %s) RETURNING {_RULE_COLUMNS}",
            (metric_id, condition, threshold, for_seconds, created_by),
        )
        return AlertRule(*await cur.fetchone())


async def list_alert_rules(pool: aiopg.Pool, dashboard_id: int) -> list[AlertRule]:
    """The rules on the dashboard's metrics, oldest first."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"SELECT {', '.join('r.' + c for c in _RULE_COLUMNS.split(', '))}"
            " FROM alert_rules r JOIN metrics m ON m.id = r.metric_id"
            " WHERE m.dashboard_id = %s ORDER BY r.id",
            (dashboard_id,),
        )
        return [AlertRule(*row) for row in await cur.fetchall()]


async def delete_alert_rule(pool: aiopg.Pool, dashboard_id: int, rule_id: int) -> bool:
    """Delete a rule (with its events) of this dashboard; False if it has no such rule."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "DELETE FROM alert_rules r USING metrics m"
            " WHERE r.id = %s AND m.id = r.metric_id AND m.dashboard_id = %s",
            (rule_id, dashboard_id),
        )
        return cur.rowcount == 1


async def list_alert_events(pool: aiopg.Pool, rule_id: int) -> list[AlertEvent]:
    """A rule's firing and resolving events, oldest first."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT id, rule_id, state, value, at FROM alert_events WHERE rule_id = %s ORDER BY at, id",
            (rule_id,),
        )
        return [AlertEvent(*row) for row in await cur.fetchall()]


# What an evaluator returns: the rules' new states and the events to store,
# as (rule_id, state, value, at).
AlertOutcome = tuple[list[AlertRule], list[tuple[int, str, float, datetime]]]


async def evaluate_alert_rules(
    pool: aiopg.Pool, metric_ids: Sequence[int], evaluate: Callable[[list[AlertRule]], AlertOutcome]
) -> list[AlertEvent]:
    """Run `evaluate` over the metrics' rules with the rows locked, then save
    the new states and insert the events, all in one transaction.

    The lock serialises evaluators of the same rules (two workers during a
    lease hand-over, or a worker and the push API), so a transition is
    stored once. Returns the stored events; no query beyond one SELECT when
    the metrics have no rules.
    """
    if not metric_ids:
        return []
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("BEGIN")
        try:
            await cur.execute(
                f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE metric_id = ANY(%s::bigint[])"
                " ORDER BY id FOR UPDATE",
                (list(metric_ids),),
            )
            rules = [AlertRule(*row) for row in await cur.fetchall()]
            if not rules:
                await cur.execute("COMMIT")
                return []
            updated, events = evaluate(rules)
            for rule in updated:
                await cur.execute(
                    "UPDATE alert_rules SET state = %s, condition_since = %s, evaluated_ts = %s"
                    " WHERE id = %s",
                    (rule.state, rule.condition_since, rule.evaluated_ts, rule.id),
                )
            stored: list[AlertEvent] = []
            for rule_id, state, value, at in events:
                await cur.execute(
                    "INSERT INTO alert_events (rule_id, state, value, at) VALUES (%s, %s, %s, %s)"
                    " RETURNING id, rule_id, state, value, at",
                    (rule_id, state, value, at),
                )
                stored.append(AlertEvent(*await cur.fetchone()))
            await cur.execute("COMMIT")
        except BaseException:
            # The connection goes back to the pool: never with a transaction open.
            with suppress(*UNAVAILABLE):
                await cur.execute("ROLLBACK")
            raise
    return stored


# Rows per export query: a few hundred kilobytes in memory at a time.
EXPORT_BATCH = 5000


async def export_batches(
    pool: aiopg.Pool,
    metric_ids: Sequence[int],
    since: datetime,
    until: datetime,
    batch_size: int = EXPORT_BATCH,
) -> AsyncIterator[list[MetricValue]]:
    """The values of each metric in [since, until), metric by metric, oldest first, in batches.

    Keyset pagination on (ts, id) along the per-metric index: each batch is
    one short query on a pooled connection, so an export of millions of rows
    holds neither a connection, a snapshot nor more than one batch in memory.
    """
    for metric_id in metric_ids:
        # (since, 0) sorts before every stored (ts, id) with ts >= since.
        after: tuple[datetime, int] = (since, 0)
        while True:
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute(
                    "SELECT id, metric_id, value, ts FROM metric_values"
                    " WHERE metric_id = %s AND (ts, id) > (%s, %s) AND ts < %s"
                    " ORDER BY ts, id LIMIT %s",
                    (metric_id, after[0], after[1], until, batch_size),
                )
                rows = await cur.fetchall()
            if rows:
                yield [MetricValue(*row) for row in rows]
            if len(rows) < batch_size:
                break
            after = (rows[-1][3], rows[-1][0])


async def delete_values_before(pool: aiopg.Pool, cutoff: datetime, limit: int) -> int:
    """Delete at most `limit` values stored before `cutoff`, in one short transaction.

    Returns how many went. Small batches keep each statement's row locks and
    WAL burst small, so ticks and pushes never wait long behind retention.
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "DELETE FROM metric_values WHERE id IN"
            " (SELECT id FROM metric_values WHERE ts < %s ORDER BY ts LIMIT %s)",
            (cutoff, limit),
        )
        return cur.rowcount


# API tokens --------------------------------------------------------------------


@dataclass(frozen=True)
class ApiToken:
    id: int
    dashboard_id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


_TOKEN_COLUMNS = "id, dashboard_id, name, prefix, created_at, last_used_at, revoked_at"


async def create_api_token(
    pool: aiopg.Pool, dashboard_id: int, name: str, token_hash: bytes, prefix: str
) -> ApiToken:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO api_tokens (dashboard_id, name, token_hash, prefix) VALUES (%s, %s, %s, %s)"
            f" RETURNING {_TOKEN_COLUMNS}",
            (dashboard_id, name, token_hash, prefix),
        )
        return ApiToken(*await cur.fetchone())


async def list_api_tokens(pool: aiopg.Pool, dashboard_id: int) -> list[ApiToken]:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE dashboard_id = %s ORDER BY id", (dashboard_id,)
        )
        return [ApiToken(*row) for row in await cur.fetchall()]


async def revoke_api_token(pool: aiopg.Pool, dashboard_id: int, token_id: int) -> bool:
    """Revoke a token of this dashboard; False if there is no such active token."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "UPDATE api_tokens SET revoked_at = now()"
            " WHERE id = %s AND dashboard_id = %s AND revoked_at IS NULL",
            (token_id, dashboard_id),
        )
        return cur.rowcount == 1


async def use_api_token(pool: aiopg.Pool, token_hash: bytes) -> int | None:
    """The dashboard an active token is for (recording its use), or None."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "UPDATE api_tokens SET last_used_at = now()"
            " WHERE token_hash = %s AND revoked_at IS NULL RETURNING dashboard_id",
            (token_hash,),
        )
        row = await cur.fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class Bucket:
    """The values of one metric in one time bucket, summarised."""

    metric_id: int
    start: datetime
    min: float
    max: float
    avg: float
    count: int
    last_id: int


async def bucketed_values(
    pool: aiopg.Pool, metric_ids: Sequence[int], since: datetime, bucket_seconds: int
) -> dict[int, list[Bucket]]:
    """Each metric's values since `since`, as min/max/avg per bucket, oldest bucket first.

    Buckets start at multiples of `bucket_seconds` since the Unix epoch, so a
    client can add live values to the newest bucket by the same rule.
    """
    result: dict[int, list[Bucket]] = {metric_id: [] for metric_id in metric_ids}
    if not metric_ids:
        return result
    async with pool.acquire() as conn, conn.cursor() as cur:
        # Aggregated in PostgreSQL: only a few hundred rows per metric cross the wire.
        await cur.execute(
            "SELECT metric_id, to_timestamp(floor(extract(epoch FROM ts) / %(size)s) * %(size)s) AS start,"
            " min(value), max(value), avg(value), count(*), max(id)"
            " FROM metric_values WHERE metric_id = ANY(%(ids)s::bigint[]) AND ts >= %(since)s"
            " GROUP BY metric_id, start ORDER BY metric_id, start",
            {"ids": list(metric_ids), "since": since, "size": bucket_seconds},
        )
        for row in await cur.fetchall():
            result[row[0]].append(Bucket(*row))
    return result


async def values_after(
    pool: aiopg.Pool, positions: Mapping[int, int], limit: int
) -> dict[int, list[MetricValue] | None]:
    """Per metric, the values stored after the value whose id is `positions[metric_id]`.

    None for a metric when that value is not stored for it (deleted, or another
    database) or more than `limit` values follow it: the gap cannot be filled.
    """
    if not positions:
        return {}
    metric_ids, after_ids = list(positions), [positions[metric_id] for metric_id in positions]
    async with pool.acquire() as conn, conn.cursor() as cur:
        # The anchor row gives the (ts, id) to continue from; the LATERAL scan
        # then walks the per-metric index from there.
        await cur.execute(
            "SELECT m.id, a.id IS NOT NULL, v.id, v.value, v.ts"
            " FROM unnest(%s::bigint[], %s::bigint[]) AS m(id, after_id)"
            " LEFT JOIN metric_values a ON a.id = m.after_id AND a.metric_id = m.id"
            " LEFT JOIN LATERAL ("
            "   SELECT id, value, ts FROM metric_values"
            "   WHERE metric_id = m.id AND (ts, id) > (a.ts, a.id) ORDER BY ts, id LIMIT %s"
            " ) v ON true",
            (metric_ids, after_ids, limit + 1),
        )
        rows = await cur.fetchall()
    found: dict[int, list[MetricValue] | None] = {metric_id: [] for metric_id in metric_ids}
    for metric_id, anchored, value_id, value, ts in rows:
        values = found[metric_id]
        if not anchored:
            found[metric_id] = None
        elif values is not None and value_id is not None:
            values.append(MetricValue(value_id, metric_id, value, ts))
    return {
        metric_id: None if values is None or len(values) > limit else values
        for metric_id, values in found.items()
    }


# Access re-checks --------------------------------------------------------------


async def current_memberships(pool: aiopg.Pool, pairs: Sequence[tuple[int, int]]) -> set[tuple[int, int]]:
    """Which of these (dashboard_id, user_id) memberships still exist, in one query."""
    if not pairs:
        return set()
    dashboard_ids, user_ids = (list(column) for column in zip(*pairs, strict=True))
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT m.dashboard_id, m.user_id FROM dashboard_members m"
            " JOIN unnest(%s::bigint[], %s::bigint[]) AS p(dashboard_id, user_id)"
            " USING (dashboard_id, user_id)",
            (dashboard_ids, user_ids),
        )
        return {(row[0], row[1]) for row in await cur.fetchall()}


async def ping(pool: aiopg.Pool) -> None:
    """Raise unless the database answers a trivial query."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT 1")


# Deletions (memberships, metrics and values go with them: ON DELETE CASCADE) ---


async def delete_dashboard(pool: aiopg.Pool, dashboard_id: int) -> bool:
    """Delete the dashboard with its metrics, values and memberships; False if absent."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM dashboards WHERE id = %s", (dashboard_id,))
        return cur.rowcount == 1


async def delete_user(pool: aiopg.Pool, user_id: int) -> bool:
    """Delete the user and their memberships; False if absent."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM users WHERE id = %s", (user_id,))
        return cur.rowcount == 1


# Worker leases: session-level advisory locks, one per dashboard, held on a
# dedicated connection (no schema: PostgreSQL frees them when the session ends).

# The advisory-lock namespace (first key of the two-key form) of dashboard leases.
LEASE_LOCK_CLASS = 0x64617368  # "dash"
# Server-side TCP keepalives on the lease session: PostgreSQL ends the session of
# a worker whose host vanished (and so frees its leases) after 4 + 2 x 2 = 8 s of silence.
_LEASE_SESSION_OPTIONS = "-c tcp_keepalives_idle=4 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=2"
# The second key is an int4: ids beyond 2^31 share a lock with one 2^31 apart.
_LEASE_KEY = "(id %% 2147483648)::int"


async def open_lease_session(dsn: str, application_name: str) -> aiopg.Connection:
    """A connection of its own for holding leases, named so workers can count each other."""
    return await aiopg.connect(
        dsn,
        timeout=5,  # per statement: a lost lease session shows up within a tick
        application_name=application_name,
        options=_LEASE_SESSION_OPTIONS,
        keepalives=1,
        keepalives_idle=4,
        keepalives_interval=2,
        keepalives_count=2,
    )


async def lease_census(conn: aiopg.Connection, application_name: str) -> tuple[int, list[int]]:
    """(lease sessions connected to this database, every dashboard id), in one round trip."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT (SELECT count(*) FROM pg_stat_activity"
            "        WHERE application_name = %s AND datname = current_database()),"
            " ARRAY(SELECT id FROM dashboards ORDER BY id)",
            (application_name,),
        )
        workers, dashboard_ids = await cur.fetchone()
    return workers, list(dashboard_ids)


async def try_lease_dashboards(conn: aiopg.Connection, dashboard_ids: Sequence[int], limit: int) -> set[int]:
    """Take the leases of up to `limit` of these dashboards that nobody holds, in the order given."""
    if limit <= 0 or not dashboard_ids:
        return set()
    async with conn.cursor() as cur:
        # No ORDER BY: LIMIT stops the scan, so no lock is taken beyond `limit`.
        await cur.execute(
            "SELECT id FROM unnest(%s::bigint[]) AS d(id)"
            f" WHERE pg_try_advisory_lock(%s, {_LEASE_KEY}) LIMIT %s",
            (list(dashboard_ids), LEASE_LOCK_CLASS, limit),
        )
        return {row[0] for row in await cur.fetchall()}


async def release_dashboards(conn: aiopg.Connection, dashboard_ids: Sequence[int]) -> None:
    """Give up the leases of these dashboards (held by this session)."""
    async with conn.cursor() as cur:
        await cur.execute(
            f"SELECT pg_advisory_unlock(%s, {_LEASE_KEY}) FROM unnest(%s::bigint[]) AS d(id)",
            (LEASE_LOCK_CLASS, list(dashboard_ids)),
        )


async def ping_session(conn: aiopg.Connection) -> None:
    """Raise unless this connection's session is alive."""
    async with conn.cursor() as cur:
        await cur.execute("SELECT 1")


async def dashboard_leases(pool: aiopg.Pool) -> dict[int, int]:
    """Who holds which dashboard's lease now: {dashboard id: backend pid} (operators, tests)."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT d.id, l.pid FROM pg_locks l JOIN dashboards d ON l.objid::bigint = d.id %% 2147483648"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = %s AND l.objsubid = 2"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (LEASE_LOCK_CLASS,),
        )
        return {row[0]: row[1] for row in await cur.fetchall()}

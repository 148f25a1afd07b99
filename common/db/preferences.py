"""Personal preferences: a user's theme, and per dashboard the cards they
hide, their order, the default range and the chart style."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import aiopg
import psycopg2.errors

from common.db.core import NotFound, transaction
from common.vocabulary import CHART_STYLES, DEFAULT_CHART_STYLE, DEFAULT_RANGE, RANGES, THEMES


@dataclass(frozen=True)
class Preferences:
    """What one user chose for one dashboard (the defaults if nothing)."""

    hidden_metric_ids: tuple[int, ...] = ()
    card_order: tuple[int, ...] = ()
    default_range: str = DEFAULT_RANGE
    chart_style: str = DEFAULT_CHART_STYLE
    theme: str = "light"  # the user's, on every dashboard


class MetricsNotOnDashboard(ValueError):
    """Metric ids that are not the dashboard's, by the field that named them."""

    def __init__(self, foreign: dict[str, list[int]]) -> None:
        super().__init__(
            "; ".join(
                f"{field}: not on this dashboard: {', '.join(map(str, ids))}"
                for field, ids in foreign.items()
            )
        )
        self.foreign = foreign


# Ids of metrics deleted since they were saved are left out when read, in
# the saved order: nothing has to clean them up when a metric goes.
_READ = (
    "SELECT"
    " ARRAY(SELECT x.id FROM unnest(p.hidden_metric_ids) WITH ORDINALITY AS x(id, n)"
    "  WHERE x.id IN (SELECT id FROM metrics WHERE dashboard_id = k.d) ORDER BY x.n),"
    " ARRAY(SELECT x.id FROM unnest(p.card_order) WITH ORDINALITY AS x(id, n)"
    "  WHERE x.id IN (SELECT id FROM metrics WHERE dashboard_id = k.d) ORDER BY x.n),"
    " p.default_range, p.chart_style, u.theme"
    " FROM (SELECT %(d)s::bigint AS d, %(u)s::bigint AS u) AS k"
    " LEFT JOIN dashboard_preferences p ON p.dashboard_id = k.d AND p.user_id = k.u"
    " LEFT JOIN user_preferences u ON u.user_id = k.u"
)


async def get_preferences(pool: aiopg.Pool, dashboard_id: int, user_id: int) -> Preferences:
    """The user's preferences for the dashboard, with the defaults for what they never set."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(_READ, {"d": dashboard_id, "u": user_id})
        hidden, order, default_range, chart_style, theme = await cur.fetchone()
    defaults = Preferences()
    return Preferences(
        hidden_metric_ids=tuple(hidden),
        card_order=tuple(order),
        default_range=default_range or defaults.default_range,
        chart_style=chart_style or defaults.chart_style,
        theme=theme or defaults.theme,
    )


async def get_theme(pool: aiopg.Pool, user_id: int) -> str:
    """The user's theme ("light" until they choose)."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT theme FROM user_preferences WHERE user_id = %s", (user_id,))
        row = await cur.fetchone()
    return row[0] if row else Preferences().theme


async def set_theme(pool: aiopg.Pool, user_id: int, theme: str) -> None:
    """Choose the user's theme, for every dashboard; NotFound if the user is gone."""
    _check(theme, THEMES, "theme")
    async with pool.acquire() as conn, conn.cursor() as cur:
        try:
            await cur.execute(_SET_THEME, (user_id, theme))
        except psycopg2.errors.ForeignKeyViolation:
            raise NotFound(f"no user {user_id}") from None


_SET_THEME = (
    "INSERT INTO user_preferences (user_id, theme) VALUES (%s, %s)"
    " ON CONFLICT (user_id) DO UPDATE SET theme = EXCLUDED.theme"
)


async def update_preferences(
    pool: aiopg.Pool,
    dashboard_id: int,
    user_id: int,
    *,
    hidden_metric_ids: Sequence[int] | None = None,
    card_order: Sequence[int] | None = None,
    default_range: str | None = None,
    chart_style: str | None = None,
    theme: str | None = None,
) -> Preferences:
    """Change what is given (None: unchanged), all of it or nothing; the result.

    MetricsNotOnDashboard if a list names a metric the dashboard does not
    have; NotFound if the user is not a member of the dashboard.
    """
    if default_range is not None:
        _check(default_range, RANGES, "default_range")
    if chart_style is not None:
        _check(chart_style, CHART_STYLES, "chart_style")
    if theme is not None:
        _check(theme, THEMES, "theme")
    lists = {"hidden_metric_ids": hidden_metric_ids, "card_order": card_order}
    try:
        async with transaction(pool) as cur:
            await _check_metrics(cur, dashboard_id, {k: v for k, v in lists.items() if v is not None})
            if any(value is not None for value in (*lists.values(), default_range, chart_style)):
                await cur.execute(
                    _UPSERT,
                    {
                        "d": dashboard_id,
                        "u": user_id,
                        "hidden": None if hidden_metric_ids is None else list(hidden_metric_ids),
                        "order": None if card_order is None else list(card_order),
                        "range": default_range,
                        "style": chart_style,
                    },
                )
            if theme is not None:
                await cur.execute(_SET_THEME, (user_id, theme))
    except psycopg2.errors.ForeignKeyViolation:
        raise NotFound("not a member of this dashboard") from None
    return await get_preferences(pool, dashboard_id, user_id)


# A field given as NULL keeps what is stored (or the column's default).
_UPSERT = (
    "INSERT INTO dashboard_preferences AS p"
    " (dashboard_id, user_id, hidden_metric_ids, card_order, default_range, chart_style)"
    " VALUES (%(d)s, %(u)s, coalesce(%(hidden)s::bigint[], '{}'), coalesce(%(order)s::bigint[], '{}'),"
    "  coalesce(%(range)s, '5m'), coalesce(%(style)s, 'line'))"
    " ON CONFLICT (dashboard_id, user_id) DO UPDATE SET"
    " hidden_metric_ids = coalesce(%(hidden)s::bigint[], p.hidden_metric_ids),"
    " card_order = coalesce(%(order)s::bigint[], p.card_order),"
    " default_range = coalesce(%(range)s, p.default_range),"
    " chart_style = coalesce(%(style)s, p.chart_style),"
    " updated_at = now()"
)


async def _check_metrics(cur: aiopg.Cursor, dashboard_id: int, lists: dict[str, Sequence[int]]) -> None:
    wanted = {metric_id for ids in lists.values() for metric_id in ids}
    if not wanted:
        return
    await cur.execute(
        "SELECT id FROM metrics WHERE dashboard_id = %s AND id = ANY(%s::bigint[])",
        (dashboard_id, sorted(wanted)),
    )
    present = {row[0] for row in await cur.fetchall()}
    foreign = {field: sorted(set(ids) - present) for field, ids in lists.items() if set(ids) - present}
    if foreign:
        raise MetricsNotOnDashboard(foreign)


def _check(value: str, allowed: Collection[str], name: str) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}")

"""What the admin commands share: a small pool, lookups that fail as CLI errors,
and telling the running servers about a change."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiopg
import click
from marshmallow import Schema, ValidationError

from common import db
from common.cli import command_pool, resolved_settings, run_async
from common.config import ResolvedSettings
from common.events import (
    DashboardChanged,
    Revocation,
    announce_dashboard_changed,
    announce_revocation,
    channels_for,
)
from common.failures import REDIS_UNAVAILABLE
from common.redisconn import connect_redis


@asynccontextmanager
async def open_pool(settings: ResolvedSettings) -> AsyncIterator[aiopg.Pool]:
    """A two-connection pool: enough for one admin command (PostgreSQL out of
    reach is one line, common/cli.py `command_pool`)."""
    async with command_pool(settings, maxsize=2) as pool:
        yield pool


@asynccontextmanager
async def dashboard_pool(ctx: click.Context, slug: str) -> AsyncIterator[tuple[aiopg.Pool, db.Dashboard]]:
    """The command's pool and the dashboard `slug` names (a CLI error if none)."""
    async with open_pool(resolved_settings(ctx)) as pool:
        yield pool, await dashboard_by_slug(pool, slug)


def item_command(
    group: click.Group, name: str, item_id: str
) -> Callable[[Callable[..., Coroutine[Any, Any, None]]], click.Command]:
    """`GROUP NAME DASHBOARD_SLUG ITEM_ID`: an async command on one item, by id, of a dashboard."""

    def decorate(function: Callable[..., Coroutine[Any, Any, None]]) -> click.Command:
        command = click.argument(item_id, type=int)(click.pass_context(run_async(function)))
        return group.command(name=name)(click.argument("dashboard_slug")(command))

    return decorate


async def change_item(
    ctx: click.Context,
    dashboard_slug: str,
    change: Callable[[aiopg.Pool, int, int], Awaitable[bool]],
    item_id: int,
    missing: str,
) -> None:
    """`change(pool, dashboard id, item_id)`; a CLI error if it found no such item (a `missing`)."""
    async with dashboard_pool(ctx, dashboard_slug) as (pool, found):
        if not await change(pool, found.id, item_id):
            raise click.ClickException(f"{dashboard_slug} has no {missing} {item_id}")


def fail(exc: Exception) -> click.ClickException:
    """A domain error (NotFound, AlreadyExists, ...) as the command's error message."""
    return click.ClickException(str(exc))


def checked(schema: Schema, data: dict[str, Any], hints: dict[str, str] | None = None) -> dict[str, Any]:
    """`data` validated by the schema the page's JSON endpoint uses, so the CLI
    accepts exactly what the page accepts; a refusal names the option (or the
    argument `hints` gives for that field)."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        field, reasons = next(iter(exc.normalized_messages().items()))
        raise click.BadParameter(
            " ".join(map(str, reasons)), param_hint=(hints or {}).get(field, f"--{field}")
        ) from None


async def dashboard_by_slug(pool: aiopg.Pool, slug: str) -> db.Dashboard:
    """The dashboard, or a CLI error naming the unknown slug."""
    try:
        return await db.get_dashboard_by_slug(pool, slug)
    except db.NotFound as exc:
        raise fail(exc) from None


async def user_by_name(pool: aiopg.Pool, username: str) -> db.User:
    """The user, or a CLI error naming the unknown username."""
    try:
        return await db.get_user_by_username(pool, username)
    except db.NotFound as exc:
        raise fail(exc) from None


async def metric_by_name(pool: aiopg.Pool, dashboard: db.Dashboard, name: str) -> db.Metric:
    """The dashboard's metric of that name, or a CLI error."""
    for metric in await db.list_metrics(pool, dashboard.id):
        if metric.name == name:
            return metric
    raise click.ClickException(f"{dashboard.slug} has no metric {name!r}")


async def announce(settings: ResolvedSettings, event: Revocation | DashboardChanged) -> None:
    """Close the affected open sockets, or push the changed dashboard's config to
    them, on every server process (after the commit)."""
    client = connect_redis(settings.redis_url)
    channels = channels_for(settings.redis_url, settings.channel_prefix)
    try:
        if isinstance(event, Revocation):
            await announce_revocation(client, channels, event)
        else:
            await announce_dashboard_changed(client, channels, event)
    except REDIS_UNAVAILABLE as exc:
        click.echo(
            f"warning: could not tell the servers ({exc}); open sockets close at their next session check",
            err=True,
        )
    finally:
        await client.aclose()

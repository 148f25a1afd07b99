"""`dashboard-server`: run the web server and manage users, dashboards and metrics."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import aiopg
import click
import redis.exceptions

from common import db
from common.cli import connection_options, resolved_settings, run_async, settings_from_options
from common.config import Settings
from common.events import DashboardChanged, Revocation, announce_dashboard_changed, announce_revocation
from common.export import FORMATS, TIME_HELP, csv_chunks, export_range, json_chunks
from common.migrate import migrate, pending_migrations
from common.passwords import hash_password
from common.redisconn import connect_redis
from common.sources import RANDOM, SOURCES, check_source, system_reading
from common.tokens import display_prefix, new_token, token_hash
from server.demo import create_demo
from server.serve import ServeError, serve

HOST_HELP = "Address to listen on."
PORT_HELP = "TCP port to listen on."
PASSWORD_HELP = "The password; prompted for (hidden) when not given."
ORIGIN_HELP = (
    "Another origin (scheme://host[:port]) whose pages may open dashboard sockets, "
    "e.g. the public URL when a proxy rewrites Host. Repeatable; env: space-separated."
)
SECURE_HELP = "Mark the session cookie Secure (set when users reach the service over HTTPS)."
HISTORY_HELP = "Values per metric sent as history when a client connects or subscribes."
WORKERS_HELP = "Server processes sharing the port (SO_REUSEPORT); one per core uses them all."
SESSION_CHECK_HELP = (
    "Seconds between re-checks of open sockets' sessions and memberships (expiry closes within this)."
)
MAX_CONNECTIONS_HELP = "Sockets one user may hold open on this server process (more get close 4429)."
SOURCE_HELP = (
    "Where the worker takes values from: random (demo values) or a reading of the worker's host, "
    "e.g. system:cpu_percent, system:memory_used, system:load1, system:net_bytes_sent "
    "(`dashboard-server metric sources` lists them)."
)
OWNER_HELP = "A user who becomes the dashboard's first editor."
ROLE_HELP = "viewer: watches the dashboard; editor: also changes its name, metrics and members."
ABOVE_HELP = "Fire while the value is above this threshold."
BELOW_HELP = "Fire while the value is below this threshold."
FOR_HELP = "Seconds (by the values' timestamps) the condition must hold before the alert fires."
CLIENT_BUFFER_HELP = "Bytes that may wait for one slow client before it is disconnected (close 4008)."


@asynccontextmanager
async def _pool(settings: Settings) -> AsyncIterator[aiopg.Pool]:
    async with db.create_pool(settings.database_url or "", maxsize=2) as pool:
        yield pool


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


async def _announce(settings: Settings, event: Revocation | DashboardChanged) -> None:
    """Close the affected open sockets, or push the changed dashboard's config to
    them, on every server process (after the commit)."""
    client = connect_redis(settings.redis_url or "")
    try:
        if isinstance(event, Revocation):
            await announce_revocation(client, event)
        else:
            await announce_dashboard_changed(client, event)
    except (redis.exceptions.RedisError, OSError) as exc:
        click.echo(
            f"warning: could not tell the servers ({exc}); open sockets close at their next session check",
            err=True,
        )
    finally:
        await client.aclose()


def _slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not slug:
        raise click.BadParameter("give a --slug: the name has no letters or digits")
    return slug


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@connection_options
@click.pass_context
def main(ctx: click.Context, **options: object) -> None:
    """Live metrics dashboards: the web server and its administration.

    Settings come from flags or DASHBOARD_* environment variables. With no
    database or Redis URL, an embedded PostgreSQL and Redis are started in
    --data-dir and shared with `dashboard-worker`.
    """
    ctx.obj = settings_from_options(**options)  # type: ignore[arg-type]


@main.command()
@click.option("--host", envvar="DASHBOARD_HOST", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", envvar="DASHBOARD_PORT", type=int, default=8080, show_default=True, help=PORT_HELP)
@click.option(
    "--allowed-origin", "allowed_origins", envvar="DASHBOARD_ALLOWED_ORIGINS", multiple=True, help=ORIGIN_HELP
)
@click.option(
    "--secure-cookies/--no-secure-cookies", envvar="DASHBOARD_SECURE_COOKIES", default=False, help=SECURE_HELP
)
@click.option(
    "--history-limit",
    envvar="DASHBOARD_HISTORY_LIMIT",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help=HISTORY_HELP,
)
@click.option(
    "--client-buffer",
    "client_buffer_bytes",
    envvar="DASHBOARD_CLIENT_BUFFER",
    type=click.IntRange(16 * 1024, 64 << 20),
    default=1 << 20,
    show_default=True,
    help=CLIENT_BUFFER_HELP,
)
@click.option(
    "--workers",
    envvar="DASHBOARD_WORKERS",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help=WORKERS_HELP,
)
@click.option(
    "--session-check-interval",
    envvar="DASHBOARD_SESSION_CHECK_INTERVAL",
    type=click.FloatRange(0.1, 3600),
    default=30.0,
    show_default=True,
    help=SESSION_CHECK_HELP,
)
@click.option(
    "--max-connections-per-user",
    envvar="DASHBOARD_MAX_CONNECTIONS_PER_USER",
    type=click.IntRange(1, 100_000),
    default=50,
    show_default=True,
    help=MAX_CONNECTIONS_HELP,
)
@click.pass_context
def run(
    ctx: click.Context,
    host: str,
    port: int,
    allowed_origins: tuple[str, ...],
    secure_cookies: bool,
    history_limit: int,
    client_buffer_bytes: int,
    workers: int,
    session_check_interval: float,
    max_connections_per_user: int,
) -> None:
    """Serve the pages and the dashboard WebSockets until interrupted."""
    settings = replace(
        resolved_settings(ctx),
        allowed_origins=tuple(origin.rstrip("/") for origin in allowed_origins),
        secure_cookies=secure_cookies,
        history_limit=history_limit,
        client_buffer_bytes=client_buffer_bytes,
        session_check_interval=session_check_interval,
        max_connections_per_user=max_connections_per_user,
    )
    _serve(settings, host, port, workers)


def _serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    """Serve until SIGINT/SIGTERM; a start-up problem is a clean CLI error."""
    try:
        serve(settings, host, port, workers)
    except ServeError as exc:
        raise click.ClickException(str(exc)) from None


@main.command(name="migrate")
@click.pass_context
@run_async
async def migrate_command(ctx: click.Context) -> None:
    """Bring the database schema up to date (safe to run again, or concurrently)."""
    async with _pool(resolved_settings(ctx)) as pool:
        applied = await migrate(pool)
    click.echo(f"applied {len(applied)} migration(s)" if applied else "database is up to date")


@main.command()
@click.pass_context
@run_async
async def check(ctx: click.Context) -> None:
    """Exit 0 if the database and Redis answer and the schema is current."""
    settings = resolved_settings(ctx)
    try:
        async with _pool(settings) as pool:
            pending = await pending_migrations(pool)
        client = connect_redis(settings.redis_url or "")
        try:
            await client.ping()
        finally:
            await client.aclose()
    except Exception as exc:
        raise click.ClickException(f"not ready: {exc}") from exc
    if pending:
        raise click.ClickException(f"not ready: {len(pending)} migration(s) pending")
    click.echo("ok")


@main.group()
def user() -> None:
    """Create, list and delete users."""


@user.command(name="create")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help=PASSWORD_HELP)
@click.pass_context
@run_async
async def user_create(ctx: click.Context, username: str, password: str) -> None:
    """Create a user who can log in."""
    if not password:
        raise click.BadParameter("must not be empty", param_hint="--password")
    async with _pool(resolved_settings(ctx)) as pool:
        try:
            created = await db.create_user(pool, username, hash_password(password))
        except db.AlreadyExists as exc:
            raise _fail(exc) from None
    click.echo(f"created user {created.username} (id {created.id})")


@user.command(name="set-password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help=PASSWORD_HELP)
@click.pass_context
@run_async
async def user_set_password(ctx: click.Context, username: str, password: str) -> None:
    """Change a user's password."""
    async with _pool(resolved_settings(ctx)) as pool:
        try:
            found = await db.get_user_by_username(pool, username)
        except db.NotFound as exc:
            raise _fail(exc) from None
        await db.set_password_hash(pool, found.id, hash_password(password))
    click.echo(f"password of {username} changed")


@user.command(name="list")
@click.pass_context
@run_async
async def user_list(ctx: click.Context) -> None:
    """List users."""
    async with _pool(resolved_settings(ctx)) as pool:
        for found in await db.list_users(pool):
            click.echo(f"{found.id}\t{found.username}")


@user.command(name="delete")
@click.argument("username")
@click.confirmation_option(prompt="Delete the user?")
@click.pass_context
@run_async
async def user_delete(ctx: click.Context, username: str) -> None:
    """Delete a user; their open sockets close at once and their sessions stop working."""
    settings = resolved_settings(ctx)
    async with _pool(settings) as pool:
        try:
            found = await db.get_user_by_username(pool, username)
        except db.NotFound as exc:
            raise _fail(exc) from None
        await db.delete_user(pool, found.id)
    await _announce(settings, Revocation("user_deleted", user_id=found.id))
    click.echo(f"deleted user {username} (id {found.id})")


@main.group()
def dashboard() -> None:
    """Create, list and delete dashboards."""


@dashboard.command(name="create")
@click.argument("name")
@click.option("--slug", help="Unique short name used by other commands (default: from NAME).")
@click.option("--description", default="", help="Shown under the dashboard's name.")
@click.option("--owner", help=OWNER_HELP)
@click.pass_context
@run_async
async def dashboard_create(
    ctx: click.Context, name: str, slug: str | None, description: str, owner: str | None
) -> None:
    """Create a dashboard (add metrics and members next)."""
    slug = slug or _slugify(name)
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug):
        raise click.BadParameter("lower-case letters, digits and single dashes only", param_hint="--slug")
    async with _pool(resolved_settings(ctx)) as pool:
        try:
            # Looked up first: an unknown owner creates nothing.
            creator = await db.get_user_by_username(pool, owner) if owner else None
            created = await db.create_dashboard(pool, name, slug, description)
        except (db.NotFound, db.AlreadyExists) as exc:
            raise _fail(exc) from None
        if creator is not None:
            await db.add_member(pool, created.id, creator.id, db.EDITOR)
    editor = f", {creator.username} is its editor" if creator else ""
    click.echo(f"created dashboard {created.slug} (id {created.id}){editor}")


@dashboard.command(name="list")
@click.pass_context
@run_async
async def dashboard_list(ctx: click.Context) -> None:
    """List dashboards: id, slug, name."""
    async with _pool(resolved_settings(ctx)) as pool:
        for found in await db.list_dashboards(pool):
            click.echo(f"{found.id}\t{found.slug}\t{found.name}")


@dashboard.command(name="delete")
@click.argument("slug")
@click.confirmation_option(prompt="Delete the dashboard with all its metrics and values?")
@click.pass_context
@run_async
async def dashboard_delete(ctx: click.Context, slug: str) -> None:
    """Delete a dashboard, its metrics and values; its open sockets close at once."""
    settings = resolved_settings(ctx)
    async with _pool(settings) as pool:
        try:
            found = await db.get_dashboard_by_slug(pool, slug)
        except db.NotFound as exc:
            raise _fail(exc) from None
        await db.delete_dashboard(pool, found.id)
    await _announce(settings, Revocation("dashboard_deleted", dashboard_id=found.id))
    click.echo(f"deleted dashboard {slug} (id {found.id})")


def _retention_days(text: str) -> int | None:
    """A whole number of days, or None for `global` (the worker's --retention-days)."""
    if text == "global":
        return None
    days = int(text) if text.isdigit() else 0
    if not 1 <= days <= db.MAX_RETENTION_DAYS:
        raise click.BadParameter(
            f"{text!r} is neither a number of days from 1 to {db.MAX_RETENTION_DAYS} nor 'global'",
            param_hint="DAYS",
        )
    return days


@dashboard.command(name="retention")
@click.argument("slug")
@click.argument("days", required=False)
@click.pass_context
@run_async
async def dashboard_retention(ctx: click.Context, slug: str, days: str | None) -> None:
    """Show how long the dashboard's raw values are kept, or set it to DAYS (or `global`).

    `global` follows the worker's --retention-days. A dashboard's own retention
    can only be shorter than the global one; the per-minute rollups that long
    ranges show follow --rollup-retention-days either way.
    """
    wanted = _retention_days(days) if days is not None else None
    settings = resolved_settings(ctx)
    async with _pool(settings) as pool:
        try:
            found = await db.get_dashboard_by_slug(pool, slug)
            if days is not None:
                found = await db.set_dashboard_retention(pool, found.id, wanted)
        except db.NotFound as exc:
            raise _fail(exc) from None
    if days is not None:
        await _announce(settings, DashboardChanged(found.id))  # open editors show it at once
    kept = (
        "as the worker's global setting" if found.retention_days is None else f"{found.retention_days} day(s)"
    )
    click.echo(f"{slug}: raw values kept {kept}")


@main.group()
def metric() -> None:
    """Add and list a dashboard's metrics."""


@metric.command(name="add")
@click.argument("dashboard_slug")
@click.argument("name")
@click.option(
    "--type",
    "metric_type",
    type=click.Choice(db.METRIC_TYPES),
    help="Kind of metric (required for --source random; else the reading's own kind).",
)
@click.option("--unit", help="Unit shown next to values, e.g. ms or %. Default: the reading's unit, or none.")
@click.option("--description", help="Shown on the metric's card. Default: what the reading is, or none.")
@click.option("--source", default=RANDOM, show_default=True, help=SOURCE_HELP)
@click.pass_context
@run_async
async def metric_add(
    ctx: click.Context,
    dashboard_slug: str,
    name: str,
    metric_type: str | None,
    unit: str | None,
    description: str | None,
    source: str,
) -> None:
    """Add a metric to a dashboard; the worker starts producing it at its next tick."""
    if source not in SOURCES:
        raise click.BadParameter(
            f"unknown source {source!r}; choose one of: {', '.join(SOURCES)}", param_hint="--source"
        )
    reading = system_reading(source)
    if metric_type is None and reading is None:
        raise click.UsageError("Missing option '--type' (needed unless --source is a system reading).")
    metric_type = metric_type or (reading.metric_type if reading else "gauge")
    try:
        check_source(source, metric_type)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--source") from None
    if unit is None:
        unit = reading.unit if reading else ""
    if description is None:
        description = reading.description if reading else ""
    settings = resolved_settings(ctx)
    async with _pool(settings) as pool:
        try:
            found = await db.get_dashboard_by_slug(pool, dashboard_slug)
            created = await db.create_metric(pool, found.id, name, metric_type, unit, description, source)
        except (db.NotFound, db.AlreadyExists) as exc:
            raise _fail(exc) from None
    await _announce(settings, DashboardChanged(found.id))  # open pages show it at once
    origin = "" if created.source == RANDOM else f", from {created.source}"
    click.echo(f"added {created.type} {created.name} (id {created.id}{origin}) to {dashboard_slug}")


@metric.command(name="sources")
def metric_sources() -> None:
    """List the sources a metric can take its values from: name, kind, unit, what."""
    click.echo(f"{RANDOM}\tany\t\tRandom demo values shaped by the metric's type")
    for source in SOURCES[1:]:
        reading = system_reading(source)
        if reading is not None:
            click.echo(f"{source}\t{reading.metric_type}\t{reading.unit}\t{reading.description}")


@metric.command(name="list")
@click.argument("dashboard_slug")
@click.pass_context
@run_async
async def metric_list(ctx: click.Context, dashboard_slug: str) -> None:
    """List a dashboard's metrics: id, type, name, unit, source."""
    async with _pool(resolved_settings(ctx)) as pool:
        try:
            found = await db.get_dashboard_by_slug(pool, dashboard_slug)
        except db.NotFound as exc:
            raise _fail(exc) from None
        for item in await db.list_metrics(pool, found.id):
            click.echo(f"{item.id}\t{item.type}\t{item.name}\t{item.unit}\t{item.source}")


@main.group()
def member() -> None:
    """Give and take away access to a dashboard."""


@member.command(name="add")
@click.argument("dashboard_slug")
@click.argument("username")
@click.option("--role", type=click.Choice(db.ROLES), default=db.VIEWER, show_default=True, help=ROLE_HELP)
@click.pass_context
@run_async
async def member_add(ctx: click.Context, dashboard_slug: str, username: str, role: str) -> None:
    """Let a user see a dashboard (and, as an editor, change it)."""
    async with _pool(resolved_settings(ctx)) as pool:
        try:
            found = await db.get_dashboard_by_slug(pool, dashboard_slug)
            who = await db.get_user_by_username(pool, username)
        except db.NotFound as exc:
            raise _fail(exc) from None
        added = await db.add_member(pool, found.id, who.id, role)
    if added:
        click.echo(f"{username} is now a member ({role}) of {dashboard_slug}")
    else:
        click.echo(f"{username} is already a member of {dashboard_slug} (`member role` changes the role)")


@member.command(name="role")
@click.argument("dashboard_slug")
@click.argument("username")
@click.argument("role", type=click.Choice(db.ROLES))
@click.pass_context
@run_async
async def member_role(ctx: click.Context, dashboard_slug: str, username: str, role: str) -> None:
    """Make a member a viewer or an editor (a dashboard keeps at least one editor)."""
    async with _pool(resolved_settings(ctx)) as pool:
        try:
            found = await db.get_dashboard_by_slug(pool, dashboard_slug)
            who = await db.get_user_by_username(pool, username)
            await db.set_member_role(pool, found.id, who.id, role)
        except (db.NotFound, db.LastEditor) as exc:
            raise _fail(exc) from None
    click.echo(f"{username} is now {'an' if role == db.EDITOR else 'a'} {role} of {dashboard_slug}")


@member.command(name="list")
@click.argument("dashboard_slug")
@click.pass_context
@run_async
async def member_list(ctx: click.Context, dashboard_slug: str) -> None:
    """List a dashboard's members: username, role."""
    async with _pool(resolved_settings(ctx)) as pool:
        try:
            found = await db.get_dashboard_by_slug(pool, dashboard_slug)
        except db.NotFound as exc:
            raise _fail(exc) from None
        for item in await db.list_members(pool, found.id):
            click.echo(f"{item.user.username}\t{item.role}")


@member.command(name="remove")
@click.argument("dashboard_slug")
@click.argument("username")
@click.pass_context
@run_async
async def member_remove(ctx: click.Context, dashboard_slug: str, username: str) -> None:
    """Take away a user's access to a dashboard; their open sockets to it close at once."""
    settings = resolved_settings(ctx)
    async with _pool(settings) as pool:
        try:
            found = await db.get_dashboard_by_slug(pool, dashboard_slug)
            who = await db.get_user_by_username(pool, username)
        except db.NotFound as exc:
            raise _fail(exc) from None
        removed = await db.remove_member(pool, found.id, who.id)
    # Announced even if there was no membership: it costs nothing and
    # closes any socket a racing connect may have opened.
    await _announce(settings, Revocation("member_removed", user_id=who.id, dashboard_id=found.id))
    click.echo(f"{username} {'is no longer' if removed else 'was not'} a member of {dashboard_slug}")


@main.group()
def token() -> None:
    """API tokens for pushing values to a dashboard over HTTP."""


@token.command(name="create")
@click.argument("dashboard_slug")
@click.argument("name")
@click.pass_context
@run_async
async def token_create(ctx: click.Context, dashboard_slug: str, name: str) -> None:
    """Create a token for pushing to a dashboard's metrics; it is shown only this once."""
    secret = new_token()
    async with _pool(resolved_settings(ctx)) as pool:
        try:
            found = await db.get_dashboard_by_slug(pool, dashboard_slug)
        except db.NotFound as exc:
            raise _fail(exc) from None
        created = await db.create_api_token(pool, found.id, name, token_hash(secret), display_prefix(secret))
    click.echo(
        f"created token {created.id} ({created.name}) for {dashboard_slug}; keep it, it is not shown again:"
    )
    click.echo(secret)


@token.command(name="list")
@click.argument("dashboard_slug")
@click.pass_context
@run_async
async def token_list(ctx: click.Context, dashboard_slug: str) -> None:
    """List a dashboard's tokens: id, prefix, name, state, last use."""
    async with _pool(resolved_settings(ctx)) as pool:
        try:
            found = await db.get_dashboard_by_slug(pool, dashboard_slug)
        except db.NotFound as exc:
            raise _fail(exc) from None
        for item in await db.list_api_tokens(pool, found.id):
            state = "revoked" if item.revoked_at else "active"
            used = item.last_used_at.isoformat(timespec="seconds") if item.last_used_at else "never used"
            click.echo(f"{item.id}\t{item.prefix}…\t{item.name}\t{state}\t{used}")


@token.command(name="revoke")
@click.argument("dashboard_slug")
@click.argument("token_id", type=int)
@click.pass_context
@run_async
async def token_revoke(ctx: click.Context, dashboard_slug: str, token_id: int) -> None:
    """Revoke a token at once: requests with it are refused from now on."""
    async with _pool(resolved_settings(ctx)) as pool:
        try:
            found = await db.get_dashboard_by_slug(pool, dashboard_slug)
        except db.NotFound as exc:
            raise _fail(exc) from None
        if not await db.revoke_api_token(pool, found.id, token_id):
            raise click.ClickException(f"{dashboard_slug} has no active token {token_id}")
    click.echo(f"revoked token {token_id}")


@main.group()
def alert() -> None:
    """Threshold alerts on a dashboard's metrics."""


@alert.command(name="add")
@click.argument("dashboard_slug")
@click.argument("metric_name")
@click.option("--above", type=float, help=ABOVE_HELP)
@click.option("--below", type=float, help=BELOW_HELP)
@click.option("--for", "for_seconds", type=click.IntRange(min=0), default=0, show_default=True, help=FOR_HELP)
@click.pass_context
@run_async
async def alert_add(
    ctx: click.Context,
    dashboard_slug: str,
    metric_name: str,
    *,
    above: float | None,
    below: float | None,
    for_seconds: int,
) -> None:
    """Alert when METRIC_NAME stays above or below a threshold."""
    if (above is None) == (below is None):
        raise click.UsageError("give exactly one of --above and --below")
    condition, threshold = ("above", above) if above is not None else ("below", below)
    async with _pool(resolved_settings(ctx)) as pool:
        try:
            found = await db.get_dashboard_by_slug(pool, dashboard_slug)
        except db.NotFound as exc:
            raise _fail(exc) from None
        metric = next((m for m in await db.list_metrics(pool, found.id) if m.name == metric_name), None)
        if metric is None:
            raise click.ClickException(f"{dashboard_slug} has no metric {metric_name!r}")
        rule = await db.create_alert_rule(pool, metric.id, condition, float(threshold or 0), for_seconds)
    click.echo(f"created alert rule {rule.id}: {metric_name} {condition} {rule.threshold} for {for_seconds}s")


@alert.command(name="list")
@click.argument("dashboard_slug")
@click.pass_context
@run_async
async def alert_list(ctx: click.Context, dashboard_slug: str) -> None:
    """List a dashboard's alert rules: id, metric, condition, threshold, duration, state."""
    async with _pool(resolved_settings(ctx)) as pool:
        try:
            found = await db.get_dashboard_by_slug(pool, dashboard_slug)
        except db.NotFound as exc:
            raise _fail(exc) from None
        names = {m.id: m.name for m in await db.list_metrics(pool, found.id)}
        click.echo("id\tmetric\tcondition\tthreshold\tfor\tstate")
        for rule in await db.list_alert_rules(pool, found.id):
            click.echo(
                f"{rule.id}\t{names[rule.metric_id]}\t{rule.condition}\t{rule.threshold}"
                f"\t{rule.for_seconds}s\t{rule.state}"
            )


@alert.command(name="remove")
@click.argument("dashboard_slug")
@click.argument("rule_id", type=int)
@click.pass_context
@run_async
async def alert_remove(ctx: click.Context, dashboard_slug: str, rule_id: int) -> None:
    """Remove an alert rule and its history of events."""
    async with _pool(resolved_settings(ctx)) as pool:
        try:
            found = await db.get_dashboard_by_slug(pool, dashboard_slug)
        except db.NotFound as exc:
            raise _fail(exc) from None
        if not await db.delete_alert_rule(pool, found.id, rule_id):
            raise click.ClickException(f"{dashboard_slug} has no alert rule {rule_id}")
    click.echo(f"removed alert rule {rule_id}")


@main.command(name="export")
@click.argument("dashboard_slug")
@click.option("--metric", "metric_name", help="Only this metric (by name); default: every metric.")
@click.option("--since", help=f"Start of the range (default: 24 hours before --until). {TIME_HELP}")
@click.option("--until", help=f"End of the range, excluded (default: now). {TIME_HELP}")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(FORMATS),
    default="csv",
    show_default=True,
    help="Output format.",
)
@click.pass_context
@run_async
async def export_command(
    ctx: click.Context,
    dashboard_slug: str,
    metric_name: str | None,
    since: str | None,
    until: str | None,
    file_format: str,
) -> None:
    """Write a dashboard's (or one metric's) values to standard output, e.g. `> values.csv`.

    Streamed in batches: memory stays small for any number of values.
    """
    try:
        span = export_range(since, until)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from None
    out = sys.stdout.buffer
    async with _pool(resolved_settings(ctx)) as pool:
        try:
            found = await db.get_dashboard_by_slug(pool, dashboard_slug)
        except db.NotFound as exc:
            raise _fail(exc) from None
        metrics = await db.list_metrics(pool, found.id)
        if metric_name is not None:
            metrics = [m for m in metrics if m.name == metric_name]
            if not metrics:
                raise click.ClickException(f"{dashboard_slug} has no metric {metric_name!r}")
        batches = db.export_batches(pool, [m.id for m in metrics], span.since, span.until)
        chunks = (
            csv_chunks(metrics, batches)
            if file_format == "csv"
            else json_chunks(found, metrics, span, batches)
        )
        async for chunk in chunks:
            out.write(chunk)
        out.flush()


@main.command()
@click.pass_context
@run_async
async def demo(ctx: click.Context) -> None:
    """Create the demo dashboards, an editor (demo/demo), a viewer (viewer/viewer) and a
    non-member (outsider/outsider).

    "Service health (demo)" gets random values; "This machine" the worker host's
    CPU, memory, load, network and disk readings.
    """
    async with _pool(resolved_settings(ctx)) as pool:
        await migrate(pool)
        logins = await create_demo(pool)
    click.echo(f"demo dashboard {logins.dashboard.slug} (id {logins.dashboard.id})")
    click.echo(f"host readings dashboard {logins.machine.slug} (id {logins.machine.id})")
    click.echo(f"editor login: {logins.member[0]} / {logins.member[1]}")
    click.echo(f"viewer login: {logins.viewer[0]} / {logins.viewer[1]}")
    click.echo(f"non-member login: {logins.non_member[0]} / {logins.non_member[1]}")


@main.command()
@click.option("--host", envvar="DASHBOARD_HOST", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", envvar="DASHBOARD_PORT", type=int, default=8080, show_default=True, help=PORT_HELP)
@click.option("--interval", type=float, default=1.0, show_default=True, help="Worker seconds between values.")
@click.pass_context
def up(ctx: click.Context, host: str, port: int, interval: float) -> None:
    """Everything on this machine: migrate, demo data, a worker and the server."""
    settings = resolved_settings(ctx)
    ctx.invoke(demo)
    env = dict(
        os.environ,
        DASHBOARD_DATABASE_URL=settings.database_url or "",
        DASHBOARD_REDIS_URL=settings.redis_url or "",
    )
    worker = subprocess.Popen([sys.executable, "-m", "worker", "run", "--interval", str(interval)], env=env)
    click.echo(f"\n  Open http://{host}:{port}/ and log in as demo / demo  (Ctrl-C stops everything)\n")
    try:
        _serve(settings, host, port)
    finally:
        worker.terminate()
        worker.wait(timeout=15)

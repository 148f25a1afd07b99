"""`dashboard-server dashboard ...` and `member ...`: dashboards and who may see them."""

from __future__ import annotations

import click

from common import db
from common.cli import resolved_settings, run_async
from common.events import DashboardChanged, Revocation
from common.schemas import DashboardEditSchema
from common.slugs import SLUG_PATTERN, slugify
from server.cli.quotas import quota_options, quotas_from
from server.cli.shared import (
    announce,
    checked,
    dashboard_by_slug,
    dashboard_pool,
    fail,
    open_pool,
    user_by_name,
)

OWNER_HELP = "A user who becomes the dashboard's first editor."
ROLE_HELP = "viewer: watches the dashboard; editor: also changes its name, metrics and members."


@click.group()
def dashboard() -> None:
    """Create, list, rename and delete dashboards; set how long their values are kept."""


@dashboard.command(name="create")
@click.argument("name")
@click.option("--slug", help="Unique short name used by other commands (default: from NAME).")
@click.option("--description", default="", help="Shown under the dashboard's name.")
@click.option("--owner", help=OWNER_HELP)
@quota_options("max_dashboards_per_user")
@click.pass_context
@run_async
async def dashboard_create(
    ctx: click.Context, name: str, slug: str | None, description: str, owner: str | None, **limits: int
) -> None:
    """Create a dashboard (add metrics and members next)."""
    slug = slug or slugify(name)
    if not slug:
        raise click.BadParameter("give a --slug: the name has no letters or digits")
    if not SLUG_PATTERN.fullmatch(slug):
        raise click.BadParameter("lower-case letters, digits and single dashes only", param_hint="--slug")
    async with open_pool(resolved_settings(ctx)) as pool:
        # Looked up first: an unknown owner creates nothing.
        creator = await user_by_name(pool, owner) if owner else None
        try:
            created = await db.create_dashboard(
                pool,
                name,
                slug,
                description,
                owner_id=creator.id if creator else None,
                quotas=quotas_from(limits),
            )
        except (db.AlreadyExists, db.NotFound, db.QuotaExceeded) as exc:
            raise fail(exc) from None
    editor = f", {creator.username} is its editor" if creator else ""
    click.echo(f"created dashboard {created.slug} (id {created.id}){editor}")


@dashboard.command(name="list")
@click.pass_context
@run_async
async def dashboard_list(ctx: click.Context) -> None:
    """List dashboards: id, slug, name."""
    async with open_pool(resolved_settings(ctx)) as pool:
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
    async with open_pool(settings) as pool:
        found = await dashboard_by_slug(pool, slug)
        await db.delete_dashboard(pool, found.id)
    await announce(settings, Revocation("dashboard_deleted", dashboard_id=found.id))
    click.echo(f"deleted dashboard {slug} (id {found.id})")


@dashboard.command(name="rename")
@click.argument("slug")
@click.argument("name")
@click.option("--description", help="Also change the text shown under the name ('' for none).")
@click.pass_context
@run_async
async def dashboard_rename(ctx: click.Context, slug: str, name: str, description: str | None) -> None:
    """Give a dashboard a new NAME (its slug stays), as the page's Edit panel does."""
    wanted = checked(
        DashboardEditSchema(), {"name": name, "description": description or ""}, hints={"name": "NAME"}
    )
    settings = resolved_settings(ctx)
    async with open_pool(settings) as pool:
        found = await dashboard_by_slug(pool, slug)
        text = wanted["description"] if description is not None else found.description
        try:
            found = await db.update_dashboard(pool, found.id, wanted["name"], text)
        except db.NotFound as exc:
            raise fail(exc) from None
    await announce(settings, DashboardChanged(found.id))  # open pages show it at once
    click.echo(f"{slug} is now called {found.name!r}")


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
    async with open_pool(settings) as pool:
        found = await dashboard_by_slug(pool, slug)
        if days is not None:
            try:
                found = await db.set_dashboard_retention(pool, found.id, wanted)
            except db.NotFound as exc:
                raise fail(exc) from None
    if days is not None:
        await announce(settings, DashboardChanged(found.id))  # open editors show it at once
    kept = (
        "as the worker's global setting" if found.retention_days is None else f"{found.retention_days} day(s)"
    )
    click.echo(f"{slug}: raw values kept {kept}")


@click.group()
def member() -> None:
    """Give and take away access to a dashboard."""


@member.command(name="add")
@click.argument("dashboard_slug")
@click.argument("username")
@click.option("--role", type=click.Choice(db.ROLES), default=db.VIEWER, show_default=True, help=ROLE_HELP)
@quota_options("max_members_per_dashboard", "max_dashboards_per_user")
@click.pass_context
@run_async
async def member_add(
    ctx: click.Context, dashboard_slug: str, username: str, role: str, **limits: int
) -> None:
    """Let a user see a dashboard (and, as an editor, change it)."""
    async with dashboard_pool(ctx, dashboard_slug) as (pool, found):
        who = await user_by_name(pool, username)
        try:
            added = await db.add_member(pool, found.id, who.id, role, quotas=quotas_from(limits))
        except (db.NotFound, db.QuotaExceeded) as exc:
            raise fail(exc) from None
    if added:
        click.echo(f"{username} is now a member ({role}) of {dashboard_slug}")
    else:
        click.echo(f"{username} is already a member of {dashboard_slug} (`member role` changes the role)")


@member.command(name="role")
@click.argument("dashboard_slug")
@click.argument("username")
@click.argument("role", type=click.Choice(db.ROLES))
@quota_options("max_dashboards_per_user")
@click.pass_context
@run_async
async def member_role(
    ctx: click.Context, dashboard_slug: str, username: str, role: str, **limits: int
) -> None:
    """Make a member a viewer or an editor (a dashboard keeps at least one editor).

    A demoted editor's API tokens for the dashboard are revoked with the change."""
    async with dashboard_pool(ctx, dashboard_slug) as (pool, found):
        who = await user_by_name(pool, username)
        try:
            await db.set_member_role(pool, found.id, who.id, role, quotas=quotas_from(limits))
        except (db.NotFound, db.LastEditor, db.QuotaExceeded) as exc:
            raise fail(exc) from None
    click.echo(f"{username} is now {'an' if role == db.EDITOR else 'a'} {role} of {dashboard_slug}")


@member.command(name="list")
@click.argument("dashboard_slug")
@click.pass_context
@run_async
async def member_list(ctx: click.Context, dashboard_slug: str) -> None:
    """List a dashboard's members: username, role."""
    async with dashboard_pool(ctx, dashboard_slug) as (pool, found):
        for item in await db.list_members(pool, found.id):
            click.echo(f"{item.user.username}\t{item.role}")


@member.command(name="remove")
@click.argument("dashboard_slug")
@click.argument("username")
@click.pass_context
@run_async
async def member_remove(ctx: click.Context, dashboard_slug: str, username: str) -> None:
    """Take away a user's access to a dashboard; their open sockets to it close at once
    and the API tokens they made for it are revoked."""
    settings = resolved_settings(ctx)
    async with open_pool(settings) as pool:
        found = await dashboard_by_slug(pool, dashboard_slug)
        who = await user_by_name(pool, username)
        removed = await db.remove_member(pool, found.id, who.id)
    # Announced even if there was no membership: it costs nothing and
    # closes any socket a racing connect may have opened.
    await announce(settings, Revocation("member_removed", user_id=who.id, dashboard_id=found.id))
    click.echo(f"{username} {'is no longer' if removed else 'was not'} a member of {dashboard_slug}")

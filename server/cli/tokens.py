"""`dashboard-server token ...`: API tokens for the push API."""

from __future__ import annotations

import click

from common import db
from common.cli import run_async
from common.tokens import display_prefix, new_token, token_hash
from server.cli.quotas import quota_options, quotas_from
from server.cli.shared import change_item, dashboard_pool, fail, item_command


@click.group()
def token() -> None:
    """API tokens for pushing values to a dashboard over HTTP: create, list, revoke, delete."""


@token.command(name="create")
@click.argument("dashboard_slug")
@click.argument("name")
@quota_options("max_tokens_per_dashboard")
@click.pass_context
@run_async
async def token_create(ctx: click.Context, dashboard_slug: str, name: str, **limits: int) -> None:
    """Create a token for pushing to a dashboard's metrics; it is shown only this once.

    It has no creator, so it stays until revoked (tokens made by an editor on the
    page are revoked when that editor is no longer one)."""
    secret = new_token()
    async with dashboard_pool(ctx, dashboard_slug) as (pool, found):
        try:
            created = await db.create_api_token(
                pool, found.id, name, token_hash(secret), display_prefix(secret), quotas=quotas_from(limits)
            )
        except (db.NotFound, db.QuotaExceeded) as exc:
            raise fail(exc) from None
    click.echo(
        f"created token {created.id} ({created.name}) for {dashboard_slug}; keep it, it is not shown again:"
    )
    click.echo(secret)


@token.command(name="list")
@click.argument("dashboard_slug")
@click.pass_context
@run_async
async def token_list(ctx: click.Context, dashboard_slug: str) -> None:
    """List a dashboard's tokens: id, prefix, name, state, last use, creator (cli: none)."""
    async with dashboard_pool(ctx, dashboard_slug) as (pool, found):
        for item in await db.list_api_tokens(pool, found.id):
            state = "revoked" if item.revoked_at else "active"
            used = item.last_used_at.isoformat(timespec="seconds") if item.last_used_at else "never used"
            creator = f"by {item.created_by_username}" if item.created_by is not None else "by cli"
            click.echo(f"{item.id}\t{item.prefix}…\t{item.name}\t{state}\t{used}\t{creator}")


@item_command(token, "revoke", "token_id")
async def token_revoke(ctx: click.Context, dashboard_slug: str, token_id: int) -> None:
    """Revoke a token at once: requests with it are refused from now on."""
    await change_item(ctx, dashboard_slug, db.revoke_api_token, token_id, "active token")
    click.echo(f"revoked token {token_id}")


@item_command(token, "delete", "token_id")
async def token_delete(ctx: click.Context, dashboard_slug: str, token_id: int) -> None:
    """Remove a revoked token from the dashboard's list (revoke it first)."""
    await change_item(ctx, dashboard_slug, db.delete_revoked_api_token, token_id, "revoked token")
    click.echo(f"deleted token {token_id}")

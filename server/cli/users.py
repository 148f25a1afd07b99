"""`dashboard-server user ...`: the people who can log in."""

from __future__ import annotations

import click

from common import db
from common.cli import resolved_settings, run_async
from common.events import Revocation
from common.passwords import hash_password
from server.cli.shared import announce, fail, open_pool, user_by_name

PASSWORD_HELP = "The password; prompted for (hidden) when not given."


@click.group()
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
    async with open_pool(resolved_settings(ctx)) as pool:
        try:
            created = await db.create_user(pool, username, hash_password(password))
        except db.AlreadyExists as exc:
            raise fail(exc) from None
    click.echo(f"created user {created.username} (id {created.id})")


@user.command(name="set-password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help=PASSWORD_HELP)
@click.pass_context
@run_async
async def user_set_password(ctx: click.Context, username: str, password: str) -> None:
    """Change a user's password."""
    async with open_pool(resolved_settings(ctx)) as pool:
        found = await user_by_name(pool, username)
        await db.set_password_hash(pool, found.id, hash_password(password))
    click.echo(f"password of {username} changed")


@user.command(name="list")
@click.pass_context
@run_async
async def user_list(ctx: click.Context) -> None:
    """List users."""
    async with open_pool(resolved_settings(ctx)) as pool:
        for found in await db.list_users(pool):
            click.echo(f"{found.id}\t{found.username}")


@user.command(name="delete")
@click.argument("username")
@click.confirmation_option(prompt="Delete the user?")
@click.pass_context
@run_async
async def user_delete(ctx: click.Context, username: str) -> None:
    """Delete a user; their open sockets close at once, their sessions stop working
    and the API tokens they made are revoked."""
    settings = resolved_settings(ctx)
    async with open_pool(settings) as pool:
        found = await user_by_name(pool, username)
        await db.delete_user(pool, found.id)
    await announce(settings, Revocation("user_deleted", user_id=found.id))
    click.echo(f"deleted user {username} (id {found.id})")

"""`dashboard-server user ...`: the people who can log in."""

from __future__ import annotations

import click

from common import db
from common.cli import resolved_settings, run_async
from common.config import ResolvedSettings
from common.events import Revocation
from common.failures import REDIS_UNAVAILABLE
from common.passwords import UnusablePassword, hash_password
from common.redisconn import connect_redis
from server.cli.shared import announce, fail, open_pool, user_by_name
from server.sessions import end_user_sessions

PASSWORD_HELP = "The password; prompted for (hidden) when not given."


@click.group()
def user() -> None:
    """Create, list and delete users; change passwords; end sessions."""


@user.command(name="create")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help=PASSWORD_HELP)
@click.pass_context
@run_async
async def user_create(ctx: click.Context, username: str, password: str) -> None:
    """Create a user who can log in."""
    password_hash = _new_password_hash(password)
    async with open_pool(resolved_settings(ctx)) as pool:
        try:
            created = await db.create_user(pool, username, password_hash)
        except db.AlreadyExists as exc:
            raise fail(exc) from None
    click.echo(f"created user {created.username} (id {created.id})")


@user.command(name="set-password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help=PASSWORD_HELP)
@click.pass_context
@run_async
async def user_set_password(ctx: click.Context, username: str, password: str) -> None:
    """Change a user's password; their sessions end and their open pages close, everywhere."""
    password_hash = _new_password_hash(password)
    settings = resolved_settings(ctx)
    async with open_pool(settings) as pool:
        found = await user_by_name(pool, username)
        await db.set_password_hash(pool, found.id, password_hash)
    # After the change: a login racing with it already needs the new password.
    ended = await _end_sessions(settings, found, done=f"password of {username} changed")
    click.echo(f"password of {username} changed; {_sessions(ended)} ended")


@user.command(name="logout-everywhere")
@click.argument("username")
@click.pass_context
@run_async
async def user_logout_everywhere(ctx: click.Context, username: str) -> None:
    """End every session of a user and close their open pages, on every server."""
    settings = resolved_settings(ctx)
    async with open_pool(settings) as pool:
        found = await user_by_name(pool, username)
    ended = await _end_sessions(settings, found, done="nothing changed")
    click.echo(f"{username} logged out everywhere: {_sessions(ended)} ended")


def _new_password_hash(password: str) -> str:
    try:
        return hash_password(password)
    except UnusablePassword as exc:
        raise click.BadParameter(str(exc), param_hint="--password") from None


async def _end_sessions(settings: ResolvedSettings, found: db.User, *, done: str) -> int:
    """End the user's sessions in Redis, then close their sockets on every server process."""
    client = connect_redis(settings.redis_url)
    try:
        ended = await end_user_sessions(client, found.id)
    except REDIS_UNAVAILABLE as exc:
        raise click.ClickException(
            f"{done}, but the sessions could not be ended ({exc}): run"
            f" `dashboard-server user logout-everywhere {found.username}` when Redis answers"
        ) from None
    finally:
        await client.aclose()
    await announce(settings, Revocation("sessions_ended", user_id=found.id))
    return ended


def _sessions(count: int) -> str:
    return f"{count} session{'s' if count != 1 else ''}"


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

"""`dashboard-server contact ...`: where a dashboard's alerts are sent (the Edit panel's
Contact points), and the options of `alert add` / `alert notify` that choose them."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any

import aiopg
import click
from marshmallow import ValidationError

from common import db
from common.cli import run_async
from common.schemas import (
    ContactPointCreateSchema,
    ContactPointEditSchema,
    RuleNotificationsSchema,
    check_contact_target,
)
from server.cli.quotas import quota_options, quotas_from
from server.cli.shared import change_item, checked, dashboard_pool, fail, item_command

TARGET_HELP = "An http(s) URL for webhook and slack, one e-mail address for email."
NOTIFY_HELP = "A contact point (name or id) the rule notifies when it fires and resolves; repeatable."
REPEAT_HELP = "Minutes between repeats while the rule stays firing (1 to 10080). Default: no repeats."
_HINTS = {"name": "NAME", "target": "--target", "kind": "--kind"}


@click.group()
def contact() -> None:
    """Contact points of a dashboard: webhooks, Slack incoming webhooks, e-mail addresses."""


@contact.command(name="add")
@click.argument("dashboard_slug")
@click.argument("name")
@click.option("--kind", type=click.Choice(db.CONTACT_KINDS), required=True, help="How messages are sent.")
@click.option("--target", required=True, help=TARGET_HELP)
@quota_options("max_contact_points_per_dashboard")
@click.pass_context
@run_async
async def contact_add(
    ctx: click.Context, dashboard_slug: str, name: str, *, kind: str, target: str, **limits: int
) -> None:
    """Add a contact point; a webhook's signing secret is printed this once."""
    body = checked(ContactPointCreateSchema(), {"name": name, "kind": kind, "target": target}, _HINTS)
    secret = secrets.token_urlsafe(32) if kind == "webhook" else None  # as the page does
    async with dashboard_pool(ctx, dashboard_slug) as (pool, found):
        try:
            created = await db.create_contact_point(
                pool, found.id, body["name"], kind, body["target"], secret, quotas=quotas_from(limits)
            )
        except (db.NotFound, db.QuotaExceeded) as exc:
            raise fail(exc) from None
    click.echo(f"created contact point {created.id}: {created.name} ({kind}) {created.target}")
    if secret is not None:
        click.echo("its signing secret; keep it, it is not shown again:")
        click.echo(secret)


@contact.command(name="list")
@click.argument("dashboard_slug")
@click.pass_context
@run_async
async def contact_list(ctx: click.Context, dashboard_slug: str) -> None:
    """List a dashboard's contact points: id, name, kind, URL or address."""
    async with dashboard_pool(ctx, dashboard_slug) as (pool, found):
        click.echo("id\tname\tkind\ttarget")
        for item in await db.list_contact_points(pool, found.id):
            click.echo(f"{item.id}\t{item.name}\t{item.kind}\t{item.target}")


@contact.command(name="edit")
@click.argument("dashboard_slug")
@click.argument("contact_point_id", type=int)
@click.option("--name", help="Its new name.")
@click.option("--target", help=TARGET_HELP + " Must suit its kind, which stays.")
@click.pass_context
@run_async
async def contact_edit(
    ctx: click.Context, dashboard_slug: str, contact_point_id: int, *, name: str | None, target: str | None
) -> None:
    """Rename a contact point or change its URL or address; its kind and secret stay."""
    given = {key: value for key, value in (("name", name), ("target", target)) if value is not None}
    if not given:
        raise click.UsageError("give --name, --target or both")
    body = checked(ContactPointEditSchema(), given, {"name": "--name"})
    async with dashboard_pool(ctx, dashboard_slug) as (pool, found):
        try:
            current = await db.get_contact_point(pool, found.id, contact_point_id)
            if "target" in body:
                check_contact_target(current.kind, body["target"])
            changed = await db.update_contact_point(
                pool, found.id, contact_point_id, name=body.get("name"), target=body.get("target")
            )
        except ValidationError as exc:
            raise click.BadParameter(" ".join(exc.messages), param_hint="--target") from None
        except db.NotFound as exc:
            raise fail(exc) from None
    click.echo(f"contact point {changed.id}: {changed.name} ({changed.kind}) {changed.target}")


@item_command(contact, "remove", "contact_point_id")
async def contact_remove(ctx: click.Context, dashboard_slug: str, contact_point_id: int) -> None:
    """Remove a contact point; messages not yet sent to it are dropped."""
    await change_item(ctx, dashboard_slug, db.delete_contact_point, contact_point_id, "contact point")
    click.echo(f"removed contact point {contact_point_id}")


@item_command(contact, "test", "contact_point_id")
async def contact_test(ctx: click.Context, dashboard_slug: str, contact_point_id: int) -> None:
    """Queue a test message; a worker sends it, and the page's delivery log shows the outcome."""
    async with dashboard_pool(ctx, dashboard_slug) as (pool, found):
        try:
            await db.enqueue_test_notification(pool, found.id, contact_point_id)
        except db.NotFound as exc:
            raise fail(exc) from None
    click.echo(f"queued a test message to contact point {contact_point_id}")


def notify_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--notify and --repeat, as the Edit panel's Save notifications sets them."""
    command = click.option("--repeat", "repeat_minutes", type=int, help=REPEAT_HELP)(command)
    return click.option("--notify", "notify", multiple=True, metavar="CONTACT", help=NOTIFY_HELP)(command)


async def notification_settings(
    pool: aiopg.Pool, dashboard: db.Dashboard, notify: Sequence[str], repeat_minutes: int | None
) -> tuple[list[int], int | None]:
    """The contact point ids and repeat seconds the options name, checked as the page's are."""
    contacts = await db.list_contact_points(pool, dashboard.id)
    ids = [_contact_id(contacts, dashboard, name) for name in notify]
    repeat = None if repeat_minutes is None else repeat_minutes * 60
    body = checked(
        RuleNotificationsSchema(),
        {"contact_point_ids": ids, "repeat_seconds": repeat},
        {"contact_point_ids": "--notify", "repeat_seconds": "--repeat"},
    )
    return body["contact_point_ids"], body["repeat_seconds"]


def _contact_id(contacts: Sequence[db.ContactPoint], dashboard: db.Dashboard, name: str) -> int:
    """By name, or by id when digits name none."""
    named = [c.id for c in contacts if c.name == name]
    if len(named) > 1:
        raise click.BadParameter(
            f"{len(named)} contact points are named {name!r}: give the id", param_hint="--notify"
        )
    if named:
        return named[0]
    if name.isdigit() and any(c.id == int(name) for c in contacts):
        return int(name)
    raise click.BadParameter(f"{dashboard.slug} has no contact point {name!r}", param_hint="--notify")

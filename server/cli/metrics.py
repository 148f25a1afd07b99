"""`dashboard-server metric ...` and `alert ...`: what a dashboard shows and when it alerts."""

from __future__ import annotations

import click

from common import db
from common.cli import resolved_settings, run_async
from common.events import DashboardChanged
from common.schemas import MetricEditSchema
from common.sources import DEFAULT_SOURCE, PUSH, SOURCE_DESCRIPTIONS, SOURCES, check_source, system_reading
from common.vocabulary import DEFAULT_METRIC_TYPE
from server.cli.contacts import notification_settings, notify_options
from server.cli.quotas import quota_options, quotas_from
from server.cli.shared import (
    announce,
    checked,
    dashboard_by_slug,
    dashboard_pool,
    fail,
    metric_by_name,
    open_pool,
)

SOURCE_HELP = (
    "Where its values come from: push (programs send them to the push API; the worker writes none), "
    "random (demo values) or a reading of the worker's host, e.g. system:cpu_percent, "
    "system:memory_used, system:load1, system:net_bytes_sent (`dashboard-server metric sources` lists them)."
)
ABOVE_HELP = "Fire while the value is above this threshold."
BELOW_HELP = "Fire while the value is below this threshold."
FOR_HELP = "Seconds (by the values' timestamps) the condition must hold before the alert fires."


@click.group()
def metric() -> None:
    """Add, change, order, list and remove a dashboard's metrics."""


@metric.command(name="add")
@click.argument("dashboard_slug")
@click.argument("name")
@click.option(
    "--type",
    "metric_type",
    type=click.Choice(db.METRIC_TYPES),
    help="Kind of metric (required unless --source is a system reading, whose own kind is the default).",
)
@click.option("--unit", help="Unit shown next to values, e.g. ms or %. Default: the reading's unit, or none.")
@click.option("--description", help="Shown on the metric's card. Default: what the reading is, or none.")
@click.option("--source", default=DEFAULT_SOURCE, show_default=True, help=SOURCE_HELP)
@quota_options("max_metrics_per_dashboard")
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
    **limits: int,
) -> None:
    """Add a metric to a dashboard: fed by pushes (the default), or by the worker from its next tick."""
    if source not in SOURCES:
        raise click.BadParameter(
            f"unknown source {source!r}; choose one of: {', '.join(SOURCES)}", param_hint="--source"
        )
    reading = system_reading(source)
    if metric_type is None and reading is None:
        raise click.UsageError("Missing option '--type' (needed unless --source is a system reading).")
    metric_type = metric_type or (reading.metric_type if reading else DEFAULT_METRIC_TYPE)
    try:
        check_source(source, metric_type)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--source") from None
    if unit is None:
        unit = reading.unit if reading else ""
    if description is None:
        description = reading.description if reading else ""
    settings = resolved_settings(ctx)
    async with open_pool(settings) as pool:
        found = await dashboard_by_slug(pool, dashboard_slug)
        try:
            created = await db.create_metric(
                pool, found.id, name, metric_type, unit, description, source, quotas=quotas_from(limits)
            )
        except (db.AlreadyExists, db.QuotaExceeded) as exc:
            raise fail(exc) from None
    await announce(settings, DashboardChanged(found.id))  # open pages show it at once
    click.echo(
        f"added {created.type} {created.name} (id {created.id}, from {created.source}) to {dashboard_slug}"
    )
    if created.source == PUSH:
        click.echo(
            f"push its values to POST /api/v1/metrics/{created.id}/values with a token of {dashboard_slug}"
        )


@metric.command(name="sources")
def metric_sources() -> None:
    """List the sources a metric can take its values from: name, kind, unit, what."""
    for source in SOURCES:
        reading = system_reading(source)
        if reading is None:
            click.echo(f"{source}\tany\t\t{SOURCE_DESCRIPTIONS[source]}")
        else:
            click.echo(f"{source}\t{reading.metric_type}\t{reading.unit}\t{reading.description}")


@metric.command(name="list")
@click.argument("dashboard_slug")
@click.pass_context
@run_async
async def metric_list(ctx: click.Context, dashboard_slug: str) -> None:
    """List a dashboard's metrics: id, type, name, unit, source."""
    async with dashboard_pool(ctx, dashboard_slug) as (pool, found):
        for item in await db.list_metrics(pool, found.id):
            click.echo(f"{item.id}\t{item.type}\t{item.name}\t{item.unit}\t{item.source}")


@metric.command(name="update")
@click.argument("dashboard_slug")
@click.argument("name")
@click.option("--name", "new_name", help="A new name (unique on the dashboard).")
@click.option("--unit", help="Unit shown next to values; '' for none.")
@click.option("--description", help="Shown on the metric's card; '' for none.")
@click.option("--source", help=SOURCE_HELP + " It must suit the metric's type, which never changes.")
@click.pass_context
@run_async
async def metric_update(
    ctx: click.Context,
    dashboard_slug: str,
    name: str,
    *,
    new_name: str | None,
    unit: str | None,
    description: str | None,
    source: str | None,
) -> None:
    """Rename a metric, or change its unit, description or source (as the page's Edit panel does)."""
    given = {"name": new_name, "unit": unit, "description": description, "source": source}
    changes = checked(MetricEditSchema(), {k: v for k, v in given.items() if v is not None})
    if not changes:
        raise click.UsageError("nothing to change: give --name, --unit, --description or --source")
    settings = resolved_settings(ctx)
    async with open_pool(settings) as pool:
        found = await dashboard_by_slug(pool, dashboard_slug)
        current = await metric_by_name(pool, found, name)
        try:
            updated = await db.update_metric(
                pool,
                found.id,
                current.id,
                changes.get("name", current.name),
                changes.get("unit", current.unit),
                changes.get("description", current.description),
                changes.get("source"),
            )
        except (db.AlreadyExists, db.NotFound) as exc:  # AlreadyExists is a ValueError too: caught first
            raise fail(exc) from None
        except ValueError as exc:  # a source that cannot feed this metric's type
            raise click.BadParameter(str(exc), param_hint="--source") from None
    await announce(settings, DashboardChanged(found.id))  # open pages show it at once
    click.echo(
        f"updated {updated.type} {updated.name} (id {updated.id}): unit {updated.unit!r},"
        f" from {updated.source}, description {updated.description!r}"
    )


@metric.command(name="order")
@click.argument("dashboard_slug")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
@run_async
async def metric_order(ctx: click.Context, dashboard_slug: str, names: tuple[str, ...]) -> None:
    """Show a dashboard's metrics in the order of NAMES, which must list every one of them."""
    settings = resolved_settings(ctx)
    async with open_pool(settings) as pool:
        found = await dashboard_by_slug(pool, dashboard_slug)
        ids = {m.name: m.id for m in await db.list_metrics(pool, found.id)}
        unknown = [n for n in names if n not in ids]
        if unknown:
            raise click.ClickException(f"{dashboard_slug} has no metric {unknown[0]!r}")
        try:
            await db.reorder_metrics(pool, found.id, [ids[n] for n in names])
        except ValueError as exc:
            raise click.ClickException(f"{exc}: {', '.join(ids)}") from None
    await announce(settings, DashboardChanged(found.id))
    click.echo(f"{dashboard_slug} shows {', '.join(names)}")


@metric.command(name="remove")
@click.argument("dashboard_slug")
@click.argument("name")
@click.confirmation_option(prompt="Remove the metric with all its values and alert rules?")
@click.pass_context
@run_async
async def metric_remove(ctx: click.Context, dashboard_slug: str, name: str) -> None:
    """Remove a metric with its values and alert rules; open pages drop its card at once."""
    settings = resolved_settings(ctx)
    async with open_pool(settings) as pool:
        found = await dashboard_by_slug(pool, dashboard_slug)
        current = await metric_by_name(pool, found, name)
        if not await db.delete_metric(pool, found.id, current.id):  # removed meanwhile
            raise click.ClickException(f"{dashboard_slug} has no metric {name!r}")
    await announce(settings, DashboardChanged(found.id))
    click.echo(f"removed metric {name} (id {current.id}) from {dashboard_slug}")


@click.group()
def alert() -> None:
    """Threshold alerts on a dashboard's metrics."""


@alert.command(name="add")
@click.argument("dashboard_slug")
@click.argument("metric_name")
@click.option("--above", type=float, help=ABOVE_HELP)
@click.option("--below", type=float, help=BELOW_HELP)
@click.option("--for", "for_seconds", type=click.IntRange(min=0), default=0, show_default=True, help=FOR_HELP)
@notify_options
@quota_options("max_alert_rules_per_dashboard")
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
    notify: tuple[str, ...],
    repeat_minutes: int | None,
    **limits: int,
) -> None:
    """Alert when METRIC_NAME stays above or below a threshold, notifying the --notify contact points."""
    if (above is None) == (below is None):
        raise click.UsageError("give exactly one of --above and --below")
    if repeat_minutes is not None and not notify:
        raise click.UsageError("--repeat needs --notify: repeats go to the rule's contact points")
    condition, threshold = ("above", above) if above is not None else ("below", below)
    settings = resolved_settings(ctx)
    async with open_pool(settings) as pool:
        found = await dashboard_by_slug(pool, dashboard_slug)
        metric = await metric_by_name(pool, found, metric_name)
        # Checked before the rule exists, so a wrong contact point creates nothing.
        contact_ids, repeat = await notification_settings(pool, found, notify, repeat_minutes)
        try:
            rule = await db.create_alert_rule(
                pool, metric.id, condition, float(threshold or 0), for_seconds, quotas=quotas_from(limits)
            )
            if contact_ids:
                await db.set_rule_notifications(pool, found.id, rule.id, contact_ids, repeat)
        except (db.NotFound, db.QuotaExceeded) as exc:
            raise fail(exc) from None
    await announce(settings, DashboardChanged(found.id))  # open pages list it at once
    click.echo(f"created alert rule {rule.id}: {metric_name} {condition} {rule.threshold} for {for_seconds}s")
    if contact_ids:
        click.echo(_notifies(contact_ids, repeat))


@alert.command(name="notify")
@click.argument("dashboard_slug")
@click.argument("rule_id", type=int)
@notify_options
@click.pass_context
@run_async
async def alert_notify(
    ctx: click.Context,
    dashboard_slug: str,
    rule_id: int,
    *,
    notify: tuple[str, ...],
    repeat_minutes: int | None,
) -> None:
    """Set whom a rule notifies (every --notify; none: nobody) and how often it repeats."""
    if repeat_minutes is not None and not notify:
        raise click.UsageError("--repeat needs --notify: repeats go to the rule's contact points")
    async with dashboard_pool(ctx, dashboard_slug) as (pool, found):
        contact_ids, repeat = await notification_settings(pool, found, notify, repeat_minutes)
        try:
            await db.set_rule_notifications(pool, found.id, rule_id, contact_ids, repeat)
        except db.NotFound as exc:
            raise fail(exc) from None
    click.echo(
        f"alert rule {rule_id}: " + (_notifies(contact_ids, repeat) if contact_ids else "notifies nobody")
    )


def _notifies(contact_ids: list[int], repeat: int | None) -> str:
    every = f", every {repeat // 60} min while firing" if repeat else ""
    return "notifies contact point(s) " + ", ".join(map(str, contact_ids)) + every


@alert.command(name="list")
@click.argument("dashboard_slug")
@click.pass_context
@run_async
async def alert_list(ctx: click.Context, dashboard_slug: str) -> None:
    """List a dashboard's alert rules: id, metric, condition, threshold, duration, state."""
    async with dashboard_pool(ctx, dashboard_slug) as (pool, found):
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
    settings = resolved_settings(ctx)
    async with open_pool(settings) as pool:
        found = await dashboard_by_slug(pool, dashboard_slug)
        if not await db.delete_alert_rule(pool, found.id, rule_id):
            raise click.ClickException(f"{dashboard_slug} has no alert rule {rule_id}")
    await announce(settings, DashboardChanged(found.id))
    click.echo(f"removed alert rule {rule_id}")

"""`dashboard-server metric ...` and `alert ...`: what a dashboard shows and when it alerts."""

from __future__ import annotations

import click

from common import db
from common.cli import resolved_settings, run_async
from common.events import DashboardChanged
from common.sources import DEFAULT_SOURCE, PUSH, SOURCE_DESCRIPTIONS, SOURCES, check_source, system_reading
from server.cli.quotas import quota_options, quotas_from
from server.cli.shared import announce, dashboard_by_slug, fail, metric_by_name, open_pool

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
    """Add and list a dashboard's metrics."""


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
    async with open_pool(resolved_settings(ctx)) as pool:
        found = await dashboard_by_slug(pool, dashboard_slug)
        for item in await db.list_metrics(pool, found.id):
            click.echo(f"{item.id}\t{item.type}\t{item.name}\t{item.unit}\t{item.source}")


@click.group()
def alert() -> None:
    """Threshold alerts on a dashboard's metrics."""


@alert.command(name="add")
@click.argument("dashboard_slug")
@click.argument("metric_name")
@click.option("--above", type=float, help=ABOVE_HELP)
@click.option("--below", type=float, help=BELOW_HELP)
@click.option("--for", "for_seconds", type=click.IntRange(min=0), default=0, show_default=True, help=FOR_HELP)
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
    **limits: int,
) -> None:
    """Alert when METRIC_NAME stays above or below a threshold."""
    if (above is None) == (below is None):
        raise click.UsageError("give exactly one of --above and --below")
    condition, threshold = ("above", above) if above is not None else ("below", below)
    settings = resolved_settings(ctx)
    async with open_pool(settings) as pool:
        found = await dashboard_by_slug(pool, dashboard_slug)
        metric = await metric_by_name(pool, found, metric_name)
        try:
            rule = await db.create_alert_rule(
                pool, metric.id, condition, float(threshold or 0), for_seconds, quotas=quotas_from(limits)
            )
        except (db.NotFound, db.QuotaExceeded) as exc:
            raise fail(exc) from None
    await announce(settings, DashboardChanged(found.id))  # open pages list it at once
    click.echo(f"created alert rule {rule.id}: {metric_name} {condition} {rule.threshold} for {for_seconds}s")


@alert.command(name="list")
@click.argument("dashboard_slug")
@click.pass_context
@run_async
async def alert_list(ctx: click.Context, dashboard_slug: str) -> None:
    """List a dashboard's alert rules: id, metric, condition, threshold, duration, state."""
    async with open_pool(resolved_settings(ctx)) as pool:
        found = await dashboard_by_slug(pool, dashboard_slug)
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

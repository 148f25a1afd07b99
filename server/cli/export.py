"""`dashboard-server export`: a dashboard's values as CSV or JSON on standard output."""

from __future__ import annotations

import sys

import click

from common import db
from common.cli import run_async
from common.export import FORMATS, TIME_HELP, RangeError, export_chunks, export_range
from server.cli.shared import dashboard_pool, metric_by_name


@click.command(name="export")
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
    except RangeError as exc:
        raise click.BadParameter(exc.reason, param_hint=f"--{exc.field}") from None
    out = sys.stdout.buffer
    async with dashboard_pool(ctx, dashboard_slug) as (pool, found):
        if metric_name is not None:
            metrics = [await metric_by_name(pool, found, metric_name)]
        else:
            metrics = await db.list_metrics(pool, found.id)
        async for chunk in export_chunks(pool, found, metrics, span, file_format):
            out.write(chunk)
        out.flush()

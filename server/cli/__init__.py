"""`dashboard-server`: run the web server and manage users, dashboards and metrics.

One module per group of commands; this one only assembles them.
"""

from __future__ import annotations

import click

from common.cli import connection_options, settings_from_options
from server.cli import dashboards, export, metrics, quotas, serving, tokens, users


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


for command in (
    serving.run,
    serving.up,
    serving.demo,
    serving.migrate_command,
    serving.check,
    users.user,
    dashboards.dashboard,
    metrics.metric,
    dashboards.member,
    tokens.token,
    metrics.alert,
    export.export_command,
    quotas.usage,
):
    main.add_command(command)

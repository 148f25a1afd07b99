"""`dashboard-server`: run the web server and manage users, dashboards and metrics.

One module per group of commands; this one only assembles them.
"""

from __future__ import annotations

from typing import Any

import click

from common.cli import config_group, connection_options, settings_from_options, show_environment_variables
from server.cli import dashboards, export, metrics, quotas, serving, tokens, users


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@connection_options("server")
@click.pass_context
def main(ctx: click.Context, **options: Any) -> None:
    """Live metrics dashboards: the web server and its administration.

    Settings come from flags, DASHBOARD_* environment variables or a --config
    file (`config show` prints them). With no
    database or Redis URL, an embedded PostgreSQL and Redis are started in
    --data-dir and shared with `dashboard-worker`.
    """
    ctx.obj = settings_from_options(**options)


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
    config_group("server", serving.run),
):
    main.add_command(command)

show_environment_variables(main)

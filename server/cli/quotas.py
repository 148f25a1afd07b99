"""The quotas as options (`run`, and each admin command that creates under one),
and `dashboard-server usage`: what each user and dashboard holds against them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

from common import db
from common.cli import resolved_settings, run_async
from common.config import MAX_METRICS_PER_DASHBOARD, Quotas
from server.cli.shared import open_pool

QUOTA_HELP = {
    "max_dashboards_per_user": "Dashboards one user may be an editor of (creating or being made editor of one more is refused).",
    "max_metrics_per_dashboard": f"Metrics per dashboard (at most {MAX_METRICS_PER_DASHBOARD}: what one subscribe message may list).",
    "max_alert_rules_per_dashboard": "Alert rules per dashboard.",
    "max_tokens_per_dashboard": "Active API tokens per dashboard (revoked ones do not count).",
    "max_members_per_dashboard": "Members (viewers and editors) per dashboard.",
    "max_contact_points_per_dashboard": "Alert contact points (webhooks, e-mail addresses) per dashboard.",
}
QUOTAS = tuple(QUOTA_HELP)


def quota_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options of these quotas (flag, else DASHBOARD_MAX_... variable, else the default)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            ceiling = MAX_METRICS_PER_DASHBOARD if name == "max_metrics_per_dashboard" else 1_000_000
            command = click.option(
                "--" + name.replace("_", "-"),
                name,
                envvar="DASHBOARD_" + name.upper(),
                type=click.IntRange(1, ceiling),
                default=getattr(Quotas(), name),
                show_default=True,
                help=QUOTA_HELP[name],
            )(command)
        return command

    return decorate


def quotas_from(options: Mapping[str, Any]) -> Quotas:
    """The quotas these options set; those a command does not take keep their defaults."""
    return Quotas(**{name: options[name] for name in QUOTAS if name in options})


@click.command()
@quota_options(*QUOTAS)
@click.pass_context
@run_async
async def usage(ctx: click.Context, **limits: int) -> None:
    """Show what each user and dashboard holds against the quotas (give the same
    limits as `run`, or the same DASHBOARD_MAX_* variables). A `*` marks a count at
    or over its limit: the next creation is refused."""
    quotas = quotas_from(limits)
    async with open_pool(resolved_settings(ctx)) as pool:
        users = await db.list_user_usage(pool)
        dashboards = await db.list_dashboard_usage(pool)
    click.echo("user\tdashboards")
    for row in users:
        click.echo(f"{row.user.username}\t{_against(row.dashboards, quotas.max_dashboards_per_user)}")
    click.echo("\ndashboard\tmetrics\talert rules\ttokens\tmembers")
    for item in dashboards:
        cells = (
            _against(item.metrics, quotas.max_metrics_per_dashboard),
            _against(item.alert_rules, quotas.max_alert_rules_per_dashboard),
            _against(item.tokens, quotas.max_tokens_per_dashboard),
            _against(item.members, quotas.max_members_per_dashboard),
        )
        click.echo("\t".join((item.slug, *cells)))


def _against(count: int, limit: int) -> str:
    return f"{count}/{limit}{'*' if count >= limit else ''}"

"""`dashboard-worker`: produce metric values into PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any

import click

from common import db
from common.cli import (
    ConfigurationError,
    command_pool,
    config_group,
    connection_options,
    resolved_settings,
    run_async,
    settings_from_options,
    show_environment_variables,
)
from common.config import ResolvedSettings, obscure_password
from common.events import channels_for
from common.failures import ping_redis, reaching_database
from common.migrate import pending_migrations
from common.redisconn import connect_redis
from common.sdnotify import notify, run_watchdog
from common.telemetry import serve_registry
from worker.leases import DEFAULT_CHECK_INTERVAL, Leases
from worker.maintenance import (
    DEFAULT_ROLLUP_RETENTION_DAYS,
    MAINTENANCE_EVERY,
    RetentionPolicy,
    maintain,
    maintain_once,
)
from worker.notify.delivery import Backoff, deliver
from worker.notify.guard import AllowList
from worker.notify.mail import SmtpSettings
from worker.notify.senders import open_sender
from worker.tick import DEFAULT_UNSAVED_TICKS, Producer, run_forever

log = logging.getLogger(__name__)

INTERVAL_HELP = "Seconds between two values of each metric."
UNSAVED_HELP = "Ticks of values kept while the database is unreachable (oldest dropped beyond)."
LEASE_HELP = (
    "Seconds between checks of this worker's share of the dashboards; "
    "a dead worker's dashboards move to the others within it."
)
METRICS_PORT_HELP = (
    "Serve the worker's own metrics for Prometheus at http://HOST:PORT/metrics (off if unset)."
)
METRICS_HOST_HELP = "Address the --metrics-port listens on."
RETENTION_HELP = (
    "Keep raw values this many days: older days' partitions are dropped, the rest deleted in batches "
    "(at start, then every --maintenance-interval). Unset: keep everything. "
    "A dashboard's own retention may be shorter."
)
ROLLUP_RETENTION_HELP = (
    "Keep the per-minute rollups (used by long ranges), the alert events and the sent or failed "
    "notifications this many days (each alert rule keeps its newest event)."
)
MAINTENANCE_HELP = (
    "Seconds between rounds of upkeep: rolling up new values, creating and dropping partitions, retention."
)
NOTIFY_ALLOW_HELP = (
    "Hosts, addresses or CIDR networks that alert notifications may reach although they are loopback, "
    "link-local or private (refused otherwise); repeat the flag or separate with commas or spaces."
)
NOTIFY_RETRY_HELP = (
    "Seconds before the first retry of a notification that failed with 5xx, a timeout or a connection "
    "error; doubled each time (at most 10 minutes), for up to an hour."
)
SMTP_HOST_HELP = "SMTP server for e-mail contact points (unset: e-mail notifications fail, saying so)."
SMTP_PORT_HELP = "Port of the --smtp-host."
SMTP_STARTTLS_HELP = "Upgrade the SMTP connection with STARTTLS (the server's certificate is verified)."
SMTP_FROM_HELP = "From address of e-mail notifications."


# Taken by `run` (every round) and `prune` (one round now).
rollup_retention_option = click.option(
    "--rollup-retention-days",
    envvar="DASHBOARD_ROLLUP_RETENTION_DAYS",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_ROLLUP_RETENTION_DAYS,
    show_default=True,
    help=ROLLUP_RETENTION_HELP,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@connection_options("worker")
@click.pass_context
def main(ctx: click.Context, **options: Any) -> None:
    """Produce a value for every metric of every dashboard, store it, publish it.

    Settings come from flags, DASHBOARD_* environment variables or a --config
    file (`config show` prints them); with no
    database or Redis URL the embedded ones in --data-dir are used (shared
    with `dashboard-server`).
    """
    ctx.obj = settings_from_options(**options)


@main.command()
@click.option(
    "--interval",
    envvar="DASHBOARD_INTERVAL",
    type=click.FloatRange(min=0.01),
    default=5.0,
    show_default=True,
    help=INTERVAL_HELP,
)
@click.option(
    "--unsaved-ticks",
    envvar="DASHBOARD_UNSAVED_TICKS",
    type=click.IntRange(min=1),
    default=DEFAULT_UNSAVED_TICKS,
    show_default=True,
    help=UNSAVED_HELP,
)
@click.option(
    "--lease-interval",
    envvar="DASHBOARD_LEASE_INTERVAL",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_CHECK_INTERVAL,
    show_default=True,
    help=LEASE_HELP,
)
@click.option(
    "--metrics-port",
    envvar="DASHBOARD_WORKER_METRICS_PORT",
    type=click.IntRange(1, 65535),
    help=METRICS_PORT_HELP,
)
@click.option(
    "--metrics-host",
    envvar="DASHBOARD_WORKER_METRICS_HOST",
    default="127.0.0.1",
    show_default=True,
    help=METRICS_HOST_HELP,
)
@click.option(
    "--retention-days",
    envvar="DASHBOARD_RETENTION_DAYS",
    type=click.FloatRange(min=0, min_open=True),
    help=RETENTION_HELP,
)
@rollup_retention_option
@click.option(
    "--maintenance-interval",
    envvar="DASHBOARD_MAINTENANCE_INTERVAL",
    type=click.FloatRange(min=0.1),
    default=MAINTENANCE_EVERY,
    show_default=True,
    help=MAINTENANCE_HELP,
)
@click.option(
    "--notify-allow",
    envvar="DASHBOARD_NOTIFY_ALLOW",
    multiple=True,
    metavar="HOST|CIDR",
    help=NOTIFY_ALLOW_HELP,
)
@click.option(
    "--notify-retry-seconds",
    envvar="DASHBOARD_NOTIFY_RETRY_SECONDS",
    type=click.FloatRange(min=0.01),
    default=Backoff().first,
    show_default=True,
    help=NOTIFY_RETRY_HELP,
)
@click.option("--smtp-host", envvar="DASHBOARD_SMTP_HOST", help=SMTP_HOST_HELP)
@click.option(
    "--smtp-port",
    envvar="DASHBOARD_SMTP_PORT",
    type=click.IntRange(1, 65535),
    default=25,
    show_default=True,
    help=SMTP_PORT_HELP,
)
@click.option(
    "--smtp-starttls/--no-smtp-starttls",
    envvar="DASHBOARD_SMTP_STARTTLS",
    default=False,
    help=SMTP_STARTTLS_HELP,
)
@click.option(
    "--smtp-from",
    envvar="DASHBOARD_SMTP_FROM",
    default="dashboard@localhost",
    show_default=True,
    help=SMTP_FROM_HELP,
)
@click.pass_context
@run_async
async def run(
    ctx: click.Context,
    interval: float,
    unsaved_ticks: int,
    lease_interval: float,
    metrics_port: int | None,
    metrics_host: str,
    retention_days: float | None,
    rollup_retention_days: float,
    maintenance_interval: float,
    notify_allow: tuple[str, ...],
    notify_retry_seconds: float,
    smtp_host: str | None,
    smtp_port: int,
    smtp_starttls: bool,
    smtp_from: str,
) -> None:
    """Tick every --interval seconds until SIGINT or SIGTERM.

    Any number of workers may run against the same database: each produces
    values for its fair share of the dashboards (leased through PostgreSQL).
    """
    settings = resolved_settings(ctx)
    leases = Leases(settings.database_url, lease_interval)
    async with (
        _producer(settings, unsaved_ticks, leases) as producer,
        _leasing(leases),
        open_sender(
            AllowList.parse(notify_allow), _smtp(smtp_host, smtp_port, smtp_starttls, smtp_from)
        ) as sender,
        AsyncExitStack() as stack,
    ):
        if metrics_port is not None:
            try:
                await stack.enter_async_context(
                    serve_registry(producer.telemetry.registry, metrics_host, metrics_port)
                )
            except OSError as exc:
                raise click.ClickException(
                    f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc}"
                ) from None
            log.info("worker metrics at http://%s:%d/metrics", metrics_host, metrics_port)
        log.info(
            "worker started: every %.2fs into %s, publishing to %s (channels %s); leasing %d dashboard(s)",
            interval,
            obscure_password(settings.database_url),
            obscure_password(settings.redis_url),
            channels_for(settings.redis_url, settings.channel_prefix).pattern,
            len(leases.held),
        )
        # A signal ends the loop between ticks: a tick in progress completes
        # its commit and publish first.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        notify("READY=1\nSTATUS=producing values")
        watchdog = asyncio.create_task(run_watchdog(), name="systemd-watchdog")
        policy = RetentionPolicy(retention_days, rollup_retention_days)
        upkeep = asyncio.create_task(
            maintain(producer.pool, policy, stop, maintenance_interval), name="maintenance"
        )
        # Its own task: a slow receiver never delays a tick.
        delivery = asyncio.create_task(
            deliver(producer.pool, sender, stop, Backoff(first=notify_retry_seconds)), name="notifications"
        )
        try:
            await run_forever(producer, interval, stop)
        finally:
            notify("STOPPING=1")
            watchdog.cancel()
            # Set by now (or we are unwinding an error): a batch in progress finishes.
            stop.set()
            await upkeep
            await delivery
        if producer.unsaved_values:
            log.error(
                "stopping with %d value(s) never stored (database unavailable)", producer.unsaved_values
            )
        log.info("worker stopped")


@main.command()
@click.pass_context
@run_async
async def tick(ctx: click.Context) -> None:
    """Produce one value per metric, then exit."""
    async with _producer(resolved_settings(ctx)) as producer:
        click.echo(f"stored and published {await producer.tick()} value(s)")


@main.command()
@click.option(
    "--retention-days",
    envvar="DASHBOARD_RETENTION_DAYS",
    type=click.FloatRange(min=0, min_open=True),
    required=True,
    help="Delete values older than this many days.",
)
@rollup_retention_option
@click.pass_context
@run_async
async def prune(ctx: click.Context, retention_days: float, rollup_retention_days: float) -> None:
    """One round of upkeep now, then exit.

    Rolls up new values, then drops the partitions and deletes the values (in
    small batches) older than --retention-days or their dashboard's own.
    """
    async with command_pool(resolved_settings(ctx), maxsize=1) as pool:
        if await pending_migrations(pool):
            raise ConfigurationError("the database needs migrations: run `dashboard-server migrate`")
        done = await maintain_once(pool, RetentionPolicy(retention_days, rollup_retention_days))
    click.echo(
        f"deleted {done.deleted} value(s) older than {retention_days:g} day(s),"
        f" {done.deleted_of_dashboards} of dashboards with a shorter retention;"
        f" dropped {len(done.dropped)} daily partition(s)"
    )


def _smtp(host: str | None, port: int, starttls: bool, sender: str) -> SmtpSettings | None:
    return SmtpSettings(host, port, starttls, sender) if host else None


@asynccontextmanager
async def _leasing(leases: Leases) -> AsyncIterator[None]:
    """Take a first share of the dashboards, then keep it fair until the block ends."""
    await leases.refresh()
    checking = asyncio.create_task(leases.run(), name="lease-check")
    try:
        yield
    finally:
        checking.cancel()
        with suppress(asyncio.CancelledError):
            await checking
        # Closing the session hands the dashboards over at the others' next check.
        await leases.close()


@asynccontextmanager
async def _producer(
    settings: ResolvedSettings, unsaved_ticks: int = DEFAULT_UNSAVED_TICKS, leases: Leases | None = None
) -> AsyncIterator[Producer]:
    """A Producer with its pool and Redis client, closed on exit."""
    async with AsyncExitStack() as stack:
        # Only opening and the first query: what fails later is a tick's.
        with reaching_database(settings.database_url):
            # Three: a tick, the maintenance and the notification delivery each hold one at times.
            pool = await stack.enter_async_context(db.create_pool(settings.database_url, maxsize=3))
            pending = await pending_migrations(pool)
        if pending:
            raise ConfigurationError("the database needs migrations: run `dashboard-server migrate`")
        client = connect_redis(settings.redis_url)
        stack.push_async_callback(client.aclose)
        await ping_redis(client, settings.redis_url)
        channels = channels_for(settings.redis_url, settings.channel_prefix)
        # Ticks go by binary COPY on a connection of its own (common/db/copyin.py).
        copier = db.Copier(settings.database_url or "")
        stack.callback(copier.close)
        yield Producer(pool, client, channels, max_unsaved_ticks=unsaved_ticks, leases=leases, copier=copier)


main.add_command(config_group("worker", run))
show_environment_variables(main)

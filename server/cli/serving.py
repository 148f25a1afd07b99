"""Running the service: `run`, `up`, `demo`, `migrate` and `check`."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import click

from common.cli import ConfigurationError, resolved_settings, run_async
from common.config import ResolvedSettings
from common.failures import BackendUnavailable, ping_redis, reaching_database
from common.migrate import MigrationError, migrate, pending_migrations
from common.redisconn import connect_redis
from server.cli.demo import create_demo, real_users
from server.cli.quotas import QUOTAS, quota_options, quotas_from
from server.cli.shared import open_pool
from server.proxies import parse_networks
from server.serve import ServeError, serve

HOST_HELP = "Address to listen on."
PORT_HELP = "TCP port to listen on."
ORIGIN_HELP = (
    "Another origin (scheme://host[:port]) whose pages may open dashboard sockets, "
    "e.g. the public URL when a proxy rewrites Host. Repeatable; env: space-separated."
)
SECURE_HELP = "Mark the session cookie Secure (set when users reach the service over HTTPS)."
TRUSTED_PROXY_HELP = (
    "Address or CIDR network of a reverse proxy whose X-Forwarded-For/-Proto/-Host (or Forwarded) "
    "headers are believed: the client's address then counts for the login limits and the access log. "
    "Repeatable; env: space-separated. Unset: forwarded headers are ignored."
)
METRICS_PORT_HELP = (
    "Also serve each server process's own /metrics on --metrics-host:PORT+i (process i of "
    "--workers), so that Prometheus scrapes every process: /metrics on the main port answers "
    "for whichever process the kernel hands the scrape to."
)
METRICS_HOST_HELP = "Address the --metrics-port listens on."
HISTORY_HELP = "Values per metric sent as history when a client connects or subscribes."
WORKERS_HELP = "Server processes sharing the port (SO_REUSEPORT); one per core uses them all."
SESSION_CHECK_HELP = (
    "Seconds between re-checks of open sockets' sessions and memberships (expiry closes within this)."
)
MAX_CONNECTIONS_HELP = "Sockets one user may hold open on this server process (more get close 4429)."
HEADER_TIMEOUT_HELP = "Seconds a client has to send a request's headers (slower ones are disconnected)."
BODY_TIMEOUT_HELP = "Seconds a client has to send a request's body once its headers are in."
KEEPALIVE_HELP = "Seconds an idle HTTP connection is kept open for its next request."
SEND_TIMEOUT_HELP = (
    "Seconds what is sent may wait for a client that does not read or acknowledge it "
    "before the connection is dropped (TCP_USER_TIMEOUT)."
)
MAX_PROCESS_CONNECTIONS_HELP = (
    "Open connections (HTTP and WebSocket) per server process; more are answered 503. "
    "Keep it below the file descriptor limit."
)
CLIENT_BUFFER_HELP = "Bytes that may wait for one slow client before it is disconnected (close 4008)."
ALONGSIDE_REAL_USERS_HELP = (
    "Add the demo logins even though the database holds other users (a real deployment's), "
    "where anyone who knows them could log in. Without it, that is refused."
)


def _networks(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    try:
        parse_networks(values)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return values


@click.command()
@click.option("--host", envvar="DASHBOARD_HOST", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", envvar="DASHBOARD_PORT", type=int, default=8080, show_default=True, help=PORT_HELP)
@click.option(
    "--allowed-origin", "allowed_origins", envvar="DASHBOARD_ALLOWED_ORIGINS", multiple=True, help=ORIGIN_HELP
)
@click.option(
    "--secure-cookies/--no-secure-cookies", envvar="DASHBOARD_SECURE_COOKIES", default=False, help=SECURE_HELP
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    envvar="DASHBOARD_TRUSTED_PROXIES",
    multiple=True,
    callback=_networks,
    help=TRUSTED_PROXY_HELP,
)
@click.option(
    "--metrics-port", envvar="DASHBOARD_METRICS_PORT", type=click.IntRange(1, 65535), help=METRICS_PORT_HELP
)
@click.option(
    "--metrics-host",
    envvar="DASHBOARD_METRICS_HOST",
    default="127.0.0.1",
    show_default=True,
    help=METRICS_HOST_HELP,
)
@click.option(
    "--history-limit",
    envvar="DASHBOARD_HISTORY_LIMIT",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help=HISTORY_HELP,
)
@click.option(
    "--client-buffer",
    "client_buffer_bytes",
    envvar="DASHBOARD_CLIENT_BUFFER",
    type=click.IntRange(16 * 1024, 64 << 20),
    default=1 << 20,
    show_default=True,
    help=CLIENT_BUFFER_HELP,
)
@click.option(
    "--workers",
    envvar="DASHBOARD_WORKERS",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help=WORKERS_HELP,
)
@click.option(
    "--session-check-interval",
    envvar="DASHBOARD_SESSION_CHECK_INTERVAL",
    type=click.FloatRange(0.1, 3600),
    default=30.0,
    show_default=True,
    help=SESSION_CHECK_HELP,
)
@click.option(
    "--max-connections-per-user",
    envvar="DASHBOARD_MAX_CONNECTIONS_PER_USER",
    type=click.IntRange(1, 100_000),
    default=50,
    show_default=True,
    help=MAX_CONNECTIONS_HELP,
)
@click.option(
    "--header-timeout",
    envvar="DASHBOARD_HEADER_TIMEOUT",
    type=click.FloatRange(0.1, 3600),
    default=10.0,
    show_default=True,
    help=HEADER_TIMEOUT_HELP,
)
@click.option(
    "--body-timeout",
    envvar="DASHBOARD_BODY_TIMEOUT",
    type=click.FloatRange(0.1, 3600),
    default=30.0,
    show_default=True,
    help=BODY_TIMEOUT_HELP,
)
@click.option(
    "--keepalive-timeout",
    envvar="DASHBOARD_KEEPALIVE_TIMEOUT",
    type=click.FloatRange(0.1, 3600),
    default=75.0,
    show_default=True,
    help=KEEPALIVE_HELP,
)
@click.option(
    "--send-timeout",
    envvar="DASHBOARD_SEND_TIMEOUT",
    type=click.FloatRange(1, 3600),
    default=60.0,
    show_default=True,
    help=SEND_TIMEOUT_HELP,
)
@click.option(
    "--max-connections-per-process",
    envvar="DASHBOARD_MAX_CONNECTIONS_PER_PROCESS",
    type=click.IntRange(1, 1_000_000),
    default=20_000,
    show_default=True,
    help=MAX_PROCESS_CONNECTIONS_HELP,
)
@quota_options(*QUOTAS)
@click.pass_context
def run(
    ctx: click.Context,
    host: str,
    port: int,
    allowed_origins: tuple[str, ...],
    secure_cookies: bool,
    trusted_proxies: tuple[str, ...],
    metrics_port: int | None,
    metrics_host: str,
    history_limit: int,
    client_buffer_bytes: int,
    workers: int,
    session_check_interval: float,
    max_connections_per_user: int,
    header_timeout: float,
    body_timeout: float,
    keepalive_timeout: float,
    send_timeout: float,
    max_connections_per_process: int,
    **limits: int,
) -> None:
    """Serve the pages and the dashboard WebSockets until interrupted."""
    settings = replace(
        resolved_settings(ctx),
        allowed_origins=tuple(origin.rstrip("/") for origin in allowed_origins),
        secure_cookies=secure_cookies,
        trusted_proxies=trusted_proxies,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        history_limit=history_limit,
        client_buffer_bytes=client_buffer_bytes,
        session_check_interval=session_check_interval,
        max_connections_per_user=max_connections_per_user,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        keepalive_timeout=keepalive_timeout,
        send_timeout=send_timeout,
        max_connections_per_process=max_connections_per_process,
        quotas=quotas_from(limits),
    )
    _serve(settings, host, port, workers)


def _serve(settings: ResolvedSettings, host: str, port: int, workers: int = 1) -> None:
    """Serve until SIGINT/SIGTERM; a start-up problem is a clean CLI error."""
    try:
        serve(settings, host, port, workers)
    except ServeError as exc:
        if exc.configuration:
            raise ConfigurationError(str(exc)) from None
        raise click.ClickException(str(exc)) from None


@click.command(name="migrate")
@click.pass_context
@run_async
async def migrate_command(ctx: click.Context) -> None:
    """Bring the database schema up to date (safe to run again, or concurrently)."""
    async with open_pool(resolved_settings(ctx)) as pool:
        applied = await migrate(pool)
    click.echo(f"applied {len(applied)} migration(s)" if applied else "database is up to date")


@click.command()
@click.pass_context
@run_async
async def check(ctx: click.Context) -> None:
    """Exit 0 if the database and Redis answer and the schema is current.

    Exit status 78 (EX_CONFIG) when migrations are pending, the database is
    newer than the code or a setting is wrong, 1 when the database or Redis
    does not answer. `run` exits with the same status on the same problems.
    """
    settings = resolved_settings(ctx)
    try:
        with reaching_database(settings.database_url):
            async with open_pool(settings) as pool:
                pending = await pending_migrations(pool)
        client = connect_redis(settings.redis_url)
        try:
            await ping_redis(client, settings.redis_url)
        finally:
            await client.aclose()
    except MigrationError as exc:
        # A database newer than the code: what `run` exits 78 on too.
        raise ConfigurationError(f"not ready: {exc}") from None
    except BackendUnavailable as exc:
        raise click.ClickException(f"not ready: {exc}") from None
    if pending:
        raise ConfigurationError(
            f"not ready: {len(pending)} migration(s) pending: run `dashboard-server migrate`"
        )
    click.echo("ok")


@click.command()
@click.option("--alongside-real-users", is_flag=True, help=ALONGSIDE_REAL_USERS_HELP)
@click.pass_context
@run_async
async def demo(ctx: click.Context, alongside_real_users: bool) -> None:
    """Create the demo dashboards, an editor (demo/demo), a viewer (viewer/viewer) and a
    non-member (outsider/outsider).

    "Service health (demo)" gets random values; "This machine" the worker host's
    CPU, memory, load, network and disk readings. Refused where the database holds
    other users (a real deployment), unless --alongside-real-users.
    """
    async with open_pool(resolved_settings(ctx)) as pool:
        # Before migrating: a refused command leaves a real database as it found it.
        others = await real_users(pool)
        if others and not alongside_real_users:
            raise click.ClickException(
                f"not adding demo/demo, viewer/viewer and outsider/outsider: the database holds {others}"
                " other user(s), a real deployment's, where anyone could log in with them"
                " (--alongside-real-users adds them anyway)"
            )
        await migrate(pool)
        logins = await create_demo(pool)
    click.echo(f"demo dashboard {logins.dashboard.slug} (id {logins.dashboard.id})")
    click.echo(f"host readings dashboard {logins.machine.slug} (id {logins.machine.id})")
    click.echo(f"editor login: {logins.member[0]} / {logins.member[1]}")
    click.echo(f"viewer login: {logins.viewer[0]} / {logins.viewer[1]}")
    click.echo(f"non-member login: {logins.non_member[0]} / {logins.non_member[1]}")


@click.command()
@click.option("--host", envvar="DASHBOARD_HOST", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", envvar="DASHBOARD_PORT", type=int, default=8080, show_default=True, help=PORT_HELP)
@click.option("--interval", type=float, default=1.0, show_default=True, help="Worker seconds between values.")
@click.option("--alongside-real-users", is_flag=True, help=ALONGSIDE_REAL_USERS_HELP)
@click.pass_context
def up(ctx: click.Context, host: str, port: int, interval: float, alongside_real_users: bool) -> None:
    """Everything on this machine: migrate, demo data, a worker and the server.

    Refused, like `demo`, where the database holds other users than the demo's.
    """
    settings = resolved_settings(ctx)
    ctx.invoke(demo, alongside_real_users=alongside_real_users)
    env = dict(
        os.environ,
        DASHBOARD_DATABASE_URL=settings.database_url,
        DASHBOARD_REDIS_URL=settings.redis_url,
    )
    worker = subprocess.Popen([sys.executable, "-m", "worker", "run", "--interval", str(interval)], env=env)
    click.echo(f"\n  Open http://{host}:{port}/ and log in as demo / demo  (Ctrl-C stops everything)\n")
    try:
        _serve(settings, host, port)
    finally:
        worker.terminate()
        worker.wait(timeout=15)

"""What both CLIs share: the connection options, the config file, `config show`,
running an async command and its database pool."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiopg
import click

from common import db
from common.config import DEFAULT_DATA_DIR, ResolvedSettings, Settings, check_database_url, obscure_password
from common.configfile import default_map
from common.embedded import EmbeddedUnavailable, start_embedded
from common.failures import BackendUnavailable, reaching_database
from common.logs import LOG_FORMATS, configure_logging
from common.migrate import MigrationError
from common.redisconn import parse_redis_url
from common.version import __version__

T = TypeVar("T")

# sysexits.h EX_CONFIG: the units' RestartPreventExitStatus, so that a setting
# or schema that cannot work stops the service instead of a restart loop.
EX_CONFIG = 78


class ConfigurationError(click.ClickException):
    """A setting or the schema is wrong: retrying will not help (exit status 78)."""

    exit_code = EX_CONFIG


DATABASE_URL_HELP = (
    "PostgreSQL URL, e.g. postgresql://user:pass@host:5432/db. "
    "Unset: an embedded PostgreSQL kept in --data-dir."
)
REDIS_URL_HELP = (
    "Redis URL, e.g. redis://host:6379/0, redis+sentinel://s1:26379,s2:26379/mymaster or "
    "redis+cluster://node1:6379,node2:6379 (docs/scaling.md). Unset: an embedded Redis kept in --data-dir."
)
DATA_DIR_HELP = "Where the embedded PostgreSQL and Redis keep their data."
LOG_LEVEL_HELP = "Logging level: debug, info, warning or error."
CHANNEL_PREFIX_HELP = (
    "Prefix of this deployment's Redis pub/sub channels. Default: none on Redis database 0, "
    "dbN: on database N, so deployments on different databases of one Redis never hear each "
    "other. Set it when they share a database (or a cluster); every process of a deployment "
    "must use the same."
)
LOG_FORMAT_HELP = "plain: lines for people; json: one JSON object per line, for log shippers."
CONFIG_HELP = (
    "TOML file of settings (flag names as keys; [server.run], [worker.run] for a command's own). "
    "A flag or DASHBOARD_* variable wins over it. DASHBOARD_DATABASE_URL_FILE / DASHBOARD_REDIS_URL_FILE "
    "(or systemd credentials database_url / redis_url) name files holding the URLs."
)


def connection_options(program: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options every command group takes (flag, else DASHBOARD_* variable,
    else the config file); `program` is the group's section in that file."""

    def load_config(ctx: click.Context, _param: click.Parameter, path: Path | None) -> Path | None:
        # Eager: runs before every other option, which then finds its file value.
        try:
            ctx.default_map = {**(ctx.default_map or {}), **default_map(ctx.command, program, path)}
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        return path

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(_group_options(load_config)):
            command = option(command)
        return command

    return decorate


def _group_options(load_config: Callable[..., Any]) -> list[Callable[..., Any]]:
    return [
        click.version_option(__version__, "-V", "--version", package_name="live-dashboard"),
        click.option(
            "--config",
            envvar="DASHBOARD_CONFIG",
            type=click.Path(dir_okay=False, path_type=Path),
            is_eager=True,
            expose_value=False,
            callback=load_config,
            help=CONFIG_HELP,
        ),
        click.option("--database-url", envvar="DASHBOARD_DATABASE_URL", help=DATABASE_URL_HELP),
        click.option("--redis-url", envvar="DASHBOARD_REDIS_URL", help=REDIS_URL_HELP),
        click.option("--channel-prefix", envvar="DASHBOARD_CHANNEL_PREFIX", help=CHANNEL_PREFIX_HELP),
        click.option(
            "--data-dir",
            envvar="DASHBOARD_DATA_DIR",
            type=click.Path(file_okay=False, path_type=Path),
            default=DEFAULT_DATA_DIR,
            show_default=True,
            help=DATA_DIR_HELP,
        ),
        click.option(
            "--log-level",
            envvar="DASHBOARD_LOG_LEVEL",
            type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
            default="info",
            show_default=True,
            help=LOG_LEVEL_HELP,
        ),
        click.option(
            "--log-format",
            envvar="DASHBOARD_LOG_FORMAT",
            type=click.Choice(LOG_FORMATS, case_sensitive=False),
            default="plain",
            show_default=True,
            help=LOG_FORMAT_HELP,
        ),
    ]


def show_environment_variables(command: click.Command) -> None:
    """Have every option's --help name its DASHBOARD_* variable (in every subcommand)."""
    for param in command.params:
        if isinstance(param, click.Option) and param.envvar:
            param.show_envvar = True
    for sub in getattr(command, "commands", {}).values():
        show_environment_variables(sub)


def config_group(program: str, run: click.Command) -> click.Group:
    """`config show`: the effective settings of the group and of its `run`
    (`program`: the group's section of the config file)."""

    @click.group(name="config")
    def config() -> None:
        """Inspect the configuration."""

    @config.command(name="show")
    @click.pass_context
    def show(ctx: click.Context) -> None:
        """Print the effective settings as TOML, each with where it came from (flag,
        environment, config or secret file, default); passwords masked.

        The output is a valid --config file.
        """
        root = ctx.find_root()
        click.echo(f"# dashboard-{program} {__version__}: flag > DASHBOARD_* variable > file > default")
        _show_params(root)
        run_ctx = run.make_context("run", [], parent=root, resilient_parsing=True)
        click.echo(f"\n[{program}.run]")
        _show_params(run_ctx)

    return config


def _show_params(ctx: click.Context) -> None:
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or not param.expose_value or param.name is None:
            continue
        value = ctx.params.get(param.name)
        source = ctx.get_parameter_source(param.name)
        origins: dict[click.core.ParameterSource | None, str] = {
            click.core.ParameterSource.COMMANDLINE: "flag",
            click.core.ParameterSource.ENVIRONMENT: f"environment {param.envvar}",
            click.core.ParameterSource.DEFAULT_MAP: "config or secret file",
        }
        origin = origins.get(source, "default")
        key = param.opts[0].lstrip("-")
        if value is None or value == ():
            click.echo(f"# {key} = (unset)  # {origin}")
        else:
            click.echo(f"{key} = {_toml(param.name, value)}  # {origin}")


def _toml(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(name, item) for item in value) + "]"
    text = str(value)
    if name.endswith("_url"):
        text = obscure_password(text)
    return json.dumps(text)


def settings_from_options(
    *,
    database_url: str | None,
    redis_url: str | None,
    channel_prefix: str | None,
    data_dir: Path,
    log_level: str,
    log_format: str,
) -> Settings:
    """Configure logging and build the base settings of a command group."""
    configure_logging(log_level, log_format.lower())
    try:
        if database_url:
            check_database_url(database_url)
        if redis_url:
            parse_redis_url(redis_url)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return Settings(
        database_url=database_url or None,
        redis_url=redis_url or None,
        data_dir=data_dir,
        log_format=log_format.lower(),
        channel_prefix=channel_prefix,
    )


def resolved_settings(ctx: click.Context) -> ResolvedSettings:
    """The group's settings with concrete URLs, starting embedded servers if needed."""
    root = ctx.find_root()
    if "resolved_settings" not in root.meta:
        try:
            root.meta["resolved_settings"] = start_embedded(root.obj)
        except EmbeddedUnavailable as exc:
            raise ConfigurationError(str(exc)) from None
        except Exception as exc:
            raise click.ClickException(f"could not start the embedded database or Redis: {exc}") from exc
    resolved: ResolvedSettings = root.meta["resolved_settings"]
    return resolved


def run_async(coroutine_function: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Let a click command be written as an async function.

    A database this code cannot use (newer than the code, or its migrations
    out of order) ends the command with status 78, as it ends
    `dashboard-server run`: the units' RestartPreventExitStatus. PostgreSQL
    or Redis out of reach ends it with one line saying which and why, and
    status 1: a restart may help once it is back.
    """

    @functools.wraps(coroutine_function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return asyncio.run(coroutine_function(*args, **kwargs))
        except MigrationError as exc:
            raise ConfigurationError(str(exc)) from None
        except BackendUnavailable as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


@asynccontextmanager
async def command_pool(settings: ResolvedSettings, *, maxsize: int) -> AsyncIterator[aiopg.Pool]:
    """The pool of one command, closed on exit. PostgreSQL out of reach as it
    opens (it connects at once) is BackendUnavailable: with `run_async`, one
    line naming the database and exit 1, not a traceback."""
    async with AsyncExitStack() as stack:
        # Only the opening: what the command's own statements raise is theirs.
        with reaching_database(settings.database_url):
            pool = await stack.enter_async_context(db.create_pool(settings.database_url, maxsize=maxsize))
        yield pool

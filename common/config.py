"""Settings shared by the server and the worker.

Values come from flags, then `DASHBOARD_*` environment variables, then the
defaults below (click does the flag/env precedence; see server/cli.py and
worker/cli.py). Settings are built once inside a CLI command, never at import.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "live-dashboard"

# The most metrics any dashboard may have, whatever its quota says: what one
# `subscribe` (or reorder, or preferences) message may list (common/schemas.py).
# A dashboard with more could not be watched whole from one socket.
MAX_METRICS_PER_DASHBOARD = 500


@dataclass(frozen=True)
class Quotas:
    """How much one user or one dashboard may hold (issue 14: every metric costs
    the worker a row per tick, and every open page a history read).

    Checked by common/db where the row is inserted, with the parent row locked,
    so concurrent creations at a limit cannot both succeed.
    """

    # Dashboards one user is an editor of (made by them, or made their editor).
    max_dashboards_per_user: int = 20
    max_metrics_per_dashboard: int = 100
    max_alert_rules_per_dashboard: int = 200
    # Active tokens (revoked ones no longer count).
    max_tokens_per_dashboard: int = 20
    max_members_per_dashboard: int = 200
    # Each one is a destination the worker sends to on every transition.
    max_contact_points_per_dashboard: int = 20

    def __post_init__(self) -> None:
        if not 1 <= self.max_metrics_per_dashboard <= MAX_METRICS_PER_DASHBOARD:
            raise ValueError(f"max_metrics_per_dashboard must be 1 to {MAX_METRICS_PER_DASHBOARD}")


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to know about its surroundings.

    `database_url` and `redis_url` of None mean: use the embedded PostgreSQL
    and Redis kept in `data_dir` (see common/embedded.py).
    """

    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = DEFAULT_DATA_DIR
    host: str = "127.0.0.1"
    port: int = 8080
    interval: float = 5.0
    history_limit: int = 100
    # Bytes that may wait for one client before it is closed as too slow.
    client_buffer_bytes: int = 1 << 20
    session_max_age: int = 7 * 24 * 3600
    # How often open sockets re-check their session and membership (expiry
    # closes them within this; logout and removals are announced at once).
    session_check_interval: float = 30.0
    # Server WebSocket ping interval; a peer silent for 1.5x this is dropped.
    heartbeat_seconds: float = 25.0
    # Seconds a client has to send a request's headers (from connecting, or
    # from its first byte on an idle connection) and then its body; seconds an
    # idle connection is kept (server/httplimits.py).
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 75.0
    # Seconds data may wait for a client that does not read (a zero window) or
    # does not acknowledge, before the kernel drops the connection: a response
    # or socket no one reads does not hold its handler, memory and place forever.
    send_timeout: float = 60.0
    # Open connections (HTTP and WebSocket) on one server process; more are
    # answered 503. Keep it below the file descriptor limit (LimitNOFILE).
    max_connections_per_process: int = 20_000
    # Sockets one user may hold open on one server process.
    max_connections_per_user: int = 50
    # Client messages per second on one socket (sustained), and the burst above it.
    message_rate: float = 20.0
    message_burst: int = 60
    # Login attempts per (username, address) before each further one waits
    # (1 s, doubling, at most the window); failed logins per client address
    # (an IPv6 /64) in the window (server/ratelimit.py).
    login_attempts_before_backoff: int = 5
    login_failures_per_address: int = 50
    login_window_seconds: int = 15 * 60
    # Password checks at once per server process (threads; 64 MiB each), and
    # how many more may wait before a login is answered "busy" (503).
    login_check_threads: int = 2
    login_check_waiting: int = 8
    secure_cookies: bool = False
    # plain or json (common/logs.py); kept here so server processes spawned
    # by --workers log the same way as their parent.
    log_format: str = "plain"
    allowed_origins: tuple[str, ...] = ()
    # Networks of the reverse proxies whose X-Forwarded-*/Forwarded headers are
    # believed (server/proxies.py); empty: none, the peer is the client.
    trusted_proxies: tuple[str, ...] = ()
    # Each server process's own /metrics also on metrics_host:metrics_port + i
    # (process i of --workers); None: only on the main port.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # Prefix of this deployment's Redis channel names; None: derived from the
    # Redis database number (common/events.py channels_for).
    channel_prefix: str | None = None
    # Limits on what users create (the CLI applies them too).
    quotas: Quotas = Quotas()

    @property
    def embedded(self) -> bool:
        return self.database_url is None or self.redis_url is None

    def with_urls(self, database_url: str, redis_url: str) -> ResolvedSettings:
        """A copy pointing at concrete servers (after the embedded ones started)."""
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        return ResolvedSettings(**{**values, "database_url": database_url, "redis_url": redis_url})


@dataclass(frozen=True)
class ResolvedSettings(Settings):
    """Settings after start-up (common/embedded.py): both URLs name a running server.

    What the app, the worker and the CLIs' commands hold, so none of them
    handles a missing URL.
    """

    database_url: str = ""
    redis_url: str = ""

    def __post_init__(self) -> None:
        if not self.database_url or not self.redis_url:
            raise ValueError("resolved settings need a database URL and a Redis URL")


def check_database_url(url: str) -> None:
    """Raise ValueError, naming the problem, if `url` is no PostgreSQL URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"database URL {obscure_password(url)!r}: {exc}") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(
            f"database URL {obscure_password(url)!r} must start with postgresql:// "
            "(e.g. postgresql://user:pass@host:5432/db)"
        )


# Query parameters of libpq and redis-py URLs that carry a secret.
SECRET_PARAMETERS = frozenset({"password", "sslpassword", "sentinel_password"})


def obscure_password(url: str) -> str:
    """The URL with every password (user:pass@ and ?password=...) replaced by ***, for logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = "&".join(
        f"{name}=***" if name.lower() in SECRET_PARAMETERS else pair
        for pair in parts.query.split("&")
        for name in [pair.split("=", 1)[0]]
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))

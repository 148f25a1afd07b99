"""The PostgreSQL and Redis servers the tests use, started on first use.

They are those named by DASHBOARD_TEST_DATABASE_URL and
DASHBOARD_TEST_REDIS_URL (CI points them at the machine's own); when unset,
embedded ones are started the first time a test needs them (not when a test
module is imported), so the suite runs on a machine with nothing but Python.

Under pytest-xdist (scripts/test runs the suite in several processes) each
worker process gets a database and a Redis database of its own: its
`clean_state` empties only what its own tests use, and the servers its tests
start publish on channels no other worker hears (the channels follow the
Redis database number, common/events.py).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from common.config import Settings
from common.embedded import start_embedded, stop_embedded_redis
from common.events import Channels, channels_for
from common.redisconn import redis_database

# Emptied before every test (conftest.py, `clean_state`).
TABLES = "metric_values, metrics, dashboard_members, dashboards, users, rollup_progress, dashboard_seqs"


@dataclass(frozen=True)
class ServerURLs:
    database_url: str
    redis_url: str
    # The channels of the servers the tests start (the test Redis URL's database number).
    channels: Channels


@functools.cache
def servers() -> ServerURLs:
    database_url = os.environ.get("DASHBOARD_TEST_DATABASE_URL")
    redis_url = os.environ.get("DASHBOARD_TEST_REDIS_URL")
    # Given servers are shared by the workers of a parallel run; embedded ones are each worker's own.
    shared_redis = bool(redis_url)
    if not (database_url and redis_url):
        data_dir = Path(tempfile.mkdtemp(prefix="dashboard-tests-"))
        # Registered first so it runs last, after the embedded servers stopped.
        atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
        embedded = start_embedded(Settings(data_dir=data_dir))
        # Registered after start_embedded, so it runs before the data is removed.
        atexit.register(stop_embedded_redis)
        database_url = database_url or with_database_name(embedded.database_url or "", "dashboard_test")
        redis_url = redis_url or embedded.redis_url or ""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", … when run by pytest-xdist
    if worker:
        index = int(worker.removeprefix("gw"))
        database_url = with_database_name(database_url, f"{urlsplit(database_url).path.lstrip('/')}_{worker}")
        if shared_redis:
            redis_url = _redis_database_minus(redis_url, index)
    return ServerURLs(database_url, redis_url, channels_for(redis_url))


def _redis_database_minus(url: str, index: int) -> str:
    """Worker `index`'s Redis database: the given number minus the index (/15, /14, …)."""
    number = redis_database(url) - index
    if number < 0:
        raise RuntimeError(
            f"pytest-xdist worker {index} has no Redis database: set DASHBOARD_TEST_REDIS_URL's higher"
        )
    return urlunsplit(urlsplit(url)._replace(path=f"/{number}"))


def with_database_name(url: str, name: str) -> str:
    """The same server's URL for another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))

"""The PostgreSQL and Redis servers the tests use, started on first use.

They are those named by DASHBOARD_TEST_DATABASE_URL and
DASHBOARD_TEST_REDIS_URL (CI points them at the machine's own); when unset,
embedded ones are started the first time a test needs them (not when a test
module is imported), so the suite runs on a machine with nothing but Python.
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
    if not (database_url and redis_url):
        data_dir = Path(tempfile.mkdtemp(prefix="dashboard-tests-"))
        # Registered first so it runs last, after the embedded servers stopped.
        atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
        embedded = start_embedded(Settings(data_dir=data_dir))
        # Registered after start_embedded, so it runs before the data is removed.
        atexit.register(stop_embedded_redis)
        database_url = database_url or with_database_name(embedded.database_url or "", "dashboard_test")
        redis_url = redis_url or embedded.redis_url or ""
    return ServerURLs(database_url, redis_url, channels_for(redis_url))


def with_database_name(url: str, name: str) -> str:
    """The same server's URL for another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))

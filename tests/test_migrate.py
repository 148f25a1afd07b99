"""Schema migrations against the real PostgreSQL, each test on its own empty database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import aiopg
import psycopg2
import pytest
from click.testing import CliRunner
from psycopg2 import sql

from common import db
from common.migrate import (
    MIGRATION_LOCK_ID,
    applied_versions,
    available_migrations,
    migrate,
    pending_migrations,
)
from server.cli import main as server_main
from tests.servers import servers

SCHEMA_TABLES = {"users", "dashboards", "dashboard_members", "metrics", "metric_values", "schema_migrations"}


def _run_on_server(statement: sql.Composable) -> None:
    """Run a statement outside any transaction, connected to the `postgres` database."""
    admin = psycopg2.connect(urlunsplit(urlsplit(servers().database_url)._replace(path="/postgres")))
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(statement)
    finally:
        admin.close()


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A database created empty for this test and dropped after it."""
    parts = urlsplit(servers().database_url)
    # Named after the session test database, so two checkouts pointing
    # DASHBOARD_TEST_DATABASE_URL at different databases never share it.
    name = sql.Identifier(f"{parts.path.lstrip('/')}_migrate")
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name)
    _run_on_server(drop)
    _run_on_server(sql.SQL("CREATE DATABASE {}").format(name))
    yield urlunsplit(parts._replace(path=f"/{name.string}"))
    _run_on_server(drop)


def _versions(migrations: list) -> list[int]:
    return [migration.version for migration in migrations]


ALL_VERSIONS = _versions(available_migrations())


async def _fetch(pool: aiopg.Pool, query: str) -> list[tuple]:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(query)
        return await cur.fetchall()


async def _tables(pool: aiopg.Pool) -> set[str]:
    rows = await _fetch(pool, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return {name for (name,) in rows}


async def _schema_snapshot(pool: aiopg.Pool) -> dict[str, list[tuple]]:
    """Columns, constraints, indexes and the migration log: what a migration could change."""
    return {
        "columns": await _fetch(
            pool,
            "SELECT table_name, column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = current_schema()"
            " ORDER BY table_name, column_name",
        ),
        "constraints": await _fetch(
            pool,
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE connamespace = current_schema()::regnamespace ORDER BY 1, 2",
        ),
        "indexes": await _fetch(
            pool,
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1",
        ),
        "log": await _fetch(pool, "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"),
    }


async def test_migrate_builds_the_schema_on_an_empty_database(empty_database_url):
    async with db.create_pool(empty_database_url) as pool:
        assert await _tables(pool) == set()
        assert _versions(await pending_migrations(pool)) == ALL_VERSIONS

        assert _versions(await migrate(pool)) == ALL_VERSIONS

        assert await _tables(pool) >= SCHEMA_TABLES
        assert await pending_migrations(pool) == []
        assert await applied_versions(pool) == ALL_VERSIONS


async def test_second_migrate_applies_nothing_and_changes_nothing(empty_database_url):
    async with db.create_pool(empty_database_url) as pool:
        await migrate(pool)
        before = await _schema_snapshot(pool)

        assert await migrate(pool) == []

        assert await _schema_snapshot(pool) == before


async def test_concurrent_migrations_apply_each_version_once(empty_database_url):
    async def run_in_own_pool() -> list[int]:
        async with db.create_pool(empty_database_url) as pool:
            return _versions(await migrate(pool))

    # Without the advisory lock, the second CREATE TABLE of the same
    # migration fails and gather raises.
    first, second = await asyncio.gather(run_in_own_pool(), run_in_own_pool())

    assert sorted(first + second) == ALL_VERSIONS
    async with db.create_pool(empty_database_url) as pool:
        log = await _fetch(
            pool, "SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY 1"
        )
    assert log == [(version, 1) for version in ALL_VERSIONS]


def _plan_nodes(node: dict) -> Iterator[dict]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


async def test_latest_values_reads_metric_values_through_its_index(empty_database_url):
    """The real query of db.latest_values, explained by auto_explain as it runs.

    Needs a superuser (LOAD), as the test database set-up already does.
    """
    async with db.create_pool(empty_database_url) as pool:
        await migrate(pool)
    async with db.create_pool(empty_database_url, minsize=1, maxsize=1) as pool:
        board = await db.create_dashboard(pool, "Load", "load")
        metrics = [await db.create_metric(pool, board.id, f"m{i}", "gauge") for i in range(4)]
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(
                "INSERT INTO metric_values (metric_id, value, ts)"
                " SELECT m.id, random(), now() - make_interval(secs => g)"
                " FROM metrics m CROSS JOIN generate_series(1, 5000) AS g"
            )
            await cur.execute("ANALYZE metric_values")
            # The pool has a single connection, so latest_values runs on this
            # session and its plan comes back to the client as a LOG notice.
            await cur.execute("LOAD 'auto_explain'")
            await cur.execute("SET auto_explain.log_min_duration = 0")
            await cur.execute("SET auto_explain.log_format = 'json'")
            await cur.execute("SET client_min_messages = 'log'")
            conn.notices.clear()

        latest = await db.latest_values(pool, [metric.id for metric in metrics], 10)

        async with pool.acquire() as conn:
            notices = list(conn.notices)
        # metric_values is partitioned: its partitions are scanned, through their
        # copies of metric_values_stored_idx (the values stored last, by id).
        partitions = {row[0] for row in await _fetch(pool, _PARTS.format("metric_values"))}
        latest_indexes = {row[0] for row in await _fetch(pool, _PARTS.format("metric_values_stored_idx"))}
    assert all(len(values) == 10 for values in latest.values())
    plans = [json.loads(notice[notice.index("{") :]) for notice in notices if "plan:" in notice]
    [plan] = [plan for plan in plans if "metric_values" in plan["Query Text"]]
    nodes = list(_plan_nodes(plan["Plan"]))
    scans = [node for node in nodes if node.get("Relation Name") in partitions]
    assert scans, nodes
    for scan in scans:
        assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), scan
        assert scan["Index Name"] in latest_indexes, scan
    assert not [node for node in nodes if "Sort" in node["Node Type"]]


_PARTS = "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{}'::regclass"


def test_migrate_command_applies_then_reports_up_to_date(empty_database_url):
    runner = CliRunner()
    options = ["--database-url", empty_database_url, "--redis-url", servers().redis_url]

    pending = runner.invoke(server_main, [*options, "check"])
    assert pending.exit_code == 78  # EX_CONFIG: the units do not restart on it
    assert f"not ready: {len(ALL_VERSIONS)} migration(s) pending" in pending.stderr

    first = runner.invoke(server_main, [*options, "migrate"])
    assert first.exit_code == 0, first.output
    assert first.stdout == f"applied {len(ALL_VERSIONS)} migration(s)\n"

    second = runner.invoke(server_main, [*options, "migrate"])
    assert second.exit_code == 0, second.output
    assert second.stdout == "database is up to date\n"

    ready = runner.invoke(server_main, [*options, "check"])
    assert (ready.exit_code, ready.stdout) == (0, "ok\n")


async def test_migrate_works_on_a_pool_of_one_connection(empty_database_url):
    # A short acquire timeout: needing a second connection fails fast.
    async with aiopg.create_pool(empty_database_url, minsize=1, maxsize=1, timeout=3) as pool:
        assert _versions(await migrate(pool)) == ALL_VERSIONS


async def test_migrate_waits_for_a_runner_that_holds_the_lock_longer_than_the_pool_timeout(
    empty_database_url,
):
    async with (
        aiopg.connect(empty_database_url) as other_runner,
        other_runner.cursor() as cur,
        # A pool whose per-statement timeout is shorter than the wait below.
        aiopg.create_pool(empty_database_url, timeout=1) as pool,
    ):
        await cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        waiting = asyncio.create_task(migrate(pool))
        # A window, not a wait: the lock is held past the pool's timeout.
        await asyncio.sleep(pool.timeout + 0.5)
        await cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
        assert _versions(await waiting) == ALL_VERSIONS


PARTITIONING = next(m.version for m in available_migrations() if m.name == "partitions_and_rollups")


async def test_partitioning_keeps_every_row_and_id_of_a_populated_table(empty_database_url):
    """The values of an existing database move into the partitioned table, ids and all."""
    async with db.create_pool(empty_database_url) as pool:
        await migrate(pool, up_to=PARTITIONING - 1)
        now = datetime.now(UTC)
        async with pool.acquire() as conn, conn.cursor() as cur:
            # Plain SQL: today's code expects the schema after this migration.
            await cur.execute("INSERT INTO dashboards (name, slug) VALUES ('Ops', 'ops') RETURNING id")
            (board_id,) = await cur.fetchone()
            await cur.execute(
                "INSERT INTO metrics (dashboard_id, name, type) VALUES (%s, 'cpu', 'gauge') RETURNING id",
                (board_id,),
            )
            (metric_id,) = await cur.fetchone()
            await cur.execute(
                "INSERT INTO metric_values (metric_id, value, ts)"
                " SELECT %s, i, %s::timestamptz + make_interval(hours => 6 * i)"
                " FROM generate_series(0, 139) AS i RETURNING id, metric_id, value, ts",
                (metric_id, now - timedelta(days=40)),
            )
            stored = [db.MetricValue(*row) for row in await cur.fetchall()]
        async with pool.acquire() as conn, conn.cursor() as cur:
            # A gap in the ids: they are kept, not renumbered.
            await cur.execute("DELETE FROM metric_values WHERE id % 10 = 3")
            await cur.execute("SELECT id, metric_id, value, ts FROM metric_values ORDER BY id")
            before = await cur.fetchall()

        assert _versions(await migrate(pool)) == list(range(PARTITIONING, len(ALL_VERSIONS) + 1))

        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT id, metric_id, value, ts FROM metric_values ORDER BY id")
            assert await cur.fetchall() == before
            await cur.execute("SELECT relkind FROM pg_class WHERE relname = 'metric_values'")
            assert await cur.fetchone() == ("p",)
            await cur.execute("SELECT count(*) FROM metric_values_default")
            assert await cur.fetchone() == (0,)  # every day with values got its partition
        days = {p.day for p in await db.list_value_partitions(pool)}
        assert {v.ts.astimezone(UTC).date() for v in stored} <= days
        # New ids continue after the old ones; resume still finds a stored id.
        [new] = await db.insert_values(pool, [(metric_id, 99.0, now)])
        assert new.id == stored[-1].id + 1
        after = await db.values_after(pool, {metric_id: before[-2][0]}, 10)
        assert [v.id for v in after[metric_id]] == [before[-1][0], new.id]

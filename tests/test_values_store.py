"""Storing values stores exactly what it is given: common.db.insert_values (its
columns travel as array literals) and the worker's binary COPY (common/db/copyin.py)
alike, with the same numbering, order and fencing."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import psycopg2.errors
import pytest

from common import db
from tests.tcpproxy import TO_CLIENT, TO_SERVER, TcpProxy


@pytest.fixture(params=["insert", "copy"])
async def store(request, pool, settings) -> AsyncIterator:
    """`store(rows, fence=None)` by INSERT or by COPY."""
    if request.param == "insert":
        yield lambda rows, fence=None: db.insert_values(pool, rows, fence=fence)
        return
    copier = db.Copier(settings.database_url or "")
    try:
        yield copier.store
    finally:
        copier.close()


async def test_values_and_timestamps_come_back_exactly_as_given(store, pool, make_dashboard, make_metric):
    ops = await make_dashboard("ops")
    first, second = await make_metric(ops, "a"), await make_metric(ops, "b")
    now = datetime.now(UTC).replace(microsecond=123456)
    india = timezone(timedelta(hours=5, minutes=30))
    rows = [
        (first.id, 0.1 + 0.2, now),
        (second.id, -0.0, now),
        (first.id, 1.7976931348623157e308, now - timedelta(seconds=1)),
        (second.id, 5e-324, now.replace(microsecond=0)),  # isoformat leaves the zero microseconds out
        (first.id, -123456789.125, now.astimezone(india)),  # another offset: the same instant
        (second.id, 42.0, now + timedelta(microseconds=1)),
    ]
    stored = await store(rows)
    assert [(v.metric_id, v.value, v.ts) for v in stored] == rows
    assert [v.id for v in stored] == sorted(v.id for v in stored)
    read = await db.latest_values(pool, [first.id, second.id], 10)
    assert {(v.id, v.value, v.ts) for values in read.values() for v in values} == {
        (v.id, v.value, v.ts) for v in stored
    }


async def test_a_thousand_values_in_one_call_keep_their_order(store, pool, make_dashboard, make_metric):
    ops = await make_dashboard("ops")
    metrics = [await make_metric(ops, f"m{i}") for i in range(10)]
    now = datetime.now(UTC)
    rows = [(metrics[i % 10].id, i / 7, now + timedelta(microseconds=i)) for i in range(1000)]
    stored = await store(rows)
    assert [(v.metric_id, v.value, v.ts) for v in stored] == rows


async def test_rows_of_a_deleted_metric_are_left_out_and_the_rest_stored(
    store, pool, make_dashboard, make_metric
):
    ops = await make_dashboard("ops")
    kept, gone = await make_metric(ops, "kept"), await make_metric(ops, "gone")
    await db.delete_metric(pool, ops.id, gone.id)
    now = datetime.now(UTC)
    rows = [(gone.id, 1.0, now), (kept.id, 2.0, now), (gone.id, 3.0, now), (kept.id, 4.0, now)]
    stored = await store(rows)
    assert [(v.metric_id, v.value) for v in stored] == [(kept.id, 2.0), (kept.id, 4.0)]


async def test_batches_are_numbered_per_dashboard_and_ids_grow_in_commit_order(
    store, pool, make_dashboard, make_metric
):
    ops, web = await make_dashboard("ops"), await make_dashboard("web")
    a, b = await make_metric(ops, "a"), await make_metric(web, "b")
    now = datetime.now(UTC)
    first = await store([(a.id, 1.0, now), (b.id, 2.0, now)] * 150)
    second = await store([(a.id, 3.0, now)] * 300)
    assert {v.seq for v in first if v.metric_id == a.id} == {1}
    assert {v.seq for v in first if v.metric_id == b.id} == {1}
    assert {v.seq for v in second} == {2}
    ids = [v.id for v in first + second]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert (await db.dashboard_position(pool, ops.id)).last_value_id == second[-1].id
    assert (await db.dashboard_position(pool, web.id)).last_value_id == max(
        v.id for v in first if v.metric_id == b.id
    )


async def test_a_fence_stores_only_where_the_lease_still_has_its_token(
    store, pool, make_dashboard, make_metric
):
    ops, web = await make_dashboard("ops"), await make_dashboard("web")
    a, b = await make_metric(ops, "a"), await make_metric(web, "b")
    async with pool.acquire() as conn:
        tokens = await db.try_lease_dashboards(conn, str(uuid.uuid4()), [ops.id, web.id], 2, 60)
    now = datetime.now(UTC)
    rows = [(a.id, 1.0, now), (b.id, 2.0, now)] * 150
    # web's lease changed hands since this worker got its token.
    stale = {ops.id: tokens[ops.id], web.id: tokens[web.id] + 1000}
    stored = await store(rows, fence=stale)
    assert {v.metric_id for v in stored} == {a.id}
    assert len(stored) == 150
    read = await db.latest_values(pool, [a.id, b.id], 1000)
    assert len(read[a.id]) == 150 and read[b.id] == []


async def test_a_copy_batch_that_fails_midway_holds_no_lock_and_leaves_no_trace(
    pool, settings, make_dashboard, make_metric
):
    """A row that cannot be packed fails the batch after its transaction began
    (the batch number taken, the dashboard's row locked): none of it stays."""
    ops = await make_dashboard("ops")
    metric = await make_metric(ops, "a")
    now = datetime.now(UTC)
    copier = db.Copier(settings.database_url or "")
    try:
        with pytest.raises(ValueError, match="timezone-aware"):
            await copier.store([(metric.id, 1.0, now)] * 250 + [(metric.id, 2.0, now.replace(tzinfo=None))])
        # Another writer numbers the same dashboard at once: with the lock still
        # held it would wait out STORE_LOCK_TIMEOUT_MS and fail.
        started = time.monotonic()
        by_insert = await db.insert_values(pool, [(metric.id, 3.0, now)])
        assert time.monotonic() - started < 2
        # The failed batch's number went back with it, and the copier goes on.
        by_copy = await copier.store([(metric.id, 4.0, now)] * 250)
        assert [v.seq for v in by_insert] == [1] and {v.seq for v in by_copy} == {2}
        stored = await db.latest_values(pool, [metric.id], 1000)
        assert [v.value for v in stored[metric.id]] == [3.0] + [4.0] * 250
    finally:
        copier.close()


async def test_a_copy_batch_refused_by_the_server_commits_nothing(
    pool, settings, make_dashboard, make_metric
):
    """The COPY fails on the server (a trigger refuses one row): its message's
    COMMIT never runs, the batch number and newest id stay as they were, and
    the next batch is stored."""
    ops = await make_dashboard("ops")
    metric = await make_metric(ops, "a")
    now = datetime.now(UTC)
    refused = -271828.0
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$BEGIN IF NEW.value = {refused} THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END$$;"
            " CREATE TRIGGER refuse_one BEFORE INSERT ON metric_values"
            " FOR EACH ROW EXECUTE FUNCTION refuse_one()"
        )
    copier = db.Copier(settings.database_url or "")
    try:
        first = await copier.store([(metric.id, 1.0, now)] * 250)
        with pytest.raises(psycopg2.errors.RaiseException, match="refused"):
            await copier.store([(metric.id, 2.0, now)] * 249 + [(metric.id, refused, now)])
        assert (await db.dashboard_position(pool, ops.id)).last_value_id == first[-1].id
        after = await copier.store([(metric.id, 3.0, now)] * 250)
        assert {v.seq for v in after} == {2}
        assert (await db.dashboard_position(pool, ops.id)).last_value_id == after[-1].id
        stored = await db.latest_values(pool, [metric.id], 1000)
        assert [v.value for v in stored[metric.id]] == [1.0] * 250 + [3.0] * 250
    finally:
        copier.close()
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("DROP TRIGGER refuse_one ON metric_values; DROP FUNCTION refuse_one()")


@pytest.fixture
async def behind_proxy(settings) -> AsyncIterator[tuple[TcpProxy, db.Copier]]:
    """A copier whose connections to PostgreSQL go through a TcpProxy."""
    dsn = psycopg2.extensions.parse_dsn(settings.database_url or "")
    host, port = dsn.get("host") or "127.0.0.1", int(dsn.get("port") or 5432)
    proxy = TcpProxy(f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port))
    await proxy.start()
    copier = db.Copier(
        " ".join(f"{key}={value}" for key, value in {**dsn, "host": "127.0.0.1", "port": proxy.port}.items())
    )
    try:
        yield proxy, copier
    finally:
        copier.close()
        await proxy.cut()


async def test_a_copy_batch_whose_commit_answer_is_lost_is_not_stored_again(
    pool, behind_proxy, make_dashboard, make_metric, caplog
):
    """The connection breaks after PostgreSQL committed a batch, before its
    answer came: the copier finds the batch stored and returns it as stored,
    so that the worker does not store it a second time."""
    proxy, copier = behind_proxy
    metric = await make_metric(await make_dashboard("ops"), "a")
    now = datetime.now(UTC)
    first = await copier.store([(metric.id, 1.0, now)] * 250)
    proxy.arm(TO_CLIENT, b"COMMIT\x00")
    second = await copier.store([(metric.id, 2.0, now)] * 250)
    assert proxy.cuts == 1
    third = await copier.store([(metric.id, 3.0, now)] * 250)
    assert [batch[0].seq for batch in (first, second, third)] == [1, 2, 3]
    stored = (await db.latest_values(pool, [metric.id], 1000))[metric.id]
    assert [v.value for v in stored] == [1.0] * 250 + [2.0] * 250 + [3.0] * 250
    assert stored[250:500] == second
    assert "they were, and are not stored again" in caplog.text


async def test_a_copy_batch_lost_on_its_way_is_reported_failed_and_leaves_nothing(
    pool, behind_proxy, make_dashboard, make_metric
):
    """The connection breaks before the batch's last message reached
    PostgreSQL: nothing was committed, and the copier says it failed (the
    worker keeps the values and stores them later)."""
    proxy, copier = behind_proxy
    metric = await make_metric(await make_dashboard("ops"), "a")
    now = datetime.now(UTC)
    await copier.store([(metric.id, 1.0, now)] * 10)
    proxy.arm(TO_SERVER, b"; COPY metric_values")
    with pytest.raises(psycopg2.OperationalError):
        await copier.store([(metric.id, 2.0, now)] * 10)
    assert proxy.cuts == 1
    again = await copier.store([(metric.id, 3.0, now)] * 10)
    assert again[0].seq == 2
    stored = (await db.latest_values(pool, [metric.id], 1000))[metric.id]
    assert [v.value for v in stored] == [1.0] * 10 + [3.0] * 10

"""Consistency under races (issue 14): two editors demoting or removing each other
at once leave the dashboard an editor, and an API token lives no longer than
its creator's editorship."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from common import db
from common.sources import PUSH
from tests.helpers import csrf_from, eventually, json_request, log_in, run_cli, waiting_on_locks


@pytest.fixture
async def pair(client, new_client, make_user, make_dashboard, make_metric, pool):
    """ann and bob both edit `ops` (a pushed metric, jobs); ann on `client`, bob on his own."""
    ann, bob = await make_user("ann"), await make_user("bob")
    ops = await make_dashboard("ops")
    for user in (ann, bob):
        await db.add_member(pool, ops.id, user.id, db.EDITOR)
    jobs = await make_metric(ops, "jobs", source=PUSH)
    await log_in(client, "ann")
    bob_client = await new_client()
    await log_in(bob_client, "bob")
    return {"ann": ann, "bob": bob, "ops": ops, "jobs": jobs, "ann_client": client, "bob_client": bob_client}


async def editors(pool, dashboard_id: int) -> list[str]:
    return [m.user.username for m in await db.list_members(pool, dashboard_id) if m.role == db.EDITOR]


async def each_other(pair, action: str) -> list[int]:
    """ann and bob at once: each demotes (or removes) the other; their statuses."""
    base = f"/dashboards/{pair['ops'].id}/members"
    calls = []
    for me, other in (("ann", "bob"), ("bob", "ann")):
        http = pair[f"{me}_client"]
        token = await csrf_from(http, "/dashboards/")
        path, body = (
            (f"{base}/{pair[other].id}/role", {"role": "viewer"})
            if action == "demote"
            else (f"{base}/{pair[other].id}/delete", {})
        )
        calls.append(json_request(http, "POST", path, body, token=token))
    return [status for status, _ in await asyncio.gather(*calls)]


@pytest.mark.parametrize("action", ["demote", "remove"])
async def test_editors_demoting_each_other_at_once_leave_one_editor(pair, pool, action):
    ops = pair["ops"]
    for _ in range(30):
        statuses = await each_other(pair, action)
        # The loser is refused under the lock (422, the last editor) or, if the
        # winner committed first, already at the door (403 a viewer, 404 no member).
        assert statuses.count(200) == 1 and set(statuses) - {200} <= {403, 404, 422}, statuses
        assert len(await editors(pool, ops.id)) == 1
        # Back to two editors for the next round.
        for user in (pair["ann"], pair["bob"]):
            if not await db.add_member(pool, ops.id, user.id, db.EDITOR):
                await db.set_member_role(pool, ops.id, user.id, db.EDITOR)


@asynccontextmanager
async def held_memberships(pool, dashboard_id: int) -> AsyncIterator[None]:
    """Hold the dashboard's membership rows locked until the block ends: both requests
    reach their change and wait there, so neither finishes before the other starts."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("BEGIN")
        await cur.execute(
            "SELECT 1 FROM dashboard_members WHERE dashboard_id = %s FOR UPDATE", (dashboard_id,)
        )
        try:
            yield
        finally:
            await cur.execute("ROLLBACK")


async def test_demotions_that_overlap_exactly_still_leave_an_editor(pair, pool):
    """The worst interleaving, made certain: both demotions are under way together."""
    async with held_memberships(pool, pair["ops"].id):
        racing = asyncio.ensure_future(each_other(pair, "demote"))

        async def both_waiting() -> bool:
            return await waiting_on_locks(pool) >= 2

        await eventually(both_waiting, 4, "the two demotions both reach the database")
    assert sorted(await racing) == [200, 422]
    assert len(await editors(pool, pair["ops"].id)) == 1


# Tokens follow their creator's editorship -----------------------------------------------


async def make_token(http, dashboard_id: int, name: str) -> tuple[str, dict]:
    status, answer = await json_request(http, "POST", f"/dashboards/{dashboard_id}/tokens", {"name": name})
    assert status == 201, answer
    return answer["secret"], answer["token"]


async def push(http, metric_id: int, secret: str) -> int:
    response = await http.post(
        f"/api/v1/metrics/{metric_id}/values",
        json={"value": 1},
        headers={"Authorization": f"Bearer {secret}"},
    )
    return response.status


async def test_a_token_stops_working_as_soon_as_its_creator_is_demoted(pair, pool):
    ops, jobs, ann_client, bob_client = pair["ops"], pair["jobs"], pair["ann_client"], pair["bob_client"]
    bobs, token = await make_token(bob_client, ops.id, "bob's cron")
    anns, _ = await make_token(ann_client, ops.id, "ann's cron")
    assert token["created_by"] == {"user_id": pair["bob"].id, "username": "bob"}
    assert await push(bob_client, jobs.id, bobs) == 201

    status, _ = await json_request(
        ann_client, "POST", f"/dashboards/{ops.id}/members/{pair['bob'].id}/role", {"role": "viewer"}
    )
    assert status == 200
    assert await push(bob_client, jobs.id, bobs) == 401
    assert await push(ann_client, jobs.id, anns) == 201  # only the demoted editor's
    listed = {t.name: t for t in await db.list_api_tokens(pool, ops.id)}
    assert listed["bob's cron"].revoked_at is not None and listed["ann's cron"].revoked_at is None
    # Made an editor again, bob does not get the revoked token back.
    await db.set_member_role(pool, ops.id, pair["bob"].id, db.EDITOR)
    assert await push(bob_client, jobs.id, bobs) == 401


async def test_removal_and_deletion_revoke_the_creators_tokens(pair, pool, settings):
    ops, jobs, ann_client, bob_client = pair["ops"], pair["jobs"], pair["ann_client"], pair["bob_client"]
    bobs, _ = await make_token(bob_client, ops.id, "bob's")
    anns, _ = await make_token(ann_client, ops.id, "ann's")
    cli_output = await run_cli(settings, "token", "create", "ops", "admin's")
    admins = cli_output.strip().splitlines()[-1]

    status, _ = await json_request(
        ann_client, "POST", f"/dashboards/{ops.id}/members/{pair['bob'].id}/delete", {}
    )
    assert status == 200
    assert await push(ann_client, jobs.id, bobs) == 401

    await run_cli(settings, "member", "add", "ops", "bob", "--role", "editor")
    await run_cli(settings, "user", "delete", "ann", "--yes")
    assert await push(bob_client, jobs.id, anns) == 401
    assert await push(bob_client, jobs.id, admins) == 201  # no creator: kept until revoked by hand
    listing = await run_cli(settings, "token", "list", "ops")
    rows = [line.split("\t") for line in listing.splitlines()]
    assert [(row[2], row[3], row[5]) for row in rows] == [
        ("bob's", "revoked", "by bob"),
        ("ann's", "revoked", "by cli"),  # ann is gone: the creator is forgotten with her
        ("admin's", "active", "by cli"),
    ]


async def test_a_token_cannot_be_made_by_an_editor_demoted_meanwhile(pair, pool):
    """The creation checks the creator's role with the dashboard locked: after the
    demotion it is refused, so no token escapes the revocation."""
    await db.set_member_role(pool, pair["ops"].id, pair["bob"].id, db.VIEWER)
    with pytest.raises(db.NotAnEditor):
        await db.create_api_token(
            pool, pair["ops"].id, "late", b"x" * 32, "dsh_late", created_by=pair["bob"].id
        )
    assert await db.list_api_tokens(pool, pair["ops"].id) == []

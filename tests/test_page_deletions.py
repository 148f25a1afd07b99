"""Deleting from the page: a dashboard (editors only, by typing its name) and a
revoked API token (an active one must be revoked first)."""

from __future__ import annotations

import pytest

from common import db
from server.live.closecodes import CloseCode
from tests.helpers import as_user, closed_within, post
from tests.wsclient import open_socket


async def test_a_dashboard_is_deleted_only_with_its_name_typed(client, team, pool):
    ops = team["ops"]
    for typed in ("", "op", "OPS", "something else"):
        status, answer = await post(client, f"/dashboards/{ops.id}/delete", {"confirm": typed})
        assert status in (400, 422) and "confirm" in answer["errors"], (typed, answer)
    assert (await post(client, f"/dashboards/{ops.id}/delete", {}))[0] == 400
    assert await db.get_dashboard(pool, ops.id) is not None

    status, answer = await post(client, f"/dashboards/{ops.id}/delete", {"confirm": f"  {ops.name} "})

    assert (status, answer) == (200, {"deleted": ops.id, "next": "/dashboards/"})
    assert await db.get_dashboard(pool, ops.id) is None
    assert await db.list_metrics(pool, ops.id) == []


async def test_a_name_changed_meanwhile_must_be_typed_anew(client, team, pool):
    ops = team["ops"]
    await db.update_dashboard(pool, ops.id, "Renamed", "")

    status, answer = await post(client, f"/dashboards/{ops.id}/delete", {"confirm": ops.name})

    assert status == 422 and "'Renamed'" in answer["errors"]["confirm"][0]
    assert await db.get_dashboard(pool, ops.id) is not None


async def test_viewers_outsiders_and_anonymous_cannot_delete(team, new_client, pool):
    ops = team["ops"]
    body = {"confirm": ops.name}
    assert (await post(await as_user(new_client, "vi"), f"/dashboards/{ops.id}/delete", body))[0] == 403
    assert (await post(await as_user(new_client, "out"), f"/dashboards/{ops.id}/delete", body))[0] == 404
    assert (await post(await new_client(), f"/dashboards/{ops.id}/delete", body))[0] == 401
    assert await db.get_dashboard(pool, ops.id) is not None


async def test_deleting_closes_every_open_page_of_the_dashboard(client, team, new_client):
    ops = team["ops"]
    ws = await open_socket(await as_user(new_client, "vi"), ops, 2)

    await post(client, f"/dashboards/{ops.id}/delete", {"confirm": ops.name})

    code, took = await closed_within(ws, 2)
    assert (code, took < 1) == (CloseCode.FORBIDDEN, True)


@pytest.fixture
async def token_id(client, team) -> int:
    status, answer = await post(client, f"/dashboards/{team['ops'].id}/tokens", {"name": "ci"})
    assert status == 201
    return answer["token"]["id"]


async def test_only_a_revoked_token_can_be_deleted(client, team, token_id, pool):
    tokens = f"/dashboards/{team['ops'].id}/tokens"

    status, answer = await post(client, f"{tokens}/{token_id}/delete", {})
    assert status == 404 and "revoke it first" in answer["error"]
    assert len(await db.list_api_tokens(pool, team["ops"].id)) == 1

    await post(client, f"{tokens}/{token_id}/revoke", {})
    status, answer = await post(client, f"{tokens}/{token_id}/delete", {})

    assert (status, answer) == (200, {"tokens": []})
    assert await db.list_api_tokens(pool, team["ops"].id) == []


async def test_another_dashboards_token_and_viewers_are_refused(
    client, team, token_id, new_client, make_dashboard, pool
):
    ops = team["ops"]
    await post(client, f"/dashboards/{ops.id}/tokens/{token_id}/revoke", {})
    mine = await make_dashboard("mine")
    await db.add_member(pool, mine.id, team["ed"].id, db.EDITOR)

    assert (await post(client, f"/dashboards/{mine.id}/tokens/{token_id}/delete", {}))[0] == 404
    viewer = await as_user(new_client, "vi")
    assert (await post(viewer, f"/dashboards/{ops.id}/tokens/{token_id}/delete", {}))[0] == 403
    assert len(await db.list_api_tokens(pool, ops.id)) == 1

"""API tokens from the page (server/tokens_api.py): editors list, create and
revoke; the secret is in the creation's answer only and only its hash is stored."""

from __future__ import annotations

import hashlib

import pytest

from common import db
from tests.helpers import as_user, post


@pytest.fixture
def tokens_path(team) -> str:
    return f"/dashboards/{team['ops'].id}/tokens"


async def stored_rows(pool) -> list[tuple]:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT * FROM api_tokens ORDER BY id")
        return await cur.fetchall()


async def test_a_new_token_is_shown_once_and_stored_as_its_hash(client, team, tokens_path, pool):
    status, answer = await post(client, tokens_path, {"name": " deploy script "})
    assert status == 201, answer
    secret = answer["secret"]
    assert secret.startswith("dsh_") and len(secret) > 40
    token = answer["token"]
    assert (token["name"], token["prefix"]) == ("deploy script", secret[:10])
    assert (token["last_used_at"], token["revoked_at"]) == (None, None)
    assert answer["tokens"] == [token]

    # The database holds its SHA-256, and the secret nowhere.
    (row,) = await stored_rows(pool)
    assert bytes(row[3]) == hashlib.sha256(secret.encode()).digest()
    assert all(secret not in str(column) for column in row)
    # Listing it again never shows the secret.
    listed = await client.get(tokens_path)
    assert listed.status == 200 and listed.headers["Cache-Control"] == "no-store"
    text = await listed.text()
    assert secret not in text and secret[10:] not in text
    assert (await listed.json())["tokens"] == [token]


async def test_the_token_pushes_and_then_is_revoked(client, team, tokens_path):
    _, created = await post(client, tokens_path, {"name": "ci"})
    auth = {"Authorization": f"Bearer {created['secret']}"}
    pushed = await client.post(f"/api/v1/metrics/{team['cpu'].id}/values", json={"value": 1.5}, headers=auth)
    assert pushed.status == 201, await pushed.text()
    (listed,) = (await (await client.get(tokens_path)).json())["tokens"]
    assert listed["last_used_at"] is not None

    status, answer = await post(client, f"{tokens_path}/{listed['id']}/revoke", {})
    assert status == 200
    assert answer["tokens"][0]["revoked_at"] is not None
    refused = await client.post(f"/api/v1/metrics/{team['cpu'].id}/values", json={"value": 2.0}, headers=auth)
    assert refused.status == 401
    # Revoked already, or not this dashboard's: 404, and nothing changes.
    assert (await post(client, f"{tokens_path}/{listed['id']}/revoke", {}))[0] == 404
    assert (await post(client, f"{tokens_path}/999999/revoke", {}))[0] == 404
    assert (await post(client, f"{tokens_path}/{2**63}/revoke", {}))[0] == 404


async def test_another_dashboards_token_cannot_be_revoked(client, team, tokens_path, pool, make_dashboard):
    elsewhere = await make_dashboard("elsewhere")
    theirs = await db.create_api_token(pool, elsewhere.id, "theirs", b"x" * 32, "dsh_abcdef")
    assert (await post(client, f"{tokens_path}/{theirs.id}/revoke", {}))[0] == 404
    (still,) = await db.list_api_tokens(pool, elsewhere.id)
    assert still.revoked_at is None


async def test_viewers_outsiders_and_anonymous_are_refused(client, team, tokens_path, new_client, pool):
    _, created = await post(client, tokens_path, {"name": "ci"})
    token_id = created["token"]["id"]
    viewer = await as_user(new_client, "vi")
    assert (await viewer.get(tokens_path)).status == 403
    assert (await post(viewer, tokens_path, {"name": "mine"}))[0] == 403
    assert (await post(viewer, f"{tokens_path}/{token_id}/revoke", {}))[0] == 403
    outsider = await as_user(new_client, "out")
    assert (await outsider.get(tokens_path)).status == 404
    assert (await post(outsider, tokens_path, {"name": "mine"}))[0] == 404
    assert (await post(outsider, f"{tokens_path}/{token_id}/revoke", {}))[0] == 404
    anonymous = await new_client()
    assert (await anonymous.get(tokens_path)).status == 401
    # Without the CSRF token an editor's own session cannot either.
    assert (await post(client, tokens_path, {"name": "forged"}, token=None))[0] == 403
    assert (await post(client, f"{tokens_path}/{token_id}/revoke", {}, token="forged"))[0] == 403

    (only,) = await db.list_api_tokens(pool, team["ops"].id)
    assert (only.name, only.revoked_at) == ("ci", None)
    page = await (await viewer.get(f"/dashboards/{team['ops'].id}/")).text()
    assert 'id="edit-tokens"' not in page and "editor-admin.js" not in page


@pytest.mark.parametrize(
    "body",
    [{}, {"name": ""}, {"name": "   "}, {"name": 5}, {"name": "x" * 201}, {"name": "ok", "scope": "all"}],
)
async def test_bad_bodies_name_the_field_and_create_nothing(client, team, tokens_path, pool, body):
    status, answer = await post(client, tokens_path, body)
    assert status == 400
    field = "scope" if "scope" in body else "name"
    assert field in answer["errors"], answer
    assert await db.list_api_tokens(pool, team["ops"].id) == []


async def test_a_body_that_is_not_json_is_refused(client, team, tokens_path, pool):
    status, answer = await post(client, tokens_path, ["name"])
    assert (status, answer["error"]) == (400, "body must be a JSON object")
    assert await db.list_api_tokens(pool, team["ops"].id) == []

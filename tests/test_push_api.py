"""The HTTP push API: tokens, validation, all-or-nothing writes, live delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from click.testing import CliRunner

from common import db
from common.tokens import token_hash
from server.cli import main as server_main
from tests.helpers import api_token, log_in
from tests.servers import servers
from tests.wsclient import read_connect_sequence, receive


@pytest.fixture
async def board(pool, make_user, make_dashboard, make_metric):
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    other = await make_dashboard("other")
    secret = await api_token(pool, ops.id)
    return {
        "ops": ops,
        "gauge": await make_metric(ops, "temp", "gauge", "C"),
        "counter": await make_metric(ops, "jobs", "counter", "jobs"),
        "foreign": await make_metric(other, "theirs", "gauge"),
        "token": secret,
        "auth": {"Authorization": f"Bearer {secret}"},
    }


async def stored_values(pool, metric) -> list[float]:
    return [v.value for v in (await db.latest_values(pool, [metric.id], 1000))[metric.id]]


async def test_pushed_value_is_stored_and_reaches_open_dashboards(client, pool, board):
    await log_in(client, "alice")
    ws = await client.ws_connect(f"/ws/dashboard/{board['ops'].id}/")
    await read_connect_sequence(ws, 2)
    response = await client.post(
        f"/api/v1/metrics/{board['gauge'].id}/values", json={"value": 21.5}, headers=board["auth"]
    )
    assert response.status == 201
    body = await response.json()
    assert body["stored"] == 1 and body["values"][0]["value"] == 21.5
    update = await receive(ws)
    assert update["action"] == "metric_update"
    assert (update["payload"]["metric_id"], update["payload"]["value"]) == (board["gauge"].id, 21.5)
    assert await stored_values(pool, board["gauge"]) == [21.5]


async def test_batch_for_many_metrics_with_timestamps(client, pool, board):
    when = datetime.now(UTC) - timedelta(seconds=30)
    values = [
        {"metric_id": board["gauge"].id, "value": 1.0, "timestamp": when.isoformat()},
        {"metric_id": board["counter"].id, "value": 5},
        {"metric_id": board["counter"].id, "value": 7},
    ]
    response = await client.post("/api/v1/values", json={"values": values}, headers=board["auth"])
    assert response.status == 201, await response.text()
    assert (await db.latest_values(pool, [board["gauge"].id], 1))[board["gauge"].id][0].ts == when
    assert await stored_values(pool, board["counter"]) == [5.0, 7.0]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer dsh_not-a-real-token"},
        {"Authorization": "Basic YWxpY2U6eA=="},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "unknown", "wrong scheme", "empty"],
)
async def test_requests_without_a_valid_token_get_401(client, pool, board, headers):
    response = await client.post(
        f"/api/v1/metrics/{board['gauge'].id}/values", json={"value": 1}, headers=headers
    )
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "API token" in (await response.json())["error"]
    assert await stored_values(pool, board["gauge"]) == []


async def test_revoked_token_is_refused(client, pool, board):
    (token,) = await db.list_api_tokens(pool, board["ops"].id)
    assert await db.revoke_api_token(pool, board["ops"].id, token.id)
    response = await client.post(
        f"/api/v1/metrics/{board['gauge'].id}/values", json={"value": 1}, headers=board["auth"]
    )
    assert response.status == 401


async def test_metrics_of_other_dashboards_are_not_found(client, pool, board):
    response = await client.post(
        f"/api/v1/metrics/{board['foreign'].id}/values", json={"value": 1}, headers=board["auth"]
    )
    assert response.status == 404
    batch = [{"metric_id": board["gauge"].id, "value": 1}, {"metric_id": board["foreign"].id, "value": 2}]
    response = await client.post("/api/v1/values", json={"values": batch}, headers=board["auth"])
    assert response.status == 422
    assert set((await response.json())["errors"]["values"]) == {"1"}
    # All or nothing: the valid first value was not stored either.
    assert await stored_values(pool, board["gauge"]) == []
    assert await stored_values(pool, board["foreign"]) == []


BAD_BODIES = [
    ("not json", b"{oops", 400, None),
    ("not an object", b"[1, 2]", 400, None),
    ("no values", b"{}", 400, "values"),
    ("value a string", b'{"value": "3"}', 400, "values"),
    ("value a boolean", b'{"value": true}', 400, "values"),
    ("value missing", b'{"values": [{"timestamp": "2026-01-01T00:00:00+00:00"}]}', 400, "values"),
    ("naive timestamp", b'{"value": 1, "timestamp": "2026-01-01T00:00:00"}', 400, "values"),
    ("garbage timestamp", b'{"value": 1, "timestamp": "yesterday"}', 400, "values"),
    ("empty list", b'{"values": []}', 400, "values"),
]


@pytest.mark.parametrize(
    ("body", "status", "field"), [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
async def test_bad_bodies_get_a_json_error_naming_the_field(client, pool, board, body, status, field):
    headers = {**board["auth"], "Content-Type": "application/json"}
    response = await client.post(f"/api/v1/metrics/{board['gauge'].id}/values", data=body, headers=headers)
    assert response.status == status
    payload = await response.json()
    assert payload["error"]
    if field:
        assert field in payload["errors"]
    assert await stored_values(pool, board["gauge"]) == []


async def test_timestamps_far_from_the_server_clock_are_refused(client, pool, board):
    old = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    response = await client.post(
        f"/api/v1/metrics/{board['gauge'].id}/values",
        json={"values": [{"value": 1}, {"value": 2, "timestamp": old}]},
        headers=board["auth"],
    )
    assert response.status == 422
    assert list((await response.json())["errors"]["values"]) == ["1"]
    assert await stored_values(pool, board["gauge"]) == []


async def test_counters_may_not_decrease(client, pool, board):
    url = f"/api/v1/metrics/{board['counter'].id}/values"
    assert (await client.post(url, json={"value": 10}, headers=board["auth"])).status == 201
    response = await client.post(url, json={"values": [{"value": 12}, {"value": 9}]}, headers=board["auth"])
    assert response.status == 422
    assert "would decrease from 12.0 to 9.0" in str(await response.json())
    response = await client.post(url, json={"value": 3}, headers=board["auth"])
    assert response.status == 422
    assert await stored_values(pool, board["counter"]) == [10.0]


def test_token_cli_creates_lists_and_revokes_with_only_a_hash_stored(database_url, clean_state):
    runner = CliRunner()
    options = ["--database-url", database_url, "--redis-url", servers().redis_url]
    assert runner.invoke(server_main, [*options, "dashboard", "create", "Ops"]).exit_code == 0
    created = runner.invoke(server_main, [*options, "token", "create", "ops", "cron job"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("dsh_") and len(secret) > 40
    conn = psycopg2.connect(database_url)
    with conn.cursor() as cur:
        cur.execute("SELECT token_hash, prefix FROM api_tokens")
        ((stored_hash, prefix),) = cur.fetchall()
    conn.close()
    assert bytes(stored_hash) == token_hash(secret) and secret.encode() not in bytes(stored_hash)
    listed = runner.invoke(server_main, [*options, "token", "list", "ops"])
    assert f"{prefix}…\tcron job\tactive\tnever used" in listed.stdout
    revoked = runner.invoke(server_main, [*options, "token", "revoke", "ops", "1"])
    assert revoked.exit_code == 0 and "revoked token 1" in revoked.stdout
    again = runner.invoke(server_main, [*options, "token", "revoke", "ops", "1"])
    assert again.exit_code == 1 and "no active token 1" in again.output
    assert "\trevoked\t" in runner.invoke(server_main, [*options, "token", "list", "ops"]).stdout


@pytest.mark.parametrize(
    "values",
    [
        [{"metric_id": 1, "value": 1.5}, {"metric_id": 2, "value": -3}],
        [{"metric_id": 1, "value": 2**63 - 1}, {"metric_id": 2**63 - 1, "value": -0.0}],
        [{"metric_id": 1, "value": True}],
        [{"metric_id": True, "value": 1.0}],
        [{"metric_id": 0, "value": 1.0}],
        [{"metric_id": 2**63, "value": 1.0}],
        [{"metric_id": 1, "value": 10**400}],
        [{"metric_id": 1, "value": "1.0"}],
        [{"metric_id": 1.0, "value": 1.0}],
        [{"metric_id": 1, "value": 1.0, "extra": 1}],
        [{"metric_id": 1, "value": 1.0, "timestamp": "2026-12-07T01:00:00+00:00"}],
        [{"metric_id": 1, "value": 1.0, "timestamp": None}],
        [{"metric_id": 1}],
        [["not", "an", "object"]],
        [],
    ],
)
@pytest.mark.parametrize("with_metric_id", [True, False])
def test_the_plain_push_loader_loads_exactly_what_the_schema_loads(values, with_metric_id):
    """server/api.py loads the common body without marshmallow (common.schemas.load_plain_push):
    whatever it accepts, the schema accepts with the same result; the rest it leaves to the schema."""
    from marshmallow import ValidationError

    from common.schemas import BatchPushSchema, PushSchema, load_plain_push

    if not with_metric_id:
        values = [
            {k: v for k, v in item.items() if k != "metric_id"} if isinstance(item, dict) else item
            for item in values
        ]
    data = {"values": values}
    plain = load_plain_push(data, with_metric_id)
    schema = BatchPushSchema() if with_metric_id else PushSchema()
    try:
        loaded = schema.load(data)
    except ValidationError:
        loaded = None
    if plain is not None:
        assert plain == loaded
        assert [type(item["value"]) for item in plain["values"]] == [
            type(item["value"]) for item in loaded["values"]
        ]
    keys = {"metric_id", "value"} if with_metric_id else {"value"}
    if loaded is not None and all(item.keys() == keys for item in values):
        assert plain is not None, "the common body takes the fast path"
    # The plain loader never takes timestamps: the schema words their rules.
    if any(isinstance(item, dict) and "timestamp" in item for item in values):
        assert plain is None

"""Quotas (issue 14): every limit refused through the real app with a 422 naming
it, concurrent creations at a limit never both succeed, and the CLI applies and
reports them."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner
from marshmallow import ValidationError

from common import db
from common.config import MAX_METRICS_PER_DASHBOARD, Quotas, Settings
from common.schemas import MetricIdsSchema
from server.cli import main as server_main
from tests.helpers import csrf_from, json_request, log_in
from tests.servers import servers

SMALL = Quotas(
    max_dashboards_per_user=2,
    max_metrics_per_dashboard=2,
    max_alert_rules_per_dashboard=2,
    max_tokens_per_dashboard=2,
    max_members_per_dashboard=3,
)


@pytest.fixture
def settings(database_url: str, clean_state: None) -> Settings:
    """The app of these tests runs with SMALL quotas."""
    return Settings(database_url=database_url, redis_url=servers().redis_url, quotas=SMALL)


@pytest.fixture
async def board(client, make_user, make_dashboard, make_metric, pool):
    """ed edits `ops` (one metric, cpu) and is logged in on `client`; vi and al are users."""
    ed, vi, al = await make_user("ed"), await make_user("vi"), await make_user("al")
    ops = await make_dashboard("ops")
    await db.add_member(pool, ops.id, ed.id, db.EDITOR)
    cpu = await make_metric(ops, "cpu")
    await log_in(client, "ed")
    return {"ed": ed, "vi": vi, "al": al, "ops": ops, "cpu": cpu, "base": f"/dashboards/{ops.id}"}


def assert_refused(status: int, answer: dict, quota: str) -> None:
    assert status == 422, answer
    assert answer["limit"] == {"name": quota, "value": getattr(SMALL, quota)}
    assert quota in answer["error"]


async def count(pool, query: str, *params: object) -> int:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(query, params)
        return (await cur.fetchone())[0]


# Each limit, through the real app ---------------------------------------------------


async def test_metrics_per_dashboard(client, board, pool):
    status, answer = await json_request(
        client, "POST", f"{board['base']}/metrics", {"name": "m2", "type": "gauge"}
    )
    assert status == 201, answer
    status, answer = await json_request(
        client, "POST", f"{board['base']}/metrics", {"name": "m3", "type": "gauge"}
    )
    assert_refused(status, answer, "max_metrics_per_dashboard")
    assert "this dashboard has 2 metrics" in answer["error"]
    assert len(await db.list_metrics(pool, board["ops"].id)) == 2


async def test_alert_rules_per_dashboard(client, board, pool):
    rule = {"metric_id": board["cpu"].id, "condition": "above", "threshold": 1}
    for _ in range(2):
        status, answer = await json_request(client, "POST", f"{board['base']}/alerts", rule)
        assert status == 201, answer
    status, answer = await json_request(client, "POST", f"{board['base']}/alerts", rule)
    assert_refused(status, answer, "max_alert_rules_per_dashboard")
    assert len(await db.list_alert_rules(pool, board["ops"].id)) == 2


async def test_tokens_per_dashboard_count_active_ones(client, board, pool):
    tokens = f"{board['base']}/tokens"
    for name in ("a", "b"):
        status, answer = await json_request(client, "POST", tokens, {"name": name})
        assert status == 201, answer
    status, answer = await json_request(client, "POST", tokens, {"name": "c"})
    assert_refused(status, answer, "max_tokens_per_dashboard")
    # A revoked token frees its place.
    first = (await db.list_api_tokens(pool, board["ops"].id))[0]
    status, _ = await json_request(client, "POST", f"{tokens}/{first.id}/revoke", {})
    assert status == 200
    status, answer = await json_request(client, "POST", tokens, {"name": "c"})
    assert status == 201, answer


async def test_members_per_dashboard(client, board, make_user, pool):
    members = f"{board['base']}/members"
    for username in ("vi", "al"):
        status, answer = await json_request(client, "POST", members, {"username": username})
        assert status == 201, answer
    await make_user("zed")
    status, answer = await json_request(client, "POST", members, {"username": "zed"})
    assert_refused(status, answer, "max_members_per_dashboard")
    # Already a member: still the 409 it always was, not the quota.
    status, _ = await json_request(client, "POST", members, {"username": "vi"})
    assert status == 409
    assert len(await db.list_members(pool, board["ops"].id)) == 3


async def test_dashboards_per_user_from_the_form_and_as_a_new_editor(client, board, pool):
    # ed edits `ops`: one more from the New dashboard form, then the form refuses.
    token = await csrf_from(client, "/dashboards/")
    made = await client.post(
        "/dashboards/", data={"name": "Second", "csrf_token": token}, allow_redirects=False
    )
    assert made.status == 303, await made.text()
    refused = await client.post("/dashboards/", data={"name": "Third", "csrf_token": token})
    assert refused.status == 422
    page = await refused.text()
    assert 'id="limit-error"' in page and "max_dashboards_per_user" in page and 'value="Third"' in page
    assert [d.name for d in await db.list_user_dashboards(pool, board["ed"].id)] == ["Ops", "Second"]

    # Nor may another editor make ed an editor of a third one (added, or promoted).
    other = await db.create_dashboard(pool, "Other", "other", owner_id=board["vi"].id)
    await log_in(client, "vi")
    base = f"/dashboards/{other.id}"
    status, answer = await json_request(
        client, "POST", f"{base}/members", {"username": "ed", "role": "editor"}
    )
    assert_refused(status, answer, "max_dashboards_per_user")
    assert "ed has 2 dashboards as an editor" in answer["error"]
    status, _ = await json_request(client, "POST", f"{base}/members", {"username": "ed"})
    assert status == 201  # as a viewer: not counted
    status, answer = await json_request(
        client, "POST", f"{base}/members/{board['ed'].id}/role", {"role": "editor"}
    )
    assert_refused(status, answer, "max_dashboards_per_user")
    assert (
        await count(
            pool,
            "SELECT count(*) FROM dashboard_members WHERE user_id = %s AND role = 'editor'",
            board["ed"].id,
        )
        == 2
    )


# Concurrency: the parent row is locked, so the last place is taken once -------------


@pytest.mark.parametrize("attempt", range(3))
async def test_concurrent_creations_at_the_limit_take_the_last_place_once(client, board, pool, attempt):
    base = board["base"]
    # One place left of each; ten requests race for it.
    races = {
        "metrics": [{"name": f"racer{i}", "type": "gauge"} for i in range(10)],
        "tokens": [{"name": f"racer{i}"} for i in range(10)],
        "alerts": [{"metric_id": board["cpu"].id, "condition": "below", "threshold": i} for i in range(10)],
    }
    for path, body in (("alerts", races["alerts"][0]), ("tokens", {"name": "first"})):
        status, answer = await json_request(client, "POST", f"{base}/{path}", body)
        assert status == 201, answer
    for path, bodies in races.items():
        token = await csrf_from(client, "/dashboards/")
        answers = await asyncio.gather(
            *(json_request(client, "POST", f"{base}/{path}", body, token=token) for body in bodies)
        )
        statuses = sorted(status for status, _ in answers)
        assert statuses == [201] + [422] * 9, (path, answers)
    assert len(await db.list_metrics(pool, board["ops"].id)) == 2
    assert len(await db.list_api_tokens(pool, board["ops"].id)) == 2
    assert len(await db.list_alert_rules(pool, board["ops"].id)) == 2


async def test_concurrent_new_dashboards_at_the_limit(client, board, pool):
    token = await csrf_from(client, "/dashboards/")
    answers = await asyncio.gather(
        *(
            client.post(
                "/dashboards/", data={"name": f"Racer {i}", "csrf_token": token}, allow_redirects=False
            )
            for i in range(10)
        )
    )
    assert sorted(answer.status for answer in answers) == [303] + [422] * 9
    assert len(await db.list_user_dashboards(pool, board["ed"].id)) == 2


async def test_concurrent_members_at_the_limit(client, board, make_user, pool):
    for i in range(10):
        await make_user(f"u{i}")
    await db.add_member(pool, board["ops"].id, board["vi"].id)
    token = await csrf_from(client, "/dashboards/")
    answers = await asyncio.gather(
        *(
            json_request(client, "POST", f"{board['base']}/members", {"username": f"u{i}"}, token=token)
            for i in range(10)
        )
    )
    assert sorted(status for status, _ in answers) == [201] + [422] * 9
    assert len(await db.list_members(pool, board["ops"].id)) == 3


# The metrics quota and the subscribe message share one bound -------------------------


def test_no_dashboard_may_have_more_metrics_than_a_subscribe_may_list(database_url):
    ids = list(range(1, MAX_METRICS_PER_DASHBOARD + 1))
    assert MetricIdsSchema().load({"metric_ids": ids})["metric_ids"] == ids
    with pytest.raises(ValidationError):
        MetricIdsSchema().load({"metric_ids": [*ids, MAX_METRICS_PER_DASHBOARD + 1]})
    with pytest.raises(ValueError, match="max_metrics_per_dashboard"):
        Quotas(max_metrics_per_dashboard=MAX_METRICS_PER_DASHBOARD + 1)
    too_many = str(MAX_METRICS_PER_DASHBOARD + 1)
    result = CliRunner().invoke(server_main, ["run", "--max-metrics-per-dashboard", too_many])
    assert result.exit_code == 2 and "--max-metrics-per-dashboard" in result.output


# The CLI ---------------------------------------------------------------------------


def cli(database_url: str, *args: str, env: dict[str, str] | None = None):
    options = ["--database-url", database_url, "--redis-url", servers().redis_url]
    return CliRunner().invoke(server_main, [*options, *args], env=env)


def ok(result) -> str:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.stdout


def refused(result, quota: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert quota in result.stderr and result.stderr.startswith("Error: "), result.stderr


def test_the_cli_applies_each_limit_from_flags_or_environment(database_url, clean_state):
    ok(cli(database_url, "user", "create", "ann", "--password", "pw-secret-1"))
    ok(cli(database_url, "user", "create", "bob", "--password", "pw-secret-1"))
    ok(cli(database_url, "dashboard", "create", "Web", "--owner", "ann", "--max-dashboards-per-user", "2"))
    ok(cli(database_url, "dashboard", "create", "Db", "--owner", "ann", "--max-dashboards-per-user", "2"))
    refused(
        cli(database_url, "dashboard", "create", "Queue", "--owner", "ann", "--max-dashboards-per-user", "2"),
        "max_dashboards_per_user",
    )
    assert "queue" not in ok(cli(database_url, "dashboard", "list"))  # nothing half made
    env = {"DASHBOARD_MAX_DASHBOARDS_PER_USER": "2"}
    refused(
        cli(database_url, "member", "add", "web", "bob", "--max-members-per-dashboard", "1"),
        "max_members_per_dashboard",
    )
    ok(cli(database_url, "member", "add", "web", "bob"))
    ok(cli(database_url, "member", "add", "db", "bob"))
    ok(cli(database_url, "member", "role", "web", "bob", "editor", env=env))
    ok(cli(database_url, "member", "role", "db", "bob", "editor", env=env))
    ok(cli(database_url, "dashboard", "create", "Spare", "--slug", "spare"))
    ok(cli(database_url, "member", "add", "spare", "bob"))
    refused(cli(database_url, "member", "role", "spare", "bob", "editor", env=env), "max_dashboards_per_user")

    env = {"DASHBOARD_MAX_METRICS_PER_DASHBOARD": "1"}
    ok(cli(database_url, "metric", "add", "web", "cpu", "--type", "gauge", env=env))
    refused(
        cli(database_url, "metric", "add", "web", "mem", "--type", "gauge", env=env),
        "max_metrics_per_dashboard",
    )
    ok(
        cli(
            database_url, "alert", "add", "web", "cpu", "--above", "9", "--max-alert-rules-per-dashboard", "1"
        )
    )
    refused(
        cli(
            database_url, "alert", "add", "web", "cpu", "--below", "1", "--max-alert-rules-per-dashboard", "1"
        ),
        "max_alert_rules_per_dashboard",
    )
    ok(cli(database_url, "token", "create", "web", "deploy", "--max-tokens-per-dashboard", "1"))
    refused(
        cli(database_url, "token", "create", "web", "again", "--max-tokens-per-dashboard", "1"),
        "max_tokens_per_dashboard",
    )


def test_usage_shows_each_user_and_dashboard_against_the_limits(database_url, clean_state):
    ok(cli(database_url, "user", "create", "ann", "--password", "pw-secret-1"))
    ok(cli(database_url, "user", "create", "bob", "--password", "pw-secret-1"))
    ok(cli(database_url, "dashboard", "create", "Web", "--owner", "ann"))
    ok(cli(database_url, "member", "add", "web", "bob"))
    ok(cli(database_url, "metric", "add", "web", "cpu", "--type", "gauge"))
    ok(cli(database_url, "metric", "add", "web", "mem", "--type", "gauge"))
    ok(cli(database_url, "alert", "add", "web", "cpu", "--above", "9"))
    ok(cli(database_url, "token", "create", "web", "deploy"))
    ok(cli(database_url, "dashboard", "create", "Empty"))

    output = ok(
        cli(
            database_url,
            "usage",
            "--max-metrics-per-dashboard",
            "2",
            env={"DASHBOARD_MAX_DASHBOARDS_PER_USER": "5"},
        )
    )
    assert output.splitlines() == [
        "user\tdashboards",
        "ann\t1/5",
        "bob\t0/5",
        "",
        "dashboard\tmetrics\talert rules\ttokens\tmembers",
        "empty\t0/2\t0/200\t0/20\t0/200",
        "web\t2/2*\t1/200\t1/20\t2/200",
    ]

"""A dashboard's own retention: set by its editors on the page or from the CLI,
refused when invalid, shown in every open page's `dashboard_config`."""

from __future__ import annotations

import pytest

from common import db
from server.cli import main as server_main
from tests.helpers import as_user, expect_error, expect_ok, invoker, post
from tests.wsclient import read_connect_sequence, receive_until


async def test_an_editor_sets_and_clears_the_retention_and_open_pages_see_it(client, team, pool):
    ops = team["ops"]
    ws = await client.ws_connect(f"/ws/dashboard/{ops.id}/")
    _, config, *_ = await read_connect_sequence(ws, 2)
    assert config["payload"]["retention_days"] is None

    status, answer = await post(
        client, f"/dashboards/{ops.id}/settings", {"name": "Ops", "retention_days": 30}
    )
    assert (status, answer["config"]["retention_days"]) == (200, 30)
    assert (await db.get_dashboard(pool, ops.id)).retention_days == 30
    [pushed] = [
        m for m in await receive_until(ws, "dashboard_config", within=3) if m["action"] == "dashboard_config"
    ]
    assert pushed["payload"]["retention_days"] == 30

    # Left out: unchanged. null: back to the global setting.
    assert (await post(client, f"/dashboards/{ops.id}/settings", {"name": "Ops 2"}))[1]["config"][
        "retention_days"
    ] == 30
    status, answer = await post(
        client, f"/dashboards/{ops.id}/settings", {"name": "Ops", "retention_days": None}
    )
    assert (status, answer["config"]["retention_days"]) == (200, None)
    await ws.close()


@pytest.mark.parametrize("days", [0, -1, 36501, "30", 2.5, True])
async def test_a_bad_retention_is_refused_naming_the_field_and_nothing_changes(client, team, pool, days):
    ops = team["ops"]
    await db.set_dashboard_retention(pool, ops.id, 9)
    status, answer = await post(
        client, f"/dashboards/{ops.id}/settings", {"name": "Renamed", "retention_days": days}
    )
    assert (status, list(answer["errors"])) == (400, ["retention_days"]), answer
    found = await db.get_dashboard(pool, ops.id)
    assert (found.name, found.retention_days) == (ops.name, 9)


async def test_viewers_may_not_set_it(team, new_client, pool):
    viewer = await as_user(new_client, "vi")
    status, _ = await post(
        viewer, f"/dashboards/{team['ops'].id}/settings", {"name": "Ops", "retention_days": 1}
    )
    assert status == 403
    assert (await db.get_dashboard(pool, team["ops"].id)).retention_days is None


def test_the_cli_shows_and_sets_it(database_url, clean_state):
    cli = invoker(server_main, database_url)
    expect_ok(cli("dashboard", "create", "Ops"))
    assert (
        expect_ok(cli("dashboard", "retention", "ops"))
        == "ops: raw values kept as the worker's global setting\n"
    )
    assert expect_ok(cli("dashboard", "retention", "ops", "14")) == "ops: raw values kept 14 day(s)\n"
    assert expect_ok(cli("dashboard", "retention", "ops")) == "ops: raw values kept 14 day(s)\n"
    for bad in ("0", "1.5", "two", "36501"):
        assert "neither a number of days from 1 to 36500 nor 'global'" in expect_error(
            cli("dashboard", "retention", "ops", bad), exit_code=2
        )
    assert expect_ok(cli("dashboard", "retention", "ops")) == "ops: raw values kept 14 day(s)\n"
    assert (
        expect_ok(cli("dashboard", "retention", "ops", "global"))
        == "ops: raw values kept as the worker's global setting\n"
    )
    assert "no dashboard 'nope'" in expect_error(cli("dashboard", "retention", "nope", "3"))

"""Personal preferences: stored per user (theme) and per user and dashboard
(hidden cards, order, default range, chart style), changed by every member
for themselves only, and pushed live to that user's other open pages."""

from __future__ import annotations

import re

import psycopg2
import pytest
from aiohttp.test_utils import TestClient

from common import db
from common.events import PreferencesChanged, decode_control, encode_preferences_changed
from common.schemas import SERVER_PAYLOAD_SCHEMAS
from server.app import create_app
from tests.helpers import as_user, csrf_from, json_request, log_in
from tests.wsclient import expect_only_barrier, open_socket, receive, receive_until

DEFAULTS = {
    "hidden_metric_ids": [],
    "card_order": [],
    "default_range": "5m",
    "chart_style": "line",
    "theme": "light",
}


async def patch(
    client: TestClient, path: str, body: object, *, token: str | None = "fetch"
) -> tuple[int, dict]:
    """A JSON PATCH the way the page's script sends it (CSRF token in the header)."""
    return await json_request(client, "PATCH", path, body, token=token)


@pytest.fixture
async def team(team, client, make_dashboard, make_metric):
    """The shared team (ed edits `ops`, vi views it, out is no member) with a
    third metric, `disk`, on ops, and `lab`, another dashboard of vi's with a
    metric of its own; vi is logged in on `client`."""
    disk = await make_metric(team["ops"], "disk", "gauge", "B")
    lab = await make_dashboard("lab", members=(team["vi"],))
    probe = await make_metric(lab, "probe", "gauge")
    await log_in(client, "vi")
    return {**team, "disk": disk, "lab": lab, "probe": probe}


def path(team, name: str = "ops") -> str:
    return f"/dashboards/{team[name].id}/preferences"


# Storage ---------------------------------------------------------------------------


async def test_defaults_until_something_is_chosen(team, pool):
    assert await db.get_preferences(pool, team["ops"].id, team["vi"].id) == db.Preferences()
    assert await db.get_theme(pool, team["vi"].id) == "light"


async def test_a_partial_change_keeps_the_rest(team, pool):
    ops, vi, cpu, disk = team["ops"], team["vi"], team["cpu"], team["disk"]
    await db.update_preferences(pool, ops.id, vi.id, hidden_metric_ids=[cpu.id], chart_style="area")
    changed = await db.update_preferences(pool, ops.id, vi.id, card_order=[disk.id], default_range="24h")
    assert changed == db.Preferences((cpu.id,), (disk.id,), "24h", "area", "light")
    assert await db.get_preferences(pool, ops.id, vi.id) == changed


async def test_theme_is_the_users_on_every_dashboard(team, pool):
    ops, lab, vi, ed = team["ops"], team["lab"], team["vi"], team["ed"]
    await db.update_preferences(pool, ops.id, vi.id, theme="dark")
    assert (await db.get_preferences(pool, lab.id, vi.id)).theme == "dark"
    assert await db.get_theme(pool, vi.id) == "dark"
    # ...and only the user's.
    assert (await db.get_preferences(pool, ops.id, ed.id)).theme == "light"
    await db.set_theme(pool, vi.id, "light")
    assert (await db.get_preferences(pool, lab.id, vi.id)).theme == "light"


async def test_metrics_deleted_later_are_left_out_in_order(team, pool):
    ops, vi, cpu, requests, disk = team["ops"], team["vi"], team["cpu"], team["requests"], team["disk"]
    await db.update_preferences(
        pool,
        ops.id,
        vi.id,
        hidden_metric_ids=[requests.id, cpu.id],
        card_order=[disk.id, requests.id, cpu.id],
    )
    await db.delete_metric(pool, ops.id, requests.id)
    read = await db.get_preferences(pool, ops.id, vi.id)
    assert (read.hidden_metric_ids, read.card_order) == ((cpu.id,), (disk.id, cpu.id))


async def test_only_the_dashboards_metrics_and_nothing_changes_otherwise(team, pool):
    ops, vi, cpu, probe = team["ops"], team["vi"], team["cpu"], team["probe"]
    with pytest.raises(db.MetricsNotOnDashboard) as refused:
        await db.update_preferences(
            pool, ops.id, vi.id, hidden_metric_ids=[cpu.id], card_order=[probe.id, 999], theme="dark"
        )
    assert refused.value.foreign == {"card_order": [probe.id, 999]}
    assert await db.get_preferences(pool, ops.id, vi.id) == db.Preferences()


async def test_only_members_have_preferences(team, pool):
    with pytest.raises(db.NotFound):
        await db.update_preferences(pool, team["ops"].id, team["out"].id, chart_style="area", theme="dark")
    assert await db.get_theme(pool, team["out"].id) == "light"  # all or nothing


async def test_the_database_refuses_unknown_values(team, pool, database_url):
    with pytest.raises(ValueError):
        await db.update_preferences(pool, team["ops"].id, team["vi"].id, chart_style="bars")
    conn = psycopg2.connect(database_url)
    try:
        with pytest.raises(psycopg2.errors.CheckViolation), conn.cursor() as cur:
            cur.execute(
                "INSERT INTO dashboard_preferences (dashboard_id, user_id, default_range) VALUES (%s, %s, '2h')",
                (team["ops"].id, team["vi"].id),
            )
    finally:
        conn.close()


async def _preference_rows(database_url: str) -> tuple[int, int]:
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT (SELECT count(*) FROM dashboard_preferences), (SELECT count(*) FROM user_preferences)"
            )
            return cur.fetchone()
    finally:
        conn.close()


async def test_they_go_with_the_membership_the_dashboard_or_the_user(team, pool, database_url):
    ops, lab, vi, ed = team["ops"], team["lab"], team["vi"], team["ed"]
    for dashboard, user in ((ops, vi), (lab, vi), (ops, ed)):
        await db.update_preferences(pool, dashboard.id, user.id, chart_style="points", theme="dark")
    assert await _preference_rows(database_url) == (3, 2)
    await db.remove_member(pool, ops.id, ed.id)
    assert await _preference_rows(database_url) == (2, 2)
    await db.add_member(pool, ops.id, ed.id)  # back again: the defaults
    assert (await db.get_preferences(pool, ops.id, ed.id)).chart_style == "line"
    await db.delete_dashboard(pool, lab.id)
    assert await _preference_rows(database_url) == (1, 2)
    await db.delete_user(pool, vi.id)
    assert await _preference_rows(database_url) == (0, 1)


def test_the_control_message_round_trips():
    for change in (PreferencesChanged(3, 1), PreferencesChanged(3)):
        assert decode_control(encode_preferences_changed(change)) == change
    with pytest.raises(ValueError):
        decode_control('{"v":1,"type":"preferences_changed","user_id":"3"}')


# HTTP ------------------------------------------------------------------------------


async def test_get_and_change(client, team, pool):
    status, answer = await patch(client, path(team), {})
    assert (status, answer) == (200, {"dashboard_id": team["ops"].id, **DEFAULTS})
    body = {
        "hidden_metric_ids": [team["cpu"].id],
        "card_order": [team["disk"].id, team["cpu"].id],
        "default_range": "7d",
        "chart_style": "points",
    }
    status, answer = await patch(client, path(team), body)
    assert (status, answer) == (200, {"dashboard_id": team["ops"].id, **DEFAULTS, **body})
    assert not SERVER_PAYLOAD_SCHEMAS["preferences"].validate(answer)
    assert await (await client.get(path(team))).json() == answer
    status, answer = await patch(client, path(team), {"theme": "dark"})
    assert (status, answer["theme"], answer["chart_style"]) == (200, "dark", "points")
    assert await (await client.get("/preferences")).json() == {"theme": "dark"}
    assert (await patch(client, "/preferences", {"theme": "light"})) == (200, {"theme": "light"})
    assert (await (await client.get(path(team, "lab"))).json())["theme"] == "light"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"default_range": "2h"}, "default_range"),
        ({"chart_style": "bars"}, "chart_style"),
        ({"theme": "blue"}, "theme"),
        ({"hidden_metric_ids": "1"}, "hidden_metric_ids"),
        ({"hidden_metric_ids": ["1"]}, "hidden_metric_ids"),
        ({"hidden_metric_ids": [True]}, "hidden_metric_ids"),
        ({"hidden_metric_ids": [0]}, "hidden_metric_ids"),
        ({"card_order": [1, 1]}, "card_order"),
        ({"card_order": list(range(1, 502))}, "card_order"),
        ({"card_order": None}, "card_order"),
        ({"chart_style": "area", "colour": "red"}, "colour"),
    ],
)
async def test_bad_input_names_the_field_and_changes_nothing(client, team, pool, body, field):
    status, answer = await patch(client, path(team), body)
    assert status == 400, answer
    assert field in answer["errors"], answer
    assert await db.get_preferences(pool, team["ops"].id, team["vi"].id) == db.Preferences()


async def test_metrics_of_another_dashboard_are_refused_by_field(client, team, pool):
    ops, cpu, probe = team["ops"], team["cpu"], team["probe"]
    status, answer = await patch(
        client, path(team), {"hidden_metric_ids": [cpu.id, probe.id], "chart_style": "area", "theme": "dark"}
    )
    assert status == 400
    assert answer["errors"] == {"hidden_metric_ids": [f"not on this dashboard: {probe.id}"]}
    assert await db.get_preferences(pool, ops.id, team["vi"].id) == db.Preferences()


async def test_bad_bodies_and_theme_endpoint(client, team):
    token = await csrf_from(client, "/dashboards/")
    headers = {"X-CSRF-Token": token, "Content-Type": "application/json"}
    response = await client.patch(path(team), data="{not json", headers=headers)
    assert response.status == 400
    response = await client.patch(path(team), data="[]", headers=headers)
    assert response.status == 400
    status, answer = await patch(client, "/preferences", {"theme": "sepia"})
    assert (status, list(answer["errors"])) == (400, ["theme"])
    status, answer = await patch(client, "/preferences", {})
    assert (status, list(answer["errors"])) == (400, ["theme"])


async def test_each_users_own_and_viewers_allowed(client, team, new_client, pool):
    """vi (a viewer) changes hers; ed's stay as they were, and ed's change leaves hers."""
    status, _ = await patch(
        client, path(team), {"chart_style": "area", "hidden_metric_ids": [team["cpu"].id]}
    )
    assert status == 200
    editor = await as_user(new_client, "ed")
    assert await (await editor.get(path(team))).json() == {"dashboard_id": team["ops"].id, **DEFAULTS}
    await patch(editor, path(team), {"default_range": "1h", "theme": "dark"})
    mine = await (await client.get(path(team))).json()
    assert (mine["chart_style"], mine["default_range"], mine["theme"]) == ("area", "5m", "light")
    assert mine["hidden_metric_ids"] == [team["cpu"].id]


async def test_non_members_get_404_and_anonymous_401(client, team, new_client, pool):
    outsider = await as_user(new_client, "out")
    for dashboard_id in (team["ops"].id, 999_999, 2**63):
        assert (await outsider.get(f"/dashboards/{dashboard_id}/preferences")).status == 404
        status, _ = await patch(outsider, f"/dashboards/{dashboard_id}/preferences", {"chart_style": "area"})
        assert status == 404
    anonymous = await new_client()
    assert (await anonymous.get(path(team))).status == 401
    assert (await anonymous.get("/preferences")).status == 401
    token = await csrf_from(anonymous, "/login")
    assert (await patch(anonymous, path(team), {"chart_style": "area"}, token=token))[0] == 401
    assert (await patch(anonymous, "/preferences", {"theme": "dark"}, token=token))[0] == 401
    assert await db.get_preferences(pool, team["ops"].id, team["out"].id) == db.Preferences()


async def test_the_csrf_token_is_required(client, team, pool):
    for url, body in ((path(team), {"chart_style": "area"}), ("/preferences", {"theme": "dark"})):
        assert (await patch(client, url, body, token=None))[0] == 403
        assert (await patch(client, url, body, token="forged"))[0] == 403
        response = await client.patch(
            url, data="theme=dark", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert response.status == 415
    assert await db.get_preferences(pool, team["ops"].id, team["vi"].id) == db.Preferences()


# Pages -----------------------------------------------------------------------------

HTML_THEME = re.compile(r'<html lang="en" data-theme="(\w+)">')


async def test_pages_carry_the_theme_and_the_dashboard_its_preferences(client, team, pool):
    ops, vi = team["ops"], team["vi"]
    for url in ("/dashboards/", f"/dashboards/{ops.id}/", "/playground/"):
        assert HTML_THEME.search(await (await client.get(url)).text())[1] == "light"
    await db.update_preferences(pool, ops.id, vi.id, chart_style="points", default_range="24h", theme="dark")
    for url in ("/dashboards/", f"/dashboards/{ops.id}/", "/playground/", "/dashboards/999/"):
        assert HTML_THEME.search(await (await client.get(url)).text())[1] == "dark", url
    page = await (await client.get(f"/dashboards/{ops.id}/")).text()
    assert '<script type="application/json" id="preferences-data">' in page
    assert '"chart_style": "points"' in page
    assert '<option value="24h" selected>' in page
    assert 'id="view-panel"' in page


# Live ------------------------------------------------------------------------------


async def next_preferences(ws) -> dict:
    messages = await receive_until(ws, "preferences", within=3)
    payload = messages[-1]["payload"]
    assert not SERVER_PAYLOAD_SCHEMAS["preferences"].validate(payload)
    return payload


@pytest.fixture
async def second_server(aiohttp_client, settings):
    """Another server process's worth of app on the same Redis."""
    return await aiohttp_client(create_app(settings))


async def test_the_users_other_pages_follow_and_no_one_elses(client, second_server, team, new_client, pool):
    ops = team["ops"]
    mine_here = await open_socket(client, ops, 3)
    await log_in(second_server, "vi")
    mine_there = await open_socket(second_server, ops, 3)  # another device, another process
    mine_elsewhere = await open_socket(client, team["lab"], 1)
    editor = await as_user(new_client, "ed")
    theirs = await open_socket(editor, ops, 3)

    body = {"hidden_metric_ids": [team["disk"].id], "chart_style": "area"}
    status, answer = await patch(client, path(team), body)
    assert status == 200
    for ws in (mine_here, mine_there):
        assert await next_preferences(ws) == answer
    # A push is sent to all of a dashboard's chosen sockets on this process at
    # once: had the editor's been among them, it would be queued before a
    # value published now.
    await expect_only_barrier(pool, team["cpu"], theirs, mine_here, mine_there)
    # Another dashboard's preferences did not change. vi's pushes on this
    # process are sent one after the other (one lock per user), so a wrong
    # one to lab would come before the push of a change made to lab now.
    await patch(client, path(team, "lab"), {"card_order": [team["probe"].id]})
    first = await receive(mine_elsewhere)
    assert first["action"] == "preferences", first
    assert first["payload"]["card_order"] == [team["probe"].id], f"before the change to lab: {first}"

    # The theme is the user's: every dashboard of theirs follows, still no one else.
    await patch(client, "/preferences", {"theme": "dark"})
    for ws in (mine_here, mine_there):
        assert (await next_preferences(ws))["theme"] == "dark"
    lab = await next_preferences(mine_elsewhere)
    assert (lab["dashboard_id"], lab["theme"], lab["chart_style"]) == (team["lab"].id, "dark", "line")
    await expect_only_barrier(pool, team["cpu"], theirs, mine_here, mine_there)

    # And the editor's own change reaches the editor, not vi.
    await patch(editor, path(team), {"default_range": "1h"})
    assert (await next_preferences(theirs))["default_range"] == "1h"
    await expect_only_barrier(pool, team["cpu"], mine_here, mine_there, theirs)

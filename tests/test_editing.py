"""Editing a dashboard: roles decide who may, each change is stored, and every
open page of the dashboard, on every server process, gets the new config live."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common import db
from common.events import encode_values
from common.redisconn import connect_redis, publish
from server.app import create_app
from server.live.closecodes import CloseCode
from tests.helpers import as_user, closed_within, post, run_cli
from tests.servers import servers
from tests.wsclient import (
    expect_only_barrier,
    next_config,
    open_socket,
    read_connect_sequence,
    receive,
    receive_until,
)

# Permissions ---------------------------------------------------------------------


async def test_viewers_are_refused_and_nothing_changes(team, new_client, pool):
    ops = team["ops"]
    viewer = await as_user(new_client, "vi")
    attempts = [
        ("settings", {"name": "Mine now"}),
        ("metrics", {"name": "new", "type": "gauge"}),
        (f"metrics/{team['cpu'].id}", {"name": "renamed"}),
        (f"metrics/{team['cpu'].id}/delete", {}),
        ("metrics/order", {"metric_ids": [team["requests"].id, team["cpu"].id]}),
        ("members", {"username": "out"}),
        (f"members/{team['ed'].id}/role", {"role": "viewer"}),
        (f"members/{team['ed'].id}/delete", {}),
    ]
    for path, body in attempts:
        status, answer = await post(viewer, f"/dashboards/{ops.id}/{path}", body)
        assert (path, status) == (path, 403), answer
    assert (await db.get_dashboard(pool, ops.id)).name == ops.name
    assert [m.name for m in await db.list_metrics(pool, ops.id)] == ["cpu", "requests"]
    assert {(m.user.username, m.role) for m in await db.list_members(pool, ops.id)} == {
        ("ed", "editor"),
        ("vi", "viewer"),
    }
    page = await viewer.get(f"/dashboards/{ops.id}/")
    assert 'id="edit-panel"' not in await page.text()


async def test_non_members_get_404_and_anonymous_401(team, new_client, pool):
    outsider = await as_user(new_client, "out")
    for dashboard_id in (team["ops"].id, 999_999, 2**63):
        status, _ = await post(outsider, f"/dashboards/{dashboard_id}/settings", {"name": "x"})
        assert status == 404
    anonymous = await new_client()
    status, _ = await post(anonymous, f"/dashboards/{team['ops'].id}/settings", {"name": "x"})
    assert status == 401
    assert (await db.get_dashboard(pool, team["ops"].id)).name == team["ops"].name


async def test_the_csrf_token_is_required(client, team, pool):
    path = f"/dashboards/{team['ops'].id}/settings"
    assert (await post(client, path, {"name": "x"}, token=None))[0] == 403
    assert (await post(client, path, {"name": "x"}, token="forged"))[0] == 403
    assert (await client.post(path, data="name=x", headers={"Content-Type": "text/plain"})).status == 415
    assert (await db.get_dashboard(pool, team["ops"].id)).name == team["ops"].name


async def test_editors_see_the_edit_panel(client, team):
    page = await client.get(f"/dashboards/{team['ops'].id}/")
    assert 'id="edit-panel"' in await page.text()


# Each edit is stored -----------------------------------------------------------------


async def test_each_edit_is_stored(client, team, pool):
    ops, cpu, requests = team["ops"], team["cpu"], team["requests"]
    base = f"/dashboards/{ops.id}"

    status, answer = await post(
        client, f"{base}/settings", {"name": " Operations ", "description": "all of it"}
    )
    assert status == 200
    assert (answer["config"]["name"], answer["config"]["description"]) == ("Operations", "all of it")
    stored = await db.get_dashboard(pool, ops.id)
    assert (stored.name, stored.description, stored.slug) == ("Operations", "all of it", "ops")

    status, answer = await post(
        client, f"{base}/metrics", {"name": "latency", "type": "histogram", "unit": "ms"}
    )
    assert status == 201
    latency = next(m for m in await db.list_metrics(pool, ops.id) if m.name == "latency")
    # No source named: pushed, never random values.
    assert (latency.type, latency.unit, latency.source) == ("histogram", "ms", "push")

    status, _ = await post(client, f"{base}/metrics/{cpu.id}", {"name": "cpu_busy", "description": "busy"})
    assert status == 200
    edited = next(m for m in await db.list_metrics(pool, ops.id) if m.id == cpu.id)
    assert (edited.name, edited.description, edited.unit, edited.type) == ("cpu_busy", "busy", "%", "gauge")

    order = [latency.id, requests.id, cpu.id]
    assert (await post(client, f"{base}/metrics/order", {"metric_ids": order}))[0] == 200
    assert [m.id for m in await db.list_metrics(pool, ops.id)] == order

    assert (await post(client, f"{base}/metrics/{requests.id}/delete", {}))[0] == 200
    assert [m.id for m in await db.list_metrics(pool, ops.id)] == [latency.id, cpu.id]

    status, answer = await post(client, f"{base}/members", {"username": "out", "role": "editor"})
    assert status == 201
    assert {"user_id": team["out"].id, "username": "out", "role": "editor"} in answer["members"]
    assert (await post(client, f"{base}/members/{team['vi'].id}/role", {"role": "editor"}))[0] == 200
    assert (await post(client, f"{base}/members/{team['out'].id}/delete", {}))[0] == 200
    assert {(m.user.username, m.role) for m in await db.list_members(pool, ops.id)} == {
        ("ed", "editor"),
        ("vi", "editor"),
    }


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("settings", {"name": "  "}, 400, "name"),
        ("settings", {"name": "x", "colour": "red"}, 400, "colour"),
        ("metrics", {"name": "x", "type": "speed"}, 400, "type"),
        ("metrics", {"name": "cpu", "type": "gauge"}, 409, "name"),
        ("metrics/order", {"metric_ids": ["1"]}, 400, "metric_ids"),
        ("members", {"username": "nobody"}, 422, "username"),
        ("members", {"username": "vi"}, 409, "username"),
        ("members", {"username": "out", "role": "owner"}, 400, "role"),
    ],
)
async def test_bad_edits_name_the_field(client, team, path, body, status, field):
    got, answer = await post(client, f"/dashboards/{team['ops'].id}/{path}", body)
    assert (got, field in answer["errors"]) == (status, True), answer


async def test_a_partial_order_is_refused(client, team, pool):
    ops = team["ops"]
    got, answer = await post(client, f"/dashboards/{ops.id}/metrics/order", {"metric_ids": [team["cpu"].id]})
    assert got == 422 and "metric_ids" in answer["errors"]
    assert [m.name for m in await db.list_metrics(pool, ops.id)] == ["cpu", "requests"]


async def test_the_last_editor_stays(client, team, pool):
    ops, ed = team["ops"], team["ed"]
    assert (await post(client, f"/dashboards/{ops.id}/members/{ed.id}/role", {"role": "viewer"}))[0] == 422
    assert (await post(client, f"/dashboards/{ops.id}/members/{ed.id}/delete", {}))[0] == 422
    assert {(m.user.username, m.role) for m in await db.list_members(pool, ops.id)} >= {("ed", "editor")}


# Live config push ---------------------------------------------------------------------


@pytest.fixture
async def second_server(aiohttp_client, settings):
    """Another server process's worth of app on the same Redis."""
    return await aiohttp_client(create_app(settings))


async def test_every_open_page_on_every_process_gets_the_new_config(client, second_server, team, new_client):
    ops = team["ops"]
    here = await open_socket(await as_user(new_client, "vi"), ops, 2)
    second_server.session.cookie_jar.update_cookies(
        {
            "dashboard_session": client.session.cookie_jar.filter_cookies(client.make_url("/"))[
                "dashboard_session"
            ].value
        }
    )
    there = await open_socket(second_server, ops, 2)

    await post(client, f"/dashboards/{ops.id}/settings", {"name": "Renamed", "description": "live"})
    for ws in (here, there):
        config = await next_config(ws)
        assert (config["name"], config["description"]) == ("Renamed", "live")

    order = [team["requests"].id, team["cpu"].id]
    await post(client, f"/dashboards/{ops.id}/metrics/order", {"metric_ids": order})
    for ws in (here, there):
        assert [m["id"] for m in (await next_config(ws))["metrics"]] == order


async def test_a_removed_metric_stops_and_a_new_one_can_be_subscribed(client, team, new_client, pool):
    ops, cpu, requests = team["ops"], team["cpu"], team["requests"]
    ws = await open_socket(await as_user(new_client, "vi"), ops, 2)

    await post(client, f"/dashboards/{ops.id}/metrics/{cpu.id}/delete", {})
    assert [m["id"] for m in (await next_config(ws))["metrics"]] == [requests.id]
    # A stale publisher (a worker mid-tick) still sends the removed metric.
    now = (await db.insert_values(pool, [(requests.id, 1.0, datetime.now(UTC))]))[0]
    ghost = db.MetricValue(now.id + 1000, cpu.id, 5.0, now.ts)
    redis_client = connect_redis(servers().redis_url)
    try:
        await publish(
            redis_client,
            servers().channels.dashboard(ops.id),
            encode_values(ops.id, [(cpu, ghost), (requests, now)]),
        )
    finally:
        await redis_client.aclose()
    update = await receive(ws)
    assert (update["action"], update["payload"]["metric_id"]) == ("metric_update", requests.id)
    await expect_only_barrier(pool, requests, ws)
    await ws.send_json({"action": "subscribe", "payload": {"metric_ids": [cpu.id]}})
    assert (await receive(ws))["action"] == "error"

    status, answer = await post(client, f"/dashboards/{ops.id}/metrics", {"name": "disk", "type": "gauge"})
    assert status == 201
    disk = next(m for m in answer["config"]["metrics"] if m["name"] == "disk")
    await receive_until(ws, "complete")  # the answer to the refused subscribe
    assert disk["id"] in [m["id"] for m in (await next_config(ws))["metrics"]]
    await ws.send_json({"action": "subscribe", "payload": {"metric_ids": [disk["id"]]}})
    history = await receive(ws)
    assert (history["action"], history["payload"]["metric_id"]) == ("metric_history", disk["id"])


async def test_removing_a_member_closes_their_sockets(client, team, new_client):
    ops = team["ops"]
    ws = await open_socket(await as_user(new_client, "vi"), ops, 2)
    await post(client, f"/dashboards/{ops.id}/members/{team['vi'].id}/delete", {})
    code, took = await closed_within(ws, 2)
    assert (code, took < 1) == (CloseCode.FORBIDDEN, True)


# CLI ------------------------------------------------------------------------------------


async def test_cli_roles(settings, make_user, pool):
    await make_user("alice")
    await make_user("bob")
    output = await run_cli(settings, "dashboard", "create", "Web tier", "--owner", "alice")
    assert "alice is its editor" in output
    web = await db.get_dashboard_by_slug(pool, "web-tier")
    await run_cli(settings, "member", "add", "web-tier", "bob")
    assert {(m.user.username, m.role) for m in await db.list_members(pool, web.id)} == {
        ("alice", "editor"),
        ("bob", "viewer"),
    }
    await run_cli(settings, "member", "role", "web-tier", "bob", "editor")
    await run_cli(settings, "member", "role", "web-tier", "alice", "viewer")
    assert "bob\teditor" in await run_cli(settings, "member", "list", "web-tier")


async def test_a_metric_added_from_the_cli_reaches_open_pages(client, team, settings):
    ws = await open_socket(client, team["ops"], 2)
    await run_cli(settings, "metric", "add", "ops", "disk", "--type", "gauge")
    assert [m["name"] for m in (await next_config(ws))["metrics"]] == ["cpu", "requests", "disk"]


# Each process keeps each watched dashboard's config (server/live/configcache.py); a
# change must reach the sockets opened after it, on every process, not only
# the open ones.


async def test_a_metric_added_while_sockets_are_open_is_in_every_new_sockets_config(
    client, second_server, team, new_client
):
    ops = team["ops"]
    viewer = await as_user(new_client, "vi")
    viewer_there = second_server
    viewer_there.session.cookie_jar.update_cookies(
        {
            "dashboard_session": viewer.session.cookie_jar.filter_cookies(viewer.make_url("/"))[
                "dashboard_session"
            ].value
        }
    )
    # Sockets open on both processes: both hold the dashboard's config now.
    here = await open_socket(viewer, ops, 2)
    there = await open_socket(viewer_there, ops, 2)

    status, _ = await post(client, f"/dashboards/{ops.id}/metrics", {"name": "disk", "type": "gauge"})
    assert status == 201
    # Once each process has heard of the change (its open socket got the push),
    # a socket opened there must start with the new config, not a kept one.
    for open_ws, app_client in ((here, viewer), (there, viewer_there)):
        assert [m["name"] for m in (await next_config(open_ws))["metrics"]] == ["cpu", "requests", "disk"]
        fresh = await app_client.ws_connect(f"/ws/dashboard/{ops.id}/")
        sequence = await read_connect_sequence(fresh, 3)
        assert [m["name"] for m in sequence[1]["payload"]["metrics"]] == ["cpu", "requests", "disk"]
        assert {m["payload"]["metric_name"] for m in sequence if m["action"] == "metric_history"} == {
            "cpu",
            "requests",
            "disk",
        }
        await fresh.close()

    await post(client, f"/dashboards/{ops.id}/metrics/{team['cpu'].id}/delete", {})
    await post(client, f"/dashboards/{ops.id}/settings", {"name": "Renamed", "description": ""})
    for open_ws, app_client in ((here, viewer), (there, viewer_there)):
        await receive_until(open_ws, "dashboard_config", within=3)
        config = await next_config(open_ws)
        assert config["name"] == "Renamed"
        fresh = await app_client.ws_connect(f"/ws/dashboard/{ops.id}/")
        sequence = await read_connect_sequence(fresh, 2)
        assert sequence[1]["payload"]["name"] == "Renamed"
        assert [m["name"] for m in sequence[1]["payload"]["metrics"]] == ["requests", "disk"]
        await fresh.close()


async def test_a_metric_added_from_the_cli_is_in_new_sockets_config(client, team, settings):
    ws = await open_socket(client, team["ops"], 2)
    await run_cli(settings, "metric", "add", "ops", "disk", "--type", "gauge")
    await next_config(ws)
    fresh = await client.ws_connect(f"/ws/dashboard/{team['ops'].id}/")
    sequence = await read_connect_sequence(fresh, 3)
    assert [m["name"] for m in sequence[1]["payload"]["metrics"]] == ["cpu", "requests", "disk"]

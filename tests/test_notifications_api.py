"""Contact points from the page (server/notifications_api.py): editors create, test and
remove them, choose whom each rule notifies, and read the delivery log."""

from __future__ import annotations

import pytest

from common import db
from common.config import Quotas
from tests.helpers import as_user, post
from tests.notifyreceiver import receiver
from worker.notify.delivery import deliver_once
from worker.notify.guard import AllowList
from worker.notify.senders import open_sender


@pytest.fixture
def path(team) -> str:
    return f"/dashboards/{team['ops'].id}/contact-points"


async def test_a_webhook_secret_is_shown_once(client, team, path, pool):
    status, answer = await post(
        client, path, {"name": "on-call", "kind": "webhook", "target": "https://h.example/x"}
    )
    assert status == 201, answer
    secret = answer["secret"]
    assert len(secret) >= 40
    assert [c["name"] for c in answer["contact_points"]] == ["on-call"]
    listed = await client.get(path)
    assert listed.status == 200 and listed.headers["Cache-Control"] == "no-store"
    assert secret not in await listed.text()
    # Kept as is (not hashed): the worker signs with it.
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT secret FROM contact_points")
        assert await cur.fetchone() == (secret,)

    _, slack = await post(
        client, path, {"name": "chat", "kind": "slack", "target": "https://hooks.example/T/B"}
    )
    assert slack["secret"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "kind": "sms", "target": "+1"}, "kind"),
        ({"name": "x", "kind": "webhook", "target": "file:///etc/passwd"}, "target"),
        ({"name": "x", "kind": "slack", "target": "not a url"}, "target"),
        ({"name": "x", "kind": "email", "target": "a@b.example\r\nBcc: all@b.example"}, "target"),
        ({"name": " ", "kind": "email", "target": "a@b.example"}, "name"),
        ({"kind": "email", "target": "a@b.example"}, "name"),
    ],
)
async def test_bad_contact_points_name_the_field_and_add_nothing(client, team, path, pool, body, field):
    status, answer = await post(client, path, body)
    assert status in (400, 422), answer
    assert field in answer["errors"], answer
    assert await db.list_contact_points(pool, team["ops"].id) == []


async def test_viewers_cannot_see_or_change_contact_points(client, team, path, new_client, pool):
    contact = await db.create_contact_point(pool, team["ops"].id, "hook", "webhook", "https://h.example", "k")
    viewer = await as_user(new_client, "vi")
    assert (await viewer.get(path)).status == 403
    body = {"name": "mine", "kind": "webhook", "target": "https://evil.example"}
    assert (await post(viewer, path, body))[0] == 403
    assert (await post(viewer, f"{path}/{contact.id}/test", {}))[0] == 403
    assert (await post(viewer, f"{path}/{contact.id}/delete", {}))[0] == 403
    assert [c.id for c in await db.list_contact_points(pool, team["ops"].id)] == [contact.id]


async def test_send_test_goes_through_the_outbox_and_shows_in_the_log(client, team, path, pool):
    async with receiver() as hook:
        _, created = await post(client, path, {"name": "hook", "kind": "webhook", "target": hook.url})
        contact_id = created["contact_point"]["id"]
        status, answer = await post(client, f"{path}/{contact_id}/test", {})
        assert status == 202, answer
        async with open_sender(AllowList.parse(["127.0.0.1"])) as sender:
            assert await deliver_once(pool, sender) == 1
        assert len(hook.received) == 1
    [attempt] = (await (await client.get(path)).json())["deliveries"]
    assert attempt["kind"] == "test"
    assert (attempt["outcome"], attempt["status"], attempt["contact_point_id"]) == (
        "delivered",
        "delivered",
        contact_id,
    )
    assert attempt["detail"] == "HTTP 200: answer 200"


async def test_a_rule_notifies_only_this_dashboards_contact_points(client, team, path, pool, make_dashboard):
    rule = await db.create_alert_rule(pool, team["cpu"].id, "above", 90.0)
    other = await make_dashboard("other")
    theirs = await db.create_contact_point(pool, other.id, "theirs", "webhook", "https://h.example", "k")
    ours = await db.create_contact_point(pool, team["ops"].id, "ours", "webhook", "https://h.example", "k")
    rule_path = f"/dashboards/{team['ops'].id}/alerts/{rule.id}/notifications"

    status, answer = await post(client, rule_path, {"contact_point_ids": [theirs.id]})
    assert status == 422 and "contact_point_ids" in answer["errors"], answer
    status, answer = await post(client, rule_path, {"contact_point_ids": [ours.id], "repeat_seconds": 5})
    assert status in (400, 422) and "repeat_seconds" in answer["errors"], answer
    assert await db.rule_contact_points(pool, rule.id) == []

    status, answer = await post(client, rule_path, {"contact_point_ids": [ours.id], "repeat_seconds": 600})
    assert status == 200, answer
    assert answer["rules"] == [{"rule_id": rule.id, "contact_point_ids": [ours.id], "repeat_seconds": 600}]
    # Another dashboard's rule cannot be reached through this one.
    their_metric = await db.create_metric(pool, other.id, "m", "gauge", "", "", "random")
    their_rule = await db.create_alert_rule(pool, their_metric.id, "above", 1.0)
    their_path = f"/dashboards/{team['ops'].id}/alerts/{their_rule.id}/notifications"
    status, answer = await post(client, their_path, {"contact_point_ids": [ours.id]})
    assert status == 422 and "rule_id" in answer["errors"], answer


async def test_contact_points_have_a_quota(pool, team):
    quotas = Quotas(max_contact_points_per_dashboard=1)
    await db.create_contact_point(
        pool, team["ops"].id, "a", "webhook", "https://h.example", "k", quotas=quotas
    )
    with pytest.raises(db.QuotaExceeded, match="max_contact_points_per_dashboard"):
        await db.create_contact_point(
            pool, team["ops"].id, "b", "webhook", "https://h.example", "k", quotas=quotas
        )


async def test_the_page_has_the_section_for_editors_only(client, team, new_client):
    page = await (await client.get(f"/dashboards/{team['ops'].id}/")).text()
    assert 'id="edit-contacts"' in page and "notifications.js" in page
    viewer = await as_user(new_client, "vi")
    page = await (await viewer.get(f"/dashboards/{team['ops'].id}/")).text()
    assert 'id="edit-contacts"' not in page and "notifications.js" not in page

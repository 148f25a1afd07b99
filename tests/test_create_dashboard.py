"""Creating a dashboard from the list page: any user may, and becomes its editor."""

from __future__ import annotations

import re

from common import db
from tests.helpers import csrf_from, log_in


async def _create(client, **fields: str):
    token = await csrf_from(client, "/dashboards/")
    return await client.post("/dashboards/", data={"csrf_token": token, **fields}, allow_redirects=False)


async def test_a_user_creates_a_dashboard_and_becomes_its_editor(client, pool, make_user):
    alice = await make_user("alice")
    await log_in(client, "alice")
    response = await _create(client, name="  Checkout Latency ", description="p99 by region")
    assert response.status == 303
    created = await db.get_dashboard_by_slug(pool, "checkout-latency")
    assert response.headers["Location"] == f"/dashboards/{created.id}/"
    assert (created.name, created.description) == ("Checkout Latency", "p99 by region")
    membership = await db.get_membership(pool, created.id, alice.id)
    assert membership is not None and membership.role == db.EDITOR
    page = await (await client.get(response.headers["Location"])).text()
    assert 'id="edit-panel"' in page  # the creator can add metrics right away


async def test_a_taken_slug_gets_the_next_free_number(client, pool, make_user, make_dashboard):
    await make_user("alice")
    await make_dashboard("ops")
    await make_dashboard("ops-2")
    await log_in(client, "alice")
    for _ in range(2):
        assert (await _create(client, name="Ops")).status == 303
    slugs = {d.slug for d in await db.list_dashboards(pool)}
    assert slugs == {"ops", "ops-2", "ops-3", "ops-4"}


async def test_a_name_without_ascii_letters_still_gets_a_slug(client, pool, make_user):
    await make_user("alice")
    await log_in(client, "alice")
    assert (await _create(client, name="Курсы")).status == 303
    assert [d.slug for d in await db.list_dashboards(pool)] == ["dashboard"]


async def test_a_blank_name_is_refused_with_the_reason_and_nothing_is_created(client, pool, make_user):
    await make_user("alice")
    await log_in(client, "alice")
    response = await _create(client, name="   ", description="<script>x</script>")
    assert response.status == 400
    page = await response.text()
    assert re.search(r'class="field-error">[^<]*(Shorter than|Length)', page), page
    assert "<script>x</script>" not in page  # the re-shown input is escaped
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    assert await db.list_dashboards(pool) == []


async def test_a_too_long_name_is_refused(client, pool, make_user):
    await make_user("alice")
    await log_in(client, "alice")
    assert (await _create(client, name="x" * 201)).status == 400
    assert await db.list_dashboards(pool) == []


async def test_creating_needs_the_csrf_token(client, pool, make_user):
    await make_user("alice")
    await log_in(client, "alice")
    response = await client.post("/dashboards/", data={"name": "Ops"}, allow_redirects=False)
    assert response.status == 403
    assert await db.list_dashboards(pool) == []


async def test_an_anonymous_visitor_cannot_create(client, pool):
    token = await csrf_from(client)
    response = await client.post(
        "/dashboards/", data={"csrf_token": token, "name": "Ops"}, allow_redirects=False
    )
    assert response.status == 302 and response.headers["Location"].startswith("/login")
    assert await db.list_dashboards(pool) == []

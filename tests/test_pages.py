"""Login, logout and the pages a logged-in user sees."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from redis.asyncio import Redis

from common import db, vocabulary
from common.passwords import needs_rehash, verify_password
from tests.helpers import csrf_from, log_in
from tests.servers import servers

STATIC = Path(__file__).resolve().parents[1] / "server" / "static"


async def test_anonymous_visitor_is_sent_to_login(client):
    response = await client.get("/dashboards/", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/login?next=/dashboards/"


async def test_login_page_sets_httponly_lax_session_cookie(client):
    response = await client.get("/login")
    cookie = response.cookies["dashboard_session"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"


async def test_wrong_password_and_unknown_user_get_the_same_answer(client, make_user):
    await make_user("alice", "right-password")
    answers = []
    for username, password in (("alice", "wrong"), ("nobody", "wrong")):
        token = await csrf_from(client)
        response = await client.post(
            "/login", data={"username": username, "password": password, "csrf_token": token}
        )
        answers.append((response.status, "Invalid username or password." in await response.text()))
    assert answers == [(401, True), (401, True)]


async def test_login_without_csrf_token_is_refused(client, make_user):
    await make_user("alice")
    await client.get("/login")
    response = await client.post("/login", data={"username": "alice", "password": "secret-pw"})
    assert response.status == 403
    follow = await client.get("/dashboards/", allow_redirects=False)
    assert follow.status == 302  # still not logged in


async def test_login_rotates_the_session_id(client, make_user):
    await make_user("alice")
    await client.get("/login")
    before = client.session.cookie_jar.filter_cookies(client.make_url("/"))["dashboard_session"].value
    await log_in(client, "alice")
    after = client.session.cookie_jar.filter_cookies(client.make_url("/"))["dashboard_session"].value
    assert before != after


async def test_dashboard_list_shows_only_member_dashboards_escaped(client, make_user, make_dashboard):
    alice = await make_user("alice")
    await make_dashboard("mine", members=(alice,), name="<b>Mine</b>")
    await make_dashboard("theirs", name="Theirs")
    await log_in(client, "alice")
    page = await (await client.get("/dashboards/")).text()
    assert "&lt;b&gt;Mine&lt;/b&gt;" in page
    assert "<b>Mine</b>" not in page
    assert "Theirs" not in page


async def test_dashboard_page_for_members_only(client, make_user, make_dashboard):
    alice = await make_user("alice")
    mine = await make_dashboard("mine", members=(alice,))
    theirs = await make_dashboard("theirs")
    await log_in(client, "alice")
    page = await client.get(f"/dashboards/{mine.id}/")
    assert page.status == 200
    assert f'data-socket="/ws/dashboard/{mine.id}/"' in await page.text()
    assert (await client.get(f"/dashboards/{theirs.id}/")).status == 404
    assert (await client.get("/dashboards/999999/")).status == 404


async def test_the_page_renders_the_vocabulary_it_validates_with(client, pool, make_user, make_dashboard):
    """Ranges, roles, conditions and styles on the page are common/vocabulary.py's, and
    the page scripts get the same values as JSON (a `</script>` in it would be escaped)."""
    alice = await make_user("alice")
    mine = await make_dashboard("mine")
    await db.add_member(pool, mine.id, alice.id, db.EDITOR)
    await log_in(client, "alice")
    page = await (await client.get(f"/dashboards/{mine.id}/")).text()
    found = re.search(r'<script type="application/json" id="vocabulary">(.*?)</script>', page)
    assert found is not None
    assert json.loads(found.group(1)) == vocabulary.as_json()
    assert re.findall(r'data-range="([^"]+)"', page) == list(vocabulary.RANGES)
    pref_ranges = re.search(r'<select id="pref-range">(.*?)</select>', page, re.S).group(1)
    assert re.findall(r'value="([^"]+)"', pref_ranges) == list(vocabulary.RANGES)
    for name, values in (("role", vocabulary.ROLES), ("condition", vocabulary.ALERT_CONDITIONS)):
        options = re.search(rf'<select name="{name}">(.*?)</select>', page, re.S).group(1)
        assert re.findall(r'value="([^"]+)"', options) == list(values)
    assert f'<option value="{vocabulary.DEFAULT_METRIC_TYPE}" selected>' in page


# Targets a browser would follow off the site; each must land on the dashboard list.
FOREIGN_NEXT = [
    ("protocol-relative", "//evil.example/"),
    ("absolute", "https://evil.example/"),
    ("scheme without slashes", "javascript:alert(1)"),
    ("tab between slashes", "/\t/evil.example/x"),
    ("CR between slashes", "/\r/evil.example/x"),
    ("LF between slashes", "/\n/evil.example/x"),
    ("CRLF before slash", "/\r\n/evil.example/x"),
    ("NUL between slashes", "/\x00/evil.example/x"),
    ("leading tab", "\t//evil.example/x"),
    ("backslash", "/\\evil.example/x"),
    ("backslash later", "/dashboards/\\..\\evil"),
    ("encoded slashes", "/%2F%2Fevil.example/x"),
    ("encoded second slash", "/%2Fevil.example/x"),
    ("encoded backslash", "/%5Cevil.example/x"),
    ("encoded tab", "/%09/evil.example/x"),
    ("encoded CR LF", "/%0d%0a/evil.example/x"),
    ("double-encoded slash", "/%252Fevil.example/x"),
    ("empty", ""),
    ("relative", "evil.example/x"),
]


@pytest.mark.parametrize("target", [case[1] for case in FOREIGN_NEXT], ids=[case[0] for case in FOREIGN_NEXT])
async def test_login_redirects_only_to_local_paths(client, make_user, target):
    await make_user("alice")
    token = await csrf_from(client)
    response = await client.post(
        "/login",
        data={"username": "alice", "password": "secret-pw", "csrf_token": token, "next": target},
        allow_redirects=False,
    )
    assert response.status == 302
    assert response.headers["Location"] == "/dashboards/"


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/dashboards/7/", "/dashboards/7/"),
        ("/dashboards/7/export?since=24h&metric=3", "/dashboards/7/export?since=24h&metric=3"),
        ("/dashboards/\t7/", "/dashboards/7/"),  # control characters dropped, the path kept
    ],
)
async def test_login_keeps_a_local_next_path(client, make_user, target, location):
    await make_user("alice")
    token = await csrf_from(client)
    response = await client.post(
        "/login",
        data={"username": "alice", "password": "secret-pw", "csrf_token": token, "next": target},
        allow_redirects=False,
    )
    assert response.headers["Location"] == location


async def test_login_renews_a_hash_made_with_weaker_parameters(client, pool):
    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("secret-pw")
    alice = await db.create_user(pool, "alice", weak)
    assert needs_rehash(weak)

    await log_in(client, "alice")

    stored = (await db.get_credentials(pool, "alice")).password_hash
    assert stored != weak
    assert verify_password(stored, "secret-pw") and not needs_rehash(stored)
    # Renewed only over the hash it read: a password changed meanwhile stays.
    assert not await db.replace_password_hash(pool, alice.id, weak, "$argon2id$other")
    assert (await db.get_credentials(pool, "alice")).password_hash == stored


async def test_a_failed_login_leaves_a_weak_hash_alone(client, pool):
    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("secret-pw")
    await db.create_user(pool, "alice", weak)
    token = await csrf_from(client)
    response = await client.post(
        "/login", data={"username": "alice", "password": "wrong", "csrf_token": token}
    )
    assert response.status == 401
    assert (await db.get_credentials(pool, "alice")).password_hash == weak


async def test_logout_ends_the_session_in_redis(client, make_user):
    await make_user("alice")
    await log_in(client, "alice")
    key = client.session.cookie_jar.filter_cookies(client.make_url("/"))["dashboard_session"].value
    redis_client = Redis.from_url(servers().redis_url)
    try:
        stored = json.loads(await redis_client.get(f"dashboard_session_{key}"))
        assert "user_id" in stored["session"]
        token = await csrf_from(client, "/dashboards/")
        response = await client.post("/logout", data={"csrf_token": token}, allow_redirects=False)
        assert response.status == 302
        assert await redis_client.get(f"dashboard_session_{key}") is None
    finally:
        await redis_client.aclose()
    # Replaying the old cookie gets nowhere: the server-side session is over.
    client.session.cookie_jar.update_cookies({"dashboard_session": key})
    assert (await client.get("/dashboards/", allow_redirects=False)).status == 302


async def test_anonymous_visitors_store_nothing_in_redis(client, make_user):
    await make_user("alice")
    redis_client = Redis.from_url(servers().redis_url)
    try:
        before = await redis_client.dbsize()
        for _ in range(100):
            client.session.cookie_jar.clear()  # a new visitor each time
            response = await client.get("/login")
            assert response.status == 200
        assert await redis_client.dbsize() == before
        # The form still works: its token travels in the cookie (double submit).
        cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["dashboard_session"].value
        assert cookie.startswith("anon.")
        await log_in(client, "alice")
        key = client.session.cookie_jar.filter_cookies(client.make_url("/"))["dashboard_session"].value
        assert not key.startswith("anon.")
        # The 7-day session exists from the login on.
        assert 6 * 24 * 3600 < await redis_client.ttl(f"dashboard_session_{key}") <= 7 * 24 * 3600
    finally:
        await redis_client.aclose()


async def test_an_anonymous_cookie_without_its_own_token_is_refused(client, make_user):
    await make_user("alice")
    await client.get("/login")
    client.session.cookie_jar.update_cookies({"dashboard_session": "anon." + "a" * 43})
    response = await client.post(
        "/login", data={"username": "alice", "password": "secret-pw", "csrf_token": "b" * 43}
    )
    assert response.status == 403
    # A cookie that is no token at all is a fresh visitor: refused alike.
    client.session.cookie_jar.update_cookies({"dashboard_session": "anon.<script>"})
    response = await client.post(
        "/login", data={"username": "alice", "password": "secret-pw", "csrf_token": "<script>"}
    )
    assert response.status == 403


async def test_static_chart_library_is_served_locally(client):
    response = await client.get("/static/vendor/uPlot-1.6.32.iife.min.js")
    assert response.status == 200
    assert "uPlot" in await response.text()


async def test_the_dashboard_page_loads_its_scripts_as_modules_served_as_javascript(client, team):
    page = await (await client.get(f"/dashboards/{team['ops'].id}/")).text()
    # Classic scripts: every page's theme toggle, and uPlot (read by the modules as a global).
    classic = re.findall(r'<script src="/static/([^"]+)"', page)
    assert classic == ["theme.js", "vendor/uPlot-1.6.32.iife.min.js"]
    modules = re.findall(r'<script type="module" src="/static/([^"]+)"', page)
    assert modules[-1] == "dashboard.js" and "editor.js" in modules
    # Every module a page loads or imports exists, and is served as JavaScript: a browser
    # runs a module script only with a JavaScript MIME type (and nosniff is set).
    imported = {
        name
        for script in STATIC.glob("*.js")
        for name in re.findall(r'^import .* from "\./([^"]+)";$', script.read_text(), re.M)
    }
    assert {"format.js", "socket.js", "chart.js", "timerange.js", "panels.js"} <= imported
    for name in sorted(set(modules) | imported):
        response = await client.get(f"/static/{name}")
        assert response.status == 200, name
        assert response.content_type in ("text/javascript", "application/javascript"), name


async def test_an_unknown_address_gets_the_sites_not_found_page(client, make_user):
    await make_user("alice")
    await log_in(client, "alice")
    response = await client.get("/no/such/page", headers={"Accept": "text/html,*/*"})
    assert response.status == 404
    page = await response.text()
    assert "<h2>Page not found</h2>" in page and 'href="/dashboards/"' in page
    # Other clients keep the plain answer.
    response = await client.get("/no/such/page", headers={"Accept": "application/json"})
    assert (response.status, await response.text()) == (404, "404: Not Found")


async def test_an_address_without_its_trailing_slash_leads_to_the_page(client, setup):
    ops = setup["ops"]
    for typed, page in (("/playground", "/playground/"), (f"/dashboards/{ops.id}", f"/dashboards/{ops.id}/")):
        response = await client.get(typed + "?x=1", allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (308, page + "?x=1")
        assert (await client.get(typed)).status == 200
    # Still "not found" where no page would have matched either way.
    assert (await client.get("/no/such/page", allow_redirects=False)).status == 404


async def test_every_response_carries_the_security_headers(client, make_user):
    await make_user("alice")
    await log_in(client, "alice")
    for path in ("/login", "/dashboards/", "/static/app.css", "/no/such/page", "/healthz"):
        response = await client.get(path)
        csp = response.headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert response.headers.get("X-Content-Type-Options") == "nosniff", path
        assert response.headers.get("X-Frame-Options") == "DENY", path
        if response.content_type == "text/html":
            assert response.headers.get("Cache-Control") == "no-store", path
    assert (await client.get("/static/app.css")).headers.get("Cache-Control") != "no-store"

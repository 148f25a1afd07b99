"""Misbehaving clients: each gets a clear error or close code, and the server
and other clients carry on. Message-level errors are tabled in
test_ws_protocol.py (BAD_INPUT); slow readers in test_fanout.py."""

from __future__ import annotations

import asyncio
import functools
import io
import json
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import psycopg2
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from yarl import URL

from common import db
from common.passwords import UnusablePassword, hash_password, verify_password
from common.schemas import (
    CLIENT_ACTIONS,
    AlertRuleCreateSchema,
    BatchPushSchema,
    DashboardDeleteSchema,
    DashboardEditSchema,
    DashboardPreferencesSchema,
    MemberAddSchema,
    MemberRoleSchema,
    MetricCreateSchema,
    MetricEditSchema,
    MetricOrderSchema,
    ProtocolError,
    PushedMetricValueSchema,
    ThemeSchema,
    TokenCreateSchema,
    error_message,
    parse_client_message,
)
from common.tokens import display_prefix, token_hash
from server.app import create_app
from server.keys import REGISTRY_KEY
from server.live.closecodes import CloseCode
from tests.helpers import csrf_from, eventually, log_in
from tests.servers import servers
from tests.wsclient import read_connect_sequence, receive, receive_until


@pytest.fixture
async def ops(make_user, make_dashboard, make_metric):
    alice, bob = await make_user("alice"), await make_user("bob")
    dashboard = await make_dashboard("ops", members=(alice, bob))
    await make_metric(dashboard, "cpu")
    return dashboard


async def close_code_of(ws, within: float = 5) -> int:
    """Read past any messages to the close frame; the code it carried."""
    while True:
        message = await asyncio.wait_for(ws.receive(), within)
        if message.type == WSMsgType.CLOSE:
            return message.data
        assert message.type == WSMsgType.TEXT, message


async def still_served(client: TestClient, dashboard) -> None:
    """A well-behaved client connects and gets answers."""
    ws = await client.ws_connect(f"/ws/dashboard/{dashboard.id}/")
    await read_connect_sequence(ws, 1)
    await ws.send_json({"action": "ping"})
    assert await receive_until(ws, "complete") == [{"action": "pong"}, {"action": "complete"}]
    await ws.close()


# Abuse that ends the offender's socket (and only that one) -----------------------


async def flood(client, dashboard):
    ws = await client.ws_connect(f"/ws/dashboard/{dashboard.id}/")
    await read_connect_sequence(ws, 1)
    for _ in range(200):
        await ws.send_str('{"action":"ping"}')
    return await close_code_of(ws)


async def too_many_sockets(client, dashboard):
    kept = [await client.ws_connect(f"/ws/dashboard/{dashboard.id}/") for _ in range(3)]
    for ws in kept:
        await read_connect_sequence(ws, 1)
    extra = await client.ws_connect(f"/ws/dashboard/{dashboard.id}/")
    assert await receive(extra) == {
        "action": "authentication",
        "payload": {"status_code": 429, "status_text": "Too many connections", "data": None},
    }
    code = await close_code_of(extra)
    registry = client.server.app[REGISTRY_KEY]
    open_before = len(registry.sessions())
    await kept[0].close()
    await eventually(
        lambda: len(registry.sessions()) < open_before, 5, "the closed socket's place given back"
    )
    await still_served(client, dashboard)  # room again once one closed
    return code


async def oversized_frame(client, dashboard):
    ws = await client.ws_connect(f"/ws/dashboard/{dashboard.id}/")
    await read_connect_sequence(ws, 1)
    await ws.send_str("[" + " " * 70_000 + "]")
    return await close_code_of(ws)


ABUSE = [
    ("message flood", flood, CloseCode.RATE_LIMITED),
    ("too many sockets for one user", too_many_sockets, CloseCode.TOO_MANY_CONNECTIONS),
    ("frame above 64 KiB", oversized_frame, 1009),
]


@pytest.mark.parametrize(("abuse", "code"), [case[1:] for case in ABUSE], ids=[case[0] for case in ABUSE])
async def test_abuse_closes_only_the_offenders_socket(aiohttp_client, settings, ops, abuse, code):
    limits = replace(settings, message_rate=5.0, message_burst=20, max_connections_per_user=3)
    client = await aiohttp_client(create_app(limits))
    await log_in(client, "alice")
    bobs = TestClient(client.server)
    await bobs.start_server()
    try:
        await log_in(bobs, "bob")
        bystander = await bobs.ws_connect(f"/ws/dashboard/{ops.id}/")
        await read_connect_sequence(bystander, 1)
        assert await abuse(client, ops) == code
        await bystander.send_json({"action": "ping"})
        assert await receive_until(bystander, "complete") == [{"action": "pong"}, {"action": "complete"}]
        await still_served(bobs, ops)
    finally:
        await bobs.close()


# Malformed cookies and session ids -------------------------------------------------

MALFORMED_COOKIES = [
    ("empty", ""),
    ("garbage", "not-a-session"),
    ("unknown well-formed id", "0123456789abcdef0123456789abcdef"),
    ("path characters", "../../etc/passwd"),
    ("redis glob", "*"),
    ("quoted", '"abc"'),
    ("very long", "a" * 4000),
    ("control characters", "%00%0d%0a"),
    ("stored but not JSON", "5" * 32),
    ("stored with a string user id", "6" * 32),
    ("stored for a deleted user", "7" * 32),
]
STORED = {
    "5" * 32: "{{{",
    "6" * 32: json.dumps({"created": 2_000_000_000, "session": {"user_id": "1"}}),
    "7" * 32: json.dumps({"created": 2_000_000_000, "session": {"user_id": 987654}}),
}


@pytest.mark.parametrize(
    "cookie", [case[1] for case in MALFORMED_COOKIES], ids=[case[0] for case in MALFORMED_COOKIES]
)
async def test_malformed_session_cookies_are_just_not_logged_in(client, new_client, ops, cookie):
    async with Redis.from_url(servers().redis_url) as redis_client:
        for key, data in STORED.items():
            await redis_client.set(f"dashboard_session_{key}", data)
    stranger = await new_client()
    headers = {"Cookie": f"dashboard_session={cookie}"}
    page = await stranger.get("/dashboards/", headers=headers, allow_redirects=False)
    assert page.status == 302
    assert page.headers["Location"].startswith("/login")
    ws = await stranger.ws_connect(f"/ws/dashboard/{ops.id}/", headers=headers)
    assert (await receive(ws))["payload"]["status_code"] == 401
    assert await close_code_of(ws) == CloseCode.UNAUTHENTICATED
    await log_in(client, "alice")
    await still_served(client, ops)


# Fuzzing the message handler ---------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
# Messages near the valid ones find more than random bytes do.
ACTIONS = st.sampled_from([*CLIENT_ACTIONS, "", "Subscribe", "error", "complete"]) | st.text(max_size=10)
# Ids as `subscribe` takes them: in {"metric_ids": [...]}, or the bare list alone.
SOME_IDS = st.lists(st.integers(min_value=-(2**70), max_value=2**70) | JSON_VALUES, max_size=8)
PAYLOADS = JSON_VALUES | SOME_IDS | st.fixed_dictionaries({"metric_ids": SOME_IDS})
MESSAGES = (
    st.fixed_dictionaries({"action": ACTIONS}, optional={"payload": PAYLOADS}).map(json.dumps)
    | JSON_VALUES.map(json.dumps)
    | st.text(max_size=200)
)


def _strict_json(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(name)

    return json.loads(text, parse_constant=refuse)


@hypothesis_settings(max_examples=500, deadline=None)
@given(MESSAGES)
def test_the_parser_accepts_or_explains_never_crashes(text):
    try:
        action, _ = parse_client_message(text)
    except ProtocolError as exc:
        answer = _strict_json(error_message(exc))
        assert answer["action"] == "error" and answer["payload"]["message"]
    else:
        assert action in CLIENT_ACTIONS


def test_nesting_too_deep_to_parse_is_an_error_not_a_crash():
    with pytest.raises(ProtocolError, match="not valid JSON"):
        parse_client_message("[" * 50_000 + "]" * 50_000)


@hypothesis_settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frames=st.lists(MESSAGES | st.binary(max_size=50), min_size=1, max_size=10))
def test_any_frames_get_answers_and_leave_the_socket_usable(settings, frames):
    """Through the real socket: every frame is answered, ending in `complete`."""
    with closing(psycopg2.connect(settings.database_url)) as conn, conn, conn.cursor() as cur:
        cur.execute("TRUNCATE users, dashboards RESTART IDENTITY CASCADE")
        cur.execute(
            "INSERT INTO users (username, password_hash) VALUES ('alice', %s)", (hash_password("pw"),)
        )
        cur.execute("INSERT INTO dashboards (name, slug) VALUES ('Ops', 'ops')")
        cur.execute("INSERT INTO dashboard_members VALUES (1, 1)")
        cur.execute("INSERT INTO metrics (dashboard_id, name, type) VALUES (1, 'cpu', 'gauge')")
    asyncio.run(_send_frames(settings, frames))


async def _send_frames(settings, frames) -> None:
    async with TestClient(TestServer(create_app(settings))) as client:
        await log_in(client, "alice", "pw")
        ws = await client.ws_connect("/ws/dashboard/1/")
        await read_connect_sequence(ws, 1)
        for frame in frames:
            await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
            for message in await receive_until(ws, "complete"):
                assert message["action"] in ("error", "pong", "metric_history", "complete"), message
        await ws.send_json({"action": "ping"})
        assert await receive_until(ws, "complete") == [{"action": "pong"}, {"action": "complete"}]


# Malformed HTTP requests, endpoint by endpoint ------------------------------------------
# Every route of server/routes.py has its cases here (a new one without them fails
# test_every_endpoint_has_bad_input_cases). Each malformed request gets a 4xx; where
# `field` is set, the JSON answer names it in `errors` (a dotted path).

DEEP = 100_000  # levels of nesting; far beyond what a recursive parser survives
HUGE_ID = "9" * 30
WORLD_TOKEN = "dsh_bad-input-tests-token"  # matches the routes' \d+ but fits no bigint
CLIENT_ERROR = range(400, 500)
FORM = "application/x-www-form-urlencoded"
ANY_ANSWER = range(200, 500)  # input the endpoint ignores: anything but a crash


@dataclass(frozen=True)
class Bad:
    name: str
    body: bytes | None = None
    content_type: str | None = "application/json"
    query: tuple[tuple[str, str], ...] = ()
    path: tuple[tuple[str, str], ...] = ()  # path parts replaced, e.g. (("id", HUGE_ID),)
    field: str | None = None
    status: range = CLIENT_ERROR
    csrf: bool = True  # a form body gets the session's token


def body_cases(example: dict) -> list[Bad]:
    """What any JSON endpoint must refuse; `example` is a body of its own shape."""
    sample = json.dumps(example).encode()
    first = next(iter(example))
    return [
        Bad("nested arrays", b"[" * DEEP + b"]" * DEEP, field="body"),
        Bad("unclosed nesting", b"[" * DEEP, field="body"),
        Bad("nested objects", b'{"a":' * DEEP + b"1" + b"}" * DEEP, field="body"),
        Bad("nested in a field", f'{{"{first}": '.encode() + b"[" * DEEP + b"]" * DEEP + b"}", field="body"),
        Bad("not UTF-8", sample[:-1] + b', "\xff\xfe": "\xc3"}', field="body"),
        Bad("unknown charset", sample, "application/json; charset=x-no-such", field="body"),
        Bad("NaN", f'{{"{first}": NaN}}'.encode(), field="body"),
        Bad("Infinity", f'{{"{first}": Infinity}}'.encode(), field="body"),
        Bad("-Infinity", f'{{"{first}": -Infinity}}'.encode(), field="body"),
        Bad("number beyond a float", f'{{"{first}": 1e400}}'.encode(), field="body"),
        Bad("5000-digit integer", f'{{"{first}": {"9" * 5000}}}'.encode(), field="body"),
        Bad("empty body", b"", field="body"),
        Bad("not an object", b"[]", field="body"),
        Bad("plain text", sample, "text/plain"),
        Bad("form", b"a=1", "application/x-www-form-urlencoded"),
        Bad("no content type", sample, None),
        Bad("NUL in a string", json.dumps({**example, first: "a\x00b"}).encode(), field=first),
        Bad("lone surrogate", json.dumps({**example, first: "a\ud800"}).encode(), field=first),
        Bad("integer beyond a bigint", json.dumps({**example, first: 10**30}).encode(), field=first),
    ]


def form_cases(fields: dict[str, str]) -> list[Bad]:
    """What an HTML form endpoint must refuse (or ignore); the CSRF token is added."""
    form = "&".join(f"{k}={v}" for k, v in fields.items()).encode()
    cases = [
        Bad("not UTF-8", form + b"&x=%ff%fe\xff", FORM),
        Bad("plain text", form, "text/plain"),
        Bad("JSON", json.dumps(fields).encode(), "application/json"),
        Bad("broken multipart", b"--x\r\nnonsense", "multipart/form-data; boundary=x"),
        Bad("multipart without boundary", b"--x\r\n", "multipart/form-data"),
        Bad("unknown charset", form, FORM + "; charset=x-no-such"),
        Bad("10,000 fields, no CSRF token", b"&".join(b"f%d=1" % i for i in range(10_000)), FORM, csrf=False),
    ]
    if fields:
        cases.append(Bad("NUL in every field", b"&".join(k.encode() + b"=a%00b" for k in fields), FORM))
    return cases


def path_cases(*parts: str) -> list[Bad]:
    return [Bad(f"{part} beyond a bigint", path=((part, HUGE_ID),)) for part in parts]


EXPORT_RANGES = [
    ("since", "-999999999d"),
    ("since", "999999999d"),
    ("since", "0001-01-01T00:00:00+14:00"),
    ("until", "9999-12-31T23:59:59-14:00"),
    ("until", "0001-01-01T00:00:00+00:00"),
    ("since", "9999-12-31T23:59:59"),
    ("since", "99999999999999999999s"),
    ("until", "1e400"),
    ("since", "\x00"),
    ("since", "2026-02-30"),
]

ENDPOINTS: dict[str, list[Bad]] = {
    "GET /": [Bad("junk query", query=(("\x00", "\xff"),), status=ANY_ANSWER)],
    "GET /login": [
        Bad("next with controls", query=(("next", "/\t/evil.example"),), status=ANY_ANSWER),
        Bad("next of 100 kB", query=(("next", "/" + "a" * 100_000),)),
    ],
    "POST /login": [
        *form_cases({"username": "alice", "password": "secret-pw"}),
        Bad("username of 1 MB", b"username=" + b"a" * 2**20 + b"&password=x", FORM),
    ],
    "POST /logout": form_cases({}),
    "GET /dashboards/": [Bad("junk query", query=(("a", "\x00"),), status=ANY_ANSWER)],
    "POST /dashboards/": [
        *form_cases({"name": "New", "description": ""}),
        Bad("name of 10 kB", b"name=" + b"a" * 10_000, FORM),
    ],
    "GET /dashboards/{id}/": path_cases("id"),
    "GET /dashboards/{id}/export": [
        *path_cases("id"),
        *(Bad(f"{key}={value}", query=((key, value),), field=key) for key, value in EXPORT_RANGES),
        Bad("unknown format", query=(("format", "xlsx"),), field="format"),
        Bad("metric beyond a bigint", query=(("metric", HUGE_ID),)),
    ],
    "POST /dashboards/{id}/settings": [
        *path_cases("id"),
        *body_cases({"name": "Ops", "retention_days": 7}),
        Bad(
            "retention beyond a bigint",
            b'{"name": "Ops", "retention_days": 1' + b"0" * 30 + b"}",
            field="retention_days",
        ),
    ],
    # Never the dashboard's name ("Ops"): no case may delete it.
    "POST /dashboards/{id}/delete": [*path_cases("id"), *body_cases({"confirm": "not its name"})],
    "POST /dashboards/{id}/metrics": [*path_cases("id"), *body_cases({"name": "m", "type": "gauge"})],
    "POST /dashboards/{id}/metrics/order": [*path_cases("id"), *body_cases({"metric_ids": [1]})],
    "POST /dashboards/{id}/metrics/{metric_id}": [
        *path_cases("id", "metric_id"),
        *body_cases({"name": "m", "unit": "u"}),
    ],
    "POST /dashboards/{id}/metrics/{metric_id}/delete": path_cases("id", "metric_id"),
    "GET /dashboards/{id}/members": path_cases("id"),
    "POST /dashboards/{id}/members": [*path_cases("id"), *body_cases({"username": "bob", "role": "viewer"})],
    "POST /dashboards/{id}/members/{user_id}/role": [
        *path_cases("id", "user_id"),
        *body_cases({"role": "viewer"}),
    ],
    "POST /dashboards/{id}/members/{user_id}/delete": path_cases("id", "user_id"),
    "GET /dashboards/{id}/tokens": path_cases("id"),
    "POST /dashboards/{id}/tokens": [*path_cases("id"), *body_cases({"name": "deploy"})],
    "POST /dashboards/{id}/tokens/{token_id}/revoke": path_cases("id", "token_id"),
    "POST /dashboards/{id}/tokens/{token_id}/delete": path_cases("id", "token_id"),
    "GET /dashboards/{id}/contact-points": path_cases("id"),
    "POST /dashboards/{id}/contact-points": [
        *path_cases("id"),
        *body_cases({"name": "ops", "kind": "webhook", "target": "https://hooks.example/x"}),
        Bad(
            "not http(s)",
            json.dumps({"name": "ops", "kind": "webhook", "target": "file:///etc/passwd"}).encode(),
            field="target",
        ),
        Bad(
            "header injection in an address",
            json.dumps({"name": "ops", "kind": "email", "target": "a@b.example\r\nBcc: x@y"}).encode(),
            field="target",
        ),
    ],
    "POST /dashboards/{id}/contact-points/{contact_point_id}": [
        *path_cases("id", "contact_point_id"),
        *body_cases({"name": "ops", "target": "https://hooks.example/y"}),
        Bad("nothing to change", b"{}", field="_schema"),
        Bad("not http(s)", json.dumps({"target": "file:///etc/passwd"}).encode(), field="target"),
        Bad("the kind", json.dumps({"kind": "email"}).encode(), field="kind"),
    ],
    "POST /dashboards/{id}/contact-points/{contact_point_id}/delete": path_cases("id", "contact_point_id"),
    "POST /dashboards/{id}/contact-points/{contact_point_id}/test": path_cases("id", "contact_point_id"),
    "POST /dashboards/{id}/alerts/{rule_id}/notifications": [
        *path_cases("id", "rule_id"),
        *body_cases({"contact_point_ids": [1], "repeat_seconds": 600}),
        Bad(
            "51 contact points",
            json.dumps({"contact_point_ids": list(range(1, 52))}).encode(),
            field="contact_point_ids",
        ),
    ],
    "GET /dashboards/{id}/alerts": path_cases("id"),
    "POST /dashboards/{id}/alerts": [
        *path_cases("id"),
        *body_cases({"metric_id": 1, "condition": "above", "threshold": 1.0, "for_seconds": 0}),
        Bad(
            "for_seconds beyond a bigint",
            json.dumps(
                {"metric_id": 1, "condition": "above", "threshold": 1, "for_seconds": 10**30}
            ).encode(),
            field="for_seconds",
        ),
    ],
    "POST /dashboards/{id}/alerts/{rule_id}/delete": path_cases("id", "rule_id"),
    "GET /dashboards/{id}/preferences": path_cases("id"),
    "PATCH /dashboards/{id}/preferences": [
        *path_cases("id"),
        *body_cases({"card_order": [1], "chart_style": "line"}),
    ],
    "GET /preferences": [Bad("junk query", query=(("a", "\x00"),), status=ANY_ANSWER)],
    "PATCH /preferences": body_cases({"theme": "dark"}),
    "GET /ws/dashboard/{id}/": [
        Bad("not an upgrade"),
        Bad("dashboard beyond a bigint, not an upgrade", path=(("id", HUGE_ID),)),
        Bad("unknown updates mode", query=(("updates", "\x00"),)),
    ],
    "POST /api/v1/metrics/{id}/values": [
        *path_cases("id"),
        *body_cases({"values": [{"value": 1.5}]}),
        *(
            Bad(
                f"timestamp {stamp}",
                json.dumps({"value": 1, "timestamp": stamp}).encode(),
                field="values.0.timestamp",
            )
            for stamp in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "\x00")
        ),
    ],
    "POST /api/v1/values": [
        *body_cases({"values": [{"metric_id": 1, "value": 1.5}]}),
        Bad(
            "metric_id beyond a bigint",
            json.dumps({"values": [{"metric_id": 10**30, "value": 1}]}).encode(),
            field="values.0.metric_id",
        ),
    ],
    "GET /playground/": [Bad("junk query", query=(("a", "\x00"),), status=ANY_ANSWER)],
    "GET /asyncapi.json": [Bad("junk query", query=(("a", "\x00"),), status=ANY_ANSWER)],
    "GET /asyncapi/": [Bad("junk query", query=(("a", "\x00"),), status=ANY_ANSWER)],
    "GET /static": [
        Bad("parent directories", path=(("filename", "../../../etc/passwd"),)),
        Bad("encoded parent directories", path=(("filename", "..%2F..%2Fetc%2Fpasswd"),)),
        Bad("NUL", path=(("filename", "app.css%00"),)),
        Bad("no such file", path=(("filename", "nope.js"),)),
    ],
    "GET /healthz": [Bad("junk query", query=(("a", "\x00"),), status=ANY_ANSWER)],
    "GET /readyz": [Bad("junk query", query=(("a", "\x00"),), status=ANY_ANSWER)],
    "GET /metrics": [Bad("junk query", query=(("a", "\x00"),), status=ANY_ANSWER)],
}
FORM_ENDPOINTS = {"POST /login", "POST /logout", "POST /dashboards/"}


def route_names(app) -> set[str]:
    """ "METHOD path" of every route (HEAD runs the GET handler, so it is left out)."""
    return {
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route.method != "HEAD"
    }


def test_every_endpoint_has_bad_input_cases(settings):
    assert route_names(create_app(settings)) == set(ENDPOINTS)


@functools.cache
def known_hash() -> str:
    """The hash of "secret-pw", made once: argon2 is slow on purpose."""
    return hash_password("secret-pw")


async def create_world(pool, alice, bob) -> None:
    """alice edits `ops` (a metric, an API token, an alert rule); bob views it."""
    ops = await db.create_owned_dashboard(pool, "Ops", "ops", "", alice.id)
    await db.add_member(pool, ops.id, bob.id)
    cpu = await db.create_metric(pool, ops.id, "cpu", "gauge", "u", "")
    await db.create_api_token(pool, ops.id, "deploy", token_hash(WORLD_TOKEN), display_prefix(WORLD_TOKEN))
    await db.create_alert_rule(pool, cpu.id, "above", 1.0)
    await db.create_contact_point(pool, ops.id, "ops", "webhook", "https://hooks.example/x", "s3cret")


async def world_for(client, pool) -> dict:
    """Log alice in; the ids, token and CSRF token the requests need."""
    await log_in(client, "alice")
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT d.id, m.id, u.id, t.id, r.id, c.id FROM dashboards d JOIN metrics m ON m.dashboard_id = d.id"
            " JOIN users u ON u.username = 'bob' JOIN api_tokens t ON t.dashboard_id = d.id"
            " JOIN alert_rules r ON r.metric_id = m.id JOIN contact_points c ON c.dashboard_id = d.id"
        )
        ids = await cur.fetchone()
    names = ("id", "metric_id", "user_id", "token_id", "rule_id", "contact_point_id")
    parts = dict(zip(names, map(str, ids), strict=True))
    parts["filename"] = "app.css"
    return {"parts": parts, "secret": WORLD_TOKEN, "csrf": await csrf_from(client, "/dashboards/")}


@pytest.fixture
async def world(client, pool):
    alice = await db.create_user(pool, "alice", known_hash())
    bob = await db.create_user(pool, "bob", known_hash())
    await create_world(pool, alice, bob)
    return await world_for(client, pool)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_malformed_requests_get_a_4xx_naming_the_field(client, world, endpoint):
    """Each case in turn on one logged-in session: none may change anything, so
    the next case finds the same state (and the session still logged in)."""
    method, template = endpoint.split(" ", 1)
    failures = []
    for bad in ENDPOINTS[endpoint]:
        response = await send(client, world, method, template, bad, form=endpoint in FORM_ENDPOINTS)
        text = await response.text()
        if response.status not in bad.status:
            failures.append((bad.name, response.status, text[:300]))
        elif bad.field is not None and not names_field(response, text, bad.field):
            failures.append((bad.name, f"does not name {bad.field}", text[:300]))
        assert (await client.get("/dashboards/", allow_redirects=False)).status == 200, bad.name
    assert failures == []


async def send(client, world, method: str, template: str, bad: Bad, *, form: bool):
    parts = {**world["parts"], **dict(bad.path)}
    path = template.replace("/static", "/static/{filename}") if template == "/static" else template
    url = path.format(**parts)
    headers = {"X-CSRF-Token": world["csrf"], "Authorization": f"Bearer {world['secret']}"}
    if bad.content_type is not None:
        headers["Content-Type"] = bad.content_type
    body = bad.body
    if form and bad.csrf and body is not None and (bad.content_type or "").startswith(FORM):
        body += b"&csrf_token=" + world["csrf"].encode()
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in bad.query)
    if body is not None and len(body) > 2**16:
        body = io.BytesIO(body)  # aiohttp warns about large bytes bodies
    return await client.request(
        method,
        URL(url + ("?" + query if query else ""), encoded=True),
        data=body,
        headers=headers,
        allow_redirects=False,
    )


def names_field(response, text: str, field: str) -> bool:
    """Whether the answer names `field`: in its JSON `errors` (a dotted path), or its text."""
    if response.content_type != "application/json":
        return field in text
    errors = json.loads(text)["errors"]
    for part in field.split("."):
        if not isinstance(errors, dict) or part not in errors:
            return False
        errors = errors[part]
    return True


# Fuzzing the JSON endpoints ---------------------------------------------------------------

JSON_ENDPOINTS = sorted(e for e, bads in ENDPOINTS.items() if any(b.field == "body" for b in bads))
# Every field any JSON endpoint reads: bodies near the valid ones get past the first check.
FIELD_NAMES = sorted(
    {
        name
        for schema in (
            DashboardEditSchema,
            DashboardDeleteSchema,
            MetricCreateSchema,
            MetricEditSchema,
            MetricOrderSchema,
            MemberAddSchema,
            MemberRoleSchema,
            TokenCreateSchema,
            AlertRuleCreateSchema,
            DashboardPreferencesSchema,
            ThemeSchema,
            PushedMetricValueSchema,
            BatchPushSchema,
        )
        for name in schema().fields
    }
)
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=20)  # NUL and lone surrogates too
STAMPS = st.datetimes(timezones=st.builds(timezone, st.timedeltas(-timedelta(hours=23), timedelta(hours=23))))
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and infinities too: json.dumps writes them as NaN, Infinity
    | ANY_TEXT
    | st.sampled_from(["ops", "cpu", "gauge", "counter", "above", "editor", "dark", "line", "1h", "bob"])
    | STAMPS.map(datetime.isoformat)
)
FUZZ_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | ANY_TEXT, children, max_size=4)
    ),
    max_leaves=12,
)
FUZZ_BODIES = (
    st.dictionaries(st.sampled_from(FIELD_NAMES), FUZZ_VALUES, max_size=5).map(json.dumps)
    | FUZZ_VALUES.map(json.dumps)
    | ANY_TEXT
).map(lambda text: text.encode("utf-8", "surrogatepass")) | st.binary(max_size=40)


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(requests=st.lists(st.tuples(st.sampled_from(JSON_ENDPOINTS), FUZZ_BODIES), min_size=1, max_size=8))
def test_any_json_body_gets_an_answer_below_500(settings, requests):
    asyncio.run(_send_bodies(settings, requests))


async def _send_bodies(settings, requests) -> None:
    async with (
        TestClient(TestServer(create_app(settings))) as client,
        db.create_pool(settings.database_url) as pool,
    ):
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("TRUNCATE users, dashboards RESTART IDENTITY CASCADE")
        for name in ("alice", "bob"):
            await db.create_user(pool, name, known_hash())
        await create_world(pool, *[await db.get_user_by_username(pool, n) for n in ("alice", "bob")])
        world = await world_for(client, pool)
        for endpoint, body in requests:
            method, template = endpoint.split(" ", 1)
            response = await send(client, world, method, template, Bad("fuzz", body), form=False)
            assert response.status < 500, (endpoint, body, await response.text())


# Text no token, field or password can hold ----------------------------------------------
# Header bytes that are not ASCII reach the server as non-ASCII text (or, not
# UTF-8, as lone surrogates); a form in a charset of the client's choosing can
# give any code point. Each used to be a 500 with a traceback in the log.


async def _raw_request(
    client: TestClient, path: str, headers: dict[str, bytes], body: bytes | None
) -> tuple[int, bytes]:
    """A POST (a GET when `body` is None) sent byte for byte: a client library
    would refuse or re-encode these headers."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    lines = [
        f"{'GET' if body is None else 'POST'} {path} HTTP/1.1".encode(),
        f"Host: {client.host}:{client.port}".encode(),
        b"Connection: close",
    ]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    if body is not None:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + (body or b""))
    try:
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest


RAW_FORM = b"application/x-www-form-urlencoded"
UNDECODABLE = [
    # (case, path, headers beyond the session cookie, body, status)
    (
        "csrf-form-non-ascii",
        "/login",
        {"Content-Type": RAW_FORM},
        b"csrf_token=%C3%A9&username=bob&password=x",
        403,
    ),
    (
        "csrf-header-non-ascii",
        "/dashboards/1/settings",
        {"Content-Type": b"application/json", "X-CSRF-Token": "é".encode()},
        b"{}",
        403,
    ),
    (
        "csrf-header-not-utf8",
        "/dashboards/1/settings",
        {"Content-Type": b"application/json", "X-CSRF-Token": b"\xff\xfe"},
        b"{}",
        403,
    ),
    (
        "bearer-not-utf8",
        "/api/v1/values",
        {"Content-Type": b"application/json", "Authorization": b"Bearer dsh_\xff"},
        b'{"value": 1}',
        401,
    ),
    (
        "bearer-non-ascii",
        "/api/v1/values",
        {"Content-Type": b"application/json", "Authorization": "Bearer dsh_é".encode()},
        b'{"value": 1}',
        401,
    ),
    (
        "password-lone-surrogate",
        "/login",
        {"Content-Type": RAW_FORM + b"; charset=unicode_escape"},
        b"csrf_token={csrf}&username=bob&password=\\ud800",
        400,
    ),
    (
        "username-lone-surrogate",
        "/login",
        {"Content-Type": RAW_FORM + b"; charset=unicode_escape"},
        b"csrf_token={csrf}&username=b\\udc80ob&password=x",
        400,
    ),
    # NUL is text: a name no user has, answered as a wrong one.
    (
        "username-nul",
        "/login",
        {"Content-Type": RAW_FORM},
        b"csrf_token={csrf}&username=b%00ob&password=x",
        401,
    ),
]


@pytest.mark.parametrize(
    ("path", "headers", "body", "status"),
    [case[1:] for case in UNDECODABLE],
    ids=[case[0] for case in UNDECODABLE],
)
async def test_undecodable_text_is_refused_with_a_4xx_not_a_crash(
    client, ops, caplog, path, headers, body, status
):
    csrf = await csrf_from(client)  # an anonymous session, as a login page gives
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["dashboard_session"].value
    body = body.replace(b"{csrf}", csrf.encode())
    got, rest = await _raw_request(
        client, path, {**headers, "Cookie": f"dashboard_session={cookie}".encode()}, body
    )
    assert got == status, rest[-300:]
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]
    await log_in(client, "alice")
    await still_served(client, ops)


def test_a_password_utf8_cannot_hold_is_unusable_and_never_matches():
    with pytest.raises(UnusablePassword):
        hash_password("pass\ud800word")
    assert not verify_password(hash_password("password"), "pass\ud800word")
    assert not verify_password(None, "\udcff")


async def test_a_session_cookie_redis_cannot_take_fails_no_one_else(client, ops, caplog):
    """Session reads of one loop turn go to Redis in one MGET: a cookie whose
    bytes are not UTF-8 (a lone surrogate in the key) failed the whole batch,
    so other users' pages and socket set-ups in that turn got 500s."""
    await log_in(client, "alice")
    bad = {"Cookie": b"dashboard_session=ab\xff\xfecd"}
    answers = await asyncio.gather(
        *[_raw_request(client, "/dashboards/", bad, None) for _ in range(5)],
        *[client.get("/dashboards/", allow_redirects=False) for _ in range(20)],
    )
    assert [status for status, _ in answers[:5]] == [302] * 5  # not logged in: to the login page
    assert [response.status for response in answers[5:]] == [200] * 20
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]
    await still_served(client, ops)


@pytest.mark.parametrize(
    "path",
    [
        "/dashboards/" + "1" * 4301 + "/",  # beyond what int() takes
        "/dashboards/" + "9" * 4300 + "/export",  # what it takes, beyond a bigint
        "/dashboards/\u0663/",  # an Arabic-Indic three: a digit to \d, not an id
        "/ws/dashboard/" + "1" * 4301 + "/",
    ],
    ids=["4301 digits", "4300 digits", "non-ASCII digit", "socket, 4301 digits"],
)
async def test_an_id_no_dashboard_can_have_is_no_route(client, ops, caplog, path):
    await log_in(client, "alice")
    response = await client.get(path, allow_redirects=False)
    assert response.status == 404
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]
    await still_served(client, ops)

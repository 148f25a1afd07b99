"""Export of stored values: exact CSV and JSON, access, the CLI, and streaming at scale."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from click.testing import CliRunner

from common import db
from server.cli import main as server_main
from tests.helpers import log_in
from tests.processes import child, free_port, wait_for_http
from tests.servers import servers

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
RANGE = {"since": "2025-03-01T12:00:00+00:00", "until": "2025-03-01T13:00:00+00:00"}
# A name with every character CSV must quote: comma, double quote, line break.
AWKWARD = 'lat, "p99"\nms'

EXPECTED_CSV = (
    "metric_id,metric,unit,timestamp,value\r\n"
    "1,cpu,%,2025-03-01T12:00:00+00:00,1.5\r\n"
    "1,cpu,%,2025-03-01T12:00:10+00:00,2.0\r\n"
    '2,"lat, ""p99""\nms",ms,2025-03-01T12:00:05+00:00,0.25\r\n'
)


@pytest.fixture
async def data(pool, make_user, make_dashboard, make_metric):
    """alice is a member of `ops` (cpu, an awkwardly named metric); bob of nothing."""
    alice = await make_user("alice")
    await make_user("bob")
    ops = await make_dashboard("ops", members=(alice,))
    cpu = await make_metric(ops, "cpu", "gauge", "%")
    awkward = await make_metric(ops, AWKWARD, "histogram", "ms")
    other = await make_dashboard("other")
    theirs = await make_metric(other, "theirs")
    await db.insert_values(
        pool,
        [
            (cpu.id, 1.5, T0),
            (awkward.id, 0.25, T0 + timedelta(seconds=5)),
            (cpu.id, 2.0, T0 + timedelta(seconds=10)),
            # Outside the range on either side, and on another dashboard.
            (cpu.id, 9.0, T0 - timedelta(seconds=1)),
            (cpu.id, 9.0, T0 + timedelta(hours=1)),
            (theirs.id, 9.0, T0 + timedelta(seconds=1)),
        ],
    )
    return {"ops": ops, "cpu": cpu, "awkward": awkward, "other": other, "theirs": theirs}


async def test_csv_export_is_exact_and_escapes_names(client, data):
    await log_in(client, "alice")
    response = await client.get(f"/dashboards/{data['ops'].id}/export", params={"format": "csv", **RANGE})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="ops-all-20250301T120000Z.csv"'
    assert "Content-Length" not in response.headers  # streamed
    body = await response.text()
    assert body == EXPECTED_CSV
    rows = list(csv.reader(io.StringIO(body, newline="")))
    assert rows[3][1] == AWKWARD


async def test_json_export_is_exact(client, data):
    await log_in(client, "alice")
    response = await client.get(f"/dashboards/{data['ops'].id}/export", params={"format": "json", **RANGE})
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert json.loads(await response.read()) == {
        "dashboard": {"id": data["ops"].id, "slug": "ops", "name": "Ops"},
        "since": RANGE["since"],
        "until": RANGE["until"],
        "metrics": [
            {"id": data["cpu"].id, "name": "cpu", "type": "gauge", "unit": "%"},
            {"id": data["awkward"].id, "name": AWKWARD, "type": "histogram", "unit": "ms"},
        ],
        "values": [
            {"metric_id": data["cpu"].id, "timestamp": "2025-03-01T12:00:00+00:00", "value": 1.5},
            {"metric_id": data["cpu"].id, "timestamp": "2025-03-01T12:00:10+00:00", "value": 2.0},
            {"metric_id": data["awkward"].id, "timestamp": "2025-03-01T12:00:05+00:00", "value": 0.25},
        ],
    }


async def test_one_metric_and_an_empty_range(client, data):
    await log_in(client, "alice")
    url = f"/dashboards/{data['ops'].id}/export"
    response = await client.get(url, params={"metric": str(data["awkward"].id), **RANGE})
    assert (await response.text()).splitlines()[1:] == EXPECTED_CSV.splitlines()[3:]
    assert "ops-lat_p99_ms-" in response.headers["Content-Disposition"]
    response = await client.get(
        url, params={"format": "json", "since": "2024-01-01T00:00:00", "until": "2024-02-01T00:00:00"}
    )
    assert json.loads(await response.read())["values"] == []


async def test_non_members_and_unknown_ids_get_the_same_404(client, data):
    await log_in(client, "bob")
    refused = await client.get(f"/dashboards/{data['ops'].id}/export", params=RANGE)
    missing = await client.get("/dashboards/999999/export", params=RANGE)
    huge = await client.get(f"/dashboards/{2**70}/export", params=RANGE)
    assert refused.status == missing.status == huge.status == 404
    assert await refused.text() == await missing.text() == await huge.text()


async def test_a_metric_of_another_dashboard_is_not_exported(client, data):
    await log_in(client, "alice")
    response = await client.get(
        f"/dashboards/{data['ops'].id}/export", params={"metric": str(data["theirs"].id), **RANGE}
    )
    assert response.status == 404
    assert "9.0" not in await response.text()


async def test_anonymous_is_sent_to_log_in(client, data):
    response = await client.get(f"/dashboards/{data['ops'].id}/export", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize(
    "params",
    [{"format": "xml"}, {"since": "yesterday"}, {"since": "1h", "until": "2h"}],
    ids=["format", "unparsable", "reversed"],
)
async def test_bad_parameters_get_400(client, data, params):
    await log_in(client, "alice")
    response = await client.get(f"/dashboards/{data['ops'].id}/export", params=params)
    assert response.status == 400


async def test_batches_are_bounded_and_cover_every_row(pool, make_dashboard, make_metric):
    ops = await make_dashboard("ops")
    first, second = await make_metric(ops, "a"), await make_metric(ops, "b")
    # Equal timestamps too: the keyset's id tie-break must neither skip nor repeat.
    rows = [(first.id, float(i), T0 + timedelta(seconds=i // 3)) for i in range(2500)]
    rows += [(second.id, float(i), T0 + timedelta(seconds=i)) for i in range(700)]
    await db.insert_values(pool, rows)
    batches = [
        batch
        async for batch in db.export_batches(
            pool, [first.id, second.id], T0, T0 + timedelta(days=1), batch_size=1000
        )
    ]
    assert [len(b) for b in batches] == [1000, 1000, 500, 700]
    values = [(v.metric_id, v.value) for b in batches for v in b]
    assert values == [(first.id, float(i)) for i in range(2500)] + [(second.id, float(i)) for i in range(700)]


def test_cli_export_writes_the_same_bytes(database_url, clean_state, data):
    runner = CliRunner()
    base = ["--database-url", database_url, "--redis-url", servers().redis_url, "export", "ops"]
    result = runner.invoke(server_main, [*base, "--since", RANGE["since"], "--until", RANGE["until"]])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes.decode() == EXPECTED_CSV
    result = runner.invoke(
        server_main, [*base, "--metric", "cpu", "--format", "json", "--since", "2025-03-01T12:00:00"]
    )
    assert result.exit_code == 0, result.output
    assert [v["value"] for v in json.loads(result.stdout_bytes)["values"]] == [1.5, 2.0, 9.0]
    result = runner.invoke(server_main, [*base, "--metric", "nope"])
    assert result.exit_code == 1 and "ops has no metric 'nope'" in result.output
    result = runner.invoke(server_main, [*base, "--since", "soon"])
    assert result.exit_code == 2 and "not a time" in result.output
    result = runner.invoke(server_main, [*base, "--since", "999999999d"])
    assert result.exit_code == 2 and "--since: out of range" in result.output


# Names and units a spreadsheet would run as formulas, and what the CSV holds instead.
FORMULAS = [
    ('=HYPERLINK("http://evil.example/","x")', "=1+1"),
    ("+cmd|' /C calc'!A0", "+u"),
    ("-2+3", "-"),
    ("@SUM(A1:A9)", "@u"),
    ("\tcpu", "\tms"),
    ("\rcpu", "\rms"),
]


@pytest.fixture
async def formulas(pool, make_user, make_dashboard, make_metric):
    """alice's `sheet` has one metric per formula start, each with a negative value."""
    alice = await make_user("alice")
    sheet = await make_dashboard("sheet", members=(alice,))
    for index, (name, unit) in enumerate(FORMULAS):
        metric = await make_metric(sheet, name, "gauge", unit)
        await db.insert_values(pool, [(metric.id, -1.5 - index, T0)])
    return sheet


def assert_formulas_neutralised(body: str) -> None:
    rows = list(csv.reader(io.StringIO(body, newline="")))[1:]
    assert [(row[1], row[2]) for row in rows] == [("'" + name, "'" + unit) for name, unit in FORMULAS]
    # Numbers stay numbers: a negative value is not quoted or prefixed.
    assert [row[4] for row in rows] == [repr(-1.5 - index) for index in range(len(FORMULAS))]


async def test_csv_export_neutralises_formulas(client, formulas):
    await log_in(client, "alice")
    response = await client.get(f"/dashboards/{formulas.id}/export", params={"format": "csv", **RANGE})
    assert response.status == 200
    body = await response.text()
    assert_formulas_neutralised(body)
    assert "\r\n3,'-2+3,'-,2025-03-01T12:00:00+00:00,-3.5\r\n" in body
    # JSON is not read by spreadsheets: its names stay exactly as stored.
    response = await client.get(f"/dashboards/{formulas.id}/export", params={"format": "json", **RANGE})
    names = [(m["name"], m["unit"]) for m in json.loads(await response.read())["metrics"]]
    assert names == FORMULAS


def test_cli_csv_export_neutralises_formulas(database_url, clean_state, formulas):
    base = ["--database-url", database_url, "--redis-url", servers().redis_url, "export", "sheet"]
    result = CliRunner().invoke(server_main, [*base, "--since", RANGE["since"], "--until", RANGE["until"]])
    assert result.exit_code == 0, result.output
    assert_formulas_neutralised(result.stdout_bytes.decode())


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_large_export_streams_in_bounded_memory(
    settings, pool, make_user, make_dashboard, make_metric
):
    rows_total = 300_000
    alice = await make_user("alice")
    ops = await make_dashboard("ops", members=(alice,))
    metric = await make_metric(ops, "cpu")
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO metric_values (metric_id, value, ts)"
            " SELECT %s, i, %s + i * interval '1 millisecond' FROM generate_series(1, %s) AS i",
            (metric.id, T0, rows_total),
        )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    with child(["-m", "server", *urls, "run", "--port", str(port)]) as server:
        await asyncio.to_thread(wait_for_http, f"{base}/healthz", server)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.get(f"{base}/login") as response:
                token = (await response.text()).split('name="csrf_token" value="')[1].split('"')[0]
            await session.post(
                f"{base}/login", data={"username": "alice", "password": "secret-pw", "csrf_token": token}
            )
            # Warm up the code path, then measure from there.
            async with session.get(f"{base}/dashboards/{ops.id}/export", params={"since": "1m"}) as response:
                assert response.status == 200
                await response.read()
            before = peak = _rss_bytes(server.pid)
            received = lines = 0
            params = {"since": "2025-03-01T00:00:00", "until": "2025-03-02T00:00:00"}
            async with session.get(f"{base}/dashboards/{ops.id}/export", params=params) as response:
                assert response.status == 200
                async for chunk in response.content.iter_chunked(256 * 1024):
                    received += len(chunk)
                    lines += chunk.count(b"\n")
                    peak = max(peak, _rss_bytes(server.pid))
    assert lines == rows_total + 1
    assert received > 14 * 1024 * 1024
    # Holding every row would take well over 100 MB; one batch takes about 2 MB.
    growth = peak - before
    assert growth < 25 * 1024 * 1024, (
        f"server RSS grew by {growth / 2**20:.1f} MiB for {received / 2**20:.1f} MiB"
    )

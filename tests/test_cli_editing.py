"""CLI parity with the page's Edit panel: every change an editor makes there,
an operator can make with `dashboard-server`, under the same validation.

Against the session test database (emptied before each test), as tests/test_cli.py.
"""

from __future__ import annotations

from contextlib import closing

import psycopg2
import pytest

from server.cli import main as server_main
from tests.helpers import Invoke, expect_error, expect_ok, invoker, query_rows


@pytest.fixture
def cli(database_url: str, clean_state: None) -> Invoke:
    invoke = invoker(server_main, database_url)
    expect_ok(invoke("dashboard", "create", "My Board", "--description", "first"))
    expect_ok(invoke("metric", "add", "my-board", "cpu", "--type", "gauge", "--unit", "%"))
    expect_ok(invoke("metric", "add", "my-board", "hits", "--type", "counter"))
    return invoke


def _metrics(database_url: str) -> list[tuple]:
    return query_rows(
        database_url, "SELECT name, unit, description, source FROM metrics ORDER BY position, id"
    )


def test_metric_update_changes_only_what_is_given(cli, database_url):
    said = expect_ok(
        cli("metric", "update", "my-board", "cpu", "--name", "CPU", "--description", "all cores")
    )

    assert "updated gauge CPU" in said
    assert _metrics(database_url)[0] == ("CPU", "%", "all cores", "push")
    expect_ok(cli("metric", "update", "my-board", "CPU", "--unit", "", "--source", "random"))
    assert _metrics(database_url)[0] == ("CPU", "", "all cores", "random")


@pytest.mark.parametrize(
    ("args", "option", "reason"),
    [
        (("--name", "   "), "--name", "Length must be between 1 and 200"),
        (("--name", "x" * 201), "--name", "Length must be between 1 and 200"),
        (("--unit", "u" * 51), "--unit", "Longer than maximum length 50"),
        (("--description", "d" * 2001), "--description", "Longer than maximum length 2000"),
        (("--source", "nowhere"), "--source", "Must be one of"),
        # A system reading of another kind cannot feed a counter: the page's rule.
        (("--source", "system:cpu_percent"), "--source", "gauge"),
    ],
    ids=["blank name", "long name", "long unit", "long description", "unknown source", "wrong kind"],
)
def test_metric_update_refuses_what_the_page_refuses(cli, database_url, args, option, reason):
    before = _metrics(database_url)

    message = expect_error(cli("metric", "update", "my-board", "hits", *args), exit_code=2)

    assert option in message and reason in message, message
    assert _metrics(database_url) == before


def test_metric_update_to_a_taken_name_or_with_nothing_is_refused(cli, database_url):
    before = _metrics(database_url)

    assert "already exists" in expect_error(cli("metric", "update", "my-board", "hits", "--name", "cpu"))
    assert "nothing to change" in expect_error(cli("metric", "update", "my-board", "hits"), exit_code=2)
    assert "has no metric 'nope'" in expect_error(cli("metric", "update", "my-board", "nope", "--unit", "s"))
    assert _metrics(database_url) == before


def test_metric_remove_asks_then_removes_the_metric_and_its_values(cli, database_url):
    [(metric_id,)] = query_rows(database_url, "SELECT id FROM metrics WHERE name = 'cpu'")
    with closing(psycopg2.connect(database_url)) as conn, conn, conn.cursor() as cur:
        cur.execute("INSERT INTO metric_values (metric_id, value) VALUES (%s, 1)", (metric_id,))

    assert expect_error(cli("metric", "remove", "my-board", "cpu"), exit_code=1)  # no --yes, no tty
    assert len(_metrics(database_url)) == 2
    said = expect_ok(cli("metric", "remove", "my-board", "cpu", "--yes"))

    assert said == f"removed metric cpu (id {metric_id}) from my-board\n"
    assert [m[0] for m in _metrics(database_url)] == ["hits"]
    assert query_rows(
        database_url, "SELECT count(*) FROM metric_values WHERE metric_id = %s", (metric_id,)
    ) == [(0,)]
    assert "has no metric 'cpu'" in expect_error(cli("metric", "remove", "my-board", "cpu", "--yes"))


def test_metric_order_needs_every_metric(cli, database_url):
    assert expect_ok(cli("metric", "order", "my-board", "hits", "cpu")) == "my-board shows hits, cpu\n"
    assert [m[0] for m in _metrics(database_url)] == ["hits", "cpu"]

    assert "every metric" in expect_error(cli("metric", "order", "my-board", "cpu"))
    assert "has no metric 'disk'" in expect_error(cli("metric", "order", "my-board", "disk", "cpu", "hits"))
    assert [m[0] for m in _metrics(database_url)] == ["hits", "cpu"]


def test_dashboard_rename_keeps_the_slug_and_validates_the_name(cli, database_url):
    assert expect_ok(cli("dashboard", "rename", "my-board", "  Ops  ")) == "my-board is now called 'Ops'\n"
    assert query_rows(database_url, "SELECT slug, name, description FROM dashboards") == [
        ("my-board", "Ops", "first")
    ]
    expect_ok(cli("dashboard", "rename", "my-board", "Ops", "--description", "the second"))
    assert query_rows(database_url, "SELECT description FROM dashboards") == [("the second",)]

    message = expect_error(cli("dashboard", "rename", "my-board", " "), exit_code=2)

    assert "NAME" in message and "Length must be between 1 and 200" in message
    assert query_rows(database_url, "SELECT name FROM dashboards") == [("Ops",)]


def test_a_revoked_token_can_be_deleted_an_active_one_cannot(cli, database_url):
    expect_ok(cli("token", "create", "my-board", "ci"))
    [(token_id,)] = query_rows(database_url, "SELECT id FROM api_tokens")

    assert f"no revoked token {token_id}" in expect_error(cli("token", "delete", "my-board", str(token_id)))
    expect_ok(cli("token", "revoke", "my-board", str(token_id)))
    assert expect_ok(cli("token", "delete", "my-board", str(token_id))) == f"deleted token {token_id}\n"
    assert query_rows(database_url, "SELECT count(*) FROM api_tokens") == [(0,)]

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


def _contacts(database_url: str) -> list[tuple]:
    return query_rows(
        database_url, "SELECT id, name, kind, target, secret IS NOT NULL FROM contact_points ORDER BY id"
    )


def _rule_contacts(database_url: str) -> list[tuple]:
    return query_rows(
        database_url,
        "SELECT r.id, c.name, r.repeat_seconds FROM alert_rules r"
        " LEFT JOIN alert_rule_contacts a ON a.rule_id = r.id LEFT JOIN contact_points c ON c.id = a.contact_point_id"
        " ORDER BY r.id, c.name",
    )


def test_contact_points_are_added_listed_edited_tested_and_removed(cli, database_url):
    said = expect_ok(
        cli("contact", "add", "my-board", "hook", "--kind", "webhook", "--target", "https://h.example/x")
    )
    secret = said.strip().splitlines()[-1]
    assert len(secret) >= 40
    ((hook_id, *_),) = _contacts(database_url)
    assert query_rows(database_url, "SELECT secret FROM contact_points") == [(secret,)]
    expect_ok(cli("contact", "add", "my-board", "ops mail", "--kind", "email", "--target", "ops@example.org"))
    listed = expect_ok(cli("contact", "list", "my-board"))
    assert secret not in listed
    assert f"{hook_id}\thook\twebhook\thttps://h.example/x" in listed

    expect_ok(
        cli(
            "contact",
            "edit",
            "my-board",
            str(hook_id),
            "--name",
            "on-call",
            "--target",
            "https://h.example/y",
        )
    )
    assert _contacts(database_url)[0] == (hook_id, "on-call", "webhook", "https://h.example/y", True)
    assert query_rows(database_url, "SELECT secret FROM contact_points WHERE id = %s", (hook_id,)) == [
        (secret,)
    ]

    assert "queued a test" in expect_ok(cli("contact", "test", "my-board", str(hook_id)))
    assert query_rows(database_url, "SELECT kind, status FROM notifications") == [("test", "pending")]

    expect_ok(cli("contact", "remove", "my-board", str(hook_id)))
    assert [row[1] for row in _contacts(database_url)] == ["ops mail"]
    assert "has no contact point" in expect_error(cli("contact", "remove", "my-board", str(hook_id)))


@pytest.mark.parametrize(
    ("args", "option", "reason"),
    [
        (
            ("add", "my-board", "x", "--kind", "webhook", "--target", "file:///etc/passwd"),
            "--target",
            "http(s)",
        ),
        (
            ("add", "my-board", "x", "--kind", "email", "--target", "a@b.example\r\nBcc: c@d.example"),
            "--target",
            "e-mail",
        ),
        (("add", "my-board", " ", "--kind", "slack", "--target", "https://h.example"), "NAME", "Length"),
        (("add", "my-board", "x", "--kind", "sms", "--target", "+1"), "--kind", "sms"),
        (("edit", "my-board", "{id}", "--target", "ops@example.org"), "--target", "http(s)"),
        (("edit", "my-board", "{id}", "--name", ""), "--name", "Length"),
    ],
    ids=[
        "not http",
        "header injection",
        "blank name",
        "unknown kind",
        "target of another kind",
        "blank new name",
    ],
)
def test_contact_commands_refuse_what_the_page_refuses(cli, database_url, args, option, reason):
    expect_ok(
        cli("contact", "add", "my-board", "hook", "--kind", "webhook", "--target", "https://h.example/x")
    )
    before = _contacts(database_url)
    args = tuple(arg.replace("{id}", str(before[0][0])) for arg in args)

    message = expect_error(cli("contact", *args), exit_code=2)

    assert option in message and reason in message, message
    assert _contacts(database_url) == before


def test_alert_add_notifies_contact_points_by_name_or_id_with_a_repeat(cli, database_url):
    expect_ok(
        cli("contact", "add", "my-board", "hook", "--kind", "webhook", "--target", "https://h.example/x")
    )
    expect_ok(cli("contact", "add", "my-board", "mail", "--kind", "email", "--target", "ops@example.org"))
    mail_id = _contacts(database_url)[1][0]

    said = expect_ok(
        cli(
            "alert",
            "add",
            "my-board",
            "cpu",
            "--above",
            "90",
            "--notify",
            "hook",
            "--notify",
            str(mail_id),
            "--repeat",
            "15",
        )
    )

    assert "notifies contact point(s)" in said and "every 15 min" in said
    (rule_id, *_), _ = _rule_contacts(database_url)
    assert _rule_contacts(database_url) == [(rule_id, "hook", 900), (rule_id, "mail", 900)]
    # Whom it notifies can be changed later, as the page's Save notifications does.
    expect_ok(cli("alert", "notify", "my-board", str(rule_id), "--notify", "mail"))
    assert _rule_contacts(database_url) == [(rule_id, "mail", None)]
    assert "notifies nobody" in expect_ok(cli("alert", "notify", "my-board", str(rule_id)))
    assert _rule_contacts(database_url) == [(rule_id, None, None)]


@pytest.mark.parametrize(
    ("args", "option", "reason"),
    [
        (("--notify", "nobody"), "--notify", "no contact point 'nobody'"),
        (("--notify", "hook", "--repeat", "0"), "--repeat", "greater than or equal to 60"),
        (("--notify", "hook", "--repeat", "100000"), "--repeat", "less than or equal to 604800"),
        (
            (
                "--repeat",
                "15",
            ),
            "--repeat needs --notify",
            "",
        ),
    ],
    ids=["unknown contact", "repeat too short", "repeat too long", "repeat alone"],
)
def test_alert_add_with_a_wrong_notification_creates_no_rule(cli, database_url, args, option, reason):
    expect_ok(
        cli("contact", "add", "my-board", "hook", "--kind", "webhook", "--target", "https://h.example/x")
    )

    message = expect_error(cli("alert", "add", "my-board", "cpu", "--above", "90", *args), exit_code=2)

    assert option in message and reason in message, message
    assert query_rows(database_url, "SELECT count(*) FROM alert_rules") == [(0,)]


def test_alert_add_refuses_another_dashboards_contact_point(cli, database_url):
    expect_ok(cli("dashboard", "create", "Other"))
    expect_ok(
        cli("contact", "add", "other", "theirs", "--kind", "webhook", "--target", "https://h.example/x")
    )
    theirs = _contacts(database_url)[0][0]

    message = expect_error(
        cli("alert", "add", "my-board", "cpu", "--above", "90", "--notify", str(theirs)), exit_code=2
    )

    assert "no contact point" in message, message
    assert query_rows(database_url, "SELECT count(*) FROM alert_rules") == [(0,)]

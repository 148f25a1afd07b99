"""The administration CLIs, `dashboard-server` and `dashboard-worker`, through CliRunner.

Commands run against the session test database (emptied before each test) and
the test Redis. The tests are sync: every command calls asyncio.run itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing

import click
import psycopg2
import pytest
import redis
from click.testing import CliRunner

from common.config import obscure_password
from common.events import decode_values
from common.passwords import verify_password
from common.version import __version__
from server.cli import main as server_main
from server.cli.demo import DEMO_METRICS, MACHINE_METRICS
from tests.helpers import Invoke, expect_error, expect_ok, invoker, query_rows
from tests.servers import servers
from worker.cli import main as worker_main


@pytest.fixture
def server_cli(database_url: str, clean_state: None) -> Invoke:
    """`dashboard-server` on the emptied test database."""
    return invoker(server_main, database_url)


@pytest.fixture
def worker_cli(database_url: str, clean_state: None) -> Invoke:
    """`dashboard-worker` on the emptied test database."""
    return invoker(worker_main, database_url)


def _members(database_url: str) -> list[tuple[str, str]]:
    return query_rows(
        database_url,
        "SELECT d.slug, u.username FROM dashboard_members m"
        " JOIN dashboards d ON d.id = m.dashboard_id JOIN users u ON u.id = m.user_id"
        " ORDER BY 1, 2",
    )


# Users -----------------------------------------------------------------------


def test_user_create_then_list_stores_an_argon2_hash(server_cli, database_url):
    created = expect_ok(server_cli("user", "create", "alice", "--password", "s3cret"))

    [(user_id, password_hash)] = query_rows(database_url, "SELECT id, password_hash FROM users")
    assert created == f"created user alice (id {user_id})\n"
    assert expect_ok(server_cli("user", "list")) == f"{user_id}\talice\n"
    assert password_hash.startswith("$argon2id$")
    assert verify_password(password_hash, "s3cret")


def test_duplicate_user_is_refused_with_a_message(server_cli, database_url):
    expect_ok(server_cli("user", "create", "alice", "--password", "first"))

    message = expect_error(server_cli("user", "create", "alice", "--password", "second"))

    assert "user 'alice' already exists" in message
    [(password_hash,)] = query_rows(database_url, "SELECT password_hash FROM users")
    assert verify_password(password_hash, "first")


@pytest.mark.parametrize("password", ["", " ", "\t \n"], ids=["empty", "space", "whitespace"])
def test_empty_passwords_are_refused_and_nothing_changes(server_cli, database_url, password):
    message = expect_error(server_cli("user", "create", "alice", "--password", password), exit_code=2)
    assert "--password" in message and "must not be empty or only spaces" in message
    assert query_rows(database_url, "SELECT username FROM users") == []

    expect_ok(server_cli("user", "create", "alice", "--password", "first"))
    message = expect_error(server_cli("user", "set-password", "alice", "--password", password), exit_code=2)
    assert "must not be empty or only spaces" in message
    [(password_hash,)] = query_rows(database_url, "SELECT password_hash FROM users")
    assert verify_password(password_hash, "first")


def test_a_blank_password_typed_at_the_prompt_is_refused(database_url, clean_state):
    expect_ok(invoker(server_main, database_url)("user", "create", "alice", "--password", "first"))
    result = CliRunner().invoke(
        server_main,
        ["--database-url", database_url, "--redis-url", servers().redis_url, "user", "set-password", "alice"],
        input="   \n   \n",
    )
    assert result.exit_code == 2 and "must not be empty or only spaces" in result.output
    [(password_hash,)] = query_rows(database_url, "SELECT password_hash FROM users")
    assert verify_password(password_hash, "first")


# Dashboards ------------------------------------------------------------------


def test_dashboard_create_derives_the_slug_from_the_name(server_cli, database_url):
    created = expect_ok(server_cli("dashboard", "create", "My Board", "--description", "d"))

    [(dashboard_id, name, slug, description)] = query_rows(
        database_url, "SELECT id, name, slug, description FROM dashboards"
    )
    assert (name, slug, description) == ("My Board", "my-board", "d")
    assert created == f"created dashboard my-board (id {dashboard_id})\n"
    assert expect_ok(server_cli("dashboard", "list")) == f"{dashboard_id}\tmy-board\tMy Board\n"


@pytest.mark.parametrize("slug", ["My-Board", "my--board", "-board", "my board", "my_board"])
def test_dashboard_create_rejects_an_invalid_slug(server_cli, database_url, slug):
    message = expect_error(server_cli("dashboard", "create", "Board", f"--slug={slug}"), exit_code=2)

    # Click quotes the option name in some versions, not in others.
    assert re.search(r"Invalid value for '?--slug'?:", message), message
    assert query_rows(database_url, "SELECT count(*) FROM dashboards") == [(0,)]


def test_dashboard_name_without_letters_or_digits_needs_a_slug(server_cli, database_url):
    message = expect_error(server_cli("dashboard", "create", "!!!"), exit_code=2)

    assert "give a --slug" in message
    assert query_rows(database_url, "SELECT count(*) FROM dashboards") == [(0,)]


# Metrics ---------------------------------------------------------------------


def test_metric_add_then_list(server_cli, database_url):
    expect_ok(server_cli("dashboard", "create", "My Board"))

    added = expect_ok(server_cli("metric", "add", "my-board", "cpu", "--type", "gauge", "--unit", "%"))

    [(metric_id,)] = query_rows(database_url, "SELECT id FROM metrics")
    assert added == (
        f"added gauge cpu (id {metric_id}, from push) to my-board\n"
        f"push its values to POST /api/v1/metrics/{metric_id}/values with a token of my-board\n"
    )
    assert expect_ok(server_cli("metric", "list", "my-board")) == f"{metric_id}\tgauge\tcpu\t%\tpush\n"


def test_metric_add_rejects_an_unknown_type(server_cli, database_url):
    expect_ok(server_cli("dashboard", "create", "My Board"))

    message = expect_error(
        server_cli("metric", "add", "my-board", "cpu", "--type", "speedometer"), exit_code=2
    )

    assert re.search(r"Invalid value for '?--type'?:", message), message
    assert "'gauge'" in message  # the choices are listed
    assert query_rows(database_url, "SELECT count(*) FROM metrics") == [(0,)]


@pytest.mark.parametrize(
    "args",
    [
        ("metric", "add", "nope", "cpu", "--type", "gauge"),
        ("metric", "list", "nope"),
        ("member", "add", "nope", "alice"),
        ("member", "remove", "nope", "alice"),
    ],
    ids=" ".join,
)
def test_unknown_dashboard_is_a_clear_error(server_cli, args):
    expect_ok(server_cli("user", "create", "alice", "--password", "pw"))

    assert "no dashboard 'nope'" in expect_error(server_cli(*args))


# Members ---------------------------------------------------------------------


def test_member_add_and_remove_say_what_changed(server_cli, database_url):
    expect_ok(server_cli("user", "create", "alice", "--password", "pw"))
    expect_ok(server_cli("dashboard", "create", "My Board"))

    assert (
        expect_ok(server_cli("member", "add", "my-board", "alice"))
        == "alice is now a member (viewer) of my-board\n"
    )
    assert expect_ok(server_cli("member", "add", "my-board", "alice")).startswith(
        "alice is already a member of my-board"
    )
    assert _members(database_url) == [("my-board", "alice")]

    removed = expect_ok(server_cli("member", "remove", "my-board", "alice"))
    assert removed == "alice is no longer a member of my-board\n"
    assert (
        expect_ok(server_cli("member", "remove", "my-board", "alice"))
        == "alice was not a member of my-board\n"
    )
    assert _members(database_url) == []


def test_member_add_unknown_user_is_a_clear_error(server_cli, database_url):
    expect_ok(server_cli("dashboard", "create", "My Board"))

    assert "no user 'bob'" in expect_error(server_cli("member", "add", "my-board", "bob"))
    assert _members(database_url) == []


# Demo, check, help -------------------------------------------------------------


def test_demo_twice_is_idempotent(server_cli, database_url):
    first = expect_ok(server_cli("demo"))
    second = expect_ok(server_cli("demo"))

    assert second == first
    [(dashboard_id,)] = query_rows(database_url, "SELECT id FROM dashboards WHERE slug = 'demo'")
    assert f"demo dashboard demo (id {dashboard_id})" in first
    assert query_rows(database_url, "SELECT slug FROM dashboards ORDER BY slug") == [
        ("demo",),
        ("this-machine",),
    ]
    metrics = query_rows(database_url, "SELECT name FROM metrics WHERE dashboard_id = %s", (dashboard_id,))
    assert sorted(name for (name,) in metrics) == sorted(name for name, *_ in DEMO_METRICS)
    assert len(metrics) == 9
    users = dict(query_rows(database_url, "SELECT username, password_hash FROM users"))
    assert users.keys() == {"demo", "outsider", "viewer"}
    assert verify_password(users["demo"], "demo")
    assert verify_password(users["viewer"], "viewer")
    assert verify_password(users["outsider"], "outsider")
    assert _members(database_url) == [("demo", "demo"), ("demo", "viewer"), ("this-machine", "demo")]
    roles = query_rows(
        database_url, "SELECT u.username, m.role FROM dashboard_members m JOIN users u ON u.id = m.user_id"
    )
    assert sorted(roles) == [("demo", "editor"), ("demo", "editor"), ("viewer", "viewer")]
    machine = query_rows(
        database_url, "SELECT name, source FROM metrics WHERE dashboard_id <> %s", (dashboard_id,)
    )
    assert sorted(machine) == sorted(MACHINE_METRICS)


def test_check_is_ok_on_a_migrated_database(server_cli):
    assert expect_ok(server_cli("check")) == "ok\n"


def test_check_fails_when_redis_does_not_answer(database_url):
    check = invoker(server_main, database_url, redis_url="redis://127.0.0.1:1/0")

    assert "not ready" in expect_error(check("check"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--database-url", "mysql://db/x", "check"], "must start with postgresql://"),
        (["--database-url", "postgresql://h:port/x", "check"], "database URL"),
        (["--redis-url", "http://r/0", "check"], "redis"),
        (["run", "--trusted-proxy", "10.0.0.0/99"], "trusted proxy '10.0.0.0/99'"),
    ],
    ids=["scheme", "port", "redis", "trusted-proxy"],
)
def test_a_wrong_setting_exits_78_so_systemd_does_not_restart(database_url, args, message):
    result = CliRunner().invoke(
        server_main, ["--database-url", database_url, "--redis-url", servers().redis_url, *args]
    )

    assert message in expect_error(result, exit_code=78)


def test_pending_migrations_exit_78_from_check_and_worker(server_cli, worker_cli, database_url):
    # The newest migration's record gone: to the commands, it is pending.
    with closing(psycopg2.connect(database_url)) as conn, conn, conn.cursor() as cur:
        cur.execute(
            "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)"
            " RETURNING version, name, applied_at"
        )
        newest = cur.fetchone()
    try:
        assert "migration(s) pending" in expect_error(server_cli("check"), exit_code=78)
        assert "needs migrations" in expect_error(worker_cli("tick"), exit_code=78)
    finally:
        with closing(psycopg2.connect(database_url)) as conn, conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)", newest
            )


def test_passwords_are_masked_wherever_a_url_carries_them():
    urls = [
        "postgresql://app:s3cret@db:5432/x?sslmode=require",
        "postgresql://db/x?user=app&password=s3cret",
        "postgresql://db/x?sslpassword=s3cret",
        "redis+sentinel://:s3cret@s1,s2/main?sentinel_password=s3cret",
    ]
    for url in urls:
        masked = obscure_password(url)
        assert "s3cret" not in masked and "***" in masked, masked


def test_version_is_the_packaged_one():
    for group in (server_main, worker_main):
        result = CliRunner().invoke(group, ["--version"])
        assert result.exit_code == 0
        assert __version__ in result.stdout


def _command_paths(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _command_paths(sub, (*path, name))


HELP_CASES = [
    pytest.param(group, path, id=" ".join((prog, *path)))
    for prog, group in (("dashboard-server", server_main), ("dashboard-worker", worker_main))
    for path in _command_paths(group)
]


@pytest.mark.parametrize(("group", "path"), HELP_CASES)
def test_help_says_what_each_command_does(group, path):
    command = group
    for name in path:
        command = command.commands[name]
    summary = (command.help or "").split("\n\n")[0]
    assert summary, "the command has no help text"

    result = CliRunner().invoke(group, [*path, "--help"])

    assert result.exit_code == 0, result.output
    # Click rewraps paragraphs to the terminal width.
    assert " ".join(summary.split()) in " ".join(result.stdout.split())


# Worker ----------------------------------------------------------------------


def test_worker_tick_stores_and_publishes_one_value_per_metric(server_cli, worker_cli, database_url):
    expect_ok(server_cli("demo"))
    [(dashboard_id,)] = query_rows(database_url, "SELECT id FROM dashboards WHERE slug = 'demo'")
    with redis.Redis.from_url(servers().redis_url) as client, client.pubsub() as pubsub:
        pubsub.subscribe(servers().channels.dashboard(dashboard_id))
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"

        produced = len(DEMO_METRICS) + len(MACHINE_METRICS)
        assert expect_ok(worker_cli("tick")) == f"stored and published {produced} value(s)\n"

        published = pubsub.get_message(timeout=5)
    per_metric = query_rows(
        database_url,
        "SELECT m.name, count(v.id) FROM metrics m LEFT JOIN metric_values v ON v.metric_id = m.id"
        " GROUP BY m.name",
    )
    assert dict(per_metric) == {name: 1 for name, *_ in DEMO_METRICS + MACHINE_METRICS}
    assert published is not None
    assert published["type"] == "message"
    published_dashboard, values = decode_values(published["data"])
    assert published_dashboard == dashboard_id
    stored_ids = query_rows(
        database_url,
        "SELECT v.id FROM metric_values v JOIN metrics m ON m.id = v.metric_id"
        " WHERE m.dashboard_id = %s ORDER BY v.id",
        (dashboard_id,),
    )
    assert sorted(value.id for value in values) == [value_id for (value_id,) in stored_ids]


# Configuration -----------------------------------------------------------------


def _show(group: click.Group, *args: str, env: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """`config show` as {key: (value, where from)}."""
    result = CliRunner(env=env).invoke(group, [*args, "config", "show"])
    shown = expect_ok(result)
    entries = {}
    for line in shown.splitlines():
        if " = " in line and not line.startswith("#"):
            key, _, rest = line.partition(" = ")
            value, _, origin = rest.partition("  # ")
            entries[key] = (value, origin)
    return entries


def test_config_file_env_and_flag_rank_as_operators_expect(tmp_path):
    config = tmp_path / "dashboard.toml"
    config.write_text(
        'database_url = "postgresql://file:filepw@db/x"\n'
        'log-format = "json"\n'
        "[server.run]\n"
        "port = 9999\n"
        "workers = 3\n"
        'trusted-proxy = ["10.0.0.0/8", "127.0.0.1"]\n'
        "[worker.run]\n"
        "interval = 2.5\n"
    )
    env = {"DASHBOARD_WORKERS": "2", "DASHBOARD_DATABASE_URL": None, "DASHBOARD_REDIS_URL": None}
    shown = _show(server_main, "--config", str(config), "--log-level", "debug", env=env)

    assert shown["database-url"] == ('"postgresql://file:***@db/x"', "config or secret file")
    assert "filepw" not in str(shown)
    assert shown["log-format"] == ('"json"', "config or secret file")
    assert shown["log-level"] == ('"debug"', "flag")
    assert shown["port"] == ("9999", "config or secret file")
    assert shown["workers"] == ("2", "environment DASHBOARD_WORKERS")
    assert shown["trusted-proxy"] == ('["10.0.0.0/8", "127.0.0.1"]', "config or secret file")
    assert shown["history-limit"] == ("100", "default")
    # The worker reads its own section of the same file.
    worker = _show(worker_main, "--config", str(config), env=env)
    assert worker["interval"] == ("2.5", "config or secret file")


def test_a_config_file_is_used_by_the_commands(tmp_path, database_url):
    config = tmp_path / "dashboard.toml"
    config.write_text(f'database_url = "{database_url}"\nredis_url = "{servers().redis_url}"\n')
    env = {"DASHBOARD_DATABASE_URL": None, "DASHBOARD_REDIS_URL": None}
    assert expect_ok(CliRunner(env=env).invoke(server_main, ["--config", str(config), "check"])) == "ok\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('databse_url = "postgresql://x/y"\n', "unknown setting 'databse_url'"),
        ("[server.run]\nprot = 1\n", "unknown setting 'prot'"),
        ("[nginx]\nport = 1\n", "unknown section [nginx]"),
        ("port = \n", "config file"),
    ],
    ids=["typo", "typo-in-command", "section", "syntax"],
)
def test_a_wrong_config_file_exits_78_naming_the_problem(tmp_path, text, message):
    config = tmp_path / "dashboard.toml"
    config.write_text(text)
    result = CliRunner().invoke(server_main, ["--config", str(config), "config", "show"])

    assert message in expect_error(result, exit_code=78)


def test_urls_are_read_from_secret_files_and_systemd_credentials(tmp_path):
    secret = tmp_path / "db-url"
    secret.write_text("postgresql://app:s3cret@db/x\n")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "redis_url").write_text("redis://:r3dis@cache:6379/0")
    env = {
        "DASHBOARD_DATABASE_URL": None,
        "DASHBOARD_REDIS_URL": None,
        "DASHBOARD_DATABASE_URL_FILE": str(secret),
        "CREDENTIALS_DIRECTORY": str(credentials),
    }
    shown = _show(server_main, env=env)

    assert shown["database-url"] == ('"postgresql://app:***@db/x"', "config or secret file")
    assert shown["redis-url"] == ('"redis://:***@cache:6379/0"', "config or secret file")
    # A variable still wins over a secret file.
    assert _show(server_main, env={**env, "DASHBOARD_DATABASE_URL": "postgresql://h/env"})["database-url"][
        1
    ] == ("environment DASHBOARD_DATABASE_URL")
    missing = CliRunner(env={**env, "DASHBOARD_DATABASE_URL_FILE": str(tmp_path / "nope")}).invoke(
        server_main, ["config", "show"]
    )
    assert "cannot read the database_url secret" in expect_error(missing, exit_code=78)


def test_every_option_names_its_environment_variable_in_help():
    for group, path in HELP_CASES_WITH_OPTIONS:
        command = group
        for name in path:
            command = command.commands[name]
        help_text = " ".join(CliRunner().invoke(group, [*path, "--help"]).stdout.split())
        for param in command.params:
            if isinstance(param, click.Option) and param.envvar:
                assert f"env var: {param.envvar}" in help_text, (path, param.name)


HELP_CASES_WITH_OPTIONS = [(case.values[0], case.values[1]) for case in HELP_CASES]

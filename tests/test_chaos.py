"""The chaos run (`python -m chaos`): its short CI variant, and its checker.

The run itself starts its own PostgreSQL and Redis; the checker's tests feed
it logs with a known flaw and expect it to be named.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from chaos import processes
from chaos.clients import Verifier
from chaos.faults import KINDS
from chaos.verify import Checker
from chaos.world import Board

CI_SEED = 20261207
BOARD = Board(id=1, token="", pushed_id=10, random_ids=[11])
STORED = {10: [(1, 1.0), (3, 2.0), (5, 3.0), (7, 4.0)], 11: [(2, 0.5), (4, 0.7)]}


def _verifier(*events: tuple) -> Verifier:
    verifier = Verifier(0, SimpleNamespace(bases=["-"]), BOARD, batch=False, resume=True, switch=False)
    verifier.events = [(float(i), 1, *event) for i, event in enumerate(events)]
    return verifier


def _check(*events: tuple, history_limit: int = 100) -> list[str]:
    checker = Checker(STORED, history_limit)
    checker.check_client(_verifier(*events))
    return [v.message for v in checker.violations]


def test_a_complete_stream_passes():
    assert (
        _check(
            ("history", 10, ([(1, 1.0), (3, 2.0)], 3)),
            ("history", 11, ([(2, 0.5)], 2)),
            ("live", 10, (5, 3.0)),
            ("resumed", 10, (5, [(7, 4.0)], 7)),
            ("resumed", 11, (2, [(4, 0.7)], 4)),
        )
        == []
    )


@pytest.mark.parametrize(
    ("events", "named"),
    [
        ([("history", 10, ([(1, 1.0)], 1)), ("live", 10, (5, 3.0))], "gap: after id 1 came id 5"),
        ([("history", 10, ([(1, 1.0), (3, 2.0)], 3)), ("live", 10, (3, 2.0))], "duplicate or reorder"),
        ([("history", 10, ([(1, 1.0)], 1)), ("live", 10, (3, 9.0))], "id 3 = 9.0 shown but not stored"),
        ([("history", 10, ([(3, 2.0), (5, 3.0)], 5))], "a short history that misses older values"),
        ([("history", 10, ([(1, 1.0)], 1)), ("resumed", 10, (1, [(5, 3.0)], 5))], "gap"),
        (
            [("history", 10, ([(1, 1.0)], 1)), ("lost", 10, 1), ("reload", 10, ([(7, 4.0)], 7))],
            "recovered: false",
        ),
        ([("history", 10, ([(1, 1.0), (3, 2.0), (5, 3.0)], 5))], "ends holding id 5, newest stored is 7"),
    ],
)
def test_the_checker_names_each_flaw(events, named):
    all_of_11 = ("history", 11, ([(2, 0.5), (4, 0.7)], 4))
    found = _check(*events, all_of_11)
    assert found and named in found[0], found


def test_a_full_history_may_skip_what_the_server_no_longer_sends():
    assert (
        _check(
            ("history", 10, ([(1, 1.0)], 1)),
            ("history", 10, ([(5, 3.0), (7, 4.0)], 7)),
            ("history", 11, ([(2, 0.5), (4, 0.7)], 4)),
            history_limit=2,
        )
        == []
    )


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_sixty_seconds_of_compound_faults_lose_and_repeat_nothing(tmp_path: Path):
    if shutil.which("redis-server") is None or not processes.PG_BIN_DIRS:
        pytest.skip("needs redis-server and PostgreSQL's server binaries")
    report = tmp_path / "chaos.json"
    command = [sys.executable, "-m", "chaos", "--seconds", "60", "--seed", str(CI_SEED), "--clients", "50"]
    done = subprocess.run(
        [*command, "--short", "--output", str(report)], capture_output=True, text=True, timeout=140
    )
    sys.stdout.write(done.stderr[-20000:])
    result = json.loads(report.read_text())
    assert result["violations"] == 0, result["violation_list"]
    assert done.returncode == 0
    assert all(result["faults"][kind]["count"] >= 1 for kind in KINDS), result["faults"]
    assert result["values_checked"] > 10_000

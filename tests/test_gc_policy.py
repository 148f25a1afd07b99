"""server/gcpolicy.py: what socket bursts leave is frozen once they are over,
and unfrozen (collected once) after enough of those sockets closed."""

from __future__ import annotations

import gc
from types import SimpleNamespace

from server.gcpolicy import MIN_CHURN, MIN_NEW, QUIET_SECONDS, Freezer


def test_a_burst_is_frozen_once_quiet_and_unfrozen_after_churn():
    hub = SimpleNamespace(added_total=0, removed_total=0)
    freezer = Freezer(hub)  # type: ignore[arg-type]
    try:
        hub.added_total = MIN_NEW * 5
        assert freezer.check(100.0) is None  # sockets still arriving
        assert freezer.check(100.0 + QUIET_SECONDS / 2) is None  # not quiet for long enough
        frozen_before = gc.get_freeze_count()
        assert freezer.check(100.0 + QUIET_SECONDS) == "froze"
        assert gc.get_freeze_count() >= frozen_before
        assert freezer.check(200.0) is None  # nothing new since
        hub.removed_total = MIN_CHURN - 1
        assert freezer.check(300.0) is None  # a few closed: not worth a full collection
        hub.removed_total = MIN_CHURN
        assert freezer.check(400.0) == "collected"
        hub.added_total += MIN_NEW - 1
        assert freezer.check(500.0) is None
        assert freezer.check(500.0 + QUIET_SECONDS) is None  # fewer than MIN_NEW new ones
    finally:
        gc.unfreeze()

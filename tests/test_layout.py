"""The module graph stays as the layout says: the page side does not pull in the live path."""

from __future__ import annotations

import subprocess
import sys


def test_importing_auth_does_not_load_the_socket_stack():
    # A fresh interpreter: this one has long imported everything.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, server.auth; print(*sorted(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert "server.keys" in loaded
    assert [name for name in loaded if name.startswith("server.live")] == []

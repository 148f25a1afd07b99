"""Progress lines of a run, on stderr with the time."""

from __future__ import annotations

import sys
import time


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

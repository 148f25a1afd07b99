"""Loaded by every server process the benchmark starts (bench/__main__.py puts
this directory on PYTHONPATH): records each garbage collection's pause and,
at exit, writes them to $DASHBOARD_BENCH_GC_LOG/<pid>.json as
[generation, seconds, began at (time.time())].

A full collection stops every socket of the process for as long as it walks
all objects; at thousands of sockets that is the tail latency. Injected from
outside, so an older tree (`--before-src`) is measured the same way.
"""

import atexit
import gc
import json
import os
import time

_log_dir = os.environ.get("DASHBOARD_BENCH_GC_LOG")
if _log_dir:
    _pauses: list[tuple[int, float]] = []
    _started = [0.0, 0.0]

    def _record(phase: str, info: dict) -> None:
        # With the wall-clock time it began: the benchmark tells which window it fell in.
        if phase == "start":
            _started[0] = time.perf_counter()
            _started[1] = time.time()
        else:
            _pauses.append((info["generation"], time.perf_counter() - _started[0], _started[1]))

    def _write() -> None:
        with open(os.path.join(_log_dir, f"{os.getpid()}.json"), "w") as f:
            json.dump(_pauses, f)

    gc.callbacks.append(_record)
    atexit.register(_write)

"""Loaded by every server and worker a chaos run starts (chaos/processes.py puts
this directory on PYTHONPATH): on SIGUSR2, print the stack of every asyncio
task of the process to its log.

When a fault does not heal, the run asks each process for this before it
stops them, so the log shows what every coroutine was waiting for (a stuck
process's threads only show the event loop's select()).
"""

import signal
import sys


def _dump(signum, frame):
    import asyncio

    loop = asyncio._get_running_loop()
    if loop is None:
        return
    print(f"--- chaos: {len(asyncio.all_tasks(loop))} asyncio tasks ---", file=sys.stderr)
    for task in asyncio.all_tasks(loop):
        print(f"task {task.get_name()} {task.get_coro()!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    print("--- chaos: end of tasks ---", file=sys.stderr, flush=True)


signal.signal(signal.SIGUSR2, _dump)

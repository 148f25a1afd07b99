"""Background tasks nobody awaits: kept until done, cancelled together at exit."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextlib import suppress
from typing import Any


class BackgroundTasks:
    """Fire-and-forget tasks of one owner (a cleanup context, the hub).

    asyncio keeps only a weak reference to a task: the set holds each one
    until it is done, so it is never collected half-way. `cancel_all` stops
    those still running and waits for them, so none outlives its owner's
    resources.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self) -> None:
        """Cancel every task still running and wait until each has ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task

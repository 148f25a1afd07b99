"""Identical reads asked for by many sockets at once, made once.

When thousands of sockets open together (a reconnect storm), each wants the
same newest values of the same metrics. Whoever asks while a read of the same
key is running waits for the next one, which starts when the running one ends
and answers everyone who asked meanwhile: a burst costs a handful of reads
and encodings instead of one per socket.

Reads of different keys of one kind (the access check of each socket: its
user and membership) asked in the same loop turn are made as one
(`read_batched`): a storm of sockets of different users costs a query per
loop turn instead of one per socket.

A read always starts after all of its askers asked, so each gets a state at
least as new as the moment it asked. server/live/history.py relies on that: a socket
subscribes, then asks, and the live updates it holds back cover everything
after the read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class SharedReads:
    def __init__(self) -> None:
        self._running: set[Hashable] = set()
        # The next read of each key: its askers' future and how to make it.
        self._next: dict[Hashable, tuple[asyncio.Future[Any], Callable[[], Awaitable[Any]]]] = {}
        # Per kind, the keys asked for in this loop turn (their askers' futures) and how to read them.
        self._batches: dict[Hashable, tuple[dict[Hashable, asyncio.Future[Any]], BatchReader]] = {}
        # The reads under way (asyncio holds tasks weakly), for `cancel_all`.
        self._reading: set[asyncio.Future[Any]] = set()

    def cancel_all(self) -> None:
        """At a stop, after the sockets were closed: cancel the reads under way,
        so that the connections they hold go back to the pool before it closes.
        Their askers get CancelledError."""
        for task in list(self._reading):
            task.cancel()

    async def read(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        """The result of `make()`, shared with everyone asking with the same key
        until that read starts. `make` must depend on nothing but the key."""
        waiting = self._next.get(key)
        if waiting is None:
            waiting = self._next[key] = (asyncio.get_running_loop().create_future(), make)
            if key not in self._running:
                # On the next loop turn: the others asking in this one join it.
                asyncio.get_running_loop().call_soon(self._start, key)
        # Shielded: one socket going away must not cancel the others' answer.
        result: T = await asyncio.shield(waiting[0])
        return result

    async def read_batched(self, kind: Hashable, key: Hashable, make: BatchReader) -> Any:
        """`make(keys)[key]`, where `keys` are all asked for with this `kind` in the
        same loop turn. `make` must depend on nothing but the kind and the keys."""
        batch = self._batches.get(kind)
        if batch is None:
            batch = self._batches[kind] = ({}, make)
            asyncio.get_running_loop().call_soon(self._start_batch, kind)
        waiting = batch[0].get(key)
        if waiting is None:
            waiting = batch[0][key] = asyncio.get_running_loop().create_future()
        return await asyncio.shield(waiting)

    def _start_batch(self, kind: Hashable) -> None:
        askers, make = self._batches.pop(kind)
        task = self._track(asyncio.ensure_future(make(list(askers))))
        task.add_done_callback(lambda done: _answer_batch(askers, done))

    def _start(self, key: Hashable) -> None:
        # Nobody can join this read from here on: later askers get the next one.
        answer, make = self._next.pop(key)
        self._running.add(key)
        task = self._track(asyncio.ensure_future(make()))
        task.add_done_callback(lambda done: self._finished(key, answer, done))

    def _track(self, task: asyncio.Future[Any]) -> asyncio.Future[Any]:
        self._reading.add(task)
        task.add_done_callback(self._reading.discard)
        return task

    def _finished(self, key: Hashable, answer: asyncio.Future[Any], done: asyncio.Future[Any]) -> None:
        self._running.discard(key)
        if done.cancelled():
            answer.cancel()
        elif (exc := done.exception()) is not None:
            answer.set_exception(exc)
        else:
            answer.set_result(done.result())
        if key in self._next:
            self._start(key)


BatchReader = Callable[[list[Any]], Awaitable[Mapping[Any, Any]]]


def _answer_batch(askers: dict[Hashable, asyncio.Future[Any]], done: asyncio.Future[Any]) -> None:
    for key, answer in askers.items():
        if done.cancelled():
            answer.cancel()
        elif done.exception() is not None:
            answer.set_exception(done.exception())  # type: ignore[arg-type]
        else:
            answer.set_result(done.result()[key])

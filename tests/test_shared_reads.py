"""Sockets opening together share one read (server/live/sharedreads.py), and each
still gets a state read after it asked."""

from __future__ import annotations

import asyncio

import pytest

from server.live.sharedreads import SharedReads
from tests.helpers import eventually


class Source:
    """Counts reads; each read returns the version current when it started."""

    def __init__(self) -> None:
        self.version = 0
        self.reads = 0
        self.gate = asyncio.Event()

    async def read(self) -> int:
        self.reads += 1
        seen = self.version
        await self.gate.wait()
        return seen


async def test_askers_of_one_loop_turn_share_one_read():
    reads, source = SharedReads(), Source()
    source.gate.set()
    results = await asyncio.gather(*(reads.read("k", source.read) for _ in range(50)))
    assert (results, source.reads) == ([0] * 50, 1)


async def test_who_asks_during_a_read_gets_a_later_one():
    reads, source = SharedReads(), Source()
    first = [asyncio.ensure_future(reads.read("k", source.read)) for _ in range(3)]
    await eventually(lambda: source.reads == 1, 1, "the read has started and is waiting")
    source.version = 1  # what a value stored now looks like
    later = [asyncio.ensure_future(reads.read("k", source.read)) for _ in range(3)]
    # A window, not a wait: a read wrongly started for them would begin within two loop turns.
    await asyncio.sleep(0.01)
    assert source.reads == 1  # the later askers wait for the running read to end
    source.gate.set()
    assert await asyncio.gather(*first) == [0, 0, 0]
    assert await asyncio.gather(*later) == [1, 1, 1]
    assert source.reads == 2


async def test_different_keys_are_separate_reads():
    reads, source = SharedReads(), Source()
    source.gate.set()
    await asyncio.gather(reads.read("a", source.read), reads.read("b", source.read))
    assert source.reads == 2


async def test_an_error_reaches_every_asker_and_the_next_read_is_fresh():
    reads = SharedReads()

    async def failing() -> int:
        raise ConnectionError("database away")

    results = await asyncio.gather(*(reads.read("k", failing) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)

    async def working() -> int:
        return 7

    assert await reads.read("k", working) == 7


async def test_an_asker_that_gives_up_does_not_cancel_the_others_read():
    reads, source = SharedReads(), Source()
    quitter = asyncio.ensure_future(reads.read("k", source.read))
    stayer = asyncio.ensure_future(reads.read("k", source.read))
    await eventually(lambda: source.reads == 1, 1, "the read has started")
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    source.gate.set()
    assert await stayer == 0


async def test_a_stop_cancels_the_reads_under_way_and_their_askers_hear_it():
    """At a stop the reads still running hold pool connections: cancelled, they
    give them back at once instead of at the pool's forced close."""
    reads, source = SharedReads(), Source()
    single = asyncio.ensure_future(reads.read("k", source.read))

    async def batch(keys: list) -> dict:
        await source.gate.wait()
        return {key: key for key in keys}

    batched = asyncio.ensure_future(reads.read_batched("access", 1, batch))
    await eventually(lambda: source.reads == 1, 1, "the read has started and is waiting")
    reads.cancel_all()
    for asker in (single, batched):
        with pytest.raises(asyncio.CancelledError):
            await asker
    # Nothing left running, and a later read is made afresh.
    source.gate.set()
    assert await reads.read("k", source.read) == 0
    assert source.reads == 2

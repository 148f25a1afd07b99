"""The delivery loop: queue due repeats, claim due messages, attempt them, record each attempt."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiopg

from common import db
from worker.notify.senders import FAILED, RETRYING, Outcome, Sender

log = logging.getLogger(__name__)

# Seconds between looks at the outbox when it was empty.
POLL_EVERY = 1.0
# Messages attempted at once by one worker.
BATCH = 20
# Longer than any attempt (senders.SEND_TIMEOUT, the SMTP timeout): a claim
# only expires when its worker died.
CLAIM_LEASE = timedelta(seconds=60)


@dataclass(frozen=True)
class Backoff:
    """Wait `first` seconds after the first failed attempt, doubling up to `most`."""

    first: float = 10.0
    most: float = 600.0

    def after(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.first * 2 ** max(attempts - 1, 0), self.most))


async def deliver_once(pool: aiopg.Pool, sender: Sender, backoff: Backoff = Backoff()) -> int:
    """Queue due repeats, then claim and attempt one batch; how many were attempted."""
    await db.enqueue_due_repeats(pool)
    claimed = await db.claim_due_notifications(pool, BATCH, CLAIM_LEASE)
    outcomes = await asyncio.gather(*(sender.attempt(item) for item in claimed))
    for delivery, outcome in zip(claimed, outcomes, strict=True):
        await _record(pool, delivery, outcome, backoff)
    return len(claimed)


async def _record(pool: aiopg.Pool, delivery: db.Delivery, outcome: Outcome, backoff: Backoff) -> None:
    retry_at = None
    result, detail = outcome.result, outcome.detail
    if result == RETRYING:
        retry_at = datetime.now(UTC) + backoff.after(delivery.attempts)
        if retry_at > delivery.give_up_at:
            result, detail = FAILED, f"{detail} (gave up after {delivery.attempts} attempts)"
            retry_at = None
    if not await db.record_attempt(pool, delivery, result, detail, retry_at):
        log.warning("notification %d: claim expired during the attempt (%s)", delivery.id, detail)
    log.info("notification %d to %s: %s, %s", delivery.id, delivery.contact_name, result, detail)


async def deliver(
    pool: aiopg.Pool,
    sender: Sender,
    stop: asyncio.Event,
    backoff: Backoff = Backoff(),
    every: float = POLL_EVERY,
) -> None:
    """Deliver until `stop` is set; a full batch is followed by the next at once."""
    while not stop.is_set():
        try:
            attempted = await deliver_once(pool, sender, backoff)
        except db.UNAVAILABLE as exc:
            # Nothing is lost: the messages stay in the outbox until the next round.
            log.warning("notification delivery paused, database unavailable: %s", exc)
            attempted = 0
        if attempted < BATCH:
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

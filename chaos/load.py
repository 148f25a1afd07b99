"""The writers of a chaos run: a push client with known sequences and an editor."""

from __future__ import annotations

import asyncio
import random

import aiohttp

from chaos.clients import UserSession
from chaos.world import Board

PUSH_TIMEOUT = aiohttp.ClientTimeout(total=5)


class Pusher:
    """Pushes 1, 2, 3, ... to a dashboard's pushed metric through the push API.

    A push the server answered 201 is `acked`; one whose answer never came
    (the server was killed or stalled mid-request) may or may not be stored,
    so it is retried and its numbers are `ambiguous`: only they may be stored twice.
    """

    def __init__(self, http: aiohttp.ClientSession, bases: list[str], board: Board) -> None:
        self.http, self.bases, self.board = http, bases, board
        self.next_seq = 1
        self.acked: set[int] = set()
        self.ambiguous: set[int] = set()
        self.refusals = 0
        self._turn = board.id

    async def run(self, stop: asyncio.Event, rate: float) -> None:
        while not stop.is_set():
            await self.push(1, stop)
            await asyncio.sleep(1 / rate)

    async def push(self, count: int, stop: asyncio.Event) -> None:
        seqs = range(self.next_seq, self.next_seq + count)
        self.next_seq += count
        body = {"values": [{"metric_id": self.board.pushed_id, "value": float(s)} for s in seqs]}
        headers = {"Authorization": f"Bearer {self.board.token}"}
        while not stop.is_set():
            self._turn += 1
            base = self.bases[self._turn % len(self.bases)]
            try:
                async with self.http.post(
                    f"{base}/api/v1/values", json=body, headers=headers, timeout=PUSH_TIMEOUT
                ) as response:
                    if response.status == 201:
                        self.acked.update(seqs)
                        return
                    self.refusals += 1  # answered and refused (503 while the database is away): not stored
            except (aiohttp.ClientError, TimeoutError):
                self.ambiguous.update(seqs)
            await asyncio.sleep(0.2)


class Editor:
    """Adds and removes metrics from the page's JSON endpoints, as an editor would."""

    def __init__(self, user: UserSession, boards: list[Board], rng: random.Random) -> None:
        self.user, self.boards, self.rng = user, boards, rng
        self.made = 0

    async def edit(self) -> str:
        """One change, tried up to three times (on either server); what came of it."""
        board = self.rng.choice(self.boards)
        remove = bool(board.extra_ids) and self.rng.random() < 0.5
        if remove:
            path, body = f"/dashboards/{board.id}/metrics/{board.extra_ids[0]}/delete", {}
        else:
            self.made += 1
            path = f"/dashboards/{board.id}/metrics"
            body = {"name": f"extra{self.made}", "type": "gauge", "source": "random"}
        outcome = ""
        for attempt in range(3):
            base = self.user.bases[attempt % len(self.user.bases)]
            try:
                headers = {"X-CSRF-Token": await self.user.csrf(base)}
                async with self.user.http.post(
                    base + path, json=body, headers=headers, timeout=PUSH_TIMEOUT
                ) as response:
                    outcome = f"{'remove' if remove else 'add'} {response.status}"
                    if response.status in (200, 201):
                        if remove:
                            board.extra_ids.pop(0)
                        else:
                            config = (await response.json())["config"]
                            board.extra_ids += [
                                m["id"] for m in config["metrics"] if m["name"] == body["name"]
                            ]
                        return outcome
            except (aiohttp.ClientError, TimeoutError, TypeError) as exc:
                outcome = f"{'remove' if remove else 'add'} {type(exc).__name__}"
            await asyncio.sleep(1)
        return outcome

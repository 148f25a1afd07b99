"""One client's WebSocket seen from the fan-out side: its subscriptions and a
bounded outbound queue drained by its own writer task, so a slow client never
stalls the broadcast to the others.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from common.db import Dashboard, Metric, User
from server.closecodes import CloseCode

log = logging.getLogger(__name__)

# Frames waiting for one client before it counts as too slow and is closed.
MAX_PENDING_FRAMES = 2000


class ClientConnection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        user: User,
        dashboard: Dashboard,
        metrics: list[Metric],
        max_pending: int = MAX_PENDING_FRAMES,
    ) -> None:
        self.ws = ws
        self.user = user
        self.dashboard = dashboard
        self.metrics = {metric.id: metric for metric in metrics}
        self.subscribed: set[int] = set()
        self._queue: asyncio.Queue[str] = asyncio.Queue(max_pending)
        self._max_pending = max_pending
        self._held: list[tuple[int, int, str]] | None = None
        self._closing = False
        self._close_task: asyncio.Future[bool] | None = None

    def send(self, frame: str) -> None:
        """Queue a frame; a client that let too many pile up is disconnected."""
        if self._closing:
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self._overflow()

    def deliver(self, metric_id: int, value_id: int, frame: str) -> None:
        """A live update from the hub (kept aside while history is being sent)."""
        if self._held is None:
            self.send(frame)
        elif len(self._held) < self._max_pending:
            self._held.append((metric_id, value_id, frame))
        else:
            self._overflow()

    def hold(self) -> None:
        """Keep live updates aside until `release`: history must go out first."""
        self._held = []

    def release(self, last_sent: dict[int, int]) -> None:
        """Send the updates kept aside that the history did not already contain.

        `last_sent` maps metric id to the id of the newest value sent as history.
        """
        held, self._held = self._held or [], None
        for metric_id, value_id, frame in held:
            if value_id > last_sent.get(metric_id, 0):
                self.send(frame)

    async def write_loop(self) -> None:
        """Drain the queue into the socket until cancelled or the socket closes."""
        while not self.ws.closed:
            frame = await self._queue.get()
            try:
                await self.ws.send_str(frame)
            except ConnectionError:
                return

    def _overflow(self) -> None:
        self._closing = True
        log.warning(
            "closing slow client of user %s on dashboard %s: %d frames pending",
            self.user.username,
            self.dashboard.id,
            self._queue.qsize(),
        )
        self._close_task = asyncio.ensure_future(
            self.ws.close(code=CloseCode.SLOW_CONSUMER, message=b"too slow: send buffer full")
        )

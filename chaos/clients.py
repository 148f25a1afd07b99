"""Verifying clients: each holds what a page would show and logs how it got it.

A `Verifier` speaks the documented protocol only (docs/protocol.md): the
default connection sequence or `?subscribe=none` + `resume`, `metric_update`
or `?updates=batch`, `history` after `recovered: false`, application pings,
and reconnects with jittered backoff, to its own server or alternately to
both. Every value it is shown goes into its event log, which chaos.verify
replays against PostgreSQL at the end of the run.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import time
from contextlib import suppress
from typing import Any

import aiohttp

from chaos.world import PASSWORD, Board

RECEIVE_TIMEOUT = 6.0  # seconds without any frame (pongs included): the connection is dead
PING_EVERY = 2.0
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


class Relogin(Exception):
    """The server says the session is gone (4401): log in again."""


class UserSession:
    """One user's cookie, shared by all their verifiers (as tabs share it)."""

    def __init__(self, username: str, bases: list[str]) -> None:
        self.username, self.bases = username, bases
        connector = aiohttp.TCPConnector(limit=0)
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), connector=connector)
        self._lock = asyncio.Lock()
        self.logins = 0

    async def log_in(self, stale: int | None = None) -> None:
        """Log in (again, unless someone else already did since login number `stale`)."""
        async with self._lock:
            if stale is not None and self.logins != stale:
                return
            attempt = 0
            while True:
                base = self.bases[attempt % len(self.bases)]
                attempt += 1
                with suppress(aiohttp.ClientError, TimeoutError, TypeError):
                    timeout = aiohttp.ClientTimeout(total=5)
                    async with self.http.get(f"{base}/login", timeout=timeout) as response:
                        token = CSRF_INPUT.search(await response.text())[1]
                    form = {"username": self.username, "password": PASSWORD, "csrf_token": token}
                    async with self.http.post(
                        f"{base}/login", data=form, allow_redirects=False, timeout=timeout
                    ) as response:
                        if response.status == 302:
                            self.logins += 1
                            return
                await asyncio.sleep(0.5)

    async def csrf(self, base: str) -> str:
        async with self.http.get(f"{base}/dashboards/", timeout=aiohttp.ClientTimeout(total=5)) as response:
            return CSRF_INPUT.search(await response.text())[1]


class Verifier:
    """One page of one dashboard."""

    def __init__(
        self, number: int, user: UserSession, board: Board, *, batch: bool, resume: bool, switch: bool
    ) -> None:
        self.number, self.user, self.board = number, user, board
        self.batch, self.resume, self.switch = batch, resume, switch
        self.server = number % len(user.bases)
        self.events: list[tuple[Any, ...]] = []  # (time, connection, kind, metric_id, data)
        self.held: dict[int, int | None] = dict.fromkeys(board.metric_ids)  # newest id held
        self.pushed_max = 0.0  # newest pushed sequence number held
        self.random_at = 0.0  # when the newest worker value arrived (monotonic)
        self.connection = 0
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.closes: dict[str, int] = {}
        self._asked = 0
        self._received = False  # this connection got past `authentication`

    @property
    def form(self) -> str:
        return ("batch" if self.batch else "single") + ("+resume" if self.resume else "")

    def log(self, kind: str, metric_id: int | None = None, data: Any = None) -> None:
        self.events.append((time.monotonic(), self.connection, kind, metric_id, data))

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            self.connection += 1
            self._received = False
            code: Any = None
            try:
                code = await self._connect_once()
            except Relogin:
                code = 4401
                await self.user.log_in(stale=self.user.logins)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                code = type(exc).__name__
            self.ws = None
            self.closes[str(code)] = self.closes.get(str(code), 0) + 1
            self.log("close", None, code)
            if self.switch:
                self.server = (self.server + 1) % len(self.user.bases)
            # Backoff with jitter, as the page does; a connection that got data resets it.
            failures = 0 if self._received else failures + 1
            await asyncio.sleep(random.uniform(0.05, min(3.0, 0.2 * 2**failures)))

    def cut(self) -> bool:
        """Cut the socket in the middle of a frame: a text frame's header, then nothing."""
        ws = self.ws
        sock = ws.get_extra_info("socket") if ws is not None else None
        if sock is None:
            return False
        self.log("cut")
        with suppress(OSError), sock.dup() as raw:
            raw.send(b"\x81\xfe\x01")  # FIN+text, masked, 16-bit length of which one byte comes
            raw.shutdown(socket.SHUT_RDWR)
        return True

    async def _connect_once(self) -> Any:
        base = self.user.bases[self.server]
        resuming = self.resume and any(last is not None for last in self.held.values())
        query = {}
        if resuming:
            query["subscribe"] = "none"
        if self.batch:
            query["updates"] = "batch"
        timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=1.0)
        ws = await self.user.http.ws_connect(
            f"{base}/ws/dashboard/{self.board.id}/",
            params=query,
            timeout=timeout,
            autoping=True,
            max_msg_size=0,
        )
        self.ws = ws
        self.log("open", None, self.server)
        pinger = asyncio.create_task(self._ping(ws))
        try:
            while True:
                try:
                    message = await ws.receive(timeout=RECEIVE_TIMEOUT)
                except TimeoutError:
                    self.log("silent")
                    await ws.close()
                    return "silent"
                if message.type != aiohttp.WSMsgType.TEXT:
                    return ws.close_code if ws.close_code is not None else message.type.name
                if not await self._handle(ws, message.json(), resuming):
                    await ws.close()
                    return "gave up"
        finally:
            pinger.cancel()
            with suppress(asyncio.CancelledError):
                await pinger
            if not ws.closed:
                await ws.close()

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        with suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
            while not ws.closed:
                await asyncio.sleep(PING_EVERY)
                await ws.send_json({"action": "ping"})

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, message: dict, resuming: bool) -> bool:
        """Take in one message; False to hang up and reconnect."""
        action, payload = message.get("action"), message.get("payload")
        if action == "authentication":
            if payload["status_code"] == 401:
                raise Relogin
            if payload["status_code"] != 200:
                self.log("refused", None, payload["status_code"])
                return False
            self._received = True
        elif action == "dashboard_config" and resuming and self._asked != self.connection:
            self._asked = self.connection  # once, after the connect-time config
            await self._ask_resume(ws)
        elif action == "metric_history":
            await self._history(ws, payload)
        elif action == "metric_update":
            self._live(payload["metric_id"], payload["id"], payload["value"])
        elif action == "metric_updates":
            for entry in payload["updates"]:
                for metric_id, value_id, value in entry["values"]:
                    self._live(metric_id, value_id, value)
        elif action == "error":
            self.log("error", None, payload["message"])
            return False  # a resume or history the database could not answer: start over
        return True

    async def _ask_resume(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.log("asked")
        positions = [{"metric_id": m, "after_id": last} for m, last in self.held.items() if last is not None]
        empty = [m for m, last in self.held.items() if last is None]
        await ws.send_json({"action": "resume", "payload": {"positions": positions}})
        if empty:
            await ws.send_json({"action": "history", "payload": {"metric_ids": empty, "range": "5m"}})

    async def _history(self, ws: aiohttp.ClientWebSocketResponse, payload: dict) -> None:
        metric_id = payload["metric_id"]
        if metric_id not in self.held:
            return  # a metric the editor added
        values = [(v["id"], v["value"]) for v in payload["values"]]
        last_id = payload["last_id"]
        if "recovered" in payload:
            after_id = self.held[metric_id]
            if payload["recovered"]:
                self.log("resumed", metric_id, (after_id, values, last_id))
            else:
                self.log("lost", metric_id, after_id)
                self.held[metric_id] = None
                await ws.send_json(
                    {"action": "history", "payload": {"metric_ids": [metric_id], "range": "5m"}}
                )
                return
        else:
            self.log("reload" if "range" in payload else "history", metric_id, (values, last_id))
        self.held[metric_id] = last_id
        if metric_id != self.board.pushed_id and values:
            self.random_at = time.monotonic()
        if metric_id == self.board.pushed_id and values:
            self.pushed_max = max(self.pushed_max, *(value for _, value in values))

    def _live(self, metric_id: int, value_id: int, value: float) -> None:
        if metric_id not in self.held:
            return
        self.log("live", metric_id, (value_id, value))
        self.held[metric_id] = value_id
        if metric_id == self.board.pushed_id:
            self.pushed_max = max(self.pushed_max, value)
        else:
            self.random_at = time.monotonic()

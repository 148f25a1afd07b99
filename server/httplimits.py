"""Limits on the connections themselves: deadlines for a request's headers
and body, the keep-alive, and a cap on open connections per process.

aiohttp alone waits for a request as long as its keep-alive allows (3630 s
by default) and accepts every connection, so a few thousand clients that
send half a request ("slow loris") hold as many file descriptors. Here:

- a request's headers must be complete `header_timeout` seconds after the
  connection opens, or after its first byte when the connection was idle;
- its body must be complete `body_timeout` seconds after its headers;
- an idle connection is closed after `keepalive_timeout` (aiohttp's own timer);
- what is sent may wait `send_timeout` seconds for a client that does not
  read it (its window stays shut) or acknowledge it: then the kernel drops
  the connection (TCP_USER_TIMEOUT). Without it, a client that asks for an
  export or a file and never reads holds the handler, what it has read from
  the database and its place in the cap for as long as it likes: neither
  aiohttp's writes nor the loop's sendfile have a deadline;
- beyond `max_connections_per_process` open connections, a new one is
  answered 503 and closed at once.

A connection that misses a deadline is closed without an answer. A
WebSocket's connection leaves aiohttp after the upgrade (server/live/transport.py,
`take_over`): the deadlines stay behind with the request handler, while the
place in the cap goes with the socket and is given back when it closes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import cast

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from common.config import ResolvedSettings

log = logging.getLogger(__name__)

_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 21\r\n\r\nToo many connections\n"
)


class ConnectionCap:
    """Connections open on this process, HTTP and WebSocket alike, up to `limit`."""

    __slots__ = ("limit", "open")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def take(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


class GuardedRequestHandler(RequestHandler):
    """aiohttp's handler of one connection, with the deadlines and the cap."""

    __slots__ = ("_body", "_body_timer", "_cap", "_header_timer", "_held", "_refused", "_settings")

    def __init__(self, manager: web.Server, cap: ConnectionCap, settings: ResolvedSettings) -> None:
        # The runner's own handler settings (the access log class among them),
        # as aiohttp's Server.__call__ passes them, with our keep-alive.
        handler_settings = {**manager._kwargs, "keepalive_timeout": settings.keepalive_timeout}
        super().__init__(manager, loop=asyncio.get_running_loop(), **handler_settings)
        self._cap = cap
        self._settings = settings
        self._held = False  # a place in the cap, given back when the connection ends
        self._refused = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._cap.take():
            # Before aiohttp sees it: no task, no parser run, no place taken.
            self._refused = True
            # A stream protocol is always handed a full Transport.
            cast(asyncio.Transport, transport).write(_REFUSAL)
            transport.close()
            return
        self._held = True
        _drop_when_unread(transport, self._settings.send_timeout)
        super().connection_made(transport)
        self._header_timer = self._loop.call_later(self._settings.header_timeout, self._headers_late)

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:  # a request's headers are complete
            self._cancel_header_timer()
            self._watch_body(self._messages[-1][1] if self._messages else None)
        elif self._header_timer is None and self._idle():  # the first bytes of the next request
            self._header_timer = self._loop.call_later(self._settings.header_timeout, self._headers_late)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return  # aiohttp never had it
        self._cancel_header_timer()
        self._watch_body(None)
        if self._held:
            self._held = False
            self._cap.release()
        super().connection_lost(exc)

    def hand_over(self) -> ConnectionCap | None:
        """For an upgrade: the connection stays open under another protocol,
        which must `release` the returned cap when it ends (None: nothing to give back)."""
        if not self._held:
            return None
        self._held = False
        return self._cap

    def _idle(self) -> bool:
        return not (self._request_in_progress or self._messages or self._upgraded)

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport is not None and self._idle():
            log.debug("closing a connection: request headers not complete in time")
            self.force_close()

    def _watch_body(self, payload: StreamReader | None) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._body = payload if payload is not None and not payload.is_eof() else None
        if self._body is not None:
            self._body_timer = self._loop.call_later(self._settings.body_timeout, self._body_late)

    def _body_late(self) -> None:
        self._body_timer = None
        if self.transport is not None and self._body is not None and not self._body.is_eof():
            log.debug("closing a connection: request body not complete in time")
            self.force_close()
        self._body = None

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None


def _drop_when_unread(transport: asyncio.BaseTransport, seconds: float) -> None:
    """Have the kernel drop the connection once sent data waits `seconds` for the client.

    Measured from the last progress: a slow client that reads, however
    slowly, keeps its connection; an idle one (nothing unsent) is not
    affected. The option goes with the socket when a WebSocket takes it over."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, round(seconds * 1000))


class GuardedSite(web.BaseSite):
    """A TCP site whose connections get `GuardedRequestHandler`s."""

    __slots__ = ("_cap", "_host", "_port", "_reuse_port", "_settings")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        settings: ResolvedSettings,
        *,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner)
        self._host, self._port, self._reuse_port = host, port, reuse_port
        self._settings = settings
        self._cap = ConnectionCap(settings.max_connections_per_process)

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def open_connections(self) -> int:
        return self._cap.open

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        self._server = await asyncio.get_running_loop().create_server(
            lambda: GuardedRequestHandler(server, self._cap, self._settings),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
        )

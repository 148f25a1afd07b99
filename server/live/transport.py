"""A WebSocket after its handshake: this server's own asyncio protocol on the
connection, in place of aiohttp's request handling.

Why not aiohttp's WebSocketResponse: it keeps, for as long as the socket is
open, the whole request (parsed headers, parser, reader queue, writer) and
two tasks each with a coroutine frame, about 15 KB per idle socket and some
hundred objects for the garbage collector to walk. A dashboard socket mostly
sits and receives. Here, once the upgrade request is checked (`take_over`),
the transport is handed to a `WebSocket` and aiohttp lets go of it; an idle
socket is then this object, its transport, and the dashboard's
ClientConnection, with no task.

What it does (RFC 6455): answers the handshake, reads client frames
(server/live/frames.py), answers pings, runs the closing handshake, and hands each
text or binary message to the handler set by `start`, one at a time and in
order; a task exists only while there is something to handle. Heartbeats are
sent for all sockets at once (`Heartbeat`), not by a timer per socket.

What a client can make it hold is bounded: every frame it sends but a close
counts against its rate limit (pings too); reading stops while MAX_WAITING
messages wait to be handled, and while the transport's send buffer is above
its high-water mark (a client that sends pings and never reads the pongs);
a socket refused, over its rate limit or failed for a protocol error is not
parsed any further, and whatever its peer sends next ends the connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import cast

from aiohttp import hdrs, web

from server.httplimits import ConnectionCap, GuardedRequestHandler
from server.live.closecodes import CloseCode
from server.live.frames import (
    BINARY,
    CLOSE,
    PING,
    TEXT,
    FrameError,
    FrameReader,
    close_code,
    close_frame,
    ping_frame,
    pong_frame,
    text_frame,
)
from server.ratelimit import TokenBucket

log = logging.getLogger(__name__)

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
# After sending a close frame, how long to wait for the peer's before hanging up.
CLOSE_TIMEOUT = 5.0
# Messages waiting to be handled before the socket stops reading from the peer.
MAX_WAITING = 32
# Why reading is paused (bits: it resumes when none is left).
_QUEUE_FULL = 1  # MAX_WAITING messages wait to be handled
_SEND_FULL = 2  # the transport's send buffer is above its high-water mark

MessageHandler = Callable[[int, bytes], Awaitable[None]]


def take_over(request: web.Request, socket: WebSocket) -> bool:
    """Answer the upgrade request and move its connection to `socket`.

    The request must be a valid upgrade (`is_upgrade`). False when the client
    is already gone. aiohttp is told the connection was lost, so that it
    neither writes to it again nor keeps anything of it; whatever the handler
    returns afterwards is never sent.
    """
    transport = request.transport
    handler = request.protocol
    if transport is None or transport.is_closing():
        return False
    transport.set_protocol(socket)
    # The connection keeps its place in the process's cap (server/httplimits.py).
    if isinstance(handler, GuardedRequestHandler):
        socket.cap = handler.hand_over()
    # Detached before aiohttp's clean-up runs: with no transport it closes nothing.
    handler.transport = None
    handler.connection_lost(None)
    socket.connection_made(transport)
    # Sent with the socket's first frame (its authentication answer, a refusal,
    # a close): one send instead of two for every socket set up.
    socket.unsent = _handshake_response(request.headers["Sec-WebSocket-Key"])
    return True


class TakenOver(web.StreamResponse):
    """What the handler returns once `take_over` moved the connection: aiohttp,
    which let go of it, has nothing to prepare, write or send."""

    def __init__(self) -> None:
        super().__init__(status=101)

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def is_upgrade(request: web.Request) -> bool:
    """A well-formed WebSocket upgrade request (§4.2.1) this server can accept.

    The checks of aiohttp's `WebSocketResponse.can_prepare`, without building
    a response and its headers for every socket.
    """
    headers = request.headers
    if headers.get(hdrs.UPGRADE, "").lower().strip() != "websocket" or not request._message.upgrade:
        return False
    if headers.get(hdrs.SEC_WEBSOCKET_VERSION, "") not in ("13", "8", "7"):
        return False
    key = headers.get(hdrs.SEC_WEBSOCKET_KEY)
    if not key:
        return False
    try:
        return len(base64.b64decode(key)) == 16
    except binascii.Error:
        return False


def _handshake_response(key: str) -> bytes:
    accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode()


class WebSocket(asyncio.Protocol):
    """One client's socket: frames in and control frames out.

    Data frames out are written by the owner straight to `transport`
    (server/live/connection.py coalesces them).
    """

    # Slots: one of these lives as long as each socket.
    __slots__ = (
        "__weakref__",  # listed in the app's socket set (server/app.py)
        "_close_timer",
        "_closed",
        "_handler",
        "_limit",
        "_lost",
        "_on_closed",
        "_paused",
        "_reader",
        "_task",
        "_waiting",
        "cap",
        "closing",
        "last_heard",
        "ping_sent",
        "transport",
        "unsent",
    )

    def __init__(self, max_message_bytes: int, limit: TokenBucket) -> None:
        self.transport: asyncio.Transport | None = None
        # None once we stopped parsing (`close(parse_reply=False)`, `fail`).
        self._reader: FrameReader | None = FrameReader(max_message_bytes)
        # Spent by every frame the peer sends but a close frame.
        self._limit = limit
        self._paused = 0  # _QUEUE_FULL | _SEND_FULL
        self._lost = False
        self._handler: MessageHandler | None = None
        self._waiting: deque[tuple[int, bytes]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_closed: Callable[[], None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self.closing = False
        # Given back when the connection ends (server/httplimits.py); None in the tests' app.
        self.cap: ConnectionCap | None = None
        self.last_heard = time.monotonic()
        self.ping_sent = False
        # The handshake's answer (and `send_later` frames) until the first write
        # takes them (`take_over`).
        self.unsent = b""

    # Owner's side ---------------------------------------------------------------

    def run(self, work: Awaitable[None]) -> None:
        """Run `work` (the socket's set-up) before any message is handled."""
        self._task = asyncio.ensure_future(work)
        self._task.add_done_callback(self._work_done)

    def start(self, handler: MessageHandler, on_closed: Callable[[], None]) -> None:
        """Hand messages to `handler` from now on; call `on_closed` once the
        socket is closed and no handler runs any more (at once if already so)."""
        self._handler = handler
        self._on_closed = on_closed
        if self._task is None or self._task.done():
            self._task = None
            self._next()

    def send_text(self, text: str) -> None:
        if not self.closing and self.transport is not None and not self.transport.is_closing():
            self._write(text_frame(text))

    def send_later(self, text: str) -> None:
        """Send a message with whatever is written next (`unsent`): the socket's
        own frames, or the owner's next write (which must take `unsent` first)."""
        if not self.closing and self.transport is not None and not self.transport.is_closing():
            self.unsent += text_frame(text)

    def send_unsent(self) -> None:
        """Write `unsent` now if no frame took it yet."""
        if self.unsent and self.transport is not None:
            self._write(b"")

    def close(self, code: int, reason: str = "", *, parse_reply: bool = True) -> None:
        """Start the closing handshake (idempotent): no frame goes out after the close frame.

        Without `parse_reply` (a refused or flooding client) nothing the peer
        sends is parsed any more: the first bytes it sends, its close frame
        if it behaves, end the TCP connection.
        """
        if not parse_reply:
            self._reader = None
        if self.closing or self._lost or self.transport is None:
            return
        self.closing = True
        self._write(close_frame(code, reason))
        if self.transport.is_closing():
            return
        self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    def fail(self, code: int, reason: str) -> None:
        """Close without waiting for the peer (§7.1.7), for a peer whose framing
        is lost: after the close frame our side of the TCP connection ends."""
        self.close(code, reason, parse_reply=False)
        if self.transport is None:
            return
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            self.transport.close()

    def abort(self) -> None:
        """Hang up without waiting for anything (a peer that stopped answering)."""
        if self.transport is not None:
            self.transport.abort()

    def cancel_work(self) -> None:
        """Cancel the set-up or message handler still running (at a stop: what it
        reads must not keep the database pool from closing)."""
        if self._task is not None:
            self._task.cancel()

    def heard_from(self) -> None:
        """The peer is alive: it read what we sent (an answer being written as it
        reads, while we read nothing from it) or it sent something."""
        self.last_heard = time.monotonic()
        self.ping_sent = False

    def ping(self) -> None:
        if not self.closing and self.transport is not None:
            self.ping_sent = True
            self._write(ping_frame())

    @property
    def is_open(self) -> bool:
        """Neither closing nor gone: frames sent now may still be read."""
        return not (self.closing or self._lost)

    async def wait_closed(self) -> None:
        if self._lost:
            return
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
        await self._closed

    # asyncio's side -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream protocol is always handed a full Transport (asyncio's
        # signature names the base class).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.heard_from()
        if self._reader is None:
            # We read nothing more: whatever comes, its close frame or more, ends it.
            if self.transport is not None:
                self.transport.close()
            return
        try:
            messages = self._reader.feed(data)
        except FrameError as exc:
            # Framing is lost, so the peer's close frame could not be found.
            log.info("closing socket: %s", exc.reason)
            self.fail(exc.code, exc.reason)
            return
        pong: bytes | None = None
        for opcode, payload in messages:
            if opcode == CLOSE:
                self._peer_closed(payload)
                return
            if not self._limit.take():
                log.info("closing socket: too many messages")
                self.close(CloseCode.RATE_LIMITED, "too many messages", parse_reply=False)
                return
            if opcode == PING:
                pong = payload
            elif opcode in (TEXT, BINARY) and not self.closing:
                self._queue(opcode, payload)
        if pong is not None and self.transport is not None and not self.closing:
            # Only the last ping of a read is answered (§5.5.3 allows it).
            self._write(pong_frame(pong))

    def pause_writing(self) -> None:
        # The peer does not read what we send: stop reading what it sends,
        # so that it cannot make us answer (pongs, replies) without bound.
        self._stop_reading(_SEND_FULL)

    def resume_writing(self) -> None:
        self._go_on_reading(_SEND_FULL)

    def eof_received(self) -> bool:
        return False  # close the transport: a half-closed WebSocket is of no use

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.transport = None
        if self.cap is not None:
            self.cap.release()
            self.cap = None
        self._reader = None
        self._waiting = None
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self._task is None:
            self._ended()

    # ----------------------------------------------------------------------------

    def _write(self, frame: bytes) -> None:
        # The transport is there: every caller checked.
        transport = cast(asyncio.Transport, self.transport)
        if self.unsent:
            frame, self.unsent = self.unsent + frame, b""
        transport.write(frame)

    def _peer_closed(self, payload: bytes) -> None:
        if self.transport is None:
            return
        if not self.closing:
            # Echo the code (§5.5.1): the peer asked to close, we agree.
            self.closing = True
            code = close_code(payload)
            self._write(close_frame(1000 if code == 1005 else code))
        # Both close frames exchanged: the server hangs up first (§7.1.1).
        self.send_unsent()
        self.transport.close()

    def _stop_reading(self, reason: int) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused |= reason

    def _go_on_reading(self, reason: int) -> None:
        was_paused = self._paused
        self._paused &= ~reason
        if was_paused and not self._paused and self.transport is not None:
            self.transport.resume_reading()

    def _queue(self, opcode: int, payload: bytes) -> None:
        if self._waiting is None:
            self._waiting = deque()
        self._waiting.append((opcode, payload))
        if len(self._waiting) >= MAX_WAITING:
            self._stop_reading(_QUEUE_FULL)  # resumed once handled (_next)
        if self._task is None and self._handler is not None:
            self._next()

    def _next(self) -> None:
        if self._lost or self.closing:
            if self._lost:
                self._ended()
            return
        if not self._waiting or self._handler is None:
            self._waiting = None  # no empty deque kept per idle socket
            return
        opcode, payload = self._waiting.popleft()
        if len(self._waiting) < MAX_WAITING:
            self._go_on_reading(_QUEUE_FULL)
        self._task = asyncio.ensure_future(self._handler(opcode, payload))
        self._task.add_done_callback(self._work_done)

    def _work_done(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("socket handler failed", exc_info=task.exception())
            self.close(1011, "internal error")
        self._next()

    def _ended(self) -> None:
        # The handler holds the owner's objects, which hold this socket: let go,
        # so that a closed socket is freed at once, not by a garbage collection.
        self._handler = None
        on_closed, self._on_closed = self._on_closed, None
        if on_closed is not None:
            on_closed()


class OpenSockets(weakref.WeakSet[WebSocket]):
    """The process's open sockets, for the heartbeat and the stop.

    Weak: a socket that ended is freed at once, without leaving this set.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stopping = False

    def add(self, socket: WebSocket) -> None:
        super().add(socket)
        # An upgrade that was under way when the stop began (its session read,
        # say) ends after `close_all` looked: told to go at once, like the rest,
        # not left open while the resources it needs close under it.
        if self.stopping:
            socket.close(CloseCode.GOING_AWAY, "server shutting down")

    async def close_all(self, wait: float) -> None:
        """Tell every client to go and reconnect (to another instance), wait up
        to `wait` seconds for their answers, then hang up on the rest and
        cancel what their handlers still do."""
        self.stopping = True
        sockets = set(self)
        for socket in sockets:
            socket.close(CloseCode.GOING_AWAY, "server shutting down")
        if sockets:
            await asyncio.wait(
                [asyncio.ensure_future(socket.wait_closed()) for socket in sockets], timeout=wait
            )
            for socket in sockets:
                socket.abort()
                socket.cancel_work()


class Heartbeat:
    """Pings every socket that was silent for a heartbeat interval, and hangs
    up on those that did not answer the previous ping within one: a vanished
    peer (a closed laptop, a dropped NAT mapping) is noticed within three
    intervals. One timer for all sockets, not one each."""

    def __init__(self, sockets: Iterable[WebSocket], interval: float) -> None:
        self._sockets = sockets
        self._interval = interval

    async def run(self) -> None:
        if self._interval <= 0:  # heartbeats off
            return
        while True:
            await asyncio.sleep(self._interval)
            self.beat()

    def beat(self) -> None:
        quiet_since = time.monotonic() - self._interval
        for socket in tuple(self._sockets):
            if socket.ping_sent:
                log.info("closing socket: no answer to the last ping")
                socket.abort()
            elif socket.last_heard <= quiet_since:
                socket.ping()

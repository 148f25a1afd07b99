"""A TCP proxy for fault tests: a real connection to PostgreSQL or Redis, broken on cue.

Two kinds of break, as the network gives them:
* `cut()`: the server becomes unreachable. The proxy drops every connection it
  carries and refuses new ones until `start()` again (a Redis outage).
* `arm(direction, pattern)`: the first connection whose bytes in that direction
  contain `pattern` is dropped both ways at that moment, without passing those
  bytes on (a connection lost just as a COMMIT or its answer was on its way).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

from tests.processes import free_port

TO_SERVER = "to server"
TO_CLIENT = "to client"


class TcpProxy:
    def __init__(self, target: tuple[str, int] | str) -> None:
        """`target`: (host, port), or the path of a Unix socket (the embedded servers)."""
        self._target = target
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._armed: tuple[str, bytes] | None = None
        self.port = free_port()
        self.cuts = 0  # connections dropped by an armed pattern

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._carry, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in tuple(self._links):
            writer.transport.abort()
        self._links.clear()

    def arm(self, direction: str, pattern: bytes) -> None:
        """Drop the next connection that carries `pattern` towards TO_SERVER or TO_CLIENT."""
        self._armed = (direction, pattern)

    async def _carry(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if isinstance(self._target, str):
            server_reader, server_writer = await asyncio.open_unix_connection(self._target)
        else:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        link = {client_writer, server_writer}
        self._links |= link

        async def pump(direction: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    if self._armed is not None and self._armed[0] == direction and self._armed[1] in data:
                        self._armed = None
                        self.cuts += 1
                        for each in link:
                            each.transport.abort()
                        return
                    writer.write(data)
                    await writer.drain()
            except (OSError, asyncio.CancelledError):
                writer.transport.abort()  # the other side is gone: so is this one
            else:
                writer.close()  # an orderly end, passed on

        await asyncio.gather(
            pump(TO_SERVER, client_reader, server_writer), pump(TO_CLIENT, server_reader, client_writer)
        )
        self._links -= link


@contextlib.asynccontextmanager
async def cuttable_redis(redis_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A TcpProxy in front of the Redis of `redis_url`, and the URL that goes through it."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        # The embedded Redis listens on a socket file: the proxy speaks TCP in front of it.
        database = parse_qs(parts.query).get("db", ["0"])[0]
        proxy = TcpProxy(parts.path)
        proxied = f"redis://127.0.0.1:{proxy.port}/{database}"
    else:
        proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 6379))
        proxied = parts._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
    await proxy.start()
    try:
        yield proxy, proxied
    finally:
        await proxy.cut()

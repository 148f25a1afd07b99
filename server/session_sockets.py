"""This process's open sockets by the session that opened them.

Ending a session (logout) closes its sockets here. Revoking a session from
another process will publish the session id and call `close_session` too.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from server.closecodes import CloseCode


class SessionSockets:
    def __init__(self) -> None:
        self._by_session: dict[str, set[web.WebSocketResponse]] = {}
        self._closing: set[asyncio.Task[bool]] = set()

    def add(self, session_id: str, ws: web.WebSocketResponse) -> None:
        self._by_session.setdefault(session_id, set()).add(ws)

    def discard(self, session_id: str, ws: web.WebSocketResponse) -> None:
        sockets = self._by_session.get(session_id)
        if sockets is not None:
            sockets.discard(ws)
            if not sockets:
                del self._by_session[session_id]

    def close_session(self, session_id: str) -> int:
        """Start closing the session's sockets with 4401; returns how many there were.

        Not awaited: a close waits for the client's answer, which must not hold
        up the request that ended the session.
        """
        sockets = self._by_session.pop(session_id, set())
        for ws in sockets:
            task = asyncio.ensure_future(ws.close(code=CloseCode.UNAUTHENTICATED, message=b"Session ended"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return len(sockets)

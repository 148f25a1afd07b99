"""This process's open dashboard sockets by session, user and dashboard, and
closing those whose access ended (see server/live/revocation.py for when).

Sockets are indexed by session digest and by user, and a socket's session is
hashed once, when it is added: a revocation naming a session or a user (a
logout, a removal) touches only that session's or user's sockets, never
every socket of the process. Every process hears every revocation, so this
is what keeps a logout from costing O(sockets) everywhere.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from common.events import Revocation
from server.live.closecodes import CloseCode
from server.live.connection import ClientConnection

log = logging.getLogger(__name__)

# Sessions and users that are gone must log in again; a lost membership is final.
CLOSE_CODES = {
    "logout": CloseCode.UNAUTHENTICATED,
    "session_expired": CloseCode.UNAUTHENTICATED,
    "sessions_ended": CloseCode.UNAUTHENTICATED,
    "user_deleted": CloseCode.UNAUTHENTICATED,
    "member_removed": CloseCode.FORBIDDEN,
    "dashboard_deleted": CloseCode.FORBIDDEN,
}


# How long a revocation is remembered for sockets still opening. Opening takes
# milliseconds; one slower than this is left to the periodic session check.
REMEMBER_SECONDS = 30.0


def session_digest(session_key: str) -> str:
    """How a session is named on the control channel (never the key itself)."""
    return hashlib.sha256(session_key.encode()).hexdigest()[:32]


class SocketRegistry:
    def __init__(self) -> None:
        # connection -> (its session key, the key's digest)
        self._sessions: dict[ClientConnection, tuple[str, str]] = {}
        self._by_session: dict[str, set[ClientConnection]] = {}
        # Also what the per-user limit counts, checked at every connect.
        self._by_user: dict[int, set[ClientConnection]] = {}
        # (time.monotonic() when seen, revocation), oldest first.
        self._recent: deque[tuple[float, Revocation]] = deque()

    def add(self, conn: ClientConnection, session_key: str, checked_at: float) -> bool:
        """Register a socket whose access was checked from `checked_at` on
        (time.monotonic()). A revocation seen since then may have been missed
        by that check: if one covers the socket it is closed instead; False.
        """
        self._forget_old()
        digest = session_digest(session_key)
        for seen, revocation in reversed(self._recent):
            if seen < checked_at:
                break
            if _covers(revocation, conn, digest):
                close([conn], revocation.reason)
                return False
        self.remove(conn)
        self._sessions[conn] = (session_key, digest)
        self._by_session.setdefault(digest, set()).add(conn)
        self._by_user.setdefault(conn.user.id, set()).add(conn)
        return True

    def remove(self, conn: ClientConnection) -> None:
        found = self._sessions.pop(conn, None)
        if found is not None:
            _discard(self._by_session, found[1], conn)
            _discard(self._by_user, conn.user.id, conn)

    def count_for_user(self, user_id: int) -> int:
        return len(self._by_user.get(user_id, ()))

    def connections_of_user(self, user_id: int) -> list[ClientConnection]:
        """This process's open sockets of the user, on any dashboard (a snapshot)."""
        return list(self._by_user.get(user_id, ()))

    def sessions(self) -> dict[ClientConnection, str]:
        """A snapshot: connection -> its session key."""
        return {conn: key for conn, (key, _) in self._sessions.items()}

    def revoke(self, revocation: Revocation) -> int:
        """Close every socket the revocation covers; returns how many."""
        self._forget_old()
        self._recent.append((time.monotonic(), revocation))
        # Only the named session's or user's sockets are looked at, when one is named.
        if revocation.session is not None:
            candidates: Iterable[ClientConnection] = self._by_session.get(revocation.session, ())
        elif revocation.user_id is not None:
            candidates = self._by_user.get(revocation.user_id, ())
        else:
            candidates = self._sessions
        matching = [conn for conn in candidates if _covers(revocation, conn, self._sessions[conn][1])]
        close(matching, revocation.reason)
        return len(matching)

    def _forget_old(self) -> None:
        oldest = time.monotonic() - REMEMBER_SECONDS
        while self._recent and self._recent[0][0] < oldest:
            self._recent.popleft()

    def resync(self) -> None:
        """Close every socket with RESYNC: its live stream had a gap."""
        for conn in list(self._sessions):
            conn.close_soon(CloseCode.RESYNC, "live updates interrupted: reconnect")


def close(connections: Iterable[ClientConnection], reason: str) -> None:
    """Close the connections with the code that tells the client what happened."""
    code = CLOSE_CODES[reason]
    for conn in connections:
        log.info("closing socket of %s on dashboard %s: %s", conn.user.username, conn.dashboard.id, reason)
        conn.close_soon(code, reason.replace("_", " "))


def _covers(revocation: Revocation, conn: ClientConnection, digest: str) -> bool:
    return (
        (revocation.user_id is None or revocation.user_id == conn.user.id)
        and (revocation.dashboard_id is None or revocation.dashboard_id == conn.dashboard.id)
        and (revocation.session is None or revocation.session == digest)
    )


def _discard(index: dict[Any, set[ClientConnection]], key: object, conn: ClientConnection) -> None:
    """Take `conn` out of `index[key]`, and the key out once it has no socket left."""
    connections = index.get(key)
    if connections is not None:
        connections.discard(conn)
        if not connections:
            del index[key]

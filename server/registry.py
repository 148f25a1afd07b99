"""This process's open dashboard sockets by session, user and dashboard, and
closing those whose access ended (see server/revocation.py for when)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, deque
from collections.abc import Iterable

from common.events import Revocation
from server.closecodes import CloseCode
from server.connection import ClientConnection

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
        self._sessions: dict[ClientConnection, str] = {}
        # Sockets per user, kept up to date: the per-user limit is checked at
        # every connect, and counting over all sockets made set-up O(sockets).
        self._per_user: Counter[int] = Counter()
        # (time.monotonic() when seen, revocation), oldest first.
        self._recent: deque[tuple[float, Revocation]] = deque()

    def add(self, conn: ClientConnection, session_key: str, checked_at: float) -> bool:
        """Register a socket whose access was checked from `checked_at` on
        (time.monotonic()). A revocation seen since then may have been missed
        by that check: if one covers the socket it is closed instead; False.
        """
        self._forget_old()
        for seen, revocation in reversed(self._recent):
            if seen < checked_at:
                break
            if _covers(revocation, conn, session_key):
                close([conn], revocation.reason)
                return False
        if conn not in self._sessions:
            self._per_user[conn.user.id] += 1
        self._sessions[conn] = session_key
        return True

    def remove(self, conn: ClientConnection) -> None:
        if self._sessions.pop(conn, None) is not None:
            self._per_user[conn.user.id] -= 1
            if not self._per_user[conn.user.id]:
                del self._per_user[conn.user.id]

    def count_for_user(self, user_id: int) -> int:
        return self._per_user[user_id]

    def connections_of_user(self, user_id: int) -> list[ClientConnection]:
        """This process's open sockets of the user, on any dashboard (a snapshot)."""
        if not self._per_user[user_id]:
            return []
        return [conn for conn in self._sessions if conn.user.id == user_id]

    def sessions(self) -> dict[ClientConnection, str]:
        """A snapshot: connection -> its session key."""
        return dict(self._sessions)

    def revoke(self, revocation: Revocation) -> int:
        """Close every socket the revocation covers; returns how many."""
        self._forget_old()
        self._recent.append((time.monotonic(), revocation))
        matching = [conn for conn, key in self._sessions.items() if _covers(revocation, conn, key)]
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


def _covers(revocation: Revocation, conn: ClientConnection, session_key: str) -> bool:
    return (
        (revocation.user_id is None or revocation.user_id == conn.user.id)
        and (revocation.dashboard_id is None or revocation.dashboard_id == conn.dashboard.id)
        and (revocation.session is None or revocation.session == session_digest(session_key))
    )

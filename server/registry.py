"""This process's open dashboard sockets by session, user and dashboard, and
closing those whose access ended (see server/revocation.py for when)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

from common.events import Revocation
from server.closecodes import CloseCode
from server.connection import ClientConnection

log = logging.getLogger(__name__)

# Sessions and users that are gone must log in again; a lost membership is final.
CLOSE_CODES = {
    "logout": CloseCode.UNAUTHENTICATED,
    "session_expired": CloseCode.UNAUTHENTICATED,
    "user_deleted": CloseCode.UNAUTHENTICATED,
    "member_removed": CloseCode.FORBIDDEN,
    "dashboard_deleted": CloseCode.FORBIDDEN,
}


def session_digest(session_key: str) -> str:
    """How a session is named on the control channel (never the key itself)."""
    return hashlib.sha256(session_key.encode()).hexdigest()[:32]


class SocketRegistry:
    def __init__(self) -> None:
        self._sessions: dict[ClientConnection, str] = {}

    def add(self, conn: ClientConnection, session_key: str) -> None:
        self._sessions[conn] = session_key

    def remove(self, conn: ClientConnection) -> None:
        self._sessions.pop(conn, None)

    def count_for_user(self, user_id: int) -> int:
        return sum(1 for conn in self._sessions if conn.user.id == user_id)

    def sessions(self) -> dict[ClientConnection, str]:
        """A snapshot: connection -> its session key."""
        return dict(self._sessions)

    def revoke(self, revocation: Revocation) -> int:
        """Close every socket the revocation covers; returns how many."""
        matching = [conn for conn, key in self._sessions.items() if _covers(revocation, conn, key)]
        close(matching, revocation.reason)
        return len(matching)

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

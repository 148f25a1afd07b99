"""Every WebSocket close code the server uses (documented in docs/protocol.md).

The page's copy, with what it does after each, is CLOSE_CODES in
server/static/socket.js; tests/browser/test_page_modules.py keeps them equal.

1000-2999 are the protocol's own codes; 4000-4999 are ours. Within ours,
44xx mirror HTTP statuses and mean "do not reconnect as you are" (log in
again, or stop trying); 40xx mean the client may reconnect.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down: reconnect, possibly elsewhere
    PROTOCOL_ERROR = 1002  # the client broke RFC 6455 framing (unmasked frame, bad fragments, ...)
    INVALID_TEXT = 1007  # a text message that is not UTF-8
    MESSAGE_TOO_BIG = 1009  # a client message above 64 KiB, or in more than 128 fragments
    INTERNAL_ERROR = 1011  # a bug on the server's side; reconnecting may help
    TRY_AGAIN_LATER = 1013  # the database is unreachable right now: reconnect with backoff
    SLOW_CONSUMER = 4008  # the client read too slowly and its buffer overflowed
    RESYNC = 4012  # live updates were interrupted (Redis outage, an unfillable gap): reconnect for the missed values
    RATE_LIMITED = 4029  # the client sent messages faster than allowed: slow down, then reconnect
    UNAUTHENTICATED = 4401  # no valid session (never had one, logged out, expired, user deleted)
    FORBIDDEN = 4403  # not a member of this dashboard (or it does not exist, or no longer)
    TOO_MANY_CONNECTIONS = 4429  # this user has too many sockets open on this server

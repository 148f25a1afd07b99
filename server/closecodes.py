"""Every WebSocket close code the server uses (documented in docs/protocol.md).

1000-2999 are the protocol's own codes; 4000-4999 are ours. Within ours,
44xx mirror HTTP statuses and mean "do not reconnect as you are" (log in
again, or stop trying); 40xx mean the client may reconnect.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down: reconnect, possibly elsewhere
    SLOW_CONSUMER = 4008  # the client read too slowly and its buffer overflowed
    UNAUTHENTICATED = 4401  # no valid session: log in, then reconnect
    FORBIDDEN = 4403  # not a member of this dashboard (or it does not exist)

"""One name for each way a backend fails: callers answer "try again later"
(503, a closed socket, a skipped round) instead of crashing.

`db.UNAVAILABLE` (common/db/core.py) is the database's: down, restarting or
slower than the pool's timeout.
"""

from __future__ import annotations

import redis.exceptions

from common.db.core import UNAVAILABLE as DATABASE_UNAVAILABLE

# Redis down, restarting, refusing (READONLY, OOM) or out of reach.
REDIS_UNAVAILABLE = (redis.exceptions.RedisError, OSError)
# Either of them: what a request or a round needing both can meet.
BACKEND_UNAVAILABLE = (*DATABASE_UNAVAILABLE, *REDIS_UNAVAILABLE)

__all__ = ["BACKEND_UNAVAILABLE", "DATABASE_UNAVAILABLE", "REDIS_UNAVAILABLE"]

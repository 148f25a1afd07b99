"""What a chaos run watches: dashboards, their metrics, users and push tokens."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiopg

from common import db
from common.passwords import hash_password
from common.sources import PUSH, RANDOM
from common.tokens import display_prefix, new_token, token_hash

PASSWORD = "chaos-password"
EDITOR = "editor"
RANDOM_METRICS = ("load", "temp")  # fed by the workers
PUSHED_METRIC = "seq"  # fed by the push client: its values are 1, 2, 3, ...


@dataclass
class Board:
    id: int
    token: str
    pushed_id: int
    random_ids: list[int]
    extra_ids: list[int] = field(default_factory=list)  # the editor's, never verified

    @property
    def metric_ids(self) -> list[int]:
        """The metrics every verifier of this dashboard checks."""
        return [self.pushed_id, *self.random_ids]


@dataclass
class World:
    boards: list[Board]
    viewers: list[str]


async def build(pool: aiopg.Pool, dashboards: int, viewers: int) -> World:
    """An editor of every dashboard and `viewers` viewers of all of them."""
    password_hash = hash_password(PASSWORD)
    editor = await db.create_user(pool, EDITOR, password_hash)
    names = [f"viewer{i}" for i in range(viewers)]
    users = [await db.create_user(pool, name, password_hash) for name in names]
    boards = []
    for n in range(dashboards):
        dashboard = await db.create_dashboard(pool, f"Chaos {n}", f"chaos-{n}", owner_id=editor.id)
        for user in users:
            await db.add_member(pool, dashboard.id, user.id)
        pushed = await db.create_metric(pool, dashboard.id, PUSHED_METRIC, "gauge", source=PUSH)
        randoms = [
            await db.create_metric(pool, dashboard.id, name, "gauge", source=RANDOM)
            for name in RANDOM_METRICS
        ]
        token = new_token()
        await db.create_api_token(pool, dashboard.id, "chaos", token_hash(token), display_prefix(token))
        boards.append(Board(dashboard.id, token, pushed.id, [m.id for m in randoms]))
    return World(boards, names)

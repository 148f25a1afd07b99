"""One chaos run: start everything, inject faults, settle, verify, stop."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos import processes, report
from chaos.clients import UserSession, Verifier
from chaos.console import say
from chaos.faults import KINDS, Fault, Injector, Profile
from chaos.load import Editor, Pusher
from chaos.verify import Checker, context
from chaos.world import EDITOR, World, build
from common import db
from common.migrate import migrate

HISTORY_LIMIT = 100
SETTLE = 45.0  # seconds the clients get to catch up after the last fault


@dataclass
class Options:
    seconds: float
    seed: int
    clients: int
    dashboards: int = 4
    push_rate: float = 4.0  # pushes per second per dashboard
    interval: float = 0.5  # the workers' tick
    lease_interval: float = 1.0
    profile: Profile = field(default_factory=Profile)
    keep: bool = False  # keep the logs' directory
    kinds: list[str] = field(default_factory=lambda: list(KINDS))


class Fleet:
    """The run's own PostgreSQL, Redis, two servers and two workers, kept alive."""

    def __init__(self, home: Path, options: Options) -> None:
        logs = home / "logs"
        logs.mkdir(parents=True)
        self.postgres = processes.postgres(home / "pg", logs)
        self.redis = processes.redis(home / "redis", logs)
        self.database_url = f"postgresql://postgres@127.0.0.1:{self.postgres.port}/postgres"
        urls = ["--database-url", self.database_url, "--redis-url", f"redis://127.0.0.1:{self.redis.port}/0"]
        self.servers = [processes.server(i, urls, logs, HISTORY_LIMIT) for i in range(2)]
        self.workers = [
            processes.worker(i, urls, logs, options.interval, options.lease_interval) for i in range(2)
        ]
        self.groups = {
            "postgres": [self.postgres],
            "redis": [self.redis],
            "server": self.servers,
            "worker": self.workers,
        }
        self.exits: dict[str, int] = {}  # exits nobody caused, restarted by `supervise`

    @property
    def everything(self) -> list[processes.Managed]:
        return [p for group in self.groups.values() for p in group]

    def start_backends(self) -> None:
        for backend in (self.postgres, self.redis):
            backend.start()
            if not backend.wait_listening():
                raise RuntimeError(f"{backend.name} did not start: see {backend.log_path}")

    def start_services(self) -> None:
        for process in self.servers + self.workers:
            process.start()

    def wait_for_servers(self) -> None:
        for process in self.servers:
            if not process.wait_listening():
                raise RuntimeError(f"{process.name} did not start: see {process.log_path}")

    async def supervise(self, busy: set[str]) -> None:
        """Restart what died on its own (a server started while PostgreSQL was down exits)."""
        while True:
            await asyncio.sleep(0.5)
            for process in self.everything:
                if process.name not in busy and process.process is not None and not process.alive():
                    self.exits[process.name] = self.exits.get(process.name, 0) + 1
                    process.start()

    def stop(self) -> None:
        """Servers and workers first (all at once), then the backends they used."""
        for group in (self.servers + self.workers, [self.redis, self.postgres]):
            for process in group:
                process.ask_to_stop()
            for process in group:
                process.wait_or_kill()


async def run(options: Options) -> dict[str, Any]:
    say(f"seed {options.seed}: {options.seconds:.0f} s of faults, {options.clients} clients")
    home = Path(tempfile.mkdtemp(prefix="dashboard-chaos-"))
    fleet = Fleet(home, options)
    try:
        return await _run(options, fleet)
    finally:
        fleet.stop()
        say("stopped")
        if options.keep:
            say(f"logs kept in {home / 'logs'}")
        else:
            shutil.rmtree(home, ignore_errors=True)


async def _run(options: Options, fleet: Fleet) -> dict[str, Any]:
    world = await _start(options, fleet)
    bases = [f"http://127.0.0.1:{s.port}" for s in fleet.servers]
    users = [UserSession(name, bases) for name in world.viewers]
    editor = UserSession(EDITOR, bases)
    try:
        await asyncio.gather(*(user.log_in() for user in [*users, editor]))
        return await _watch(options, fleet, world, users, editor)
    finally:
        for user in [*users, editor]:
            await user.http.close()


async def _start(options: Options, fleet: Fleet) -> World:
    fleet.start_backends()  # from this thread: the children die with it (processes.py)
    say("PostgreSQL and Redis up")
    async with db.create_pool(fleet.database_url, maxsize=2) as pool:
        await migrate(pool)
        fleet.start_services()  # they boot while the dashboards are made
        viewers = max(1, options.clients // 20)  # ~20 sockets a user: under the 50 per process
        world = await build(pool, options.dashboards, viewers)
    await asyncio.to_thread(fleet.wait_for_servers)
    say("servers up, dashboards and users made")
    return world


async def _watch(
    options: Options, fleet: Fleet, world: World, users: list[UserSession], editor: UserSession
) -> dict[str, Any]:
    """Clients and writers under faults, then the check of what the clients saw."""
    rng = random.Random(options.seed)
    verifiers = [
        Verifier(
            n,
            users[n % len(users)],
            world.boards[n % len(world.boards)],
            batch=n % 2 == 1,
            resume=n % 4 >= 2,
            switch=n % 3 == 0,
        )
        for n in range(options.clients)
    ]
    bases = editor.bases
    pushers = [Pusher(editor.http, bases, board) for board in world.boards]
    stop_clients, stop_pushes = asyncio.Event(), asyncio.Event()
    injector = Injector(
        rng, fleet.groups, verifiers, pushers, Editor(editor, world.boards, rng), options.profile, stop_pushes
    )
    injector.kinds = options.kinds
    background = [asyncio.create_task(fleet.supervise(injector.busy))]
    background += [asyncio.create_task(v.run(stop_clients)) for v in verifiers]
    pushing = [asyncio.create_task(p.run(stop_pushes, options.push_rate)) for p in pushers]
    began = time.monotonic()
    try:
        await _wait_connected(verifiers)
        say("injecting faults")
        await injector.run(options.seconds)
        say(f"{len(injector.faults)} faults injected; settling")
        final = await _settle(injector, stop_pushes, pushing, fleet)
        stored = await _stored(fleet.database_url, world.boards)
        say("writers stopped")
        caught_up = await _wait_caught_up(verifiers, stored)
        say("clients caught up" if caught_up is not None else "clients did NOT catch up")
    finally:
        stop_clients.set()
        for task in [*background, *pushing]:
            task.cancel()
        await asyncio.gather(*background, *pushing, return_exceptions=True)
    say("clients stopped")
    result = _check(options, stored, injector, verifiers, pushers)
    result.update(
        elapsed_s=round(time.monotonic() - began, 1),
        final_recovery_s=None if final is None else round(final, 2),
        caught_up_s=caught_up,
        unplanned_exits=fleet.exits,
    )
    print(report.table(result))
    return result


def _check(options: Options, stored: dict, injector: Injector, verifiers: list[Verifier], pushers) -> dict:
    checker = Checker(stored, HISTORY_LIMIT)
    for verifier in verifiers:
        checker.check_client(verifier)
    for pusher in pushers:
        checker.check_pushes(pusher)
    result = report.build(options, injector.faults, checker, verifiers, pushers)
    if checker.violations:
        first = checker.violations[0]
        result["first_violation"] = {"message": first.message, "metric_id": first.metric_id}
        if first.client is not None:
            result["first_violation"].update(context(verifiers[first.client], first, injector.faults))
        say("FIRST VIOLATION:\n" + json.dumps(result["first_violation"], indent=1, default=str))
    return result


async def _settle(
    injector: Injector, stop_pushes: asyncio.Event, pushing: list, fleet: Fleet
) -> float | None:
    """After the last fault: everyone heals, then the writers stop."""
    final = Fault("final", "", time.monotonic(), ended=time.monotonic())
    injector.profile.heal_timeout = SETTLE
    await injector.heal(final)
    stop_pushes.set()
    await asyncio.gather(*pushing)
    injector.busy.update(w.name for w in fleet.workers)  # the supervisor leaves them stopped
    for worker in fleet.workers:
        worker.ask_to_stop()  # each lets its current tick commit and publish
    for worker in fleet.workers:
        await asyncio.to_thread(worker.wait_or_kill)
    return final.recovery()


async def _wait_connected(verifiers: list[Verifier], within: float = 30) -> None:
    """Until every client holds each of its metrics (or `within` seconds): faults start on a running system."""
    for _ in range(int(within * 10)):
        if all(last is not None for v in verifiers for last in v.held.values()):
            break
        await asyncio.sleep(0.1)
    say(f"{len(verifiers)} clients receiving")


async def _stored(database_url: str, boards) -> dict[int, list[tuple[int, float]]]:
    metric_ids = [m for board in boards for m in board.metric_ids]
    async with db.create_pool(database_url, maxsize=1) as pool:
        latest = await db.latest_values(pool, metric_ids, 10_000_000)
    return {m: [(v.id, v.value) for v in values] for m, values in latest.items()}


async def _wait_caught_up(verifiers: list[Verifier], stored: dict) -> float | None:
    """Seconds until every client holds the newest stored value of each metric (None: not within SETTLE)."""
    newest = {m: rows[-1][0] if rows else None for m, rows in stored.items()}
    began = time.monotonic()
    while time.monotonic() - began < SETTLE:
        if all(v.held[m] == newest[m] for v in verifiers for m in v.board.metric_ids):
            return time.monotonic() - began
        await asyncio.sleep(0.1)
    return None

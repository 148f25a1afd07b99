"""Faults injected at random from a seed, and the time each takes to heal.

A fault has ended when its process is back (restarted and listening, or
continued) or, for the instant kinds, when it was done. It has healed when
every verifier holds a pushed number sent after that end and a worker's
value received after it: live values flow again everywhere, through the
push API, the workers' leases, Redis and both servers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field

from chaos.clients import Verifier
from chaos.console import say
from chaos.load import Editor, Pusher
from chaos.processes import Managed

log = logging.getLogger(__name__)

PROCESS_KINDS = [
    f"{how}:{what}" for how in ("kill", "stall") for what in ("server", "worker", "redis", "postgres")
]
KINDS = [*PROCESS_KINDS, "cut:client", "burst:push", "edit:metrics"]


@dataclass
class Profile:
    """How hard a run hits: gaps between faults, how long a stall lasts, and so on."""

    gap: tuple[float, float] = (3.0, 10.0)  # between two faults' starts: they overlap often
    down: tuple[float, float] = (0.3, 2.5)  # between a SIGKILL and the restart
    stall: tuple[float, float] = (2.0, 25.0)  # SIGSTOP to SIGCONT: past leases (5 s) and pings (6 s)
    burst: tuple[int, int] = (50, 1500)
    heal_timeout: float = 90.0


@dataclass
class Fault:
    kind: str
    target: str
    started: float
    ended: float | None = None
    healed: float | None = None
    detail: str = ""
    targets: dict[int, int] = field(default_factory=dict)  # pushed numbers every client must reach

    def recovery(self) -> float | None:
        return None if self.healed is None or self.ended is None else self.healed - self.ended


class Injector:
    def __init__(
        self,
        rng: random.Random,
        groups: dict[str, list[Managed]],
        verifiers: list[Verifier],
        pushers: list[Pusher],
        editor: Editor,
        profile: Profile,
        push_stop: asyncio.Event,
    ) -> None:
        self.rng, self.groups, self.verifiers = rng, groups, verifiers
        self.pushers, self.editor, self.profile = pushers, editor, profile
        self.push_stop = push_stop
        self.kinds = KINDS
        self.busy: set[str] = set()  # processes under a fault right now
        self.faults: list[Fault] = []
        self._tasks: set[asyncio.Task] = set()

    async def run(self, seconds: float) -> None:
        """Faults for `seconds`: every kind once first (in seeded order), then at random."""
        order = self.rng.sample(self.kinds, len(self.kinds))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            kind = order.pop(0) if order else self.rng.choice(self.kinds)
            if kind in PROCESS_KINDS and time.monotonic() + self.profile.stall[1] > deadline:
                # Near the end only instant faults: every fault is over within the window.
                instant = [k for k in self.kinds if k not in PROCESS_KINDS]
                if not instant:
                    break
                kind = self.rng.choice(instant)
            elif kind in PROCESS_KINDS and not self._free(kind):
                order.append(kind)  # its processes are all under a fault: later
                kind = self.rng.choice([k for k in self.kinds if k not in PROCESS_KINDS] or [kind])
            task = asyncio.create_task(self._inject(kind))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(self.rng.uniform(*self.profile.gap))
        await asyncio.gather(*list(self._tasks))

    async def _inject(self, kind: str) -> None:
        try:
            fault = await self._do(kind)
        except Exception:
            log.exception("injecting %s failed", kind)
            raise
        if fault is not None:
            fault.ended = time.monotonic()
            say(f"{fault.kind} {fault.target} {fault.detail}".rstrip())
            await self.heal(fault)
            took = fault.recovery()
            if took is not None:
                say(f"  healed from {fault.kind} {fault.target} in {took:.1f} s")
            else:
                lagging = [
                    v.number for v in self.verifiers if not self._healed(v, fault.targets, fault.ended)
                ]
                say(
                    f"  {fault.kind} {fault.target} NOT healed: clients {lagging[:20]} lag; task dumps in the logs"
                )
                for process in self.groups["server"] + self.groups["worker"]:
                    process.dump_tasks()

    async def _do(self, kind: str) -> Fault | None:
        how = kind.split(":")[0]
        if kind in PROCESS_KINDS:
            free = self._free(kind)
            if not free:
                return None
            target = self.rng.choice(free)
            fault = Fault(kind, target.name, time.monotonic())
            self.faults.append(fault)
            self.busy.add(target.name)
            try:
                if how == "kill":
                    await asyncio.to_thread(target.kill)
                    await asyncio.sleep(self.rng.uniform(*self.profile.down))
                    target.start()
                    if target.port:
                        await asyncio.to_thread(target.wait_listening)
                else:
                    pause = self.rng.uniform(*self.profile.stall)
                    fault.detail = f"{pause:.1f}s"
                    target.stall()
                    await asyncio.sleep(pause)
                    target.resume()
            finally:
                self.busy.discard(target.name)
        else:
            connected = [v for v in self.verifiers if v.ws is not None]
            if kind == "cut:client" and not connected:
                return None
            fault = Fault(kind, "", time.monotonic())
            self.faults.append(fault)
            if kind == "cut:client":
                victim = self.rng.choice(connected)
                fault.target = f"client{victim.number}"
                victim.cut()
            elif kind == "burst:push":
                pusher = self.rng.choice(self.pushers)
                count = self.rng.randint(*self.profile.burst)
                fault.target, fault.detail = f"dashboard{pusher.board.id}", f"{count} values"
                await pusher.push(count, self.push_stop)
            else:
                fault.detail = await self.editor.edit()
        return fault

    def _free(self, kind: str) -> list[Managed]:
        """The processes `kind` may hit now: running and under no other fault."""
        return [p for p in self.groups[kind.split(":")[1]] if p.name not in self.busy and p.alive()]

    async def heal(self, fault: Fault) -> None:
        """Wait until every verifier shows values sent after the fault ended."""
        targets = fault.targets = {p.board.id: p.next_seq for p in self.pushers}
        deadline = fault.ended + self.profile.heal_timeout
        while time.monotonic() < deadline:
            if all(self._healed(v, targets, fault.ended) for v in self.verifiers):
                fault.healed = time.monotonic()
                return
            await asyncio.sleep(0.1)

    @staticmethod
    def _healed(verifier: Verifier, targets: dict[int, int], since: float) -> bool:
        return verifier.pushed_max >= targets[verifier.board.id] and verifier.random_at > since

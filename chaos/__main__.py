"""`python -m chaos`: compound faults under live clients; exit 1 on any violation."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
from pathlib import Path

import click

from chaos.faults import KINDS, Profile
from chaos.report import update_readme
from chaos.run import Options, run

SECONDS_HELP = "how long faults are injected (the run adds ~30 s of start-up and settling)"
SEED_HELP = "seed of the fault sequence (default: a random one, printed)"
CLIENTS_HELP = "verifying WebSocket clients (50-200)"
OUTPUT_HELP = "where the JSON report goes"
README_HELP = "a README whose chaos-table markers get this run's table"
SHORT_HELP = "the CI variant: stalls of 1-8 s, a fault every 0.8-2.5 s, 20 s to heal"


@click.command()
@click.option("--seconds", type=click.FloatRange(5, 3600), default=600, show_default=True, help=SECONDS_HELP)
@click.option("--seed", type=int, default=None, help=SEED_HELP)
@click.option("--clients", type=click.IntRange(1, 200), default=120, show_default=True, help=CLIENTS_HELP)
@click.option("--output", type=click.Path(path_type=Path), default=None, help=OUTPUT_HELP)
@click.option("--readme", type=click.Path(exists=True, path_type=Path), help=README_HELP)
@click.option("--short", is_flag=True, help=SHORT_HELP)
@click.option("--only", "kinds", multiple=True, type=click.Choice(KINDS), help="inject only these kinds")
@click.option("--keep-logs", is_flag=True, help="keep the processes' logs (their directory is printed)")
def main(
    *,
    seconds: float,
    seed: int | None,
    clients: int,
    output: Path | None,
    short: bool,
    keep_logs: bool,
    kinds: tuple[str, ...],
    readme: Path | None,
) -> None:
    """Run two servers, two workers, PostgreSQL and Redis of its own, a push client and
    verifying clients; inject faults at random; check every value each client saw."""
    if seed is None:
        seed = random.randrange(1_000_000)
    profile = Profile(stall=(1.0, 8.0), gap=(0.8, 2.5), heal_timeout=20.0) if short else Profile()
    options = Options(seconds, seed, clients, profile=profile, keep=keep_logs, kinds=list(kinds) or KINDS)
    # SIGTERM ends the run as Ctrl-C does: through `finally`, stopping what it started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    result = asyncio.run(run(options))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=1, default=str) + "\n")
    if readme is not None:
        update_readme(readme, result)
    sys.exit(1 if result["violations"] else 0)


if __name__ == "__main__":
    main()

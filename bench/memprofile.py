"""Where a server's memory per idle connection goes (tracemalloc, by source line).

    python -m bench.memprofile [--connections 500]

Runs the real app in this process against the benchmark database (run
`python -m bench` once first so it exists), opens N sockets from a
bench.wsload process, and prints the Python allocations still alive per
connection, largest first. RSS per connection (in bench/RESULTS.md) is this
plus what lives outside Python's allocator (socket buffers, the C parser).
"""

from __future__ import annotations

import asyncio
import gc
import re
import subprocess
import sys
import tracemalloc

import aiohttp
import click
from aiohttp import web
from yarl import URL

from common.config import Settings
from server.app import create_app

PORT = 18777
METRICS = 10  # of the benchmark's dashboard: config, then one history each
USERS_PER = 50  # sockets per benchmark user, as bench/__main__.py logs them in


async def _log_in(base: str, username: str) -> str:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(f"{base}/login") as response:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await response.text())[1]
        login = {"username": username, "password": "bench", "csrf_token": token}
        async with session.post(f"{base}/login", data=login, allow_redirects=False):
            pass
        return session.cookie_jar.filter_cookies(URL(base))["dashboard_session"].value


async def _profile(database_url: str, redis_url: str, connections: int, top: int, frames: int) -> None:
    app = create_app(Settings(database_url=database_url, redis_url=redis_url))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT).start()
    base = f"http://127.0.0.1:{PORT}"
    # Several users: each may hold only so many sockets (max_connections_per_user).
    users = -(-connections // USERS_PER)
    cookies = [await _log_in(base, f"bench{i}") for i in range(users)]
    await asyncio.sleep(1)
    tracemalloc.start(frames)
    before = tracemalloc.take_snapshot()
    load = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.wsload", "--port", str(PORT), "--path", "/ws/dashboard/1/",
        "--connections", str(connections), "--settle", "2", "--initial-frames", str(2 + METRICS),
        *[arg for cookie in cookies for arg in ("--cookie", cookie)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    await load.stdout.readline()
    await asyncio.sleep(2)
    gc.collect()
    after = tracemalloc.take_snapshot()
    stats = after.compare_to(before, "traceback" if frames > 1 else "lineno")
    total = sum(stat.size_diff for stat in stats)
    click.echo(f"{connections} idle connections: {total / connections / 1024:.1f} KB of Python objects each")
    click.echo("bytes/conn  allocated at")
    for stat in stats[:top]:
        click.echo(f"{stat.size_diff / connections:10.0f}  {stat.traceback[-1]}")
        for frame in reversed(stat.traceback[:-1]):
            click.echo(f"{'':12}{frame}")
    load.stdin.write(b"quit\n")
    await load.stdin.drain()
    await load.wait()
    await runner.cleanup()


@click.command()
@click.option(
    "--database-url",
    envvar="DASHBOARD_BENCH_DATABASE_URL",
    default="postgresql://postgres@127.0.0.1:5432/dashboard_bench",
)
@click.option("--redis-url", envvar="DASHBOARD_BENCH_REDIS_URL", default="redis://127.0.0.1:6379/12")
@click.option("--connections", type=int, default=500, show_default=True)
@click.option("--top", type=int, default=20, show_default=True)
@click.option(
    "--frames", type=int, default=1, show_default=True, help="Stack frames per allocation (>1: by traceback)."
)
def main(database_url: str, redis_url: str, connections: int, top: int, frames: int) -> None:
    """Print the allocation sites of the memory each idle connection keeps.

    Needs the users of a `python -m bench` run with at least this many connections."""
    asyncio.run(_profile(database_url, redis_url, connections, top, frames))


if __name__ == "__main__":
    main()

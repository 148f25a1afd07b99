"""On a Redis Cluster: sessions, sharded fan-out (SPUBLISH/SSUBSCRIBE) and the
control channel, with a real 3-master cluster of Debian's redis-server on
loopback ports. Skipped, saying why, where no cluster can be started."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis, RedisCluster

from common import db
from common.events import Channels, Revocation, announce_revocation
from common.passwords import hash_password
from common.redisconn import connect_redis, parse_redis_url
from common.sources import RANDOM
from server.live.closecodes import CloseCode
from tests.faultservers import redis_7_binary
from tests.helpers import browser_log_in, eventually_sync
from tests.processes import child, free_port, wait_for_http
from tests.wsclient import read_connect_sequence, receive

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CLUSTER_PORTS = range(18330, 18360)  # data ports; the cluster bus uses port + 10000


def _free_ports(count: int) -> list[int]:
    found = []
    for port in CLUSTER_PORTS:
        with socket.socket() as probe, socket.socket() as bus:
            try:
                probe.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    pytest.skip(f"Redis Cluster test: fewer than {count} free ports in {CLUSTER_PORTS}")


@contextmanager
def redis_cluster(directory: Path, masters: int = 3) -> Iterator[list[int]]:
    """A cluster of `masters` redis-server processes, no replicas; yields their ports."""
    binary, cli = redis_7_binary(), shutil.which("redis-cli")
    if binary is None or cli is None:
        pytest.skip("Redis Cluster test: no redis-server 7+ (sharded pub/sub) or no redis-cli installed")
    ports = _free_ports(masters)
    processes = []
    try:
        for port in ports:
            processes.append(
                subprocess.Popen(
                    [
                        binary,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(directory / f"nodes-{port}.conf"),
                        "--dir",
                        str(directory),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--daemonize",
                        "no",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        eventually_sync(lambda: all(_answers(cli, port) for port in ports), 30, "nodes answer")
        created = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if created.returncode != 0:
            pytest.skip(f"Redis Cluster test: redis-cli --cluster create failed: {created.stdout[-500:]}")
        eventually_sync(lambda: all(_cluster_ok(cli, port) for port in ports), 30, "cluster is ok")
        yield ports
    finally:
        for process in processes:
            process.kill()
            process.wait(10)


def _answers(cli: str, port: int) -> bool:
    return (
        subprocess.run([cli, "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip()
        == "PONG"
    )


def _cluster_ok(cli: str, port: int) -> bool:
    info = subprocess.run([cli, "-p", str(port), "cluster", "info"], capture_output=True, text=True).stdout
    return "cluster_state:ok" in info


def test_cluster_and_sentinel_urls_are_parsed():
    cluster = parse_redis_url("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    assert cluster.mode == "cluster" and cluster.password == "pw"
    assert cluster.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    sentinel = parse_redis_url("rediss+sentinel://s1:26379,s2/mymaster/3?sentinel_password=x")
    assert (sentinel.mode, sentinel.service, sentinel.db, sentinel.tls) == ("sentinel", "mymaster", 3, True)
    assert sentinel.nodes == (("s1", 26379), ("s2", 26379)) and sentinel.sentinel_password == "x"
    assert parse_redis_url("redis://h:1/2").mode == "single"
    for bad in ("http://h", "redis+cluster://h:1/0", "redis+sentinel://h:1", "redis+cluster://h:x"):
        with pytest.raises(ValueError):
            parse_redis_url(bad)


async def test_on_a_cluster_values_are_fanned_out_per_shard_and_sessions_work(settings, pool, tmp_path):
    alice = await db.create_user(pool, "alice", hash_password("secret-pw"))
    dashboards = []
    for i in range(6):  # channels whose slots fall on different shards
        dashboard = await db.create_dashboard(pool, f"D{i}", f"d{i}")
        await db.add_member(pool, dashboard.id, alice.id)
        await db.create_metric(pool, dashboard.id, "hits", "counter", "", "", RANDOM)
        dashboards.append(dashboard)
    with redis_cluster(tmp_path) as ports:
        url = "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports[:2])
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        urls = ["--database-url", settings.database_url, "--redis-url", url]
        with child(["-m", "server", *urls, "run", "--port", str(port)]) as server:
            await asyncio.to_thread(wait_for_http, f"{base}/healthz", server)
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
                await browser_log_in(session, base, "alice", "secret-pw")  # the session is in the cluster
                sockets = []
                for dashboard in dashboards:
                    ws = await session.ws_connect(f"{base}/ws/dashboard/{dashboard.id}/", origin=base)
                    await read_connect_sequence(ws, 1)
                    sockets.append(ws)
                shards = await _shard_subscriptions(ports, [Channels().dashboard(d.id) for d in dashboards])
                assert len(set(shards.values())) > 1, f"all channels on one shard: {shards}"
                with child(["-m", "worker", *urls, "run", "--interval", "0.2"]):
                    for ws in sockets:
                        update = await receive(ws, within=15)
                        assert update["action"] == "metric_update"
                # The control channel is sharded too: a revocation reaches the server.
                client = connect_redis(url)
                try:
                    await announce_revocation(
                        client,
                        Channels(),
                        Revocation("member_removed", user_id=alice.id, dashboard_id=dashboards[0].id),
                    )
                finally:
                    await client.aclose()
                message = await sockets[0].receive(timeout=10)
                while message.type == aiohttp.WSMsgType.TEXT:
                    message = await sockets[0].receive(timeout=10)
                # The close frame's code: ws.close_code can read 1006 when the
                # server hangs up before this client's reply has gone out.
                assert (message.type, message.data) == (aiohttp.WSMsgType.CLOSE, CloseCode.FORBIDDEN)
                for ws in sockets[1:]:
                    await ws.close()


def _count(reply) -> int:
    """The count of a one-channel (S)NUMSUB reply, however redis-py shaped it."""
    flat = list(reply.items()) if isinstance(reply, dict) else list(reply)
    while flat and isinstance(flat[-1], list | tuple):
        flat = list(flat[-1])
    return int(flat[-1])


async def _shard_subscriptions(ports: list[int], channels: list[str]) -> dict[str, int]:
    """Which node each channel is SSUBSCRIBEd on; none may be a classic subscription."""
    where = {}
    async with RedisCluster(host="127.0.0.1", port=ports[0]) as cluster:
        for channel in channels:
            owner = cluster.get_node_from_key(channel)
            async with Redis(host=owner.host, port=owner.port) as node:
                shard = await node.execute_command("PUBSUB", "SHARDNUMSUB", channel)
                classic = await node.execute_command("PUBSUB", "NUMSUB", channel)
            counts = (_count(shard), _count(classic))
            assert counts == (1, 0), f"{channel}: (sharded, classic) subscribers {counts}"
            where[channel] = owner.port
    return where

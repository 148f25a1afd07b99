"""The Redis URL decides the deployment: one server, Sentinel-managed, or a Cluster.

    redis://[[user]:password@]host[:port][/db]        one server (also rediss://, unix://)
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
                                                      the master Sentinel names `service`
    redis+cluster://[[user]:password@]host[:port][,host[:port]...]
                                                      any nodes of a Redis Cluster (7.0+)

`rediss+sentinel://` and `rediss+cluster://` use TLS to the data nodes. A
password in a Sentinel URL is the master's; sentinels that need their own take
`?sentinel_password=...`. Every process (server, worker, CLI) builds its client
here, so all of them agree on where values are published and sessions kept.

On a cluster the per-dashboard channels (and the control channel) use sharded
pub/sub, SPUBLISH and SSUBSCRIBE: a message goes to the shard owning its
channel's slot instead of to every node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import parse_url
from redis.asyncio.sentinel import Sentinel

# What any client of ours is: all of them speak GET/SET/PUBLISH the same way.
RedisClient = Redis | RedisCluster

SINGLE, SENTINEL, CLUSTER = "single", "sentinel", "cluster"
_SCHEMES = {
    "redis": SINGLE,
    "rediss": SINGLE,
    "unix": SINGLE,
    "redis+sentinel": SENTINEL,
    "rediss+sentinel": SENTINEL,
    "redis+cluster": CLUSTER,
    "rediss+cluster": CLUSTER,
}
DEFAULT_PORT, DEFAULT_SENTINEL_PORT = 6379, 26379


@dataclass(frozen=True)
class RedisTarget:
    """A parsed Redis URL."""

    mode: str  # SINGLE, SENTINEL or CLUSTER
    url: str
    nodes: tuple[tuple[str, int], ...] = ()  # sentinels or cluster seed nodes
    service: str | None = None  # Sentinel's name of the master
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    tls: bool = False


def parse_redis_url(url: str) -> RedisTarget:
    """The deployment a Redis URL names; ValueError saying what is wrong."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    mode = _SCHEMES.get(scheme)
    if mode is None:
        raise ValueError(f"Redis URL must start with one of {', '.join(s + '://' for s in _SCHEMES)}")
    if mode == SINGLE:
        return RedisTarget(SINGLE, url)
    # urlsplit cannot parse a host list: split userinfo and hosts by hand.
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    default_port = DEFAULT_SENTINEL_PORT if mode == SENTINEL else DEFAULT_PORT
    nodes = tuple(_host_port(item, default_port) for item in hosts.split(",") if item)
    if not nodes:
        raise ValueError(f"{scheme}:// needs at least one host:port")
    path = [unquote(p) for p in parts.path.split("/") if p]
    query = parse_qs(parts.query)
    target = RedisTarget(
        mode,
        url,
        nodes=nodes,
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_password=next(iter(query.get("sentinel_password", [])), None),
        tls=scheme.startswith("rediss"),
    )
    if mode == CLUSTER:
        if path:
            raise ValueError("a Redis Cluster has only database 0: give no /path in redis+cluster://")
        return target
    return _with_master(target, path)


def _with_master(target: RedisTarget, path: list[str]) -> RedisTarget:
    """A Sentinel target with the master's name and database from the URL's path."""
    if not path or len(path) > 2:
        raise ValueError(
            "redis+sentinel:// needs the master's name: redis+sentinel://host:26379/mymaster[/db]"
        )
    try:
        db = int(path[1]) if len(path) == 2 else 0
    except ValueError:
        raise ValueError(f"database number must be an integer, not {path[1]!r}") from None
    return RedisTarget(**{**target.__dict__, "service": path[0], "db": db})


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    if not host:
        raise ValueError(f"missing host in {item!r}")
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise ValueError(f"port must be a number in {item!r}") from None


def connect_redis(url: str, *, max_connections: int | None = None, **options: Any) -> RedisClient:
    """A client for the deployment `url` names. It opens nothing until first used.

    With `max_connections`, a burst waits for a free connection (up to 10 s)
    instead of failing. `options` are connection options (client_name,
    health_check_interval, ...) for every data node.
    """
    target = parse_redis_url(url)
    if target.mode == CLUSTER:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            username=target.username,
            password=target.password,
            ssl=target.tls,
            max_connections=max_connections or 100,
            **options,
        )
    if target.mode == SENTINEL:
        sentinel = Sentinel(
            target.nodes,
            sentinel_kwargs={"password": target.sentinel_password} if target.sentinel_password else {},
        )
        master: Redis = sentinel.master_for(
            target.service or "",
            db=target.db,
            username=target.username,
            password=target.password,
            ssl=target.tls,
            max_connections=max_connections,
            **options,
        )
        return master
    if max_connections is None:
        return Redis.from_url(url, **options)
    return Redis.from_pool(
        BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=10, **options)
    )


def redis_database(url: str) -> int:
    """The database number a Redis URL selects (always 0 on a cluster)."""
    target = parse_redis_url(url)
    if target.mode != SINGLE:
        return target.db
    return int(parse_url(url).get("db") or 0)


def uses_sharded_pubsub(client: RedisClient) -> bool:
    """Whether channels are SPUBLISH/SSUBSCRIBE (a cluster) or PUBLISH/SUBSCRIBE."""
    return isinstance(client, RedisCluster)


async def publish(client: RedisClient, channel: str, message: str) -> None:
    """Publish `message` on `channel` the way this deployment's subscribers listen."""
    if uses_sharded_pubsub(client):
        await client.spublish(channel, message)
    else:
        await client.publish(channel, message)

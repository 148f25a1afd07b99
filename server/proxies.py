"""Who the client is behind a reverse proxy.

A proxy (nginx) connects to us itself, so every request's peer is the proxy's
address. It says who its client was in `X-Forwarded-For` (or `Forwarded`),
and how they reached it in `X-Forwarded-Proto` / `X-Forwarded-Host`. Anyone
can send those headers, so they are believed only from peers in
`--trusted-proxy` networks, and only up to the first hop that is not itself
a trusted proxy: reading the list from the right, the rightmost untrusted
address is the client (an attacker can prepend addresses, never append).

The middleware runs first, so the login limits, the Origin check and every
handler see the client's address, scheme and host; the access log reads the
same address from the original request.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware

from server.keys import CLIENT_ADDRESS_KEY

Network = IPv4Network | IPv6Network

_X_FORWARDED = ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host")


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) as networks; ValueError names a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted proxy {value!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def forwarded_middleware(trusted: tuple[Network, ...]) -> Middleware:
    """Take the client's address, scheme and host from trusted proxies' headers."""

    @web.middleware
    async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not trusted or not _is_trusted(request.remote, trusted):
            return await handler(request)
        hops, proto, host = _forwarded_values(request)
        client = _client(hops, trusted)
        changes: dict[str, Any] = {}
        if client is not None:
            changes["remote"] = client
            request[CLIENT_ADDRESS_KEY] = client
        if proto in ("http", "https"):
            changes["scheme"] = proto
        if host:
            changes["host"] = host
        return await handler(request.clone(**changes) if changes else request)

    return forwarded


class AccessLog(AbstractAccessLogger):
    """aiohttp's access log line, with the client's address behind a trusted proxy."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        client = request.get(CLIENT_ADDRESS_KEY) or request.remote or "-"
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %.3fs "%s"',
            client,
            request.method,
            request.path_qs,
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time,
            request.headers.get("User-Agent", "-"),
            extra={
                "client": client,
                "method": request.method,
                "path": request.path,
                "status": response.status,
            },
        )


def _is_trusted(address: str | None, trusted: tuple[Network, ...]) -> bool:
    parsed = _address(address)
    return parsed is not None and any(parsed in network for network in trusted)


def _address(value: str | None) -> IPv4Address | IPv6Address | None:
    if not value:
        return None
    try:
        return ip_address(value)
    except ValueError:
        return None


def _forwarded_values(request: web.Request) -> tuple[list[str], str | None, str | None]:
    """The hops (client first), proto and host the proxies sent: X-Forwarded-*,
    or the standard Forwarded header from a proxy that sends only that."""
    headers = request.headers
    if "Forwarded" in headers and not any(name in headers for name in _X_FORWARDED):
        return _standard_forwarded(headers.getall("Forwarded"))
    hops = [hop.strip() for value in headers.getall("X-Forwarded-For", []) for hop in value.split(",")]
    proto = _last(headers.getall("X-Forwarded-Proto", []))
    host = _last(headers.getall("X-Forwarded-Host", []))
    return [hop for hop in hops if hop], proto.lower() if proto else None, host


def _standard_forwarded(values: list[str]) -> tuple[list[str], str | None, str | None]:
    """RFC 7239: `for=...;proto=...;host=...` elements, comma-separated, one per hop."""
    hops, proto, host = [], None, None
    for value in values:
        for element in value.split(","):
            pairs = dict(_pair(part) for part in element.split(";") if "=" in part)
            if "for" in pairs:
                hops.append(_node_address(pairs["for"]))
            proto = pairs.get("proto", proto)
            host = pairs.get("host", host)
    return hops, proto.lower() if proto else None, host


def _client(hops: list[str], trusted: tuple[Network, ...]) -> str | None:
    """The rightmost hop that is not a trusted proxy (the leftmost if all are)."""
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return None  # garbage where an address should be: keep the peer's address
        if not any(address in network for network in trusted):
            return str(address)
    first = _address(hops[0]) if hops else None
    return str(first) if first is not None else None


def _last(values: list[str]) -> str | None:
    parts = [part.strip() for value in values for part in value.split(",") if part.strip()]
    return parts[-1] if parts else None


def _pair(part: str) -> tuple[str, str]:
    name, _, value = part.strip().partition("=")
    return name.strip().lower(), value.strip().strip('"')


def _node_address(node: str) -> str:
    """RFC 7239 node: 192.0.2.1, "192.0.2.1:80", "[2001:db8::1]:443" → the address alone."""
    if node.startswith("["):
        return node[1 : node.find("]")] if "]" in node else node
    return node.rsplit(":", 1)[0] if node.count(":") == 1 else node

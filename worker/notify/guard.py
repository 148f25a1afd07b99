"""Where notifications may go: http(s) only, and no internal address unless allowed.

The check is on the addresses the connector is about to use (GuardedResolver
filters every resolution, and aiohttp resolves at each connect when its DNS
cache is off), not on the name in the URL: a name resolving to a public
address when the contact point is made and to 127.0.0.1 at send time is
still refused.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRefused(OSError):
    """The destination is not allowed (an OSError: aiohttp reports it as a connection error)."""


@dataclass(frozen=True)
class AllowList:
    """Hosts and networks a notification may reach although they are not global addresses."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """From CIDRs, addresses and host names (commas or separate entries)."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in (part.strip() for item in entries for part in item.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def permits(self, host: str, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if host.lower().rstrip(".") in self.hosts or any(address in net for net in self.networks):
            return True
        return address.is_global and not address.is_multicast


def check_url(url: str, allow: AllowList) -> URL:
    """The parsed URL if it may be sent to by scheme and literal address; AddressRefused if not.

    Names are checked later, at connect time (GuardedResolver); a literal
    address never reaches the resolver, so it is checked here.
    """
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise AddressRefused(f"only http(s) URLs are allowed, not {url!r}")
    try:
        address = ipaddress.ip_address(parsed.host)
    except ValueError:
        return parsed
    if not allow.permits(parsed.host, address):
        raise AddressRefused(f"{address} is not a public address (allow it with --notify-allow)")
    return parsed


class GuardedResolver(AbstractResolver):
    """Resolves as aiohttp's default, then keeps only the addresses the allow list permits."""

    def __init__(self, allow: AllowList) -> None:
        self._allow = allow
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        permitted = [r for r in results if self._allow.permits(host, ipaddress.ip_address(r["host"]))]
        if not permitted:
            found = ", ".join(sorted({r["host"] for r in results}))
            raise AddressRefused(f"{host} resolves to {found}: not a public address (see --notify-allow)")
        return permitted

    async def close(self) -> None:
        await self._inner.close()

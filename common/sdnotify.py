"""systemd's notify protocol: READY, STOPPING and watchdog pings.

A unit with `Type=notify` gives the process `$NOTIFY_SOCKET`, a Unix datagram
socket; each message is one datagram of `KEY=value` lines (sd_notify(3)).
With `WatchdogSec=` it also sets `$WATCHDOG_USEC`, and the process must send
`WATCHDOG=1` more often than that or be restarted. Outside systemd nothing is
set and every call here does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)

# What systemd sets for a notify unit with a watchdog.
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1") to systemd; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract-namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        log.warning("could not notify systemd (%s): %s", state.split("\n")[0], exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """How often to ping the watchdog (half its timeout), or None if it is off."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None


async def ping_watchdog_forever(interval: float) -> None:
    """Ping from the event loop: a loop that stops turning stops the pings."""
    await beat_forever(lambda: notify("WATCHDOG=1"), interval)


async def beat_forever(beat: Callable[[], object], period: float) -> None:
    """Call `beat` from the event loop every `period` seconds (a loop that stops turning stops it)."""
    while True:
        beat()
        await asyncio.sleep(period)


async def run_watchdog() -> None:
    """Ping the watchdog until cancelled, if systemd asked for one."""
    interval = watchdog_interval()
    if interval is not None:
        await ping_watchdog_forever(interval)

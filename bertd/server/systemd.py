"""systemd's notify protocol in a few lines: READY, STOPPING, STATUS and the watchdog."""

from __future__ import annotations

import asyncio
import os
import socket

from loguru import logger


def notify(message: str) -> bool:
    """Send one sd_notify message; False when not run by systemd with Type=notify."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as error:
        logger.warning("sd_notify({!r}) failed: {}", message, error)
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of WatchdogSec when systemd asked this process for keep-alives, else None."""
    microseconds = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not microseconds or (pid and int(pid) != os.getpid()):
        return None
    return int(microseconds) / 1e6 / 2


async def keep_watchdog_fed(interval: float) -> None:
    # Fed from the event loop itself: a loop that hangs stops feeding, and systemd restarts us.
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)

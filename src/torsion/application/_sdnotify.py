"""Telling systemd how the service is doing: sd_notify(3) and the watchdog.

When systemd starts a ``Type=notify`` service it sets ``NOTIFY_SOCKET``; the
service sends ``READY=1`` once it serves, ``STOPPING=1`` when it begins to
shut down, ``RELOADING=1`` on reload, and ``WATCHDOG=1`` at least every
``WATCHDOG_USEC`` microseconds if the unit sets ``WatchdogSec=``. Each
message is one datagram of ``KEY=VALUE`` lines on that Unix socket (a name
starting with ``@`` is in Linux's abstract namespace).

With no ``NOTIFY_SOCKET`` every call does nothing, so the runner calls them
unconditionally. ``NOTIFY_SOCKET`` is taken out of the environment, so that
child processes do not speak for the service.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

__all__ = ["SystemdNotifier", "watchdog_interval"]

_log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends sd_notify messages to the socket ``NOTIFY_SOCKET`` names.

    Args:
        environ: Where to read (and remove) ``NOTIFY_SOCKET``; ``os.environ``
            by default.
    """

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        name = env.pop("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if name.startswith("@"):
            self.address = "\0" + name[1:]
        elif name.startswith("/"):
            self.address = name
        self._failed = False

    @property
    def enabled(self) -> bool:
        """Whether there is a socket to notify."""
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines (``notify(READY=1, STATUS="serving")``).

        Returns:
            Whether the message was sent. Failures are logged once and are
            otherwise harmless: systemd is told, not asked.
        """
        if self.address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Never wait on systemd: a full queue loses the message.
                sock.setblocking(False)
                sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                _log.warning("Cannot notify systemd at %r: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Say the service is up (with this process as its main process)."""
        if status is None:
            return self.notify(READY=1, MAINPID=os.getpid())
        return self.notify(READY=1, MAINPID=os.getpid(), STATUS=status)

    def reloading(self) -> bool:
        """Say a reload began; ``ready()`` ends it."""
        # sd_notify(3): RELOADING=1 comes with MONOTONIC_USEC, for Type=notify-reload.
        return self.notify(
            RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        )

    def stopping(self) -> bool:
        """Say the service is shutting down."""
        return self.notify(STOPPING=1)

    def watchdog(self) -> bool:
        """Say the service is alive (the watchdog ping)."""
        return self.notify(WATCHDOG=1)


def watchdog_interval(environ: MutableMapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings, half of ``WATCHDOG_USEC``; None if not asked for.

    ``WATCHDOG_PID``, when set, must be this process (sd_watchdog_enabled(3)).
    Both variables are taken out of the environment.
    """
    env = os.environ if environ is None else environ
    usec, pid = env.pop("WATCHDOG_USEC", ""), env.pop("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2

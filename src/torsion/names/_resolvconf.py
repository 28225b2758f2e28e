"""Reading /etc/resolv.conf: which servers the DNS client asks, and how patiently.

Only what the client uses is read (resolv.conf(5)): ``nameserver`` lines,
and ``options timeout:N attempts:N``. Everything else (``search``,
``domain``, ``ndots``, ``sortlist``, other options) is ignored. A missing or
unreadable file means the defaults: the server on 127.0.0.1, port 53, as
the resolver library itself falls back to.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["ResolvConf", "parse_resolv_conf", "read_resolv_conf"]

# resolv.conf(5): at most MAXNS (3) servers are used; the rest are ignored.
_MAX_SERVERS = 3
# The library's own bounds for the options: timeout capped at 30 s, attempts at 5.
_MAX_TIMEOUT = 30
_MAX_ATTEMPTS = 5
# A resolv.conf is a few lines; read no more than this much of it.
_MAX_SIZE = 64 * 1024

DEFAULT_SERVERS = (("127.0.0.1", 53),)


@dataclass(frozen=True, slots=True)
class ResolvConf:
    """What resolv.conf says about the servers to ask.

    Attributes:
        servers: ``(ip_address, port)`` pairs, in the file's order.
        timeout: Seconds to wait for each server, per attempt.
        attempts: Rounds of asking every server.
    """

    servers: tuple[tuple[str, int], ...] = field(default=DEFAULT_SERVERS)
    timeout: float = 5.0
    attempts: int = 2


def parse_resolv_conf(text: str) -> ResolvConf:
    """Parse the text of a resolv.conf.

    Lines that make no sense (a nameserver that is not an IP address, an
    option with a bad number) are skipped, as the resolver library skips them.

    Args:
        text: The file's contents.

    Returns:
        The servers and options; the defaults for what the text does not say.
    """
    servers: list[tuple[str, int]] = []
    timeout = 5.0
    attempts = 2
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        keyword, arguments = words[0], words[1:]
        if keyword == "nameserver" and arguments and len(servers) < _MAX_SERVERS:
            # ip_address keeps a link-local server's scope (fe80::1%eth0).
            try:
                address = ipaddress.ip_address(arguments[0])
            except ValueError:
                continue
            servers.append((str(address), 53))
        elif keyword == "options":
            for option in arguments:
                name, _, value = option.partition(":")
                if name not in ("timeout", "attempts") or not value.isdigit():
                    continue
                number = int(value)
                if name == "timeout":
                    timeout = float(min(max(number, 1), _MAX_TIMEOUT))
                else:
                    attempts = min(max(number, 1), _MAX_ATTEMPTS)
    return ResolvConf(tuple(servers) or DEFAULT_SERVERS, timeout, attempts)


def read_resolv_conf(path: str = "/etc/resolv.conf") -> ResolvConf:
    """Read and parse a resolv.conf; the defaults if it cannot be read.

    Args:
        path: The file.

    Returns:
        The servers and options it gives.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            text = file.read(_MAX_SIZE)
    except OSError:
        return ResolvConf()
    return parse_resolv_conf(text)

"""Reading /etc/resolv.conf: which servers the DNS client asks, how, and the search list.

What glibc's resolver reads (resolv.conf(5)) is honoured:

- ``nameserver ADDRESS``: IPv4 or IPv6, a link-local one with its scope
  (``fe80::1%eth0``); at most three (MAXNS), always port 53.
- ``search DOMAIN...`` and ``domain DOMAIN``: the search list; the last of
  these lines wins. Without either, the local domain: what follows the
  first dot of the host name (none if it has no dot).
- ``options``: ``ndots:N`` (capped at 15), ``timeout:N`` (capped at 30),
  ``attempts:N`` (capped at 5), ``rotate``, ``edns0``, ``use-vc`` and
  ``no-tld-query``; other options (``sortlist`` too) are ignored.
- The ``LOCALDOMAIN`` environment variable replaces the search list and
  ``RES_OPTIONS`` adds options, as they do for the C library.

A missing or unreadable file means the defaults: the server on 127.0.0.1,
port 53, as the resolver library itself falls back to. The file is read up
to 64 KiB, lines longer than 1 KiB are skipped, and the search list keeps
its first 16 valid domains (each one multiplies the queries a lookup may
send).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

import dns.exception
import dns.name

__all__ = ["ResolvConf", "parse_resolv_conf", "read_resolv_conf"]

# resolv.conf(5): at most MAXNS (3) servers are used; the rest are ignored.
_MAX_SERVERS = 3
# The library's own bounds for the options: ndots 15, timeout 30 s, attempts 5.
_MAX_NDOTS = 15
_MAX_TIMEOUT = 30
_MAX_ATTEMPTS = 5
# A resolv.conf is a few lines; read no more than this much of it.
_MAX_SIZE = 64 * 1024
_MAX_LINE = 1024
# glibc before 2.26 kept six; since, no limit. Ours is a bound, not a quirk.
_MAX_SEARCH = 16

DEFAULT_SERVERS = (("127.0.0.1", 53),)


@dataclass(frozen=True, slots=True)
class ResolvConf:
    """What resolv.conf says: the servers to ask, how, and the search list.

    Attributes:
        servers: ``(ip_address, port)`` pairs, in the file's order.
        timeout: Seconds to wait for each server, per attempt.
        attempts: Rounds of asking every server.
        search: The domains a relative name is tried in, in order, as text
            without the final dot.
        ndots: A name with at least this many dots is tried as it is before
            the search list.
        rotate: Whether queries take turns starting with each server.
        edns0: Whether queries carry an EDNS0 OPT record (RFC 6891).
        use_vc: Whether queries go over TCP from the start.
        tld_query: Whether a name without a dot is also tried on its own
            (``no-tld-query`` turns it off).
    """

    servers: tuple[tuple[str, int], ...] = field(default=DEFAULT_SERVERS)
    timeout: float = 5.0
    attempts: int = 2
    search: tuple[str, ...] = ()
    ndots: int = 1
    rotate: bool = False
    edns0: bool = False
    use_vc: bool = False
    tld_query: bool = True


def parse_resolv_conf(
    text: str, *, hostname: str = "", environ: Mapping[str, str] | None = None
) -> ResolvConf:
    """Parse the text of a resolv.conf.

    Lines that make no sense (a nameserver that is not an IP address, an
    option with a bad number, a search domain that is not a domain name) are
    skipped, as the resolver library skips them.

    Args:
        text: The file's contents.
        hostname: The host's name: the search list is its domain when the
            text has no ``search`` or ``domain`` line.
        environ: Where ``LOCALDOMAIN`` and ``RES_OPTIONS`` are looked up
            (none by default; ``read_resolv_conf`` passes ``os.environ``).

    Returns:
        The servers, options and search list; the defaults for what the text
        does not say.
    """
    servers: list[tuple[str, int]] = []
    search: list[str] | None = None
    options = _Options()
    for line in text.splitlines():
        if len(line) > _MAX_LINE:
            continue
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
        elif keyword == "search":
            search = _domains(arguments)
        elif keyword == "domain" and arguments:
            search = _domains(arguments[:1])
        elif keyword == "options":
            _options(arguments, options)
    if environ is not None:
        local = environ.get("LOCALDOMAIN")
        if local is not None:
            search = _domains(local.split())
        _options(environ.get("RES_OPTIONS", "").split(), options)
    if search is None:
        # resolv.conf(5): the local domain is everything after the host name's first dot.
        _, dot, domain = hostname.partition(".")
        search = _domains([domain]) if dot else []
    return ResolvConf(
        servers=tuple(servers) or DEFAULT_SERVERS,
        timeout=options.timeout,
        attempts=options.attempts,
        search=tuple(search),
        ndots=options.ndots,
        rotate=options.rotate,
        edns0=options.edns0,
        use_vc=options.use_vc,
        tld_query=options.tld_query,
    )


@dataclass(slots=True)
class _Options:
    timeout: float = 5.0
    attempts: int = 2
    ndots: int = 1
    rotate: bool = False
    edns0: bool = False
    use_vc: bool = False
    tld_query: bool = True


def _domains(words: list[str]) -> list[str]:
    domains: list[str] = []
    for word in words:
        try:
            name = dns.name.from_text(word, dns.name.root)
        except dns.exception.DNSException:
            continue
        text = name.to_text(omit_final_dot=True)
        if text and text not in domains and len(domains) < _MAX_SEARCH:
            domains.append(text)
    return domains


def _options(words: list[str], options: _Options) -> None:
    for option in words[:64]:
        name, colon, value = option.partition(":")
        if not colon:
            if name == "rotate":
                options.rotate = True
            elif name == "edns0":
                options.edns0 = True
            elif name == "use-vc":
                options.use_vc = True
            elif name == "no-tld-query":
                options.tld_query = False
            continue
        if not value.isdigit() or len(value) > 6:
            continue
        number = int(value)
        if name == "ndots":
            options.ndots = min(number, _MAX_NDOTS)
        elif name == "timeout":
            options.timeout = float(min(max(number, 1), _MAX_TIMEOUT))
        elif name == "attempts":
            options.attempts = min(max(number, 1), _MAX_ATTEMPTS)


def read_resolv_conf(
    path: str = "/etc/resolv.conf", *, environ: Mapping[str, str] | None = None
) -> ResolvConf:
    """Read and parse a resolv.conf; the defaults if it cannot be read.

    The host name (for the default search list) is the system's, and
    ``LOCALDOMAIN`` and ``RES_OPTIONS`` are honoured, as the C library does.

    Args:
        path: The file.
        environ: The environment (``os.environ`` by default).

    Returns:
        The servers, options and search list it gives.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            text = file.read(_MAX_SIZE)
    except OSError:
        text = ""
    return parse_resolv_conf(
        text,
        hostname=socket.gethostname(),
        environ=os.environ if environ is None else environ,
    )

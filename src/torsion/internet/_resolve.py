"""Names: turning a host name into addresses, through a pluggable ``Resolver``.

The reactor answers IP literals itself and asks its resolver for the rest.
The default, ``SystemResolver``, calls the system's ``getaddrinfo`` in a
worker thread (it blocks); a DNS client can take its place with
``Reactor(resolver=...)`` or ``reactor.install_resolver(...)``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable
from typing import Any, Protocol

from torsion.defer import Deferred, succeed
from torsion.errors import DNSLookupError
from torsion.internet._threads import ThreadRunner

__all__ = ["Resolver", "SystemResolver", "is_ip_address"]


class Resolver(Protocol):
    """Something that resolves host names to IP addresses (as strings).

    Both methods may be ``async def`` or return a Deferred. The reactor is one
    (it hands names to the resolver installed in it).
    """

    def resolve(self, host: str) -> Awaitable[str]:
        """Return the first address of ``host``.

        Raises:
            DNSLookupError: ``host`` has no address.
        """
        ...

    def resolve_all(self, host: str) -> Awaitable[list[str]]:
        """Return every address of ``host``, best first, without repeats.

        Raises:
            DNSLookupError: ``host`` has no address.
        """
        ...


def is_ip_address(host: str) -> bool:
    """Return whether ``host`` is an IPv4 or IPv6 address rather than a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class SystemResolver:
    """Resolves names with the system's ``getaddrinfo``, in a worker thread.

    Args:
        threads: Runs the blocking lookups (the reactor).
        family: ``socket.AF_INET`` or ``AF_INET6`` to ask for one family only;
            ``AF_UNSPEC`` (the default) takes what the system prefers.
    """

    def __init__(self, threads: ThreadRunner, *, family: int = socket.AF_UNSPEC) -> None:
        self._threads = threads
        self.family = family

    def resolve(self, host: str) -> Deferred[str]:
        """Return a Deferred of the first address of ``host``."""
        return self.resolve_all(host).add_callback(_first)

    def resolve_all(self, host: str) -> Deferred[list[str]]:
        """Return a Deferred of every address of ``host``, in the system's order.

        An IP literal is its own answer, with no lookup. Lookup errors become
        ``DNSLookupError``, with the system's error as the cause.
        """
        if is_ip_address(host):
            return succeed([host])
        d = self._threads.defer_to_thread(
            socket.getaddrinfo, host, None, self.family, socket.SOCK_STREAM
        )
        return d.add_callbacks(
            lambda infos: _addresses(host, infos), lambda exc: _translate(host, exc)
        )


def _addresses(host: str, infos: list[tuple[Any, ...]]) -> list[str]:
    addresses: list[str] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DNSLookupError(host)
    return addresses


def _translate(host: str, exc: BaseException) -> list[str]:
    if isinstance(exc, OSError) and not isinstance(exc, DNSLookupError):
        raise DNSLookupError(host, str(exc)) from exc
    raise exc


def _first(addresses: list[str]) -> str:
    return addresses[0]

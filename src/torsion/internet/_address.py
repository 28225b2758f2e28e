"""Typed socket addresses: what a protocol's ``peer`` and ``host`` are.

asyncio reports addresses as bare tuples (or strings, for Unix sockets) whose
shape depends on the socket family. torsion turns them into small frozen
dataclasses once, at the edge, so that protocols and factories can match on
the type and read named fields. Connections that are not sockets have
addresses too: a child process (``ProcessAddress``) and standard I/O
(``StandardIOAddress``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

__all__ = [
    "Address",
    "IPv4Address",
    "IPv6Address",
    "ProcessAddress",
    "StandardIOAddress",
    "UNIXAddress",
    "to_address",
    "to_sockaddr",
]


@dataclass(frozen=True, slots=True)
class IPv4Address:
    """An IPv4 endpoint.

    Attributes:
        host: The dotted-quad address.
        port: The port number.
        kind: "tcp" or "udp".
    """

    host: str
    port: int
    kind: Literal["tcp", "udp"] = "tcp"

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class IPv6Address:
    """An IPv6 endpoint.

    Attributes:
        host: The address, without brackets.
        port: The port number.
        flowinfo: The flow label.
        scope_id: The interface index of a link-local address (0 otherwise).
        kind: "tcp" or "udp".
    """

    host: str
    port: int
    flowinfo: int = 0
    scope_id: int = 0
    kind: Literal["tcp", "udp"] = "tcp"

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}"


@dataclass(frozen=True, slots=True)
class UNIXAddress:
    """A Unix domain socket.

    Attributes:
        path: The socket's file name; for Linux's abstract namespace it starts
            with a NUL byte. None for an unnamed socket (a connecting client,
            or one end of a ``socketpair``).
    """

    path: str | bytes | None

    def __str__(self) -> str:
        if self.path is None:
            return "unix:<unnamed>"
        if isinstance(self.path, bytes):
            return f"unix:{self.path!r}"
        return f"unix:{self.path.replace(chr(0), '@', 1)}"


@dataclass(frozen=True, slots=True)
class ProcessAddress:
    """The other end of a connection to a child process.

    Attributes:
        executable: The program, as it was given to the endpoint.
        pid: The child's process id.
    """

    executable: str
    pid: int

    def __str__(self) -> str:
        return f"{self.executable}[{self.pid}]"


@dataclass(frozen=True, slots=True)
class StandardIOAddress:
    """The other end of the connection over standard input and output.

    Whoever runs this process is at the other end; all that is known is
    which descriptors connect to it.

    Attributes:
        stdin: The descriptor read.
        stdout: The descriptor written.
    """

    stdin: int = 0
    stdout: int = 1

    def __str__(self) -> str:
        if (self.stdin, self.stdout) == (0, 1):
            return "stdio"
        return f"stdio:{self.stdin},{self.stdout}"


Address: TypeAlias = IPv4Address | IPv6Address | UNIXAddress | ProcessAddress | StandardIOAddress
"""Any address a torsion transport reports."""


def to_address(sockaddr: Any, kind: Literal["tcp", "udp", "unix"] = "tcp") -> Address:
    """Turn an address as the socket module reports it into a typed one.

    Args:
        sockaddr: ``(host, port)`` for IPv4, ``(host, port, flowinfo,
            scope_id)`` for IPv6, a path (str or bytes; empty for unnamed)
            for Unix sockets.
        kind: The transport: "tcp" or "udp" for IP addresses, "unix".

    Raises:
        ValueError: ``sockaddr`` has none of those shapes.
    """
    if isinstance(sockaddr, _ADDRESS_TYPES):
        return sockaddr
    if kind == "unix" or isinstance(sockaddr, str | bytes) or sockaddr is None:
        if not isinstance(sockaddr, str | bytes | None):
            raise ValueError(f"not a Unix socket address: {sockaddr!r}")
        return UNIXAddress(sockaddr or None)
    if isinstance(sockaddr, tuple):
        if len(sockaddr) == 2:
            return IPv4Address(sockaddr[0], sockaddr[1], kind)
        if len(sockaddr) == 4:
            return IPv6Address(sockaddr[0], sockaddr[1], sockaddr[2], sockaddr[3], kind)
    raise ValueError(f"not a socket address: {sockaddr!r}")


_ADDRESS_TYPES = (IPv4Address, IPv6Address, UNIXAddress, ProcessAddress, StandardIOAddress)


def ip_endpoint(host: str, port: int) -> IPv4Address | IPv6Address:
    """The TCP address of an IP literal and a port (IPv6 when it has a colon)."""
    return IPv6Address(host, port) if ":" in host else IPv4Address(host, port)


def to_sockaddr(address: Address) -> Any:
    """Return an address in the socket module's form (the inverse of ``to_address``).

    Raises:
        ValueError: The address is not a socket's (a process, standard I/O).
    """
    if isinstance(address, IPv4Address):
        return (address.host, address.port)
    if isinstance(address, IPv6Address):
        return (address.host, address.port, address.flowinfo, address.scope_id)
    if isinstance(address, UNIXAddress):
        return address.path if address.path is not None else ""
    raise ValueError(f"not a socket address: {address!r}")

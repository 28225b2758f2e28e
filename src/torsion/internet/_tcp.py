"""TCP: listen on a port, connect to one, over asyncio's transports.

``listen_tcp`` binds its socket at once, in the caller's thread, so that the
port (the real one, for port 0) is known and a port already taken fails
right there with ``CannotListenError``; a ``Listener`` then serves it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from torsion.errors import CannotListenError
from torsion.internet._address import Address, IPv4Address, IPv6Address
from torsion.internet._connector import Connector
from torsion.internet._listener import Listener, ListeningPort, abort_transport
from torsion.internet._protocol import ProtocolFactory
from torsion.internet._resolve import is_ip_address

__all__ = ["ReactorTCP", "TCPListeningPort", "connect_tcp", "listen_tcp"]

P = TypeVar("P", bound=asyncio.BaseProtocol)

_log = logging.getLogger("torsion.internet")


class TCPListeningPort(ListeningPort, Protocol):
    """A listening TCP (or TLS) port."""

    @property
    def host(self) -> str:
        """The address bound to ("0.0.0.0" for every IPv4 interface)."""
        ...

    @property
    def port(self) -> int:
        """The port number (the one the system chose, if 0 was asked for)."""
        ...


class ReactorTCP(Protocol):
    """What listens for and makes TCP connections."""

    def listen_tcp(
        self, port: int, factory: ProtocolFactory, *, interface: str = "", backlog: int = 100
    ) -> TCPListeningPort:
        """Listen on ``port``; each connection gets ``factory(peer_address)``."""
        ...

    def connect_tcp(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        timeout: float | None = 30.0,
    ) -> Connector[P]:
        """Connect to ``host:port``; await the connector for the connected protocol."""
        ...


def listen_tcp(
    loop: asyncio.AbstractEventLoop,
    port: int,
    factory: ProtocolFactory,
    *,
    interface: str = "",
    backlog: int = 100,
    on_stopped: Callable[[Listener], object] | None = None,
) -> Listener:
    """Bind and listen on ``interface:port`` now, and serve it on ``loop``.

    Args:
        loop: The loop that serves the connections.
        port: The port; 0 lets the system choose (see ``Listener.port``).
        factory: Called with each peer's address; returns its protocol, or
            None to refuse the connection.
        interface: The address to bind to: "" for every IPv4 interface, an
            IP address, or a name (resolved at once, blocking).
        backlog: How many connections may wait to be accepted.
        on_stopped: Called with the Listener once it has stopped.

    Raises:
        CannotListenError: The address could not be bound (taken, not ours,
            not resolvable).
    """
    sock = _bind(interface, port, backlog)
    return Listener(loop, sock, factory, backlog=backlog, on_stopped=on_stopped)


def _bind(interface: str, port: int, backlog: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(
            interface or "0.0.0.0",  # "" asks for every interface.
            port,
            socket.AF_UNSPEC,
            socket.SOCK_STREAM,
            0,
            socket.AI_PASSIVE,
        )
        family, kind, proto, _, sockaddr = infos[0]
    except (OSError, IndexError) as exc:
        reason = exc if isinstance(exc, OSError) else OSError(str(exc))
        raise CannotListenError(interface, port, reason) from exc
    sock = socket.socket(family, kind, proto)
    try:
        if os.name == "posix":
            # As asyncio does: rebinding a port whose old connections linger is fine.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise CannotListenError(interface, port, exc) from exc
    return sock


def connect_tcp(
    loop: asyncio.AbstractEventLoop,
    resolve_all: Callable[[str], Awaitable[list[str]]],
    host: str,
    port: int,
    factory: Callable[[Address], P],
    *,
    timeout: float | None = 30.0,
) -> Connector[P]:
    """Connect to ``host:port``, trying each of its addresses in turn.

    Args:
        loop: The loop that runs the connection.
        resolve_all: Turns a host name into addresses (the reactor's resolver).
        host: A name or an IP address.
        port: The port.
        factory: Called with the server's address (an ``IPv4Address`` or
            ``IPv6Address``) once connected; returns the protocol.
        timeout: Seconds for the whole attempt (lookup included); None waits
            as long as the system does.

    Returns:
        A ``Connector``: awaiting it (or its ``deferred``) gives the protocol
        once ``connection_made`` was called, or raises ``TimeoutError``, the
        ``OSError`` of the last address tried (``ConnectionRefusedError``,
        ...), ``DNSLookupError`` or what the factory raised. ``cancel()``
        stops the attempt; ``disconnect()`` also closes the connection.
    """
    attempt = _connect(loop, resolve_all, host, port, factory, limit=timeout)
    destination = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Connector.start(loop, attempt, destination)


async def _connect(
    loop: asyncio.AbstractEventLoop,
    resolve_all: Callable[[str], Awaitable[list[str]]],
    host: str,
    port: int,
    factory: Callable[[Address], P],
    *,
    limit: float | None,
) -> tuple[asyncio.BaseTransport, P]:
    async with asyncio.timeout(limit):
        addresses = [host] if is_ip_address(host) else await resolve_all(host)
        error: OSError | None = None
        for address in addresses:
            try:
                return await _connect_to(loop, address, port, factory)
            except OSError as exc:
                error = exc
        if error is None:
            raise OSError(f"no address to connect to for {host!r}")
        raise error


async def _connect_to(
    loop: asyncio.AbstractEventLoop, address: str, port: int, factory: Callable[[Address], P]
) -> tuple[asyncio.BaseTransport, P]:
    built: list[P] = []
    failure: list[Exception] = []

    peer: Address = IPv6Address(address, port) if ":" in address else IPv4Address(address, port)

    def build() -> asyncio.BaseProtocol:
        try:
            protocol = factory(peer)
        except Exception as exc:
            failure.append(exc)
            return _Refuse()
        built.append(protocol)
        return protocol

    transport, _ = await loop.create_connection(build, address, port)
    if failure:
        raise failure[0]
    return transport, built[0]


class _Refuse(asyncio.Protocol):
    """Closes a client connection whose factory failed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        abort_transport(transport)

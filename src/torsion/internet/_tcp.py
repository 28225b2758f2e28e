"""TCP: listen on a port, connect to one, over asyncio's transports.

``listen_tcp`` binds its socket at once, in the caller's thread, so that the
port (the real one, for port 0) is known and a port already taken fails
right there with ``CannotListenError``; a ``Listener`` then serves it.
``connect_tcp`` tries a host's addresses one after another.

Socket options: ``TCP_NODELAY`` is always on (both asyncio's and uvloop's
transports set it on every TCP connection): torsion protocols write whole
messages, and Nagle's algorithm (RFC 896) only delays the last segment of a
request or reply. ``SO_KEEPALIVE`` is off unless asked for; a listening
socket passes it on to each connection it accepts (Linux, the BSDs, macOS
and Windows all copy it to the accepted socket).

The address-by-address connect code (``connect_stream``) and the binding
code (``bind_tcp``) serve TLS (``_tls``) too.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from torsion.errors import CannotListenError
from torsion.internet._address import Address, ip_endpoint
from torsion.internet._connector import Connector
from torsion.internet._listener import Listener, ListeningPort, abort_transport
from torsion.internet._protocol import ProtocolFactory
from torsion.internet._resolve import is_ip_address

__all__ = [
    "ReactorTCP",
    "TCPListeningPort",
    "bind_tcp",
    "check_bind_address",
    "connect_stream",
    "connect_tcp",
    "destination",
    "listen_tcp",
]

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
        self,
        port: int,
        factory: ProtocolFactory,
        *,
        interface: str = "",
        backlog: int = 100,
        reuse_port: bool = False,
        keepalive: bool = False,
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
        bind_address: tuple[str, int] | None = None,
        keepalive: bool = False,
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
    reuse_port: bool = False,
    keepalive: bool = False,
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
        reuse_port: Set ``SO_REUSEPORT``, so that several sockets (in this
            process or others) can listen on the same port and the system
            spreads the connections between them; every one of them must
            set it.
        keepalive: Set ``SO_KEEPALIVE`` on every accepted connection, so that
            the system probes idle peers and a vanished one ends the
            connection (after ``tcp_keepalive_time``, two hours by default
            on Linux; see tcp(7)).
        on_stopped: Called with the Listener once it has stopped.

    Raises:
        CannotListenError: The address could not be bound (taken, not ours,
            not resolvable), or ``reuse_port`` is not supported here.
    """
    sock = bind_tcp(interface, port, backlog, reuse_port=reuse_port, keepalive=keepalive)
    return Listener(loop, sock, factory, backlog=backlog, on_stopped=on_stopped)


def bind_tcp(
    interface: str, port: int, backlog: int, *, reuse_port: bool = False, keepalive: bool = False
) -> socket.socket:
    """Return a non-blocking TCP socket bound to ``interface:port`` and listening.

    Raises:
        CannotListenError: See ``listen_tcp``.
    """
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
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        unsupported = OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not supported on this system")
        raise CannotListenError(interface, port, unsupported)
    sock = socket.socket(family, kind, proto)
    try:
        if os.name == "posix":
            # As asyncio does: rebinding a port whose old connections linger is fine.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if keepalive:
            # Accepted sockets inherit it (see the module docstring).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
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
    bind_address: tuple[str, int] | None = None,
    keepalive: bool = False,
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
        bind_address: The local ``(ip_address, port)`` to connect from (port
            0: any); addresses of the other family are skipped.
        keepalive: Set ``SO_KEEPALIVE`` on the connection (see ``listen_tcp``).

    Returns:
        A ``Connector``: awaiting it (or its ``deferred``) gives the protocol
        once ``connection_made`` was called, or raises ``TimeoutError``, the
        ``OSError`` of the last address tried (``ConnectionRefusedError``,
        ...), ``DNSLookupError`` or what the factory raised. ``cancel()``
        stops the attempt; ``disconnect()`` also closes the connection.

    Raises:
        ValueError: ``bind_address`` does not hold an IP address.
    """
    check_bind_address(bind_address)
    attempt = connect_stream(
        loop,
        resolve_all,
        host,
        port,
        factory,
        limit=timeout,
        bind_address=bind_address,
        keepalive=keepalive,
    )
    return Connector.start(loop, attempt, destination(host, port))


def destination(host: str, port: int) -> str:
    """Return ``host:port`` as a connector shows it (IPv6 addresses in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_bind_address(bind_address: tuple[str, int] | None) -> None:
    """Refuse a bind address that would need a (blocking) name lookup.

    Raises:
        ValueError: Its host is not an IP address.
    """
    if bind_address is not None and not is_ip_address(bind_address[0]):
        raise ValueError(f"bind_address needs an IP address, not {bind_address[0]!r}")


async def connect_stream(
    loop: asyncio.AbstractEventLoop,
    resolve_all: Callable[[str], Awaitable[list[str]]],
    host: str,
    port: int,
    factory: Callable[[Address], P],
    *,
    limit: float | None,
    bind_address: tuple[str, int] | None = None,
    keepalive: bool = False,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> tuple[asyncio.BaseTransport, P]:
    """Resolve ``host`` and connect to its addresses in turn, within ``limit`` seconds.

    With ``tls``, each connection runs the TLS handshake (checking the
    certificate against ``server_hostname``) before the protocol sees it. A
    TLS error ends the attempt at once: another address of the same name
    would present the same certificate.

    Returns:
        The transport and the protocol, ``connection_made`` already called.
    """
    async with asyncio.timeout(limit):
        addresses = [host] if is_ip_address(host) else await resolve_all(host)
        error: OSError | None = None
        for address in addresses:
            try:
                return await _connect_to(
                    loop,
                    address,
                    port,
                    factory,
                    bind_address=bind_address,
                    keepalive=keepalive,
                    tls=tls,
                    server_hostname=server_hostname,
                )
            except ssl.SSLError:
                raise
            except OSError as exc:
                error = exc
        if error is None:
            raise OSError(f"no address to connect to for {host!r}")
        raise error


async def _connect_to(
    loop: asyncio.AbstractEventLoop,
    address: str,
    port: int,
    factory: Callable[[Address], P],
    *,
    bind_address: tuple[str, int] | None,
    keepalive: bool,
    tls: ssl.SSLContext | None,
    server_hostname: str | None,
) -> tuple[asyncio.BaseTransport, P]:
    built: list[P] = []
    failure: list[Exception] = []

    peer = ip_endpoint(address, port)

    def build() -> asyncio.BaseProtocol:
        try:
            protocol = factory(peer)
        except Exception as exc:
            failure.append(exc)
            return _Refuse()
        built.append(protocol)
        return protocol

    transport, _ = await loop.create_connection(
        build,
        address,
        port,
        local_addr=bind_address,
        ssl=tls,
        server_hostname=server_hostname if tls is not None else None,
    )
    if failure:
        raise failure[0]
    if keepalive:
        sock = transport.get_extra_info("socket")
        # The peer may have reset the connection already; it is then lost anyway.
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return transport, built[0]


class _Refuse(asyncio.Protocol):
    """Closes a client connection whose factory failed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        abort_transport(transport)

"""Endpoints: where to listen or connect, as objects that can be passed around.

A server endpoint knows how to listen (``listen(factory)``) and a client
endpoint how to connect (``connect(factory)``); code that serves or connects
takes one and never needs to know whether it is TCP, TLS, a Unix socket or a
socket handed over by systemd. ``server_from_string`` and
``client_from_string`` make them from strings such as ``tcp:8080``.

Both calls return Deferreds, so that an endpoint may do asynchronous work
first (a TLS handshake, a lookup); the ones here that bind a socket do it at
once and return a Deferred that has already fired.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Callable
from typing import Protocol, TypeVar

from torsion.defer import Deferred, ensure_deferred, fail, succeed
from torsion.internet._address import Address
from torsion.internet._client_service import ClientEndpoint
from torsion.internet._handover import Handover
from torsion.internet._listener import ListeningPort
from torsion.internet._protocol import ProtocolFactory
from torsion.internet._tcp import ReactorTCP
from torsion.internet._tls import ReactorTLS, ServerTLS, client_context
from torsion.internet._unix import ReactorUNIX

__all__ = [
    "ServerEndpoint",
    "SystemdEndpoint",
    "TCPClientEndpoint",
    "TCPServerEndpoint",
    "TLSClientEndpoint",
    "TLSServerEndpoint",
    "UNIXClientEndpoint",
    "UNIXServerEndpoint",
    "listen_fds",
    "wrap_client_tls",
]

P = TypeVar("P", bound=asyncio.BaseProtocol)

# sd_listen_fds(3): passed sockets start at file descriptor 3.
_SD_LISTEN_FDS_START = 3


class ServerEndpoint(Protocol):
    """Something that listens: a TCP port, a TLS port, a Unix socket..."""

    def listen(self, factory: ProtocolFactory) -> Deferred[ListeningPort]:
        """Start listening; the Deferred fires with the listening port.

        It fails with ``CannotListenError`` when the address cannot be used.
        """
        ...


class TCPServerEndpoint:
    """Listens for TCP connections on a port.

    Args:
        reactor: Listens.
        port: The port (0 lets the system choose).
        interface: The address to bind to ("" for every IPv4 interface,
            "::" for every IPv6 one).
        backlog: How many connections may wait to be accepted.
    """

    def __init__(
        self, reactor: ReactorTCP, port: int, *, interface: str = "", backlog: int = 100
    ) -> None:
        self._reactor = reactor
        self.port = port
        self.interface = interface
        self.backlog = backlog

    def listen(self, factory: ProtocolFactory) -> Deferred[ListeningPort]:
        """Bind and listen now; the Deferred has fired (or failed) already."""
        try:
            port = self._reactor.listen_tcp(
                self.port, factory, interface=self.interface, backlog=self.backlog
            )
        except Exception as exc:
            return fail(exc)
        return succeed(port)

    def __repr__(self) -> str:
        return f"<TCPServerEndpoint {self.interface or '*'}:{self.port}>"


class TLSServerEndpoint:
    """Listens for TLS connections on a port.

    Args:
        reactor: Listens.
        port: The port (0 lets the system choose).
        tls: The server's TLS settings: a ``ServerTLS`` (whose ``reload()``
            swaps certificates without a restart) or an ``ssl.SSLContext``.
        interface: The address to bind to ("" for every IPv4 interface).
        backlog: How many connections may wait to be accepted.

    Attributes:
        tls: As given, for reloading.
    """

    def __init__(
        self,
        reactor: ReactorTLS,
        port: int,
        tls: ServerTLS | ssl.SSLContext,
        *,
        interface: str = "",
        backlog: int = 100,
    ) -> None:
        self._reactor = reactor
        self.port = port
        self.tls = tls
        self.interface = interface
        self.backlog = backlog

    def listen(self, factory: ProtocolFactory) -> Deferred[ListeningPort]:
        """Bind and listen now; the Deferred has fired (or failed) already."""
        try:
            port = self._reactor.listen_tls(
                self.port, factory, self.tls, interface=self.interface, backlog=self.backlog
            )
        except Exception as exc:
            return fail(exc)
        return succeed(port)

    def __repr__(self) -> str:
        return f"<TLSServerEndpoint {self.interface or '*'}:{self.port}>"


class UNIXServerEndpoint:
    """Listens on a Unix stream socket.

    Args:
        reactor: Listens.
        path: The socket file, or a name starting with NUL for Linux's
            abstract namespace.
        mode: The socket file's permissions.
        backlog: How many connections may wait to be accepted.
    """

    def __init__(
        self, reactor: ReactorUNIX, path: str, *, mode: int = 0o666, backlog: int = 100
    ) -> None:
        self._reactor = reactor
        self.path = path
        self.mode = mode
        self.backlog = backlog

    def listen(self, factory: ProtocolFactory) -> Deferred[ListeningPort]:
        """Bind and listen now; the Deferred has fired (or failed) already."""
        try:
            port = self._reactor.listen_unix(
                self.path, factory, mode=self.mode, backlog=self.backlog
            )
        except Exception as exc:
            return fail(exc)
        return succeed(port)

    def __repr__(self) -> str:
        return f"<UNIXServerEndpoint {self.path!r}>"


class UNIXClientEndpoint:
    """Connects to a Unix stream socket.

    Args:
        reactor: Connects.
        path: The socket file (or an abstract-namespace name).
        timeout: Seconds the attempt may take.
    """

    def __init__(self, reactor: ReactorUNIX, path: str, *, timeout: float | None = 30.0) -> None:
        self._reactor = reactor
        self.path = path
        self.timeout = timeout

    def connect(self, factory: Callable[[Address], P]) -> Deferred[P]:
        """Connect; the Deferred fires with the protocol (cancel it to stop)."""
        return self._reactor.connect_unix(self.path, factory, timeout=self.timeout).deferred

    def __repr__(self) -> str:
        return f"<UNIXClientEndpoint {self.path!r}>"


class TCPClientEndpoint:
    """Connects to one IP address and port (for a host name, see ``HostnameEndpoint``).

    Args:
        reactor: Connects.
        host: The address (a name is resolved, and its addresses tried in turn).
        port: The port.
        timeout: Seconds the attempt may take.
    """

    def __init__(
        self, reactor: ReactorTCP, host: str, port: int, *, timeout: float | None = 30.0
    ) -> None:
        self._reactor = reactor
        self.host = host
        self.port = port
        self.timeout = timeout

    def connect(self, factory: Callable[[Address], P]) -> Deferred[P]:
        """Connect; the Deferred fires with the protocol (cancel it to stop)."""
        return self._reactor.connect_tcp(
            self.host, self.port, factory, timeout=self.timeout
        ).deferred

    def __repr__(self) -> str:
        return f"<TCPClientEndpoint {self.host}:{self.port}>"


class TLSClientEndpoint:
    """TLS over any client endpoint: connects it, then runs the handshake.

    The protocol is made, and sees the connection, only once the handshake
    succeeded; a failed handshake fails ``connect`` and closes the
    connection.

    Args:
        endpoint: The connection to run TLS over (TCP, a host name, Unix...).
        context: The TLS settings; verify certificates, as a client context
            made by ``ssl.create_default_context()`` does.
        server_hostname: The name to check the server's certificate against
            and to send as SNI (None only with a context that checks no name).
        handshake_timeout: Seconds the handshake may take (asyncio's default,
            60, if None).
    """

    def __init__(
        self,
        endpoint: ClientEndpoint,
        context: ssl.SSLContext,
        *,
        server_hostname: str | None,
        handshake_timeout: float | None = None,
    ) -> None:
        self._endpoint = endpoint
        self.context = context
        self.server_hostname = server_hostname
        self.handshake_timeout = handshake_timeout

    def connect(self, factory: Callable[[Address], P]) -> Deferred[P]:
        """Connect and shake hands; the Deferred fires with the protocol.

        Cancelling it stops the connection attempt or the handshake.
        """
        return ensure_deferred(self._connect(factory))

    async def _connect(self, factory: Callable[[Address], P]) -> P:
        addresses: list[Address] = []

        def stand_in(address: Address) -> Handover:
            addresses.append(address)
            return Handover()

        held = await self._endpoint.connect(stand_in)
        transport = held.transport
        assert transport is not None  # connect fired: connection_made was called
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                transport,  # type: ignore[arg-type]
                held,
                self.context,
                server_hostname=self.server_hostname,
                ssl_handshake_timeout=self.handshake_timeout,
            )
        except BaseException:
            transport.abort()  # type: ignore[attr-defined]
            raise
        if tls is None:  # pragma: no cover - the loop closed meanwhile
            raise ConnectionResetError("connection closed during the TLS handshake")
        held.transport = tls
        try:
            protocol = factory(addresses[0])
            held.hand_over(protocol)
        except BaseException:
            tls.abort()
            raise
        return protocol

    def __repr__(self) -> str:
        return f"<TLSClientEndpoint {self.server_hostname} over {self._endpoint!r}>"


def wrap_client_tls(
    endpoint: ClientEndpoint,
    server_hostname: str,
    *,
    context: ssl.SSLContext | None = None,
    handshake_timeout: float | None = None,
) -> TLSClientEndpoint:
    """Run TLS over any client endpoint, checking the server is ``server_hostname``.

    The usual way to reach a TLS server through something that is not plain
    TCP: a host name with happy eyeballs, a Unix socket, a SOCKS proxy, a
    process.

    Args:
        endpoint: The connection to run TLS over.
        server_hostname: The name the server's certificate must carry (also
            sent as SNI); an IP address is checked against the
            certificate's IP addresses.
        context: The TLS settings; ``client_context()`` (the system's trust
            store, TLS 1.2 or later) if None.
        handshake_timeout: Seconds the handshake may take (asyncio's default,
            60, if None).
    """
    if context is None:
        context = client_context()
    return TLSClientEndpoint(
        endpoint, context, server_hostname=server_hostname, handshake_timeout=handshake_timeout
    )


class _AdoptsSockets(Protocol):
    def listen_socket(
        self, sock: socket.socket, factory: ProtocolFactory, *, backlog: int = 100
    ) -> ListeningPort: ...


def listen_fds(environ: dict[str, str] | None = None) -> dict[str, list[int]]:
    """Return the sockets systemd passed this process, by name (sd_listen_fds(3)).

    Args:
        environ: The environment to read (``os.environ`` by default).

    Returns:
        A map from each name in ``LISTEN_FDNAMES`` (``"unknown"`` where none
        was given) to its file descriptors, in order; empty if the sockets
        were not meant for this process (``LISTEN_PID`` is another's).
    """
    env = os.environ if environ is None else environ
    try:
        count = int(env.get("LISTEN_FDS", "0"))
        pid = int(env.get("LISTEN_PID", "0"))
    except ValueError:
        return {}
    if count <= 0 or pid != os.getpid():
        return {}
    names = env.get("LISTEN_FDNAMES", "").split(":") if env.get("LISTEN_FDNAMES") else []
    by_name: dict[str, list[int]] = {}
    for i in range(count):
        name = names[i] if i < len(names) and names[i] else "unknown"
        by_name.setdefault(name, []).append(_SD_LISTEN_FDS_START + i)
    return by_name


class SystemdEndpoint:
    """Serves a listening socket that systemd opened (socket activation).

    Args:
        reactor: Serves the socket.
        index: Which passed socket, counting from 0 across all of them.
        name: Or which name (``FileDescriptorName=`` in the .socket unit),
            taking its first socket.
        environ: The environment to read (``os.environ`` by default).
    """

    def __init__(
        self,
        reactor: _AdoptsSockets,
        *,
        index: int | None = None,
        name: str | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        if (index is None) == (name is None):
            raise ValueError("SystemdEndpoint needs an index or a name (one of them)")
        self._reactor = reactor
        self.index = index
        self.name = name
        self._environ = environ

    def _fd(self) -> int:
        by_name = listen_fds(self._environ)
        if not by_name:
            raise OSError("no sockets were passed by systemd (LISTEN_FDS/LISTEN_PID unset)")
        if self.name is not None:
            if self.name not in by_name:
                known = ", ".join(sorted(by_name))
                raise OSError(f"systemd passed no socket named {self.name!r} (only: {known})")
            return by_name[self.name][0]
        fds = sorted(fd for fds in by_name.values() for fd in fds)
        assert self.index is not None
        if not 0 <= self.index < len(fds):
            raise OSError(f"systemd passed {len(fds)} socket(s); there is no index {self.index}")
        return fds[self.index]

    def listen(self, factory: ProtocolFactory) -> Deferred[ListeningPort]:
        """Serve the passed socket; fails with OSError if there is none such."""
        try:
            sock = socket.socket(fileno=os.dup(self._fd()))
            if sock.type != socket.SOCK_STREAM:
                sock.close()
                raise OSError("the systemd socket is not a stream socket")
            sock.setblocking(False)
            port = self._reactor.listen_socket(sock, factory)
        except Exception as exc:
            return fail(exc)
        return succeed(port)

    def __repr__(self) -> str:
        which = f"name={self.name}" if self.name is not None else f"index={self.index}"
        return f"<SystemdEndpoint {which}>"

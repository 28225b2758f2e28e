"""What ``MemoryReactor`` records for stream sockets: TCP, TLS and Unix.

Each ``listen_*`` call is kept as a server record holding the factory and a
listener that listens on nothing; the test plays an incoming connection with
``accept()``. Each ``connect_*`` call is kept as a client record holding the
``Connector`` the caller got; the test plays the outcome with ``connect()``
or ``fail()``. The three kinds share their behaviour through two private
bases, ``_ServerCall`` and ``_ClientCall``: they differ only in what they
were asked for and in the addresses a connection reports.

Nothing here handshakes: a TLS record's ``connect()`` and ``accept()`` stand
for a handshake that succeeded (the real reactor calls the factory only
then), and a failed one is played with ``fail(ssl.SSLError(...))``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torsion.defer import Deferred, succeed
from torsion.internet import (
    Address,
    Connector,
    IPv4Address,
    IPv6Address,
    ProtocolFactory,
    ServerTLS,
    UNIXAddress,
    to_sockaddr,
)
from torsion.internet._address import ip_endpoint
from torsion.testing._string_transport import StringTransport

__all__ = [
    "MemoryListener",
    "MemoryUNIXListener",
    "TCPClientCall",
    "TCPServerCall",
    "TLSClientCall",
    "TLSServerCall",
    "UNIXClientCall",
    "UNIXServerCall",
    "unix_address",
]

# Where the made-up peers of accepted IP connections come from (TEST-NET-1,
# RFC 5737).
_DEFAULT_PEER = IPv4Address("192.0.2.2", 54321)

# A connecting Unix client rarely binds a name: the server sees it unnamed.
_UNNAMED = UNIXAddress(None)


def unix_address(path: str) -> UNIXAddress:
    r"""The address of a Unix socket at ``path``, as the system reports it.

    An abstract name ("\0name") comes back as bytes, as ``socket.getsockname``
    gives it; "" is an unnamed socket.
    """
    if path.startswith("\0"):
        return UNIXAddress(path.encode())
    return UNIXAddress(path or None)


# -- listeners -----------------------------------------------------------------------


class _MemoryPort:
    """A port that listens on nothing: ``stop_listening`` only records the call."""

    def __init__(self) -> None:
        self.listening = True

    def stop_listening(self) -> Deferred[None]:
        """Stop "listening"; the Deferred has already fired."""
        self.listening = False
        return succeed(None)

    def _state(self) -> str:
        return "listening" if self.listening else "stopped"


class MemoryListener(_MemoryPort):
    """What ``listen_tcp`` and ``listen_tls`` return: a port that listens on nothing.

    Attributes:
        interface: The interface asked for ("" means every one).
        host: The address "bound" to.
        port: The port "bound" to (a made-up one if 0 was asked for).
        listening: Whether ``stop_listening`` has not been called.
    """

    def __init__(self, interface: str, port: int) -> None:
        super().__init__()
        self.interface = interface
        self.host = interface or "0.0.0.0"
        self.port = port

    @property
    def address(self) -> IPv4Address | IPv6Address:
        """The address "bound" to, typed."""
        return ip_endpoint(self.host, self.port)

    def __repr__(self) -> str:
        return f"<MemoryListener {self._state()} on {self.host}:{self.port}>"


class MemoryUNIXListener(_MemoryPort):
    r"""What ``listen_unix`` returns: a Unix socket path that nothing listens on.

    No file is made or removed.

    Attributes:
        path: The path asked for (a str; "\0name" for an abstract name).
        mode: The file mode asked for.
        listening: Whether ``stop_listening`` has not been called.
    """

    def __init__(self, path: str, mode: int) -> None:
        super().__init__()
        self.path = path
        self.mode = mode

    @property
    def address(self) -> UNIXAddress:
        """The address "bound" to (bytes for an abstract name, as the system says)."""
        return unix_address(self.path)

    def __repr__(self) -> str:
        return f"<MemoryUNIXListener {self._state()} on {self.address}>"


# -- servers -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _ServerCall:
    """What every recorded ``listen_*`` call has, and how it accepts a connection."""

    factory: ProtocolFactory
    backlog: int

    def accept(
        self, transport: asyncio.Transport | None = None, *, peer: Address | None = None
    ) -> asyncio.BaseProtocol | None:
        """Play an incoming connection from ``peer``, as the real reactor would.

        Args:
            transport: The connection's transport; a new ``StringTransport``
                with ``peer`` as its peer address if omitted.
            peer: The address the factory is called with: by default
                192.0.2.2:54321 for TCP and TLS, an unnamed socket for Unix.

        Returns:
            The protocol, already given ``connection_made``; or None if the
            factory refused the connection (the transport is then closed).
        """
        if peer is None:
            peer = self._default_peer()
        if transport is None:
            transport = StringTransport(peer=to_sockaddr(peer), host=self._sockname())
        protocol = self.factory(peer)
        if protocol is None:
            transport.close()
            return None
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return protocol

    def _default_peer(self) -> Address:
        return _DEFAULT_PEER

    def _sockname(self) -> Any:
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class TCPServerCall(_ServerCall):
    """One recorded ``listen_tcp`` call.

    Attributes:
        port: The port asked for (0 for any).
        factory: The protocol factory given.
        interface: The interface asked for ("" for all).
        backlog: The listen backlog asked for.
        listener: What the call returned.
        reuse_port: Whether SO_REUSEPORT was asked for.
        keepalive: Whether TCP keepalive was asked for.
    """

    port: int
    interface: str
    listener: MemoryListener
    reuse_port: bool = False
    keepalive: bool = False

    def _sockname(self) -> Any:
        return (self.listener.host, self.listener.port)


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSServerCall(_ServerCall):
    """One recorded ``listen_tls`` call; ``accept()`` plays a finished handshake.

    Attributes:
        port: The port asked for (0 for any).
        factory: The protocol factory given.
        context: The TLS settings given (a ``ServerTLS`` or an ``SSLContext``).
        interface: The interface asked for ("" for all).
        backlog: The listen backlog asked for.
        handshake_timeout: The handshake timeout asked for.
        listener: What the call returned.
        reuse_port: Whether SO_REUSEPORT was asked for.
        keepalive: Whether TCP keepalive was asked for.
    """

    port: int
    context: ssl.SSLContext | ServerTLS
    interface: str
    handshake_timeout: float | None
    listener: MemoryListener
    reuse_port: bool = False
    keepalive: bool = False

    def _sockname(self) -> Any:
        return (self.listener.host, self.listener.port)


@dataclass(frozen=True, slots=True, kw_only=True)
class UNIXServerCall(_ServerCall):
    r"""One recorded ``listen_unix`` call.

    Attributes:
        path: The socket path asked for, as a str ("\0name" for an abstract name).
        factory: The protocol factory given.
        mode: The file mode asked for.
        backlog: The listen backlog asked for.
        pass_fds: Whether descriptor passing was asked for.
        listener: What the call returned.
    """

    path: str
    mode: int
    pass_fds: bool
    listener: MemoryUNIXListener

    def _default_peer(self) -> Address:
        return _UNNAMED

    def _sockname(self) -> Any:
        return to_sockaddr(self.listener.address)


# -- clients -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _ClientCall:
    """What every recorded ``connect_*`` call has, and how its outcome is played."""

    factory: Callable[[Address], Any]
    timeout: float | None
    connector: Connector[Any]
    attempt: Deferred[tuple[asyncio.BaseTransport, Any]]

    def connect(self, transport: asyncio.Transport | None = None) -> Any:
        """Play a successful connection, as the real reactor would.

        The factory is called with the server's address, the protocol gets
        ``connection_made(transport)``, and the caller's connector fires with it.

        Args:
            transport: The connection's transport; a new ``StringTransport``
                whose peer is the address connected to if omitted.

        Returns:
            The protocol.

        Raises:
            RuntimeError: The attempt already ended (the caller cancelled it,
                or the test played it before).
        """
        if self.attempt.called:
            raise RuntimeError(f"the attempt to connect to {self._where()} already ended")
        address = self._server_address()
        if transport is None:
            transport = StringTransport(peer=to_sockaddr(address), host=self._client_sockname())
        protocol = self.factory(address)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        self.attempt.callback((transport, protocol))
        return protocol

    def fail(self, exc: BaseException | None = None) -> None:
        """Play a failed connection attempt (``ConnectionRefusedError`` by default).

        Ignored once the attempt has ended (the caller cancelled it, or the
        test played it before).
        """
        if exc is None:
            exc = ConnectionRefusedError(f"connection to {self._where()} refused")
        if not self.attempt.called:
            self.attempt.errback(exc)

    def _where(self) -> str:
        raise NotImplementedError

    def _server_address(self) -> Address:
        raise NotImplementedError

    def _client_sockname(self) -> Any:
        return ("192.0.2.1", 12345)


@dataclass(frozen=True, slots=True, kw_only=True)
class _IPClientCall(_ClientCall):
    """What ``connect_tcp`` and ``connect_tls`` records share."""

    host: str
    port: int
    bind_address: tuple[str, int] | None = None
    keepalive: bool = False

    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def _server_address(self) -> Address:
        return ip_endpoint(self.host, self.port)


@dataclass(frozen=True, slots=True, kw_only=True)
class TCPClientCall(_IPClientCall):
    """One recorded ``connect_tcp`` call, and the connector the caller got.

    Attributes:
        host: The host asked for.
        port: The port asked for.
        factory: The protocol factory given.
        timeout: The connect timeout asked for.
        connector: What ``connect_tcp`` returned; the test makes it connect or
            fail with ``connect``/``fail``.
        attempt: The Deferred behind the connector, which those fire.
        bind_address: The local address asked for, if any.
        keepalive: Whether TCP keepalive was asked for.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSClientCall(_IPClientCall):
    """One recorded ``connect_tls`` call; ``connect()`` plays a finished handshake.

    Attributes:
        host: The host asked for.
        port: The port asked for.
        factory: The protocol factory given.
        context: The TLS settings given (None: the reactor's default client
            settings).
        server_hostname: The name the certificate must carry, if given
            (None: ``host``).
        timeout: The connect timeout asked for.
        connector: What ``connect_tls`` returned; the test makes it connect or
            fail (``fail(ssl.SSLCertVerificationError(...))`` for a bad
            certificate) with ``connect``/``fail``.
        attempt: The Deferred behind the connector, which those fire.
        bind_address: The local address asked for, if any.
        keepalive: Whether TCP keepalive was asked for.
    """

    context: ssl.SSLContext | None = None
    server_hostname: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UNIXClientCall(_ClientCall):
    r"""One recorded ``connect_unix`` call, and the connector the caller got.

    Attributes:
        path: The socket path asked for, as a str ("\0name" for an abstract name).
        factory: The protocol factory given; ``connect()`` calls it with the
            server's ``UNIXAddress``.
        timeout: The connect timeout asked for.
        connector: What ``connect_unix`` returned; the test makes it connect
            or fail with ``connect``/``fail``.
        attempt: The Deferred behind the connector, which those fire.
        pass_fds: Whether descriptor passing was asked for.
    """

    path: str
    pass_fds: bool = False

    def _where(self) -> str:
        return str(unix_address(self.path))

    def _server_address(self) -> Address:
        return unix_address(self.path)

    def _client_sockname(self) -> Any:
        return ""  # an unnamed client socket, as the system reports it

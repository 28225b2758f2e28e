"""``MemoryReactor``: a reactor that records what it is asked and does nothing.

Code under test calls ``listen_tcp`` or ``connect_tcp`` on it as on the real
reactor; the test then finds the call in ``tcp_servers`` / ``tcp_clients``
and plays the network by hand, for example building a protocol with the
recorded factory and connecting it to a ``StringTransport``::

    reactor = MemoryReactor()
    start_server(reactor)                      # calls reactor.listen_tcp(25, factory)
    server = reactor.tcp_servers[0]
    protocol = server.factory(("192.0.2.2", 54321))
    protocol.connection_made(StringTransport())

Time is a fake ``Clock`` (``reactor.clock``), moved with ``advance``.
This is a skeleton: UDP, Unix sockets, TLS and the rest arrive with the
transports that need them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from torsion.defer import Deferred, fail, succeed
from torsion.errors import DNSLookupError
from torsion.internet import (
    Address,
    Connector,
    DelayedCall,
    IPv4Address,
    IPv6Address,
    ProtocolFactory,
    is_ip_address,
    to_address,
    to_sockaddr,
)
from torsion.internet._address import ip_endpoint
from torsion.testing._clock import Clock

if TYPE_CHECKING:
    from torsion.internet import Clock as ClockInterface
    from torsion.internet import ReactorTCP, Resolver
from torsion.testing._string_transport import StringTransport

__all__ = ["MemoryListener", "MemoryReactor", "TCPClientCall", "TCPServerCall"]

P = TypeVar("P", bound=asyncio.BaseProtocol)

# Ports handed out for port 0, from the IANA dynamic range.
_FIRST_EPHEMERAL_PORT = 49152

# Where the made-up peers of accepted connections come from (TEST-NET-1).
_DEFAULT_PEER = IPv4Address("192.0.2.2", 54321)


class MemoryListener:
    """What ``MemoryReactor.listen_tcp`` returns: a port that listens on nothing.

    Attributes:
        interface: The interface asked for ("" means every one).
        host: The address "bound" to.
        port: The port "bound" to (a made-up one if 0 was asked for).
        listening: Whether ``stop_listening`` has not been called.
    """

    def __init__(self, interface: str, port: int) -> None:
        self.interface = interface
        self.host = interface or "0.0.0.0"
        self.port = port
        self.listening = True

    @property
    def address(self) -> IPv4Address | IPv6Address:
        """The address "bound" to, typed."""
        return ip_endpoint(self.host, self.port)

    def stop_listening(self) -> Deferred[None]:
        """Stop "listening"; the Deferred has already fired."""
        self.listening = False
        return succeed(None)

    def __repr__(self) -> str:
        state = "listening" if self.listening else "stopped"
        return f"<MemoryListener {state} on {self.host}:{self.port}>"


@dataclass(frozen=True, slots=True, kw_only=True)
class TCPServerCall:
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
    factory: ProtocolFactory
    interface: str
    backlog: int
    listener: MemoryListener
    reuse_port: bool = False
    keepalive: bool = False

    def accept(
        self, transport: asyncio.Transport | None = None, *, peer: Address = _DEFAULT_PEER
    ) -> asyncio.BaseProtocol | None:
        """Play an incoming connection from ``peer``, as the real reactor would.

        Args:
            transport: The connection's transport; a new ``StringTransport``
                with ``peer`` as its peer address if omitted.
            peer: The address the factory is called with.

        Returns:
            The protocol, already given ``connection_made``; or None if the
            factory refused the connection (the transport is then closed).
        """
        if transport is None:
            transport = StringTransport(
                peer=to_sockaddr(peer), host=(self.listener.host, self.listener.port)
            )
        protocol = self.factory(peer)
        if protocol is None:
            transport.close()
            return None
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class TCPClientCall:
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

    host: str
    port: int
    factory: Callable[[Address], Any]
    timeout: float | None
    connector: Connector[Any]
    attempt: Deferred[tuple[asyncio.BaseTransport, Any]]
    bind_address: tuple[str, int] | None = None
    keepalive: bool = False

    def connect(self, transport: asyncio.Transport | None = None) -> Any:
        """Play a successful connection, as the real reactor would.

        The factory is called with the server's address, the protocol gets
        ``connection_made(transport)``, and the caller's connector fires with it.

        Args:
            transport: The connection's transport; a new ``StringTransport``
                whose peer is ``host:port`` if omitted.

        Returns:
            The protocol.

        Raises:
            RuntimeError: The attempt already ended (the caller cancelled it,
                or the test played it before).
        """
        if self.attempt.called:
            raise RuntimeError(f"the attempt to connect to {self.host}:{self.port} already ended")
        address = to_address((self.host, self.port))
        if transport is None:
            transport = StringTransport(peer=to_sockaddr(address))
        protocol = self.factory(address)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        self.attempt.callback((transport, protocol))
        return protocol

    def fail(self, exc: BaseException | None = None) -> None:
        """Play a failed connection attempt (``ConnectionRefusedError`` by default)."""
        if exc is None:
            exc = ConnectionRefusedError(f"connection to {self.host}:{self.port} refused")
        if not self.attempt.called:  # else the caller cancelled it
            self.attempt.errback(exc)


@dataclass(eq=False)
class MemoryReactor:
    """A reactor for tests: records listen/connect calls, keeps fake time.

    Attributes:
        clock: The fake clock behind ``seconds`` and ``call_later``.
        tcp_servers: Every ``listen_tcp`` call, in order.
        tcp_clients: Every ``connect_tcp`` call, in order.
        hosts: Names ``resolve``/``resolve_all`` know, with their addresses;
            other names fail with ``DNSLookupError``, IP addresses resolve
            to themselves.
        lookups: Every name asked for, in order.
    """

    clock: Clock = field(default_factory=Clock)
    tcp_servers: list[TCPServerCall] = field(default_factory=list)
    tcp_clients: list[TCPClientCall] = field(default_factory=list)
    hosts: dict[str, list[str]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)
    _next_port: int = field(default=_FIRST_EPHEMERAL_PORT, repr=False)

    # Time, through the fake clock.

    def seconds(self) -> float:
        """Return the fake clock's time."""
        return self.clock.seconds()

    def call_later(self, delay: float, f: Callable[..., object], /, *args: Any) -> DelayedCall:
        """Schedule ``f(*args)`` on the fake clock."""
        return self.clock.call_later(delay, f, *args)

    def advance(self, amount: float) -> None:
        """Move the fake clock forward, running what falls due."""
        self.clock.advance(amount)

    def pump(self, timings: Iterable[float]) -> None:
        """Advance the fake clock by each amount in turn."""
        self.clock.pump(timings)

    def get_delayed_calls(self) -> list[DelayedCall]:
        """Return the calls pending on the fake clock, soonest first."""
        return self.clock.get_delayed_calls()

    # Names, from ``hosts``.

    def resolve_all(self, host: str) -> Deferred[list[str]]:
        """Return (already fired) every address ``hosts`` has for ``host``."""
        self.lookups.append(host)
        if is_ip_address(host):
            return succeed([host])
        addresses = self.hosts.get(host)
        if not addresses:
            return fail(DNSLookupError(host))
        return succeed(list(addresses))

    def resolve(self, host: str) -> Deferred[str]:
        """Return (already fired) the first address ``hosts`` has for ``host``."""
        return self.resolve_all(host).add_callback(lambda addresses: addresses[0])

    # TCP, recorded.

    def listen_tcp(
        self,
        port: int,
        factory: ProtocolFactory,
        *,
        interface: str = "",
        backlog: int = 100,
        reuse_port: bool = False,
        keepalive: bool = False,
    ) -> MemoryListener:
        """Record a request to listen; nothing listens.

        Returns:
            A listener; port 0 is replaced by a made-up port.
        """
        actual = port
        if port == 0:
            actual = self._next_port
            self._next_port += 1
        listener = MemoryListener(interface, actual)
        self.tcp_servers.append(
            TCPServerCall(
                port=port,
                factory=factory,
                interface=interface,
                backlog=backlog,
                listener=listener,
                reuse_port=reuse_port,
                keepalive=keepalive,
            )
        )
        return listener

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
        """Record a request to connect; nothing connects until the test says so.

        Returns:
            A connector that connects (or fails) when the test calls
            ``connect`` (or ``fail``) on the record appended to ``tcp_clients``.
        """
        attempt: Deferred[tuple[asyncio.BaseTransport, P]] = Deferred()
        connector = Connector(attempt, f"{host}:{port}")
        self.tcp_clients.append(
            TCPClientCall(
                host=host,
                port=port,
                factory=factory,
                timeout=timeout,
                connector=connector,
                attempt=attempt,
                bind_address=bind_address,
                keepalive=keepalive,
            )
        )
        return connector


if TYPE_CHECKING:
    # Checked by mypy: the fake stands in for the real reactor's interfaces.
    def _provides(reactor: MemoryReactor) -> tuple[ClockInterface, ReactorTCP, Resolver]:
        return (reactor, reactor, reactor)

"""Serving a port as a service: ``StreamServerEndpointService`` and ``DatagramService``.

``StreamServerEndpointService`` listens on a server endpoint (TCP, TLS, a
Unix socket, a socket systemd passed) with a protocol factory. It binds in
its privileged start, so that a port below 1024 is bound while the process
is still root, and it stops gracefully: it stops accepting at once, lets
the connections it has finish by themselves, and closes whatever is left
when told to hurry (its stop is cancelled, as the runner does when the
shutdown deadline passes). A protocol that wants to hear that a shutdown
began (to close an idle keep-alive connection now, or a busy one after its
reply) has a ``stop_gracefully()`` method (see ``GracefulProtocol``).

On reload (SIGHUP), a TLS endpoint's ``ServerTLS`` reads its certificate
and key files again; connections already up keep what they had.

``DatagramService`` serves a UDP port with one datagram protocol.
"""

from __future__ import annotations

import asyncio
import logging
import typing
from collections.abc import Callable

from torsion.defer import CancelledError, Deferred, ensure_deferred, succeed
from torsion.internet import (
    Address,
    ListeningPort,
    ProtocolFactory,
    ProtocolWrapper,
    ReactorUDP,
    ServerEndpoint,
    ServerTLS,
    UDPListeningPort,
)

__all__ = ["DatagramService", "GracefulProtocol", "StreamServerEndpointService"]

_log = logging.getLogger(__name__)


@typing.runtime_checkable
class GracefulProtocol(typing.Protocol):
    """A protocol that can finish its connection early when a shutdown begins."""

    def stop_gracefully(self) -> None:
        """A graceful shutdown began: finish the work in hand, then close.

        Called once per connection. Closing is up to the protocol; a
        connection still open at the deadline is closed anyway.
        """
        ...


class _Connections:
    """The connections a factory's protocols serve, and waiting for them to end."""

    def __init__(self) -> None:
        self.live: dict[int, tuple[asyncio.BaseProtocol, asyncio.BaseTransport]] = {}
        self._numbers = 0
        self._idle: list[Deferred[None]] = []

    def wrap(self, factory: ProtocolFactory) -> ProtocolFactory:
        def tracked(address: Address) -> asyncio.BaseProtocol | None:
            protocol = factory(address)
            if protocol is None:
                return None
            return self._watch(protocol)

        return tracked

    def _watch(self, protocol: asyncio.BaseProtocol) -> asyncio.BaseProtocol:
        self._numbers += 1
        number = self._numbers
        made, lost = protocol.connection_made, protocol.connection_lost

        def connection_made(transport: asyncio.BaseTransport) -> None:
            self.live[number] = (protocol, transport)
            made(transport)

        def connection_lost(exc: Exception | None) -> None:
            try:
                lost(exc)
            finally:
                self._ended(number)

        try:
            # Only this instance's methods are wrapped (as Factory does), so
            # the transport still calls the protocol with nothing between.
            protocol.connection_made = connection_made  # type: ignore[method-assign]
            protocol.connection_lost = connection_lost  # type: ignore[method-assign]
        except AttributeError:
            # A protocol with __slots__: watch it from a wrapper instead.
            return _Watcher(protocol, self, number)
        return protocol

    def _ended(self, number: int) -> None:
        self.live.pop(number, None)
        if not self.live:
            waiters, self._idle = self._idle, []
            for d in waiters:
                d.callback(None)

    def idle(self) -> Deferred[None]:
        """A Deferred that fires once no connection is left."""
        if not self.live:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        return d

    def ask_to_finish(self) -> None:
        for protocol, _ in list(self.live.values()):
            if isinstance(protocol, GracefulProtocol):
                try:
                    protocol.stop_gracefully()
                except Exception:
                    _log.exception("stop_gracefully() of %r failed", protocol)

    def abort_all(self) -> None:
        for _, transport in list(self.live.values()):
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()
            else:
                transport.close()


class _Watcher(ProtocolWrapper):
    """Stands between the transport and a protocol whose methods cannot be wrapped."""

    def __init__(
        self, wrapped: asyncio.BaseProtocol, connections: _Connections, number: int
    ) -> None:
        super().__init__(wrapped)
        self._connections = connections
        self._number = number

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._connections.live[self._number] = (self.wrapped, transport)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self._connections._ended(self._number)


Announce = Callable[[Address], str | None]
"""Makes the hint added to the "listening on" log line (``nc 127.0.0.1 7``)."""


class StreamServerEndpointService:
    """Listens on ``endpoint`` with ``factory`` while it runs.

    Args:
        endpoint: Where to listen (see ``torsion.internet.server_from_string``).
        factory: Makes the protocol for each connection.
        description: What is served, for the log lines ("echo service").
        hint: Given the bound address, returns how to try the service, added
            to the "listening on" log line.

    Attributes:
        endpoint, factory, description: As given.
        port: The listening port, once bound.
    """

    def __init__(
        self,
        endpoint: ServerEndpoint,
        factory: ProtocolFactory,
        *,
        description: str | None = None,
        hint: Announce | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.description = description or repr(factory)
        self._hint = hint
        self.port: ListeningPort | None = None
        self.running = False
        self._connections = _Connections()
        self._listening: Deferred[ListeningPort] | None = None
        self._waiters: list[Deferred[None]] = []

    @property
    def connections(self) -> int:
        """How many connections are open now."""
        return len(self._connections.live)

    def privileged_start_service(self) -> Deferred[None]:
        """Bind and listen now (the process may still be root)."""
        return self._listen()

    def start_service(self) -> Deferred[None]:
        """Listen, unless the privileged start did already."""
        self.running = True
        return self._listen()

    def _listen(self) -> Deferred[None]:
        if self.port is not None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        if self._listening is None:
            attempt = self.endpoint.listen(self._connections.wrap(self.factory))
            self._listening = attempt
            attempt.add_callbacks(self._listened, self._listen_failed)
        return d

    def _listened(self, port: ListeningPort) -> None:
        self._listening = None
        self.port = port
        hint = self._hint(port.address) if self._hint is not None else None
        if hint:
            _log.info("%s listening on %s; try: %s", self.description, port.address, hint)
        else:
            _log.info("%s listening on %s", self.description, port.address)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def _listen_failed(self, exc: BaseException) -> None:
        self._listening = None
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(exc)

    def stop_service(self) -> Deferred[None]:
        """Stop accepting at once, then wait for the open connections to end.

        Protocols with ``stop_gracefully()`` are asked to finish. Cancelling
        the returned Deferred closes the connections still open (abortively).
        """
        self.running = False
        listening, self._listening = self._listening, None
        port, self.port = self.port, None
        if listening is not None:
            listening.cancel()
        if port is None:
            return succeed(None)
        done: Deferred[None] = Deferred(lambda _: self._hurry())

        def finished(result: object) -> None:
            if done.called:
                return
            if isinstance(result, BaseException) and not isinstance(result, CancelledError):
                done.errback(result)
            else:
                done.callback(None)

        ensure_deferred(self._stop(port)).add_both(finished)
        return done

    async def _stop(self, port: ListeningPort) -> None:
        await port.stop_listening()
        connections = self._connections
        if connections.live:
            _log.info(
                "%s: waiting for %d connection(s) to finish",
                self.description,
                len(connections.live),
            )
            connections.ask_to_finish()
        await connections.idle()

    def _hurry(self) -> None:
        live = len(self._connections.live)
        if live:
            _log.warning("%s: closing %d connection(s) still open", self.description, live)
        self._connections.abort_all()

    def reload_service(self) -> None:
        """Read the TLS certificate and key files again, for a TLS endpoint."""
        tls = getattr(self.endpoint, "tls", None)
        if isinstance(tls, ServerTLS):
            tls.reload()
            _log.info("%s: TLS certificates reloaded", self.description)

    def __repr__(self) -> str:
        return f"<StreamServerEndpointService {self.description} on {self.endpoint!r}>"


class DatagramService:
    """Serves a UDP port with ``protocol`` while it runs.

    Args:
        reactor: Binds the port.
        port: The port number (0 lets the system choose).
        protocol: Receives the datagrams.
        interface: The address to bind ("" for every IPv4 interface).
        description: What is served, for the log lines.

    Attributes:
        udp_port: The bound port, while it runs.
    """

    def __init__(
        self,
        reactor: ReactorUDP,
        port: int,
        protocol: asyncio.DatagramProtocol,
        *,
        interface: str = "",
        description: str | None = None,
    ) -> None:
        self._reactor = reactor
        self.port = port
        self.protocol = protocol
        self.interface = interface
        self.description = description or repr(protocol)
        self.udp_port: UDPListeningPort | None = None
        self.running = False

    def privileged_start_service(self) -> None:
        """Bind now (the process may still be root)."""
        if self.udp_port is None:
            udp_port = self._reactor.listen_udp(self.port, self.protocol, interface=self.interface)
            self.udp_port = udp_port
            _log.info("%s listening on UDP %s", self.description, udp_port.address)

    def start_service(self) -> None:
        """Bind, unless the privileged start did already."""
        self.running = True
        self.privileged_start_service()

    def stop_service(self) -> Deferred[None]:
        """Close the port."""
        self.running = False
        udp_port, self.udp_port = self.udp_port, None
        if udp_port is None:
            return succeed(None)
        return udp_port.stop_listening()

    def __repr__(self) -> str:
        return f"<DatagramService {self.description} on UDP {self.interface}:{self.port}>"

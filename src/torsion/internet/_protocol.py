"""The protocol base class: what reacts to a connection's events.

torsion uses asyncio's transport/protocol contract unchanged, so a protocol
runs over any asyncio transport (TCP, TLS, Unix sockets, the in-memory test
transports) and the transport calls it with nothing in between. The call
order, for one connection::

    connection_made [-> data_received*] [-> eof_received] -> connection_lost

with ``pause_writing`` / ``resume_writing`` in between whenever the
transport's write buffer crosses its high / low water marks.

A protocol is also the consumer side of flow control: whatever feeds its
connection (a file being streamed, another connection being forwarded) can
register as a ``Producer`` and is then paused and resumed with the write
buffer, and stopped when the connection is lost.

A factory is any callable that takes the peer's address and returns a new
protocol for that connection; ``Factory`` adds start/stop hooks and a count
of live connections for those who want them.
"""

from __future__ import annotations

import asyncio
import ssl
import typing
from collections.abc import Callable
from typing import Generic, TypeAlias, TypeVar, cast

from torsion.defer import Deferred, fail, succeed
from torsion.internet._address import Address, to_address
from torsion.internet._wrapping import HeldWrites, TransportWrapper

__all__ = ["Factory", "Producer", "Protocol", "ProtocolFactory"]

P = TypeVar("P", bound=asyncio.BaseProtocol)


class Producer(typing.Protocol):
    """What feeds a connection and can be held back while it is full.

    Register one with ``Protocol.register_producer``. Its methods are then
    called in this order::

        [pause_producing -> resume_producing]* [-> stop_producing]

    ``pause_producing`` and ``resume_producing`` alternate, starting with a
    pause; ``stop_producing`` comes at most once, when the connection is lost
    while the producer is registered, and nothing follows it.
    """

    def pause_producing(self) -> None:
        """Stop writing for now: the connection's write buffer is full."""
        ...

    def resume_producing(self) -> None:
        """Write again: the connection's write buffer has drained."""
        ...

    def stop_producing(self) -> None:
        """Stop for good: the connection is gone and takes no more writes."""
        ...


class Protocol(asyncio.Protocol):
    """Base class for protocols: override the events you care about.

    When overriding ``connection_made``, ``pause_writing``,
    ``resume_writing`` or ``connection_lost``, call the base method too:
    ``transport``, ``drained()`` and the registered producers depend on them.

    ``pause_writing`` and ``resume_writing`` may come unpaired: asyncio's own
    ``loop.sendfile`` fallback puts a protocol of its own on the transport
    while it sends and hands the transport back with a ``resume_writing``
    that need not match the buffer, so a later one can follow. The base
    class takes each call as the state of the buffer, not as an event to
    count, and tells producers only of changes.

    Attributes:
        transport: The connection's transport, set by ``connection_made``;
            write to it with ``self.transport.write(data)``.
    """

    transport: asyncio.Transport
    # Class-level defaults, so that subclasses need not call __init__.
    _writing_paused = False
    _lost = False
    _drain_waiters: list[Deferred[None]] | None = None
    _producers: tuple[Producer, ...] = ()

    @property
    def peer(self) -> Address:
        """The address of the other end of the connection."""
        return to_address(self.transport.get_extra_info("peername"))

    @property
    def host(self) -> Address:
        """The address of this end of the connection."""
        return to_address(self.transport.get_extra_info("sockname"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Called once, when the connection is up; keeps ``transport``."""
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Called with each chunk of bytes as it arrives (any size, any split)."""

    def eof_received(self) -> bool | None:
        """Called when the peer closed its side for writing.

        Returns:
            True to keep our side open (to finish writing), or None/False to
            have the transport close the connection.
        """
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Called once, last, when the connection is closed.

        Args:
            exc: None for a clean close, or the error that broke it.
        """
        self._lost = True
        producers, self._producers = self._producers, ()
        for producer in producers:
            producer.stop_producing()
        self._wake_drain_waiters(exc or ConnectionResetError("connection closed"))

    # -- backpressure ----------------------------------------------------------

    def pause_writing(self) -> None:
        """The transport's write buffer went above its high-water mark.

        Pauses the registered producers.
        """
        if self._writing_paused:
            return
        self._writing_paused = True
        for producer in self._producers:
            # One producer's pause may unregister another.
            if _holds(self._producers, producer):
                producer.pause_producing()

    def resume_writing(self) -> None:
        """The transport's write buffer drained below its low-water mark.

        Resumes the registered producers, then wakes ``drained()`` waiters.
        """
        if self._writing_paused:
            self._writing_paused = False
            for producer in self._producers:
                if _holds(self._producers, producer):
                    producer.resume_producing()
        self._wake_drain_waiters(None)

    def register_producer(self, producer: Producer) -> None:
        """Have ``producer`` follow this connection's write buffer.

        From now on it is paused while the buffer is above its high-water
        mark, resumed when it drains, and stopped when the connection is
        lost. Registered while the buffer is full, it is paused at once;
        registered after the connection was lost, it is stopped at once.

        Args:
            producer: What writes to this protocol's transport.

        Raises:
            ValueError: ``producer`` is already registered.
        """
        if _holds(self._producers, producer):
            raise ValueError(f"{producer!r} is already registered with {self!r}")
        if self._lost:
            producer.stop_producing()
            return
        self._producers = (*self._producers, producer)
        if self._writing_paused:
            producer.pause_producing()

    def unregister_producer(self, producer: Producer) -> None:
        """Stop telling ``producer`` about the write buffer (if it was registered)."""
        self._producers = tuple(p for p in self._producers if p is not producer)

    def drained(self) -> Deferred[None]:
        """Wait until the transport will take more writes.

        Returns:
            A Deferred (await it) that fires at once if the write buffer is
            below its high-water mark, else once it has drained below the low
            one. It fails with the connection's error, or
            ``ConnectionResetError``, if the connection is lost first.
        """
        if self._lost:
            return fail(ConnectionResetError("connection closed"))
        if not self._writing_paused:
            return succeed(None)
        d: Deferred[None] = Deferred()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(d)
        return d

    def _wake_drain_waiters(self, exc: BaseException | None) -> None:
        waiters = self._drain_waiters
        if not waiters:
            return
        self._drain_waiters = None
        for d in waiters:
            if exc is None:
                d.callback(None)
            else:
                d.errback(exc)

    # -- TLS -------------------------------------------------------------------

    def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        handshake_timeout: float | None = None,
    ) -> Deferred[None]:
        """Upgrade this connection to TLS in place (STARTTLS).

        Call it from the event loop's thread (from ``data_received``, say)
        once the plain-text exchange that precedes the upgrade is written:
        what was written before goes out in clear first. No data is delivered
        while the handshake runs; what the protocol writes meanwhile waits
        and goes out over TLS. Afterwards ``self.transport`` is the TLS
        transport and everything flows through it.

        Args:
            context: The TLS settings (certificates, verification, ALPN).
            server_side: True on the server end of the connection.
            server_hostname: For a client, the name to verify the server's
                certificate against and to send as SNI.
            handshake_timeout: Seconds the handshake may take (asyncio's
                default, 60, if None).

        Returns:
            A Deferred that fires with None once the handshake is done, or
            fails with its error (``ssl.SSLError``, ``TimeoutError``, ...),
            after which the connection is closed.
        """
        loop = asyncio.get_running_loop()
        plain = self.transport
        # Until the TLS transport exists, what the protocol writes is held:
        # the peer's first encrypted data may arrive before this resumes.
        held = HeldWrites(plain)
        self.transport = held

        async def upgrade() -> None:
            transport: asyncio.Transport | None
            try:
                if isinstance(plain, TransportWrapper):
                    # A policy or framing wrapper sits below: it upgrades the
                    # real transport and stays in the chain.
                    transport = await plain.start_tls(
                        context,
                        server_side=server_side,
                        server_hostname=server_hostname,
                        handshake_timeout=handshake_timeout,
                    )
                else:
                    transport = await loop.start_tls(
                        plain,
                        self,
                        context,
                        server_side=server_side,
                        server_hostname=server_hostname,
                        ssl_handshake_timeout=handshake_timeout,
                    )
                if transport is None:  # pragma: no cover - the loop closed meanwhile
                    raise ConnectionResetError("connection closed during the TLS handshake")
            except BaseException:
                held.drop()
                if self.transport is held:
                    self.transport = plain
                raise
            if self.transport is held:
                self.transport = transport
            held.release(transport)

        return Deferred.from_future(loop.create_task(upgrade()))


def _holds(producers: tuple[Producer, ...], producer: Producer) -> bool:
    # By identity: two producers that compare equal are still two producers.
    return any(p is producer for p in producers)


ProtocolFactory: TypeAlias = Callable[[Address], asyncio.BaseProtocol | None]
"""Builds the protocol for a new connection from the peer's address; a server
factory may return None to refuse the connection (it is closed at once)."""


class Factory(Generic[P]):
    """A protocol factory with start/stop hooks and a count of live connections.

    Call it with a peer's address, as a transport does, to get a protocol.
    Listening functions call ``start()`` when they begin listening with it and
    ``stop()`` when they stop; ``start_factory`` runs before the first start
    and ``stop_factory`` after the last stop, so one factory can serve several
    ports.

    Args:
        protocol: Makes a protocol: a class or any function of no arguments.
            Subclasses may instead override ``build_protocol``.

    Attributes:
        connections: How many of its protocols are connected now.
    """

    def __init__(self, protocol: Callable[[], P] | None = None) -> None:
        self._make = protocol
        self.connections = 0
        self._starts = 0

    def build_protocol(self, address: Address) -> P | None:
        """Return the protocol for a connection from ``address`` (None refuses it)."""
        if self._make is None:
            raise TypeError("Factory needs a protocol to make, or a build_protocol override")
        return self._make()

    def start_factory(self) -> None:
        """Called before the factory starts serving (or connecting)."""

    def stop_factory(self) -> None:
        """Called after the last port using the factory stopped."""

    def start(self) -> None:
        """Note one more user (a listening port); the first starts the factory."""
        if self._starts == 0:
            self.start_factory()
        self._starts += 1

    def stop(self) -> None:
        """Note one user fewer; the last stops the factory."""
        if self._starts == 0:
            raise RuntimeError(f"{self!r} was stopped more often than started")
        self._starts -= 1
        if self._starts == 0:
            self.stop_factory()

    def __call__(self, address: Address) -> P | None:
        protocol = self.build_protocol(address)
        if protocol is None:
            return None
        self.connections += 1
        lost = protocol.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            self.connections -= 1
            lost(exc)

        # The protocol stays its own; only this instance's method is wrapped.
        protocol.connection_lost = connection_lost  # type: ignore[method-assign]
        return protocol

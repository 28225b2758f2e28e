"""The DNS server's glue to its transports: UDP datagrams, and streams (TCP, TLS).

``DNSDatagramProtocol`` answers each datagram, checking first the client's
rate (``QueryRateLimiter``) and then the fast path; ``DNSStreamProtocol``
reads messages after their two-byte length (RFC 1035 section 4.2.2) on one
TCP or TLS connection, several pipelined, and writes each response as soon
as it is ready, in whatever order they come (RFC 7766 section 6.2.1.1,
RFC 7858 section 3.3), with an idle timeout and a bound on the queries in
flight. ``DNSStreamFactory`` makes one per connection, up to its bounds in
total and per client. They ask a ``Responder`` (a ``DNSServer``) for the
responses.

Callback order, as for every protocol: ``connection_made
[-> datagram_received* | string_received*] -> connection_lost``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from typing import Any, Protocol

from torsion.defer import CancelledError, Deferred
from torsion.internet import Address, Clock, DatagramProtocol, DelayedCall
from torsion.names._limits import QueryRateLimiter, is_exempt
from torsion.protocols import Int16StringReceiver, RefusalLog, client_key

__all__ = ["DNSDatagramProtocol", "DNSStreamFactory", "DNSStreamProtocol", "Responder"]

_log = logging.getLogger("torsion.names")


class Responder(Protocol):
    """What the protocols ask for the responses (a ``DNSServer``)."""

    def cached_response(self, wire: bytes, *, tcp: bool) -> bytes | None:
        """The response from the fast path, or None."""
        ...

    def respond(self, wire: bytes, client: str, *, tcp: bool) -> Deferred[list[bytes]]:
        """The response messages to one query; the Deferred does not fail."""
        ...


class DNSDatagramProtocol(DatagramProtocol):
    """Serves a ``DNSServer`` on a UDP port.

    Args:
        server: Makes the responses.
        max_in_flight: Drop queries while this many are being answered.
        limiter: Drops the queries of clients over their rate (None: no
            limit).
    """

    def __init__(
        self,
        server: Responder,
        *,
        max_in_flight: int = 1000,
        limiter: QueryRateLimiter | None = None,
    ) -> None:
        self._server = server
        self._max_in_flight = max_in_flight
        self._limiter = limiter
        self._in_flight: set[Deferred[list[bytes]]] = set()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """Answer one query (or drop it)."""
        if addr[1] == 0:
            return  # port 0 cannot be answered
        limiter = self._limiter
        if limiter is not None and not limiter.allow(addr[0]):
            return
        cached = self._server.cached_response(data, tcp=False)
        if cached is not None:
            # The fast path: no Deferred, nothing in flight.
            if not (self._lost or self._writing_paused or self.transport.is_closing()):
                self.transport.sendto(cached, addr)
            return
        if len(self._in_flight) >= self._max_in_flight:
            return  # past the bound, UDP's clients retry
        d = self._server.respond(data, addr[0], tcp=False)
        d.add_callback(lambda messages: self._send_all(messages, addr))
        d.add_errback(_swallow_cancel)
        if not d.called:
            self._in_flight.add(d)
            d.add_both(lambda _: self._in_flight.discard(d))

    def _send_all(self, messages: list[bytes], addr: Any) -> None:
        # While the kernel's buffer is full, drop: UDP clients retry.
        if self._lost or self._writing_paused or self.transport.is_closing():
            return
        for message in messages:
            self.transport.sendto(message, addr)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the queries still being answered."""
        super().connection_lost(exc)
        for d in list(self._in_flight):
            d.cancel()


def _swallow_cancel(error: BaseException) -> None:
    if not isinstance(error, CancelledError):
        _log.error("DNS response failed", exc_info=error)


class DNSStreamFactory:
    """Makes a ``DNSStreamProtocol`` per connection, up to bounds in total and per client."""

    def __init__(
        self,
        server: Responder,
        clock: Clock,
        idle_timeout: float,
        max_connections: int,
        max_in_flight: int,
        max_per_client: int | None,
        exempt: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    ) -> None:
        self._server = server
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._max_in_flight = max_in_flight
        self._max_per_client = max_per_client
        self._exempt = exempt
        self._refusals = RefusalLog(clock)
        self.live: set[DNSStreamProtocol] = set()
        # Connections counted against a client (not the exempt ones): the
        # protocol's client key, and how many each key has open.
        self._keys: dict[DNSStreamProtocol, str] = {}
        self._per_client: dict[str, int] = {}

    def __call__(self, address: Address) -> DNSStreamProtocol | None:
        key = client_key(address)
        if len(self.live) >= self._max_connections:
            self._refusals.refused(address, key, f"{len(self.live)} DNS connections open")
            return None
        counted = self._max_per_client is not None and not is_exempt(
            getattr(address, "host", ""), self._exempt
        )
        if counted:
            held = self._per_client.get(key, 0)
            if self._max_per_client is not None and held >= self._max_per_client:
                self._refusals.refused(address, key, f"{held} DNS connections open from {key}")
                return None
        protocol = DNSStreamProtocol(
            self._server,
            self._clock,
            idle_timeout=self._idle_timeout,
            max_in_flight=self._max_in_flight,
            on_lost=self._lost,
            on_made=self.live.add,
        )
        if counted:
            # Counted from now, not from connection_made: several accepted
            # at once must not all pass the check.
            self._keys[protocol] = key
            self._per_client[key] = self._per_client.get(key, 0) + 1
        return protocol

    def _lost(self, protocol: DNSStreamProtocol) -> None:
        self.live.discard(protocol)
        key = self._keys.pop(protocol, None)
        if key is not None:
            left = self._per_client[key] - 1
            if left:
                self._per_client[key] = left
            else:
                del self._per_client[key]

    def open_from(self, address: Address) -> int:
        """How many connections of ``address``'s client are counted against its limit."""
        return self._per_client.get(client_key(address), 0)

    def close_all(self) -> None:
        for protocol in list(self.live):
            protocol.transport.abort()


class DNSStreamProtocol(Int16StringReceiver):
    """Serves a ``DNSServer`` on one TCP or TLS connection: queries after their 2-byte length.

    Several queries may come one after the other (or pipelined); responses
    go out as they are ready, in any order (RFC 7858 section 3.3). The
    connection is closed after ``idle_timeout`` seconds without a query in
    flight.

    Args:
        server: Makes the responses.
        clock: Runs the idle timer.
        idle_timeout: How long a connection may stay without queries.
        max_in_flight: Stop reading while this many queries are answered.
        on_made: Called with the protocol once connected.
        on_lost: Called with the protocol once the connection is gone.
    """

    def __init__(
        self,
        server: Responder,
        clock: Clock,
        *,
        idle_timeout: float = 10.0,
        max_in_flight: int = 16,
        on_made: Callable[[DNSStreamProtocol], object] | None = None,
        on_lost: Callable[[DNSStreamProtocol], object] | None = None,
    ) -> None:
        super().__init__()
        self._server = server
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._max_in_flight = max_in_flight
        self._in_flight: set[Deferred[list[bytes]]] = set()
        self._timer: DelayedCall | None = None
        self._output_full = False
        self._finishing = False
        self._on_made = on_made
        self._on_lost = on_lost
        self._client = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the idle timer."""
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self._client = str(peer[0]) if isinstance(peer, tuple) else ""
        if self._on_made is not None:
            self._on_made(self)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        if not self._in_flight:
            self._timer = self._clock.call_later(self._idle_timeout, self._idle)

    def _disarm(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _idle(self) -> None:
        self._timer = None
        _log.debug("closing an idle DNS connection from %s", self._client)
        self.transport.close()

    def string_received(self, string: bytes) -> None:
        """Answer one query."""
        if not self._finishing:
            cached = self._server.cached_response(string, tcp=True)
            if cached is not None:
                if not self.transport.is_closing():
                    self.send_string(cached)
                    if not self._in_flight:
                        self._arm()  # a query came: the connection was not idle
                return
        self._disarm()
        d = self._server.respond(string, self._client, tcp=True)
        self._in_flight.add(d)
        d.add_callback(self._send_all)
        d.add_errback(_swallow_cancel)
        d.add_both(lambda _: self._done(d))
        self._flow()

    def _send_all(self, messages: list[bytes]) -> None:
        if self.transport.is_closing():
            return
        for message in messages:
            self.send_string(message)

    def _done(self, d: Deferred[list[bytes]]) -> None:
        self._in_flight.discard(d)
        if self.transport.is_closing():
            return
        if self._finishing and not self._in_flight:
            self.transport.close()
            return
        self._flow()
        if not self._in_flight:
            self._arm()

    def _flow(self) -> None:
        """Read while there is room for more queries and their responses."""
        if self.transport.is_closing():
            return
        if self._finishing or self._output_full or len(self._in_flight) >= self._max_in_flight:
            self.pause_receiving()
        else:
            self.resume_receiving()

    def pause_writing(self) -> None:
        """The client is not reading its responses: stop reading its queries."""
        super().pause_writing()
        self._output_full = True
        self._flow()

    def resume_writing(self) -> None:
        """The client read: read its queries again."""
        super().resume_writing()
        self._output_full = False
        self._flow()

    def stop_gracefully(self) -> None:
        """Answer the queries in flight, read no more, then close (server shutdown)."""
        self._finishing = True
        self._disarm()
        if self.transport.is_closing():
            return
        self.pause_receiving()
        if not self._in_flight:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the timer and forget the queries in flight."""
        self._disarm()
        for d in list(self._in_flight):
            d.cancel()
        if self._on_lost is not None:
            self._on_lost(self)
        super().connection_lost(exc)

"""DNS over TLS for the client (RFC 7858, RFC 8310's strict profile).

A ``DNSClient`` given ``DoTServer``s asks them over TLS only: a failed
handshake or a certificate that does not name the server is that server's
failure, never a reason to ask in clear text (RFC 8310, section 6.6). The
certificate is checked against ``server_name`` (or the server's IP address,
which the certificate must then carry) with the system's trust store unless
another ``SSLContext`` is given.

Each server has one channel: one connection at a time, opened by the first
query and shared by every query after it. Queries are written as soon as
they come (pipelined, each with an ID no other query on that connection
holds) with the two-byte length prefix of TCP (RFC 7766, section 8), and
responses are matched by ID in whatever order they come (RFC 7766, section
6.2.1.1). When no query is waiting, the connection is closed after an idle
time (RFC 7858, section 3.4; RFC 7766, section 6.2.3); the next query opens
a new one. If the server closes a connection that had answered before while
queries are waiting, those are sent once more on a new connection (the
server may have timed it out as they were written); otherwise their try
has failed and the client moves on, as it does for a silent UDP server.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from torsion.defer import Deferred, gather
from torsion.internet import Address, Connector, DelayedCall, is_ip_address
from torsion.internet import Protocol as StreamProtocol

__all__ = ["DoTChannel", "DoTServer"]

P = TypeVar("P", bound=asyncio.BaseProtocol)

# RFC 7858, section 3.1: DNS over TLS listens on port 853.
DOT_PORT = 853
# A frame is a two-byte length, then at most 65535 bytes of message.
_PREFIX = struct.Struct("!H")
_HEADER_SIZE = 12


@dataclass(frozen=True, slots=True)
class DoTServer:
    """A DNS over TLS server to ask.

    Attributes:
        address: Its IP address.
        port: Its port (853, RFC 7858's, by default).
        server_name: The name its certificate must carry (RFC 8310's
            authentication domain name); None to check the certificate
            against ``address`` itself (an IP address entry).
        context: The TLS settings; None for the system's trust store with
            host name checking (the reactor's ``client_context()``).
    """

    address: str
    port: int = DOT_PORT
    server_name: str | None = None
    context: ssl.SSLContext | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        """Check the address and port.

        Raises:
            ValueError: ``address`` is not an IP address, or ``port`` is not a port.
        """
        if not is_ip_address(self.address):
            raise ValueError(f"a DNS over TLS server is an IP address, not {self.address!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"not a port: {self.port}")

    @property
    def verified_name(self) -> str:
        """The name (or address) the certificate is checked against."""
        return self.server_name or self.address


class _Asker(Protocol):
    """What a channel needs of a query: hand it responses, tell it of failures."""

    def response(self, data: bytes, generation: int, *, over_tcp: bool) -> bool: ...

    def server_failed(self, generation: int, error: BaseException | None = None) -> None: ...


class _ReactorForDoT(Protocol):
    def call_later(self, delay: float, f: Callable[..., object], /, *args: Any) -> DelayedCall: ...

    def connect_tls(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float | None = 30.0,
    ) -> Connector[P]: ...


@dataclass(slots=True, eq=False)
class _Waiting:
    asker: _Asker
    generation: int
    request: bytes
    resent: bool = False


class DoTChannel:
    """The one connection to one DNS over TLS server, shared by every query.

    Args:
        reactor: Gives time and TLS connections.
        server: The server.
        connect_timeout: Seconds a connection (handshake included) may take.
        idle_timeout: Seconds a connection stays open with no query waiting.
    """

    def __init__(
        self,
        reactor: _ReactorForDoT,
        server: DoTServer,
        *,
        connect_timeout: float,
        idle_timeout: float,
    ) -> None:
        self.reactor = reactor
        self.server = server
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        #: How many connections were opened, over the channel's life.
        self.connections = 0
        self._waiting: dict[int, _Waiting] = {}
        self._unsent: list[int] = []
        self._protocol: _DoTProtocol | None = None
        self._connector: Connector[_DoTProtocol] | None = None
        self._idle: DelayedCall | None = None
        self._answered = False
        self._closing: set[_DoTProtocol] = set()

    @property
    def connected(self) -> bool:
        """Whether a connection is open (not merely being made)."""
        return self._protocol is not None

    @property
    def waiting(self) -> int:
        """How many queries wait for their response on this channel."""
        return len(self._waiting)

    def free_id(self) -> int:
        """A random message ID no query on this channel holds."""
        while True:
            ident = secrets.randbelow(65536)
            if ident not in self._waiting:
                return ident

    def send(self, asker: _Asker, ident: int, request: bytes, generation: int) -> None:
        """Send ``request`` (whose ID is ``ident``) now, or once connected.

        The response goes to ``asker.response``; a connection that fails or
        closes first goes to ``asker.server_failed``, both with ``generation``.
        """
        self._waiting[ident] = _Waiting(asker, generation, request)
        self._stop_idle()
        if self._protocol is not None:
            self._protocol.write_message(request)
            return
        self._unsent.append(ident)
        if self._connector is None:
            self._connect()

    def forget(self, ident: int) -> None:
        """The query holding ``ident`` no longer waits (answered, timed out, cancelled)."""
        if self._waiting.pop(ident, None) is not None:
            self._maybe_idle()

    def close(self) -> Deferred[None]:
        """Close the connection (or stop making it); waiting queries are not told.

        Returns:
            A Deferred firing once every connection this channel opened is
            closed (the TLS close exchanged, or given up).
        """
        self._waiting.clear()
        self._unsent.clear()
        self._stop_idle()
        connector, self._connector = self._connector, None
        if connector is not None:
            connector.disconnect()
        self._detach()
        closing = [protocol.closed for protocol in self._closing]
        return gather(closing).add_callback(lambda _: None)

    # The connection's life.

    def _connect(self) -> None:
        self.connections += 1
        server = self.server
        connector = self.reactor.connect_tls(
            server.address,
            server.port,
            lambda _: _DoTProtocol(self),
            context=server.context,
            server_hostname=server.verified_name,
            timeout=self.connect_timeout,
        )
        self._connector = connector
        connector.deferred.add_errback(lambda exc: self._connect_failed(connector, exc))

    def _connect_failed(self, connector: Connector[_DoTProtocol], exc: BaseException) -> None:
        # Refused, timed out, or the handshake failed (the certificate too).
        if connector is not self._connector:
            return
        self._connector = None
        unsent, self._unsent = self._unsent, []
        for ident in unsent:
            waiting = self._waiting.pop(ident, None)
            if waiting is not None:
                waiting.asker.server_failed(waiting.generation, exc)

    def made(self, protocol: _DoTProtocol) -> None:
        """A connection is up: send what waited for it."""
        if self._connector is None or self._protocol is not None:
            # Closed (or another connection won) while this one was being made.
            self._closing.add(protocol)
            protocol.transport.close()
            return
        self._connector = None
        self._protocol = protocol
        self._answered = False
        unsent, self._unsent = self._unsent, []
        requests = [self._waiting[ident].request for ident in unsent if ident in self._waiting]
        for request in requests:
            protocol.write_message(request)
        self._maybe_idle()

    def received(self, protocol: _DoTProtocol, data: bytes) -> None:
        """A response came: hand it to the query holding its ID (drop it if none)."""
        if protocol is not self._protocol:
            return
        self._answered = True
        (ident,) = _PREFIX.unpack_from(data)
        waiting = self._waiting.pop(ident, None)
        if waiting is not None and not waiting.asker.response(
            data, waiting.generation, over_tcp=True
        ):
            # The right ID, the wrong question: this try has failed.
            waiting.asker.server_failed(
                waiting.generation, ConnectionError("the server answered another question")
            )
        self._maybe_idle()

    def lost(self, protocol: _DoTProtocol) -> None:
        """The connection closed: resend once or fail what was waiting on it."""
        self._closing.discard(protocol)
        if protocol is not self._protocol:
            return
        self._protocol = None
        self._stop_idle()
        reused, self._answered = self._answered, False
        failed: list[_Waiting] = []
        for ident, waiting in list(self._waiting.items()):
            if reused and not waiting.resent:
                waiting.resent = True
                self._unsent.append(ident)
            else:
                del self._waiting[ident]
                failed.append(waiting)
        if self._unsent and self._connector is None:
            self._connect()
        for waiting in failed:
            waiting.asker.server_failed(
                waiting.generation, ConnectionError("the server closed the connection")
            )

    # Idle connections.

    def _maybe_idle(self) -> None:
        if self._protocol is not None and not self._waiting and self._idle is None:
            self._idle = self.reactor.call_later(self.idle_timeout, self._idle_close)

    def _stop_idle(self) -> None:
        idle, self._idle = self._idle, None
        if idle is not None:
            idle.cancel()

    def _idle_close(self) -> None:
        self._idle = None
        self._detach()

    def _detach(self) -> None:
        # Closed from our side: what the connection reports from now on is ignored.
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            self._closing.add(protocol)
            protocol.transport.close()

    def __repr__(self) -> str:
        state = "open" if self._protocol else "connecting" if self._connector else "closed"
        server = self.server
        return f"<DoTChannel {server.address}:{server.port} ({server.verified_name}) {state}>"


class _DoTProtocol(StreamProtocol):
    """The connection: frames out, frames in (each at most 2 + 65535 bytes buffered)."""

    def __init__(self, channel: DoTChannel) -> None:
        super().__init__()
        self.channel = channel
        self.buffer = bytearray()
        self.closed: Deferred[None] = Deferred()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Tell the channel it may send."""
        super().connection_made(transport)
        self.channel.made(self)

    def write_message(self, message: bytes) -> None:
        """Send one message with its length prefix (RFC 1035, section 4.2.2)."""
        self.transport.write(_PREFIX.pack(len(message)) + message)

    def data_received(self, data: bytes) -> None:
        """Cut the stream into messages and hand each to the channel."""
        self.buffer += data
        while len(self.buffer) >= _PREFIX.size:
            (length,) = _PREFIX.unpack_from(self.buffer)
            end = _PREFIX.size + length
            if len(self.buffer) < end:
                break
            message = bytes(self.buffer[_PREFIX.size : end])
            del self.buffer[:end]
            # Shorter than a header is not a DNS message: skip it.
            if length >= _HEADER_SIZE:
                self.channel.received(self, message)

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the channel."""
        super().connection_lost(exc)
        self.buffer.clear()
        self.channel.lost(self)
        self.closed.callback(None)

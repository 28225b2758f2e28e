"""Serving behind a PROXY-protocol load balancer, and connecting through one.

A server behind HAProxy (``send-proxy``/``send-proxy-v2``), nginx's stream
module (``proxy_protocol on``) or a cloud load balancer sees every connection
come from the balancer. ``ProxyProtocolFactory`` wraps a protocol factory so
that each connection first reads the balancer's PROXY header (bounded, with a
timeout), then builds the real protocol with the client's address and hands
it a ``ProxiedTransport``, on which ``get_extra_info("peername")`` and
``"sockname"`` (hence ``Protocol.peer`` and ``Protocol.host``) are the
addresses the header gave. Bytes that came with the header reach the protocol
first, in order. ``ProxyProtocolServerEndpoint`` does the same for any server
endpoint, and both can run the TLS handshake after the header, for a balancer
that passes the client's TLS through untouched.

``ProxyProtocolClientEndpoint`` is the other side: it writes a header as the
first bytes of every connection it makes, for servers (or balancers with
``accept-proxy``) that expect one.

The protocol call order is unchanged for the wrapped protocol::

    connection_made [-> data_received*] [-> eof_received] -> connection_lost

and it sees no connection at all when the header is bad, late, refused, or
(with TLS) the handshake fails: those are logged on one line, without a
traceback, and closed.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any, Generic, Literal, TypeAlias, TypeVar, cast

from torsion.defer import Deferred
from torsion.errors import ProxyProtocolError
from torsion.internet import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    Address,
    ClientEndpoint,
    Clock,
    DelayedCall,
    Factory,
    IPv4Address,
    IPv6Address,
    ListeningPort,
    ProtocolFactory,
    ServerEndpoint,
    ServerTLS,
    TransportWrapper,
    UNIXAddress,
    to_address,
    to_sockaddr,
)
from torsion.protocols.haproxy._header import (
    DEFAULT_MAX_LENGTH,
    Command,
    HeaderAddress,
    ProxyHeader,
    ProxyHeaderParser,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "ProxiedTransport",
    "ProxyProtocolClientEndpoint",
    "ProxyProtocolFactory",
    "ProxyProtocolServerEndpoint",
    "TrustedNetworks",
]

P = TypeVar("P", bound=asyncio.BaseProtocol)

_log = logging.getLogger("torsion.protocols.proxy")

DEFAULT_TIMEOUT = 10.0
"""Seconds a connection may take to send its whole header. The spec asks for
at least 3, to cover a TCP retransmission (section 2)."""


# Application data that arrives between the end of the TLS handshake and the
# hand-over to the real protocol is kept for it; a client's first flight is
# far smaller than this.
_MAX_HELD = 64 * 1024

_NetworkLike: TypeAlias = (
    str
    | ipaddress.IPv4Network
    | ipaddress.IPv6Network
    | ipaddress.IPv4Address
    | ipaddress.IPv6Address
)
TrustedNetworks: TypeAlias = Iterable[_NetworkLike]
"""Networks (``"10.0.0.0/8"``, ``"::1"``, ``ipaddress`` objects) headers are taken from."""


class ProxiedTransport(TransportWrapper):
    """A connection's transport, reporting the addresses a PROXY header gave.

    ``get_extra_info("peername")`` and ``("sockname")`` answer with the
    header's source and destination, in the socket module's form, so
    ``Protocol.peer`` and ``Protocol.host`` are the client's view of the
    connection; ``get_extra_info("proxy_header")`` is the ``ProxyHeader``.
    Everything else (writing, closing, flow control, the other extra
    information, among it "socket", the socket to the proxy) is the
    underlying transport's.

    It has no protocol wrapper: the connection delivers its events to the
    protocol directly, so reading costs nothing extra. ``Protocol.start_tls``
    works through it on every loop (the connection underneath is upgraded;
    the addresses stay).

    Args:
        transport: The connection from the proxy (TCP, TLS or Unix, or
            another wrapper).
        header: The header the proxy sent.
        peer: The address to report as the peer's.
        host: The address to report as this end's.

    Attributes:
        wrapped_transport: The connection from the proxy; its
            ``get_extra_info`` tells the proxy's own address.
        header: The header the proxy sent.
        peer: The client's address.
        host: The address the client connected to.
    """

    def __init__(
        self,
        transport: asyncio.BaseTransport,
        header: ProxyHeader,
        *,
        peer: Address,
        host: Address,
    ) -> None:
        # No protocol wrapper: the connection delivers to the protocol itself.
        super().__init__(transport)
        self.header = header
        self.peer = peer
        self.host = host
        self._peername = _socket_form(peer)
        self._sockname = _socket_form(host)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Return the header's addresses for "peername"/"sockname", else the wrapped one's."""
        if name == "peername":
            return self._peername
        if name == "sockname":
            return self._sockname
        if name == "proxy_header":
            return self.header
        return self.wrapped_transport.get_extra_info(name, default)

    def __repr__(self) -> str:
        return f"<ProxiedTransport {self.peer} -> {self.host} over {self.wrapped_transport!r}>"


async def _upgrade(
    plain: asyncio.Transport,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
    handshake_timeout: float | None,
) -> asyncio.Transport:
    """Upgrade a connection to TLS in place, through any wrappers, on any loop.

    The protocol the connection delivers to becomes the TLS layer's
    application protocol.

    Returns:
        The transport to write to from now on.
    """
    upgraded: asyncio.Transport | None
    if isinstance(plain, TransportWrapper):
        # A policy or framing wrapper underneath upgrades the real transport
        # below it and stays in the chain.
        upgraded = await plain.start_tls(
            context,
            server_side=server_side,
            server_hostname=server_hostname,
            handshake_timeout=handshake_timeout,
        )
    else:
        # uvloop's start_tls takes only its own transports: this is one.
        upgraded = await asyncio.get_running_loop().start_tls(
            plain,
            plain.get_protocol(),
            context,
            server_side=server_side,
            server_hostname=server_hostname,
            ssl_handshake_timeout=handshake_timeout,
        )
    if upgraded is None:  # pragma: no cover - the loop closed meanwhile
        raise ConnectionResetError("connection closed during the TLS handshake")
    return upgraded


class ProxyProtocolFactory(Factory[asyncio.Protocol]):
    """Wraps a protocol factory: each connection sends a PROXY header first.

    Use it wherever a server factory goes (``listen_tcp``, ``listen_unix``,
    a server endpoint). For each connection it reads the header (version 1 or
    2, told apart by its first byte), then calls ``factory`` with the
    client's address and connects the protocol to a ``ProxiedTransport``.
    A LOCAL command (a balancer's health check), version 1's UNKNOWN and
    version 2's AF_UNSPEC keep the connection's real addresses.

    A connection that sends a malformed header, a LOCAL one when
    ``allow_local`` is false, nothing complete within ``timeout``, or (with
    ``tls``) fails its handshake, is logged on one line at INFO and closed;
    ``factory`` is not called. A connection from outside ``trusted`` is
    refused before anything is read (logged at WARNING).

    Listening with it starts and stops ``factory`` too, when that is a
    ``Factory``.

    Only a port that every client reaches through the balancer should take
    headers: whoever can connect to it can claim any address. The spec asks
    the receiver never to guess whether a header is present (section 2), so
    there is no mode that accepts connections without one; ``trusted``
    limits who may send it.

    Args:
        factory: Makes the real protocol, from the client's address (the
            header's source, or the real peer for LOCAL/UNKNOWN); may
            return None to refuse the connection.
        clock: Times the header (the reactor, or a test's ``Clock``).
        timeout: Seconds the whole header may take to arrive.
        trusted: The networks whose peers may send headers; a connection
            from any other IP address is closed at once. None trusts every
            peer. Peers on a Unix socket are always trusted (the socket
            file's permissions say who may connect).
        allow_local: Accept LOCAL commands (health checks).
        tls: Run a server-side TLS handshake after the header, before the
            protocol is made (for a balancer passing TLS through in TCP
            mode). A ``ServerTLS`` keeps serving what it reloads.
        handshake_timeout: Seconds that handshake may take.
        max_length: The longest version 2 address and TLV block accepted.

    Attributes:
        factory: The wrapped factory.
        connections: How many connections are still sending their header
            (or, with ``tls``, shaking hands); the wrapped factory counts
            the rest, if it is a ``Factory``.
    """

    def __init__(
        self,
        factory: ProtocolFactory,
        *,
        clock: Clock,
        timeout: float = DEFAULT_TIMEOUT,
        trusted: TrustedNetworks | None = None,
        allow_local: bool = True,
        tls: ssl.SSLContext | ServerTLS | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> None:
        super().__init__()
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        ProxyHeaderParser(max_length=max_length)  # checks the value
        self.factory = factory
        self.clock = clock
        self.timeout = timeout
        self.trusted = None if trusted is None else tuple(_network(n) for n in trusted)
        self.allow_local = allow_local
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.max_length = max_length

    def is_trusted(self, address: Address) -> bool:
        """Return whether ``address`` (a connection's real peer) may send headers."""
        if self.trusted is None or not isinstance(address, IPv4Address | IPv6Address):
            return True
        ip = ipaddress.ip_address(address.host)
        candidates = [ip]
        # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        return any(c in network for c in candidates for network in self.trusted)

    def build_protocol(self, address: Address) -> asyncio.Protocol | None:
        """Return the header reader for a connection from ``address`` (None if untrusted)."""
        if not self.is_trusted(address):
            _log.warning(
                "Refused a connection from %s: not a trusted PROXY protocol sender", address
            )
            return None
        self.connections += 1
        return _HeaderReceiver(self, address)

    def __call__(self, address: Address) -> asyncio.Protocol | None:
        # Not Factory's: the protocol counted there would be the reader,
        # which is gone once the header is read.
        return self.build_protocol(address)

    def start_factory(self) -> None:
        """Start the wrapped factory, if it is a ``Factory``."""
        if isinstance(self.factory, Factory):
            self.factory.start()

    def stop_factory(self) -> None:
        """Stop the wrapped factory, if it is a ``Factory``."""
        if isinstance(self.factory, Factory):
            self.factory.stop()

    def _context(self) -> ssl.SSLContext | None:
        return self.tls.context if isinstance(self.tls, ServerTLS) else self.tls

    def __repr__(self) -> str:
        tls = " with TLS" if self.tls is not None else ""
        return f"<ProxyProtocolFactory{tls} for {self.factory!r}>"


def _network(value: _NetworkLike) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(value)


class _State(enum.Enum):
    HEADER = "reading the header"
    HANDSHAKE = "shaking hands"
    HANDED_OVER = "handed over"
    CLOSED = "closed"


class _HeaderReceiver(asyncio.Protocol):
    """A connection's first protocol: reads the header, then hands over.

    Its states::

        HEADER -> HANDED_OVER
        HEADER -> HANDSHAKE -> HANDED_OVER       (with tls)
        any -> CLOSED                            (bad header, timeout, loss)
    """

    def __init__(self, owner: ProxyProtocolFactory, peer: Address) -> None:
        self._owner = owner
        self._peer = peer
        self._parser = ProxyHeaderParser(max_length=owner.max_length)
        self._state = _State.HEADER
        self._transport: asyncio.Transport | None = None
        self._timer: DelayedCall | None = None
        self._handshake: asyncio.Task[None] | None = None
        # What arrives over TLS before the hand-over, for the protocol.
        self._held: list[bytes] = []
        self._held_size = 0
        self._eof = False
        self._writing_paused = False

    # -- the transport's calls ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the clock on the header (or refuse a peer that cannot be vouched for)."""
        self._transport = cast(asyncio.Transport, transport)
        if self._owner.trusted is not None and isinstance(self._peer, UNIXAddress):
            # The listener reports a peer it could not read (a TCP client
            # that reset before it was accepted, on uvloop) as an unnamed
            # Unix peer; only a real Unix socket earns a Unix peer's trust.
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family != socket.AF_UNIX:
                self._finish(_State.CLOSED)
                _log.warning("Refused a connection whose peer address is unknown")
                _abort(transport)
                return
        self._timer = self._owner.clock.call_later(self._owner.timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        """Read the header; keep what arrives over TLS before the hand-over."""
        if self._state is _State.HANDSHAKE:
            self._hold(data)
            return
        if self._state is not _State.HEADER:
            return
        try:
            result = self._parser.receive_data(data)
        except ProxyProtocolError as exc:
            self._refuse(f"sent a bad PROXY header: {exc}")
            return
        if result is not None:
            self._cancel_timer()
            self._header_received(*result)

    def eof_received(self) -> bool:
        """Close if the header was not complete; keep an EOF that came over TLS."""
        if self._state is _State.HANDSHAKE:
            self._eof = True
            return True
        if self._state is _State.HEADER:
            if self._parser.buffered:
                self._give_up(logging.INFO, "closed before its PROXY header was complete")
            else:
                # A balancer's plain TCP health check connects and goes.
                self._give_up(logging.DEBUG, "closed without sending a PROXY header")
        return False

    def pause_writing(self) -> None:
        """Noted, for the protocol."""
        self._writing_paused = True

    def resume_writing(self) -> None:
        """Noted, for the protocol."""
        self._writing_paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection went before the hand-over."""
        if self._state in (_State.HEADER, _State.HANDSHAKE):
            reason = f": {exc}" if exc is not None else ""
            self._give_up(logging.DEBUG, f"was lost during the PROXY header{reason}")
        self._cancel_timer()

    # -- the header --------------------------------------------------------------------

    def _header_received(self, header: ProxyHeader, rest: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if header.command is Command.LOCAL and not self._owner.allow_local:
            self._refuse("sent a LOCAL PROXY header, which is not accepted here")
            return
        if header.source is None or header.destination is None:
            # LOCAL, UNKNOWN, AF_UNSPEC: the real endpoints stand (section 2.2).
            peer = self._peer
            host = _sockname(transport)
        else:
            peer, host = header.source, header.destination
        context = self._owner._context()
        if context is None:
            self._hand_over(transport, header, peer, host, [rest] if rest else [])
            return
        self._state = _State.HANDSHAKE
        loop = asyncio.get_running_loop()
        # The socket's own transport, under any wrappers: start_tls puts its
        # TLS protocol there.
        real = transport
        while isinstance(real, TransportWrapper):
            real = real.wrapped_transport
        before = real.get_protocol()
        self._handshake = loop.create_task(
            self._shake_hands(transport, context, header, peer, host)
        )
        if rest:
            # The bytes after the header open the TLS handshake. start_tls
            # switches the socket to its TLS protocol in its first step,
            # which runs just before this callback, with reading paused: the
            # bytes reach the TLS protocol before anything else read.
            loop.call_soon(self._feed_tls, real, before, rest)

    def _feed_tls(
        self, real: asyncio.Transport, before: asyncio.BaseProtocol, data: bytes
    ) -> None:
        protocol = real.get_protocol()
        if protocol is before or real.is_closing():
            return  # start_tls failed before it took the connection
        _deliver(protocol, data)

    async def _shake_hands(
        self,
        transport: asyncio.Transport,
        context: ssl.SSLContext,
        header: ProxyHeader,
        peer: Address,
        host: Address,
    ) -> None:
        try:
            tls = await _upgrade(
                transport,
                context,
                server_side=True,
                handshake_timeout=self._owner.handshake_timeout,
            )
        except asyncio.CancelledError:
            transport.abort()
            self._finish(_State.CLOSED)
            raise
        except Exception as exc:
            # The TLS alert, or the timeout, already told the client.
            transport.abort()
            self._give_up(logging.INFO, f"(client {peer}) failed the TLS handshake: {exc!r}")
            return
        held, self._held = self._held, []
        if self._state is not _State.HANDSHAKE:
            return  # lost after the handshake, before we were resumed
        self._hand_over(tls, header, peer, host, held)

    def _hand_over(
        self,
        transport: asyncio.BaseTransport,
        header: ProxyHeader,
        peer: Address,
        host: Address,
        data: list[bytes],
    ) -> None:
        self._finish(_State.HANDED_OVER)
        try:
            protocol = self._owner.factory(peer)
        except Exception:
            _log.exception("Protocol factory %r failed for %s", self._owner.factory, peer)
            _abort(transport)
            return
        if protocol is None:
            transport.close()
            return
        proxied = ProxiedTransport(transport, header, peer=peer, host=host)
        transport.set_protocol(protocol)
        protocol.connection_made(proxied)
        if self._writing_paused:
            protocol.pause_writing()
        for chunk in data:
            if transport.is_closing():
                return
            _deliver(protocol, chunk)
        if self._eof and not transport.is_closing():
            eof_received = getattr(protocol, "eof_received", None)
            if eof_received is None or not eof_received():
                transport.close()

    # -- ending ------------------------------------------------------------------------

    def _hold(self, data: bytes) -> None:
        self._held_size += len(data)
        if self._held_size > _MAX_HELD:
            self._refuse(f"sent over {_MAX_HELD} bytes before its connection was ready")
            return
        self._held.append(data)

    def _timed_out(self) -> None:
        self._timer = None
        if self._state is _State.HEADER and self._transport is not None:
            self._give_up(
                logging.INFO, f"sent no complete PROXY header within {self._owner.timeout:g}s"
            )
            self._transport.close()

    def _refuse(self, reason: str) -> None:
        self._give_up(logging.INFO, reason)
        if self._transport is not None:
            _abort(self._transport)

    def _give_up(self, level: int, reason: str) -> None:
        """Log why the connection ends here, once, and forget it."""
        if self._state is _State.CLOSED or self._state is _State.HANDED_OVER:
            return
        self._finish(_State.CLOSED)
        self._held = []
        _log.log(level, "Connection from %s %s", self._peer, reason)

    def _finish(self, state: _State) -> None:
        """Leave the header's states: stop timing, stop counting this connection."""
        self._cancel_timer()
        if self._state in (_State.HEADER, _State.HANDSHAKE):
            self._owner.connections -= 1
        self._state = state

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()


def _socket_form(address: Address) -> Any:
    """The address as ``get_extra_info`` reports it (None if no socket's)."""
    try:
        return to_sockaddr(address)
    except ValueError:
        return None


def _sockname(transport: asyncio.BaseTransport) -> Address:
    """This end's real address (an unnamed Unix address if the socket cannot say)."""
    try:
        return to_address(transport.get_extra_info("sockname"))
    except (OSError, ValueError):
        # uvloop asks the socket each time, and a socket already gone fails.
        return UNIXAddress(None)


def _deliver(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Give ``data`` to a protocol the way a transport would."""
    if isinstance(protocol, asyncio.Protocol):
        protocol.data_received(data)
        return
    get_buffer = getattr(protocol, "get_buffer", None)
    if get_buffer is None:
        raise TypeError(f"{protocol!r} takes no data")
    # A buffered protocol (asyncio's and uvloop's TLS protocols are).
    buffered = cast(asyncio.BufferedProtocol, protocol)
    view = memoryview(data)
    while view:
        buffer = memoryview(get_buffer(len(view)))
        count = min(len(buffer), len(view))
        buffer[:count] = view[:count]
        buffered.buffer_updated(count)
        view = view[count:]


def _abort(transport: asyncio.BaseTransport) -> None:
    # uvloop's transports are not asyncio.WriteTransport subclasses, only alike.
    cast(asyncio.WriteTransport, transport).abort()


class ProxyProtocolServerEndpoint:
    """Any server endpoint, taking a PROXY header on each connection first.

    ``listen(factory)`` listens on ``endpoint`` with a
    ``ProxyProtocolFactory`` around ``factory``; the options are its.

    Args:
        endpoint: Where to listen (TCP, a Unix socket, systemd's socket...).
            With ``tls``, give a plain endpoint: the header comes in clear.
        clock: Times the header (the reactor).
        timeout: Seconds the whole header may take.
        trusted: The networks whose peers may send headers (None: all).
        allow_local: Accept LOCAL commands (health checks).
        tls: Run a server-side TLS handshake after the header.
        handshake_timeout: Seconds that handshake may take.
        max_length: The longest version 2 address and TLV block accepted.
    """

    def __init__(
        self,
        endpoint: ServerEndpoint,
        *,
        clock: Clock,
        timeout: float = DEFAULT_TIMEOUT,
        trusted: TrustedNetworks | None = None,
        allow_local: bool = True,
        tls: ssl.SSLContext | ServerTLS | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> None:
        self._endpoint = endpoint
        self._make: Callable[[ProtocolFactory], ProxyProtocolFactory] = lambda factory: (
            ProxyProtocolFactory(
                factory,
                clock=clock,
                timeout=timeout,
                trusted=trusted,
                allow_local=allow_local,
                tls=tls,
                handshake_timeout=handshake_timeout,
                max_length=max_length,
            )
        )
        self._make(lambda _: None)  # check the options now, not at listen()
        self.tls = tls

    def listen(self, factory: ProtocolFactory) -> Deferred[ListeningPort]:
        """Listen; each connection's header is read before ``factory`` is called."""
        return self._endpoint.listen(self._make(factory))

    def __repr__(self) -> str:
        return f"<ProxyProtocolServerEndpoint over {self._endpoint!r}>"


class ProxyProtocolClientEndpoint:
    """Any client endpoint, writing a PROXY header first on each connection.

    The header is the first thing written, before the protocol's
    ``connection_made``. To speak TLS to the server, put TLS over this
    endpoint (``TLSClientEndpoint(ProxyProtocolClientEndpoint(...), ...)``):
    the header goes in clear, as a balancer would send it.

    Args:
        endpoint: The plain connection to make (TCP, a host name, Unix...).
        source: The client address to claim, or None (with ``destination``
            None) for a header without addresses (UNKNOWN in version 1,
            AF_UNSPEC in version 2).
        destination: The address the client "connected to".
        version: 1 (text; TCP over IPv4 or IPv6 only) or 2 (binary).
        command: PROXY, or LOCAL (version 2, no addresses) for the
            proxy's own connections.
        tlvs: Version 2 TLVs, ``(type, value)`` pairs.

    Attributes:
        header: The header sent.

    Raises:
        ValueError: The arguments do not make a header (see ``ProxyHeader``).
    """

    def __init__(
        self,
        endpoint: ClientEndpoint,
        source: HeaderAddress | None,
        destination: HeaderAddress | None,
        *,
        version: Literal[1, 2] = 1,
        command: Command = Command.PROXY,
        tlvs: Iterable[tuple[int, bytes]] = (),
    ) -> None:
        self._endpoint = endpoint
        self.header = ProxyHeader(
            version=version,
            command=command,
            source=source,
            destination=destination,
            tlvs=tuple(tlvs),
        )
        self._bytes = self.header.to_bytes()

    def connect(self, factory: Callable[[Address], P]) -> Deferred[P]:
        """Connect, write the header, and hand the connection to ``factory``'s protocol.

        Returns:
            A Deferred that fires with the protocol (cancel it to stop).
        """
        header = self._bytes

        def sender(address: Address) -> _HeaderSender[P]:
            return _HeaderSender(header, factory(address))

        return self._endpoint.connect(sender).add_callback(_protocol_of)

    def __repr__(self) -> str:
        return f"<ProxyProtocolClientEndpoint v{self.header.version} over {self._endpoint!r}>"


def _protocol_of(sender: _HeaderSender[P]) -> P:
    return sender.protocol


class _HeaderSender(asyncio.Protocol, Generic[P]):
    """Writes the header when the connection is made, then steps aside.

    In ``connection_made`` it writes the header and gives the transport to
    the real protocol. A wrapper that held the connection first (happy
    eyeballs, say) may still replay events to it; they are passed on.
    """

    def __init__(self, header: bytes, protocol: P) -> None:
        self._header = header
        self.protocol = protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Write the header, then connect the real protocol."""
        cast(asyncio.WriteTransport, transport).write(self._header)
        transport.set_protocol(self.protocol)
        self.protocol.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        """Pass on."""
        _deliver(self.protocol, data)

    def eof_received(self) -> bool | None:
        """Pass on."""
        eof_received: Callable[[], bool | None] | None = getattr(
            self.protocol, "eof_received", None
        )
        return eof_received() if eof_received is not None else None

    def pause_writing(self) -> None:
        """Pass on."""
        self.protocol.pause_writing()

    def resume_writing(self) -> None:
        """Pass on."""
        self.protocol.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        """Pass on."""
        self.protocol.connection_lost(exc)

"""A SOCKS 4, 4a and 5 server: clients ask it to connect somewhere, it does, and relays.

``SOCKSServer`` is a protocol factory; listen with it as with any::

    rules = DestinationRules([allow_destinations(ports=[80, 443])], default="deny")
    reactor.listen_tcp(1080, SOCKSServer(reactor, rules=rules), interface="127.0.0.1")

Each connection runs the handshake (``_socks_handshake``), then:

* CONNECT only: BIND and UDP ASSOCIATE are answered "command not
  supported" (SOCKS 5 reply 0x07, SOCKS 4 0x5B).
* Authentication: with ``authenticate`` set, SOCKS 5 clients must log in
  with a username and password (RFC 1929; "no authentication" is not
  offered, and a client that offers nothing else gets 0xFF), and SOCKS 4
  clients, which have no password, are refused. Without it, only "no
  authentication" is accepted.
* Destinations pass through ``DestinationRules`` (``_socks_rules``): names
  before they are resolved, addresses after, so that a name resolving to a
  protected address (127.0.0.1, say) is refused as the address would be. A
  name is resolved here, through the reactor's resolver, and only the
  addresses that passed are connected to (happy eyeballs between them), so
  the client's word never picks the address and a second lookup cannot
  change it.
* The reply carries the outgoing connection's local address (RFC 1928
  section 6, "BND.ADDR"), then the two connections are spliced
  (``torsion.internet.splice``): backpressure each way, half-closes passed
  through. What the client sent after its request (it need not wait for the
  reply) reaches the destination first, in order.

Refusals and failures get the protocol's own reply (SOCKS 5: 0x02 not
allowed, 0x03 network unreachable, 0x04 host unreachable, 0x05 refused,
0x06 "TTL expired" for a timeout, 0x08 address type not supported; SOCKS 4:
0x5B) and a clean close. Each is logged once, on one line, with the client's
address and no traceback: refusals and malformed requests through a
``RefusalLog`` (a flood from one client is counted, not printed),
unreachable destinations and timeouts at INFO. A client has
``negotiation_timeout`` seconds to get its request in, and the destination
``connect_timeout`` seconds (its name lookup included) to answer, on the
reactor's clock.

The server does not know who may use it: listen on an address only the
intended clients reach, require a password, or wrap the factory in
``ConnectionLimit``.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import logging
import typing
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from torsion.defer import (
    CancelledError,
    Deferred,
    awaitable_deferred,
    ensure_deferred,
    maybe_deferred,
    succeed,
)
from torsion.errors import DNSLookupError
from torsion.internet import (
    Address,
    Clock,
    Connector,
    DelayedCall,
    Forwarder,
    HostnameEndpoint,
    Resolver,
    splice,
)
from torsion.protocols._limits import RefusalLog, client_key
from torsion.protocols._socks_handshake import ServerState, SOCKSServerHandshake
from torsion.protocols._socks_rules import DestinationRules
from torsion.protocols._socks_wire import (
    AddressType,
    Command,
    Greeting,
    Method,
    ReplyCode,
    Request,
    SOCKSProtocolError,
    UsernamePassword,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_NEGOTIATION_TIMEOUT",
    "SOCKSAuthenticator",
    "SOCKSReactor",
    "SOCKSServer",
]

P = TypeVar("P", bound=asyncio.BaseProtocol)
T = TypeVar("T")

_log = logging.getLogger("torsion.protocols.socks")

DEFAULT_NEGOTIATION_TIMEOUT = 10.0
"""Seconds a client has from connecting to a complete request (its password
checked): a client that connects and says nothing is closed after this."""

DEFAULT_CONNECT_TIMEOUT = 30.0
"""Seconds the destination has to answer, its name lookup included."""


class SOCKSAuthenticator(typing.Protocol):
    """Checks a SOCKS 5 client's username and password (RFC 1929).

    Any callable of this shape: a function, a method, an ``async def``, or
    one returning a Deferred. The bytes the client sent are decoded as
    UTF-8 (credentials that are not UTF-8 fail without a call).
    """

    def __call__(self, username: str, password: str, /) -> bool | Awaitable[bool]:
        """Return (or resolve to) True to let the client in."""
        ...


class SOCKSReactor(Clock, typing.Protocol):
    """What ``SOCKSServer`` needs from a reactor: a clock, names, TCP."""

    def resolve_all(self, host: str) -> Awaitable[list[str]]:
        """Every address of ``host``, best first."""
        ...

    def connect_tcp(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        timeout: float | None = 30.0,
    ) -> Connector[P]:
        """Connect to an IP address."""
        ...


class SOCKSServer:
    """A protocol factory for a SOCKS 4, 4a and 5 proxy (see the module doc).

    Args:
        reactor: Provides time, name resolution and outgoing TCP connections.
        rules: Where clients may connect; by default anywhere except the
            protected ranges (loopback, private, link-local, multicast...).
        authenticate: Checks usernames and passwords; when set, every client
            must log in (SOCKS 5 with RFC 1929), and SOCKS 4 is refused.
        allow_socks4: Whether SOCKS 4 and 4a clients are served.
        negotiation_timeout: Seconds from connecting to a complete request.
        connect_timeout: Seconds for the destination to answer.
        resolver: Resolves destination names (the reactor, if None).
        log: Where refusals are reported (a ``RefusalLog`` of its own on the
            ``torsion.protocols.socks`` logger if None).

    Attributes:
        rules, authenticate, allow_socks4, negotiation_timeout,
        connect_timeout: As given.
    """

    def __init__(
        self,
        reactor: SOCKSReactor,
        *,
        rules: DestinationRules | None = None,
        authenticate: SOCKSAuthenticator | None = None,
        allow_socks4: bool = True,
        negotiation_timeout: float = DEFAULT_NEGOTIATION_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        resolver: Resolver | None = None,
        log: RefusalLog | None = None,
    ) -> None:
        for name, value in (
            ("negotiation_timeout", negotiation_timeout),
            ("connect_timeout", connect_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be more than 0 seconds, not {value}")
        self._reactor = reactor
        self.rules = rules if rules is not None else DestinationRules()
        self.authenticate = authenticate
        self.allow_socks4 = allow_socks4
        self.negotiation_timeout = negotiation_timeout
        self.connect_timeout = connect_timeout
        self._resolve_all: Callable[[str], Awaitable[list[str]]] = (
            resolver.resolve_all if resolver is not None else reactor.resolve_all
        )
        self._log = log if log is not None else RefusalLog(reactor, logger=_log)

    def __call__(self, address: Address) -> Forwarder:
        """Return the protocol for a new client connection from ``address``."""
        return _SOCKSConnection(self, address)

    def __repr__(self) -> str:
        auth = "password" if self.authenticate is not None else "no authentication"
        return f"<SOCKSServer {auth}, {self.rules!r}>"


class _Pinned:
    """A reactor whose name lookups return addresses already checked.

    ``HostnameEndpoint`` races a name's addresses; given this, it races the
    ones the rules allowed, and never looks the name up again (a second
    answer could differ from the one checked).
    """

    def __init__(self, reactor: SOCKSReactor, addresses: list[str]) -> None:
        self._reactor = reactor
        self._addresses = addresses

    def seconds(self) -> float:
        return self._reactor.seconds()

    def call_later(self, delay: float, f: Callable[..., object], /, *args: Any) -> DelayedCall:
        return self._reactor.call_later(delay, f, *args)

    def resolve_all(self, host: str) -> Deferred[list[str]]:
        return succeed(list(self._addresses))

    def connect_tcp(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        timeout: float | None = 30.0,
    ) -> Connector[P]:
        return self._reactor.connect_tcp(host, port, factory, timeout=timeout)


def _deferred(awaitable: Awaitable[T]) -> Deferred[T]:
    d: Deferred[T] | None = awaitable_deferred(awaitable)
    if d is not None:
        return d

    async def wait() -> T:
        return await awaitable

    return ensure_deferred(wait())


def _reply_code(exc: BaseException) -> ReplyCode:
    """The SOCKS 5 reply for a destination that could not be reached."""
    if isinstance(exc, TimeoutError):
        return ReplyCode.TTL_EXPIRED  # RFC 1928 has no "timed out"; this is what servers send
    if isinstance(exc, DNSLookupError):
        return ReplyCode.HOST_UNREACHABLE
    if isinstance(exc, ConnectionRefusedError):
        return ReplyCode.CONNECTION_REFUSED
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENETUNREACH, errno.ENETDOWN):
            return ReplyCode.NETWORK_UNREACHABLE
        if exc.errno in (errno.EHOSTUNREACH, errno.EHOSTDOWN):
            return ReplyCode.HOST_UNREACHABLE
    return ReplyCode.GENERAL_FAILURE


def _bound_address(sockname: object) -> tuple[str, int]:
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return str(sockname[0]), int(sockname[1])
    return "0.0.0.0", 0


def _destination(request: Request) -> str:
    if request.address_type is AddressType.IPV6:
        return f"[{request.host}]:{request.port}"
    return f"{request.host}:{request.port}"


class _Phase(enum.Enum):
    NEGOTIATING = "negotiating"
    CONNECTING = "connecting"
    FORWARDING = "forwarding"
    CLOSED = "closed"


_NEGOTIATING = _Phase.NEGOTIATING
_CONNECTING = _Phase.CONNECTING
_FORWARDING = _Phase.FORWARDING
_CLOSED = _Phase.CLOSED


class _SOCKSConnection(Forwarder):
    """One client: the handshake, the destination's connection, then the splice."""

    def __init__(self, server: SOCKSServer, peer: Address) -> None:
        super().__init__()
        self._server = server
        self._peer = peer
        self._handshake = SOCKSServerHandshake()
        self._phase = _NEGOTIATING
        self._timer: DelayedCall | None = None
        self._pending: Deferred[Any] | None = None
        self._advancing = False
        self._request: Request | None = None

    # -- the connection's events ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._timer = self._server._reactor.call_later(
            self._server.negotiation_timeout, self._negotiation_timed_out
        )

    def data_received(self, data: bytes) -> None:
        if self._phase is _NEGOTIATING:
            try:
                self._handshake.receive_data(data)
            except SOCKSProtocolError as exc:
                self._malformed(exc)
                return
            self._advance()
        elif self._phase is not _CLOSED:
            # The tunnel's data: held until the destination is connected.
            super().data_received(data)

    def eof_received(self) -> bool:
        if self._phase is _CONNECTING or self._phase is _FORWARDING:
            return super().eof_received()
        if self._phase is _NEGOTIATING:
            _log.debug("SOCKS client %s closed before finishing its request", self._peer)
        self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()
        super().connection_lost(exc)

    # -- the handshake -------------------------------------------------------------

    def _advance(self) -> None:
        # Re-entered when a password check answers at once: the loop that
        # is already running reads on.
        if self._advancing:
            return
        self._advancing = True
        try:
            while self._phase is _NEGOTIATING:
                try:
                    event = self._handshake.next_event()
                except SOCKSProtocolError as exc:
                    self._malformed(exc)
                    return
                if event is None:
                    return
                if isinstance(event, Greeting):
                    self._greeted(event)
                elif isinstance(event, UsernamePassword):
                    self._check_credentials(event)
                else:
                    self._requested(event)
        finally:
            self._advancing = False

    def _greeted(self, greeting: Greeting) -> None:
        wanted = (
            Method.NO_AUTHENTICATION
            if self._server.authenticate is None
            else Method.USERNAME_PASSWORD
        )
        if wanted in greeting.methods:
            self._answer(self._handshake.select_method(wanted))
            return
        self._answer(self._handshake.select_method(Method.NO_ACCEPTABLE))
        reason = (
            "SOCKS client offered no username/password authentication"
            if wanted == Method.USERNAME_PASSWORD
            else "SOCKS client offered no method without authentication"
        )
        self._refuse(reason)

    def _check_credentials(self, credentials: UsernamePassword) -> None:
        authenticate = self._server.authenticate
        assert authenticate is not None  # only offered with it
        try:
            username = credentials.username.decode()
            password = credentials.password.decode()
        except UnicodeDecodeError:
            self._authenticated(False)
            return
        d = maybe_deferred(authenticate, username, password)
        self._pending = d
        d.add_callbacks(self._authenticated, self._authentication_failed)

    def _authenticated(self, ok: object) -> None:
        self._pending = None
        if self._phase is not _NEGOTIATING:
            return
        accepted = ok is True
        self._answer(self._handshake.authentication_result(accepted))
        if not accepted:
            self._refuse("SOCKS username or password refused")
            return
        self._advance()

    def _authentication_failed(self, exc: BaseException) -> None:
        self._pending = None
        if isinstance(exc, CancelledError) or self._phase is not _NEGOTIATING:
            return
        # A fault of the checker, not of the client: worth its traceback.
        _log.error("SOCKS: checking the password of %s failed", self._peer, exc_info=exc)
        self._answer(self._handshake.authentication_result(False))
        self._close()

    def _requested(self, request: Request) -> None:
        self._request = request
        self._cancel_timer()
        server = self._server
        if request.version == 4 and not server.allow_socks4:
            self._refuse("SOCKS 4 is not served", reply=ReplyCode.NOT_ALLOWED)
            return
        if request.version == 4 and server.authenticate is not None:
            self._refuse(
                "SOCKS 4 has no password, and one is required", reply=ReplyCode.NOT_ALLOWED
            )
            return
        if request.command != Command.CONNECT:
            try:
                command = Command(request.command).name
            except ValueError:
                command = f"{request.command:#04x}"
            self._refuse(
                f"SOCKS command {command} is not supported",
                reply=ReplyCode.COMMAND_NOT_SUPPORTED,
            )
            return
        self._phase = _CONNECTING
        rest = self._handshake.take_rest()
        if rest:
            # Sent ahead of the reply: it is the destination's, in order.
            super().data_received(rest)
        self._timer = server._reactor.call_later(server.connect_timeout, self._connect_timed_out)
        if request.address_type is AddressType.DOMAIN_NAME:
            decision = server.rules.check_name(request.host, request.port)
            if decision is not None and not decision.allowed:
                self._refuse_destination(decision.reason)
                return
            lookup = _deferred(server._resolve_all(request.host))
            self._pending = lookup
            lookup.add_callbacks(self._resolved, self._unreachable)
        else:
            self._resolved([request.host])

    # -- the destination -----------------------------------------------------------

    def _resolved(self, addresses: list[str]) -> None:
        self._pending = None
        request = self._request
        if self._phase is not _CONNECTING or request is None:
            return
        name = request.host if request.address_type is AddressType.DOMAIN_NAME else None
        allowed: list[str] = []
        refusal = "the name has no address"
        for address in addresses:
            try:
                decision = self._server.rules.check(address, request.port, name=name)
            except ValueError:
                continue  # not an address: a resolver's mistake
            if decision.allowed:
                allowed.append(address)
            else:
                refusal = decision.reason
        if not allowed:
            self._refuse_destination(refusal)
            return
        endpoint = HostnameEndpoint(
            _Pinned(self._server._reactor, allowed), request.host, request.port, timeout=None
        )
        attempt = endpoint.connect(lambda _: Forwarder())
        self._pending = attempt
        attempt.add_callbacks(self._connected, self._unreachable)

    def _connected(self, outgoing: Forwarder) -> None:
        self._pending = None
        if self._phase is not _CONNECTING:
            outgoing.transport.close()
            return
        self._cancel_timer()
        host, port = _bound_address(outgoing.transport.get_extra_info("sockname"))
        self._answer(self._handshake.reply(ReplyCode.SUCCEEDED, host, port))
        self._phase = _FORWARDING
        _log.debug("SOCKS client %s connected to %s", self._peer, self._where())
        splice(self, outgoing)

    def _unreachable(self, exc: BaseException) -> None:
        self._pending = None
        if isinstance(exc, CancelledError) or self._phase is not _CONNECTING:
            return
        self._fail(_reply_code(exc), f"cannot reach {self._where()}: {exc or type(exc).__name__}")

    # -- timeouts ------------------------------------------------------------------

    def _negotiation_timed_out(self) -> None:
        self._timer = None
        _log.info(
            "SOCKS client %s sent no complete request within %g s; closing",
            self._peer,
            self._server.negotiation_timeout,
        )
        self._close()

    def _connect_timed_out(self) -> None:
        self._timer = None
        self._cancel_pending()
        self._fail(
            ReplyCode.TTL_EXPIRED,
            f"{self._where()} did not answer within {self._server.connect_timeout:g} s",
        )

    # -- endings -------------------------------------------------------------------

    def _malformed(self, exc: SOCKSProtocolError) -> None:
        self._answer(self._handshake.error_reply(exc))
        self._server._log.refused(self._peer, client_key(self._peer), f"bad SOCKS request: {exc}")
        self._close()

    def _refuse(self, reason: str, *, reply: ReplyCode = ReplyCode.NOT_ALLOWED) -> None:
        """Refuse the client (by policy): answer, log through the RefusalLog, close."""
        if self._handshake.state is ServerState.REPLY:
            self._answer(self._handshake.reply(reply))
        self._server._log.refused(self._peer, client_key(self._peer), reason)
        self._close()

    def _refuse_destination(self, reason: str) -> None:
        # One line per client and reason in the log; the destination, which
        # a scanning client varies, only at DEBUG.
        _log.debug("SOCKS client %s may not reach %s: %s", self._peer, self._where(), reason)
        self._refuse("SOCKS destination not allowed")

    def _fail(self, code: ReplyCode, reason: str) -> None:
        """The destination could not be reached: answer, log, close."""
        if self._handshake.state is ServerState.REPLY:
            self._answer(self._handshake.reply(code))
        _log.info("SOCKS client %s: %s", self._peer, reason)
        self._close()

    def _close(self) -> None:
        self._finish()
        self.transport.close()

    def _finish(self) -> None:
        """Stop the timer and any lookup, check or connection under way."""
        if self._phase is not _FORWARDING:
            self._phase = _CLOSED
        self._cancel_timer()
        self._cancel_pending()

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _cancel_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    def _answer(self, data: bytes) -> None:
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def _where(self) -> str:
        return _destination(self._request) if self._request is not None else "?"

    def __repr__(self) -> str:
        return f"<SOCKS connection from {self._peer}, {self._phase.value}>"

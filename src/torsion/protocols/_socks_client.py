r"""Connecting through a SOCKS proxy: client endpoints for SOCKS 5 and SOCKS 4a.

``SOCKS5ClientEndpoint`` connects to the proxy through any client endpoint
(TCP, a host name, TLS, a Unix socket, another SOCKS proxy), runs the SOCKS
handshake, and only then builds the caller's protocol and hands it the
connection, replaying what the destination sent along with the proxy's
reply. A refusal fails ``connect()`` with ``SOCKSError`` (its ``code`` and
``meaning`` say why), and the factory is never called::

    proxy = HostnameEndpoint(reactor, "proxy.example", 1080)
    endpoint = SOCKS5ClientEndpoint(reactor, proxy, "example.org", 443)
    protocol = await wrap_client_tls(endpoint, "example.org").connect(factory)

A host name is sent to the proxy as a name, for the proxy to resolve (what
``curl --socks5-hostname`` does): the client's own resolver never sees it,
and a name only the proxy's network knows still works. ``SOCKS4ClientEndpoint``
does the same over SOCKS 4, sending names with the 4a extension.

The endpoint-string kinds ``socks5:`` and ``socks4a:`` are made by
``socks5_client_from_parsed`` and ``socks4a_client_from_parsed``::

    socks5:PROXYHOST:PROXYPORT:HOST:PORT[:username=NAME][:password=SECRET][:timeout=SECONDS]
    socks4a:PROXYHOST:PROXYPORT:HOST:PORT[:userId=ID][:timeout=SECONDS]

(an IPv6 address escapes its colons: ``socks5:\:\:1:1080:example.org:80``).
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from torsion.defer import Deferred
from torsion.internet import (
    Address,
    ClientEndpoint,
    Clock,
    DelayedCall,
    HostnameEndpoint,
    IPv4Address,
    IPv6Address,
    is_ip_address,
)
from torsion.protocols._socks_handshake import SOCKSClientHandshake
from torsion.protocols._socks_wire import SOCKSError

__all__ = [
    "DEFAULT_TIMEOUT",
    "SOCKS4A_ENDPOINT_KIND",
    "SOCKS5_ENDPOINT_KIND",
    "SOCKS4ClientEndpoint",
    "SOCKS5ClientEndpoint",
    "SOCKSEndpointKind",
    "socks4a_client_from_parsed",
    "socks5_client_from_parsed",
]

P = TypeVar("P", bound=asyncio.BaseProtocol)

DEFAULT_TIMEOUT = 30.0
"""Seconds for connecting to the proxy and the whole SOCKS handshake."""


class _SOCKSClientEndpoint:
    """What both versions share: connect to the proxy, negotiate, hand over."""

    def __init__(
        self, reactor: Clock, proxy: ClientEndpoint, host: str, port: int, timeout: float | None
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be more than 0 seconds, not {timeout}")
        self._reactor = reactor
        self.proxy = proxy
        self.host = host
        self.port = port
        self.timeout = timeout
        self._handshake()  # a name or credentials that cannot be sent fail now

    def _handshake(self) -> SOCKSClientHandshake:
        raise NotImplementedError

    def connect(self, factory: Callable[[Address], P]) -> Deferred[P]:
        """Connect through the proxy; the Deferred fires with the protocol.

        The protocol is made once the proxy has connected to the
        destination, with the destination's address if it is an IP address
        (for a name, which only the proxy resolves, the proxy's address).

        Returns:
            A Deferred that fires with the protocol, or fails with
            ``SOCKSError`` (the proxy refused: ``code`` says why),
            ``SOCKSAuthenticationError``, ``SOCKSProtocolError`` (the proxy
            spoke nonsense), ``TimeoutError`` (``timeout`` passed) or the
            proxy endpoint's own error. Cancelling it stops the attempt and
            closes the connection to the proxy.
        """
        return _Attempt(self, factory).start()

    def _target(self, proxy: Address | None) -> Address | None:
        if is_ip_address(self.host):
            if ":" in self.host:
                return IPv6Address(self.host, self.port)
            return IPv4Address(self.host, self.port)
        return proxy

    def _where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port} via {self.proxy!r}"


class SOCKS5ClientEndpoint(_SOCKSClientEndpoint):
    """Connects to ``host:port`` through a SOCKS 5 proxy (RFC 1928).

    Args:
        reactor: Keeps time for ``timeout``.
        proxy: How to reach the proxy (``HostnameEndpoint(reactor, host,
            1080)``, TLS, a Unix socket...).
        host: The destination: an IP address, or a name the proxy resolves.
        port: The destination's port.
        username: Log in with username/password (RFC 1929) if the proxy
            asks; "no authentication" is offered too.
        password: The password ("" if None).
        timeout: Seconds for the whole attempt, proxy connection included
            (None: no limit beyond the proxy endpoint's own).

    Raises:
        ValueError: The name is over 255 bytes or not a valid name, the
            credentials are over 255 bytes, or a password has no username.
    """

    def __init__(
        self,
        reactor: Clock,
        proxy: ClientEndpoint,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.username = username
        self.password = password
        super().__init__(reactor, proxy, host, port, timeout)

    def _handshake(self) -> SOCKSClientHandshake:
        return SOCKSClientHandshake(
            self.host, self.port, version=5, username=self.username, password=self.password
        )

    def __repr__(self) -> str:
        return f"<SOCKS5ClientEndpoint {self._where()}>"


class SOCKS4ClientEndpoint(_SOCKSClientEndpoint):
    """Connects to ``host:port`` through a SOCKS 4 proxy; names go with the 4a extension.

    SOCKS 4 has no passwords and no IPv6.

    Args:
        reactor: Keeps time for ``timeout``.
        proxy: How to reach the proxy.
        host: The destination: an IPv4 address, or a name the proxy resolves.
        port: The destination's port.
        user_id: The user id sent in the request (some servers check it).
        timeout: Seconds for the whole attempt, proxy connection included.

    Raises:
        ValueError: ``host`` is an IPv6 address, or the name or user id
            does not fit.
    """

    def __init__(
        self,
        reactor: Clock,
        proxy: ClientEndpoint,
        host: str,
        port: int,
        *,
        user_id: str = "",
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.user_id = user_id
        super().__init__(reactor, proxy, host, port, timeout)

    def _handshake(self) -> SOCKSClientHandshake:
        return SOCKSClientHandshake(self.host, self.port, version=4, user_id=self.user_id)

    def __repr__(self) -> str:
        return f"<SOCKS4ClientEndpoint {self._where()}>"


class _Attempt(Generic[P]):
    """One ``connect()``: the proxy's connection, the handshake, the handover."""

    def __init__(self, endpoint: _SOCKSClientEndpoint, factory: Callable[[Address], P]) -> None:
        self._endpoint = endpoint
        self._factory = factory
        self._result: Deferred[P] = Deferred(self._cancel)
        self._proxy_attempt: Deferred[Any] | None = None
        self._negotiator: _Negotiator | None = None
        self._proxy_address: Address | None = None
        self._timer: DelayedCall | None = None
        self._done = False

    def start(self) -> Deferred[P]:
        timeout = self._endpoint.timeout
        if timeout is not None:
            self._timer = self._endpoint._reactor.call_later(timeout, self._timed_out)
        attempt = self._endpoint.proxy.connect(self._make_negotiator)
        if not attempt.called:
            self._proxy_attempt = attempt
        attempt.add_callbacks(self._proxy_connected, self._proxy_failed)
        return self._result

    def _make_negotiator(self, address: Address) -> _Negotiator:
        self._proxy_address = address
        self._negotiator = _Negotiator(self, self._endpoint._handshake())
        return self._negotiator

    def _proxy_connected(self, _: object) -> None:
        self._proxy_attempt = None

    def _proxy_failed(self, exc: BaseException) -> None:
        self._proxy_attempt = None
        self._fail(exc)

    def negotiated(self, negotiator: _Negotiator, rest: bytes) -> None:
        """The proxy granted the request: give the connection to the real protocol."""
        if self._done:
            return
        self._finish()
        transport = negotiator.transport
        assert transport is not None
        target = self._endpoint._target(self._proxy_address)
        assert target is not None  # the proxy endpoint gave its address
        try:
            protocol = self._factory(target)
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            if negotiator.writing_paused:
                protocol.pause_writing()
            if rest and not transport.is_closing() and isinstance(protocol, asyncio.Protocol):
                protocol.data_received(rest)
        except BaseException as exc:
            transport.abort()
            self._result.errback(exc)
            return
        self._result.callback(protocol)

    def negotiation_failed(self, exc: BaseException) -> None:
        """The proxy refused, spoke nonsense or hung up."""
        self._fail(exc)

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(
            TimeoutError(
                f"connecting to {self._endpoint._where()} took over {self._endpoint.timeout:g} s"
            )
        )

    def _cancel(self, _: Deferred[P]) -> None:
        self._finish()
        self._abort()

    def _fail(self, exc: BaseException) -> None:
        if self._done:
            return
        self._finish()
        self._abort()
        self._result.errback(exc)

    def _finish(self) -> None:
        self._done = True
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _abort(self) -> None:
        attempt, self._proxy_attempt = self._proxy_attempt, None
        if attempt is not None:
            attempt.cancel()
        negotiator = self._negotiator
        if negotiator is not None and negotiator.transport is not None:
            negotiator.transport.abort()


class _Negotiator(asyncio.Protocol):
    """The connection's protocol while the SOCKS handshake runs."""

    def __init__(self, attempt: _Attempt[Any], handshake: SOCKSClientHandshake) -> None:
        self._attempt = attempt
        self._handshake = handshake
        self.transport: asyncio.Transport | None = None
        self.writing_paused = False
        self._finished = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)
        self.transport.write(self._handshake.start())

    def data_received(self, data: bytes) -> None:
        if self._finished:
            return
        try:
            answer = self._handshake.receive_data(data)
        except SOCKSError as exc:
            self._end(exc)
            return
        if answer and self.transport is not None:
            self.transport.write(answer)
        if self._handshake.done:
            self._finished = True
            self._attempt.negotiated(self, self._handshake.take_rest())

    def eof_received(self) -> bool:
        self._end(SOCKSError("the SOCKS proxy closed the connection before it replied"))
        return False

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        error = SOCKSError("the connection to the SOCKS proxy was lost before it replied")
        error.__cause__ = exc
        self._end(error)

    def _end(self, exc: BaseException) -> None:
        if self._finished:
            return
        self._finished = True
        self._attempt.negotiation_failed(exc)


# -- endpoint strings --------------------------------------------------------------------


def _port(text: str, what: str) -> int:
    try:
        port = int(text, 10)
    except ValueError:
        raise ValueError(f"{what} must be a whole number, not {text!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{what} must be 1 to 65535, not {port}")
    return port


def _common(
    kind: str, args: tuple[str, ...], options: dict[str, str], allowed: tuple[str, ...]
) -> tuple[str, int, str, int, float | None]:
    for key in options:
        if key not in allowed:
            names = ", ".join(f"{name}=" for name in allowed)
            raise ValueError(f"unknown option {key!r} for {kind}: (allowed: {names})")
    if len(args) != 4 or not all(args):
        raise ValueError(f"{kind}: needs PROXYHOST:PROXYPORT:HOST:PORT")
    proxy_host, proxy_port, host, port = args
    timeout: float | None = DEFAULT_TIMEOUT
    if "timeout" in options:
        try:
            timeout = float(options["timeout"])
        except ValueError:
            raise ValueError(
                f"timeout must be a number of seconds, not {options['timeout']!r}"
            ) from None
        if not timeout > 0:
            raise ValueError(f"timeout must be more than 0 seconds, not {options['timeout']}")
    return proxy_host, _port(proxy_port, "the proxy's port"), host, _port(port, "port"), timeout


def socks5_client_from_parsed(
    reactor: Any, args: tuple[str, ...], options: dict[str, str]
) -> SOCKS5ClientEndpoint:
    """Make the endpoint of ``socks5:PROXYHOST:PROXYPORT:HOST:PORT[:key=value...]``.

    Options: ``username``, ``password``, ``timeout`` (seconds, for the
    proxy connection and the handshake together; 30 by default). The proxy
    is reached with ``HostnameEndpoint``.

    Args:
        reactor: Connects and keeps time.
        args: The positional fields after the kind.
        options: The ``key=value`` fields.

    Raises:
        ValueError: A field is missing or invalid (the message says which).
    """
    proxy_host, proxy_port, host, port, timeout = _common(
        "socks5", args, options, ("username", "password", "timeout")
    )
    if "password" in options and "username" not in options:
        raise ValueError("password= needs username=")
    proxy = HostnameEndpoint(reactor, proxy_host, proxy_port, timeout=timeout)
    return SOCKS5ClientEndpoint(
        reactor,
        proxy,
        host,
        port,
        username=options.get("username"),
        password=options.get("password"),
        timeout=timeout,
    )


def socks4a_client_from_parsed(
    reactor: Any, args: tuple[str, ...], options: dict[str, str]
) -> SOCKS4ClientEndpoint:
    """Make the endpoint of ``socks4a:PROXYHOST:PROXYPORT:HOST:PORT[:userId=ID][:timeout=S]``.

    Raises:
        ValueError: A field is missing or invalid (the message says which).
    """
    proxy_host, proxy_port, host, port, timeout = _common(
        "socks4a", args, options, ("userId", "timeout")
    )
    proxy = HostnameEndpoint(reactor, proxy_host, proxy_port, timeout=timeout)
    return SOCKS4ClientEndpoint(
        reactor, proxy, host, port, user_id=options.get("userId", ""), timeout=timeout
    )


class SOCKSEndpointKind:
    """An endpoint-string kind for SOCKS clients (a ``torsion.endpoints`` entry point).

    Args:
        prefix: The kind's name ("socks5").
        make: Makes the client endpoint from the fields.
    """

    def __init__(
        self, prefix: str, make: Callable[[Any, tuple[str, ...], dict[str, str]], Any]
    ) -> None:
        self.prefix = prefix
        self._make = make

    def client(self, reactor: Any, args: tuple[str, ...], options: dict[str, str]) -> Any:
        """Make the client endpoint (ValueError says what is wrong with the string)."""
        return self._make(reactor, args, options)

    def __repr__(self) -> str:
        return f"<SOCKSEndpointKind {self.prefix}>"


SOCKS5_ENDPOINT_KIND = SOCKSEndpointKind("socks5", socks5_client_from_parsed)
"""The ``socks5:`` endpoint-string kind."""

SOCKS4A_ENDPOINT_KIND = SOCKSEndpointKind("socks4a", socks4a_client_from_parsed)
"""The ``socks4a:`` endpoint-string kind."""

"""Tunnels through an HTTP proxy: a client endpoint that sends CONNECT first.

``HTTPConnectEndpoint`` connects to the proxy through any client endpoint,
asks it for a tunnel to ``host:port`` (RFC 9110 section 9.3.6), and only
once the proxy answers 2xx builds the caller's protocol and hands it the
connection. Anything else fails ``connect()`` with ``ProxyConnectError`` and
the factory is never called. TLS to the destination runs over the tunnel
(``wrap_client_tls``), so the proxy sees only the host name and port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from torsion.defer import Deferred
from torsion.internet import Address, ClientEndpoint, Protocol
from torsion.web._client_errors import BadResponseError, ProxyConnectError
from torsion.web._client_http11 import HTTP11ClientCore, ResponseComplete, ResponseStarted
from torsion.web._headers import Headers

__all__ = ["HTTPConnectEndpoint"]

P = TypeVar("P", bound=asyncio.BaseProtocol)


class HTTPConnectEndpoint:
    """Connects to ``host:port`` through an HTTP proxy's CONNECT tunnel.

    Args:
        proxy: How to reach the proxy.
        host: The destination's host name or IP address.
        port: The destination's port.
        headers: More fields for the CONNECT request (``Proxy-Authorization``).
    """

    def __init__(
        self, proxy: ClientEndpoint, host: str, port: int, *, headers: Headers | None = None
    ) -> None:
        self.proxy = proxy
        self.host = host
        self.port = port
        self.headers = headers

    def connect(self, factory: Callable[[Address], P]) -> Deferred[P]:
        """Connect to the proxy, open the tunnel, then build the protocol.

        Returns:
            A Deferred firing with the protocol once the tunnel is open; it
            fails with ``ProxyConnectError`` (a refusal),
            ``BadResponseError`` (not an HTTP answer) or the proxy
            connection's own error. Cancelling it closes the connection.
        """
        authority = (
            f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        )
        result: Deferred[P] = Deferred(lambda _: negotiator.abort())
        negotiator = _Negotiator(authority.encode("ascii"), self.headers, factory, result)
        attempt = self.proxy.connect(lambda address: negotiator.at(address))

        def failed(exc: BaseException) -> None:
            if not result.called:
                result.errback(exc)

        negotiator.attempt = attempt
        attempt.add_errback(failed)
        return result

    def __repr__(self) -> str:
        return f"<HTTPConnectEndpoint {self.host}:{self.port} via {self.proxy!r}>"


class _Negotiator(Protocol):
    """Sends CONNECT and reads the proxy's answer, then steps aside."""

    def __init__(
        self,
        authority: bytes,
        headers: Headers | None,
        factory: Callable[[Address], P],
        result: Deferred[P],
    ) -> None:
        self._authority = authority
        self._headers = headers
        self._factory: Callable[[Address], asyncio.BaseProtocol] = factory
        self._result: Deferred[asyncio.BaseProtocol] = result  # type: ignore[assignment]
        self._core = HTTP11ClientCore()
        self._address: Address | None = None
        self._done = False
        self.attempt: Deferred[_Negotiator] | None = None

    def at(self, address: Address) -> _Negotiator:
        self._address = address
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        fields = [(b"Host", self._authority)]
        if self._headers is not None:
            fields += [(n, v) for n, v in self._headers.raw if n.lower() != b"host"]
        try:
            head = self._core.start_request(
                b"CONNECT",
                self._authority,
                Headers.from_raw(fields),
                body_length=None,
                head_only=True,
            )
        except Exception as exc:
            self._fail(exc)
            return
        self.transport.write(head)

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        try:
            events = self._core.receive_data(data)
        except BadResponseError as exc:
            self._fail(exc)
            return
        for event in events:
            if isinstance(event, ResponseStarted) and not 200 <= event.code < 300:
                self._fail(ProxyConnectError(event.code, event.phrase))
                return
            if isinstance(event, ResponseComplete):
                # The tunnel is open. (An HTTP/1.0 proxy's 200 is not
                # "keep-alive", and need not be: the connection is the
                # tunnel's now. The destination does not speak before the
                # client over TLS, so nothing follows the answer.)
                self._open()
                return

    def eof_received(self) -> bool | None:
        self._fail(BadResponseError("the proxy closed the connection before it answered"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self._done:
            self._fail(exc or ConnectionResetError("the proxy closed the connection"))

    def abort(self) -> None:
        self._done = True
        if self.attempt is not None and not self.attempt.called:
            self.attempt.cancel()
        if hasattr(self, "transport"):
            self.transport.abort()

    def _fail(self, exc: BaseException) -> None:
        if self._done:
            return
        self._done = True
        if hasattr(self, "transport"):
            self.transport.abort()
        if not self._result.called:
            self._result.errback(exc)

    def _open(self) -> None:
        self._done = True
        transport = self.transport
        assert self._address is not None
        try:
            protocol = self._factory(self._address)
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
        except BaseException as exc:
            transport.abort()
            self._result.errback(exc)
            return
        self._result.callback(protocol)

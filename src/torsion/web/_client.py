"""The HTTP client: requests by URL, pooled connections, redirects, decoding.

``HTTPClient`` is the user-facing client (the role of Twisted's ``Agent``)::

    client = HTTPClient(reactor)
    response = await client.get("https://example.org/")
    print(response.code, response.headers.get_str("content-type"))
    body = await response.read()
    await client.close()

Every request goes through a ``ConnectionPool`` keyed by origin (scheme,
host, port): a keep-alive connection is reused when one is idle, and one
whose response was not read to its end, or that either side marked
``Connection: close``, is never reused. A pooled connection the server had
closed fails before any byte of the response; an idempotent request whose
body can be sent again is then retried once on a new connection (RFC 9110
section 9.2.2).

Redirects (301, 302, 303, 307, 308) are followed up to ``max_redirects``:
303 turns any method but HEAD into GET without a body, 301 and 302 turn POST
into GET (as every browser does, RFC 9110 section 15.4.2), 307 and 308 keep
the method and the body. A redirect to another origin drops
``Authorization``, ``Cookie`` and ``Proxy-Authorization`` (CVE-2022-21712);
cookies from the jar are chosen again for each URL. A redirect from https to
http is refused unless ``allow_insecure_redirects`` is set.

Responses are decoded (gzip, deflate, and br with the ``brotli`` module)
within ``max_body_size``. Each request has a timeout that covers everything
until the response head (connecting, TLS, sending, every redirect); reading
the body then gives up after ``timeout`` seconds without data. A request
that times out or is cancelled closes its connection and leaves nothing
behind. Methods, URLs and headers holding CR, LF, NUL or (in methods and
URLs) spaces are refused before anything is sent (CVE-2019-12387).

Results are Deferreds, awaitable from coroutines of either kind, as across
torsion.

HTTP/2 is offered by ALPN on https (``h2`` before ``http/1.1``) and spoken
when the server picks it, or from the start on http with
``http2_prior_knowledge``: one connection per origin then carries the
concurrent requests, up to the server's SETTINGS_MAX_CONCURRENT_STREAMS,
and stays out of the pool's idle list until it closes (it counts as one of
the origin's connections all along). While the first connection to such an
origin is being made, other requests for it wait to see whether it speaks
HTTP/2 rather than each opening its own. A request that times out or is
cancelled on HTTP/2 resets its stream only.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar
from urllib.parse import urljoin, urlsplit

from torsion.defer import Deferred, ensure_deferred, fail, gather, succeed
from torsion.defer import timeout as deadline
from torsion.internet import (
    Address,
    Connector,
    DelayedCall,
    TCPClientEndpoint,
    client_context,
    wrap_client_tls,
)
from torsion.web._client_decoding import ACCEPT_ENCODING, decoder_for
from torsion.web._client_errors import (
    BadResponseError,
    ClientClosedError,
    InvalidRequestError,
    RedirectRefusedError,
    ResponseNeverReceivedError,
    TooManyRedirectsError,
)
from torsion.web._client_h2 import H2ClientConnection, H2Exchange
from torsion.web._client_http11 import (
    Exchange,
    HTTP11ClientConnection,
    HTTP11ClientCore,
    ResponseStarted,
    check_method,
)
from torsion.web._client_proxy import HTTPConnectEndpoint
from torsion.web._client_request import (
    HeadersLike,
    RequestBody,
    RequestBodySource,
    RequestURL,
    declared_length,
    headers_of,
    parse_url,
)
from torsion.web._client_response import Response
from torsion.web._headers import Headers
from torsion.web._pool import ConnectionPool, Lease

__all__ = [
    "CookieStore",
    "HTTPClient",
    "ReactorForHTTP",
    "RequestBody",
    "Response",
]

P = TypeVar("P", bound=asyncio.BaseProtocol)

# RFC 9110 section 9.2.2.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Fields no redirect to another origin may carry (CVE-2022-21712).
_CREDENTIALS = (b"authorization", b"cookie", b"proxy-authorization")
# Fields that describe a body, dropped with it when a redirect becomes a GET.
_BODY_FIELDS = (b"content-type", b"content-encoding", b"content-language", b"content-location")


class ReactorForHTTP(Protocol):
    """What the client needs of a reactor: time, and TCP and TLS connections."""

    def seconds(self) -> float:
        """The current time."""
        ...

    def call_later(self, delay: float, f: Callable[..., object], /, *args: Any) -> DelayedCall:
        """Call ``f(*args)`` in ``delay`` seconds."""
        ...

    def connect_tcp(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        timeout: float | None = 30.0,
    ) -> Connector[P]:
        """Connect to ``host:port`` over TCP."""
        ...

    def connect_tls(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float | None = 30.0,
    ) -> Connector[P]:
        """Connect to ``host:port`` over TLS."""
        ...


class CookieStore(Protocol):
    """Where the client keeps cookies (``torsion.web.CookieJar`` is one)."""

    def cookie_header(self, url: str) -> bytes | None:
        """The ``Cookie`` field for a request to ``url``, or None."""
        ...

    def receive(self, url: str, set_cookie: Iterable[bytes]) -> object:
        """Store what a response from ``url`` set."""
        ...


class HTTPClient:
    """Makes HTTP/1.1 and HTTP/2 requests over pooled keep-alive connections.

    Args:
        reactor: Gives time and connections.
        tls_context: The TLS settings for https (``client_context()``:
            the system's trust store, certificates and host names checked).
        timeout: Seconds a request may take until the response head, and a
            body may go without data (None: no limit).
        connect_timeout: Seconds one connection attempt may take.
        max_per_origin: The most connections open to one origin.
        max_connections: The most connections open in all.
        idle_timeout: Seconds an unused keep-alive connection is kept.
        max_redirects: The most redirects followed in a row.
        allow_insecure_redirects: Follow redirects from https to http.
        proxy: An HTTP proxy (``http://host:port``: CONNECT tunnels for
            https, absolute URLs for http) or a SOCKS 5 proxy
            (``socks5://host:port``, names resolved by the proxy).
        proxy_headers: Fields for the proxy (``Proxy-Authorization``): sent
            with CONNECT, or with each request to a forwarding proxy.
            Through a tunnel, a request's own ``Proxy-Authorization`` is
            never sent: it would reach the origin server.
        cookies: Where cookies are kept (a ``CookieJar``); None sends none.
        decode_content: Ask for and decode compressed bodies.
        max_body_size: The most bytes ``read()`` returns, and the most a
            compressed body may decode to (None: no bound).
        headers: Fields sent with every request (a request's own win).
        core_limits: Bounds on responses, as ``HTTP11ClientCore`` takes them
            (``max_head_size``, ``max_header_count``, ...); ``max_head_size``
            also bounds an HTTP/2 response's header list.
        http2: Offer h2 by ALPN on https (with the client's own TLS
            context; a given ``tls_context`` keeps its own ALPN list).
        http2_prior_knowledge: Speak HTTP/2 from the start on http origins
            (RFC 9113 section 3.3), not through a forwarding proxy.
    """

    def __init__(
        self,
        reactor: ReactorForHTTP,
        *,
        tls_context: ssl.SSLContext | None = None,
        timeout: float | None = 30.0,
        connect_timeout: float | None = 10.0,
        max_per_origin: int = 10,
        max_connections: int = 100,
        idle_timeout: float = 60.0,
        max_redirects: int = 10,
        allow_insecure_redirects: bool = False,
        proxy: str | None = None,
        proxy_headers: HeadersLike | None = None,
        cookies: CookieStore | None = None,
        decode_content: bool = True,
        max_body_size: int | None = 64 * 1024 * 1024,
        headers: HeadersLike | None = None,
        core_limits: Mapping[str, int] | None = None,
        http2: bool = True,
        http2_prior_knowledge: bool = False,
    ) -> None:
        self.reactor = reactor
        self._tls = tls_context
        # A context given by the caller offers whatever it offers; h2 is
        # spoken if the server picks it all the same.
        self._tls_offers_h2 = tls_context is not None
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_redirects = max_redirects
        self.allow_insecure_redirects = allow_insecure_redirects
        self.cookies = cookies
        self.decode_content = decode_content
        self.max_body_size = max_body_size
        self._default_headers = headers_of(headers)
        self._core_limits = dict(core_limits or {})
        HTTP11ClientCore(**self._core_limits)  # Bad limits fail here, not later.
        self._proxy = _parse_proxy(proxy) if proxy is not None else None
        self._proxy_headers = headers_of(proxy_headers)
        self._pool: ConnectionPool[tuple[str, str, int], HTTP11ClientConnection] = ConnectionPool(
            reactor,
            max_per_key=max_per_origin,
            max_total=max_connections,
            idle_timeout=idle_timeout,
        )
        self._connections: set[HTTP11ClientConnection] = set()
        self._closed_waiters: dict[HTTP11ClientConnection, list[Deferred[None]]] = {}
        self._closed = False
        self.http2 = http2
        self.http2_prior_knowledge = http2_prior_knowledge
        # HTTP/2 connections by origin, in use until they close.
        self._h2: dict[tuple[str, str, int], list[HTTP11ClientConnection]] = {}
        # Origins whose first connection is being made: requests wait on it.
        self._probing: dict[tuple[str, str, int], list[Deferred[None]]] = {}
        # Requests waiting for a stream on an origin's full HTTP/2 connections.
        self._stream_waiters: dict[tuple[str, str, int], list[Deferred[None]]] = {}
        # Idle HTTP/2 connections' timers.
        self._h2_idle: dict[HTTP11ClientConnection, DelayedCall] = {}
        # Origins that answered HTTP/1.1 to the h2 offer.
        self._h1_origins: set[tuple[str, str, int]] = set()

    @property
    def pool(self) -> ConnectionPool[tuple[str, str, int], HTTP11ClientConnection]:
        """The connection pool (for its counts)."""
        return self._pool

    # Requests.

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: HeadersLike | None = None,
        body: RequestBody = None,
        timeout: float | None = None,
        follow_redirects: bool = True,
    ) -> Deferred[Response]:
        """Send a request and wait for the response head.

        Args:
            method: The method ("GET", "POST", ...), sent as given.
            url: An absolute http or https URL.
            headers: More fields (``Host``, ``Content-Length`` for a
                streamed body, ...); the client adds ``Host``,
                ``Accept-Encoding``, cookies and the framing.
            body: Bytes, an async iterable of bytes (sent chunked unless
                ``Content-Length`` is given), or a binary file.
            timeout: Seconds until the response head (the client's timeout
                if None).
            follow_redirects: Follow 3xx redirects.

        Returns:
            A Deferred of the ``Response`` (its body still to read); it
            fails with ``InvalidRequestError`` before anything is sent,
            ``TimeoutError``, ``TooManyRedirectsError``,
            ``RedirectRefusedError``, ``BadResponseError``, or the
            connection's error. Cancelling it closes the connection.
        """
        try:
            if self._closed:
                raise ClientClosedError("the HTTP client is closed")
            method_bytes = method.encode("ascii", "replace")
            check_method(method_bytes)
            target = parse_url(url)
            fields = headers_of(headers)
            if self._default_headers:
                given = {name.lower() for name, _ in fields.raw}
                defaults = [p for p in self._default_headers.raw if p[0].lower() not in given]
                fields = Headers.from_raw(defaults + fields.raw)
            declared = declared_length(fields)
            request_body = RequestBodySource(body, declared)
        except Exception as exc:
            return fail(exc)
        seconds = self.timeout if timeout is None else timeout
        d = ensure_deferred(
            self._request(method, target, fields, request_body, follow_redirects, seconds)
        )
        if seconds is not None:
            d = deadline(d, seconds, self.reactor)
        return d

    def get(self, url: str, **kwargs: Any) -> Deferred[Response]:
        """``request("GET", url, ...)``."""
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> Deferred[Response]:
        """``request("HEAD", url, ...)``."""
        return self.request("HEAD", url, **kwargs)

    def post(self, url: str, body: RequestBody = None, **kwargs: Any) -> Deferred[Response]:
        """``request("POST", url, body=body, ...)``."""
        return self.request("POST", url, body=body, **kwargs)

    def put(self, url: str, body: RequestBody = None, **kwargs: Any) -> Deferred[Response]:
        """``request("PUT", url, body=body, ...)``."""
        return self.request("PUT", url, body=body, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Deferred[Response]:
        """``request("DELETE", url, ...)``."""
        return self.request("DELETE", url, **kwargs)

    def close(self) -> Deferred[None]:
        """Close every connection and refuse further requests.

        Returns:
            A Deferred that fires once every connection is closed.
        """
        self._closed = True
        self._pool.close()
        stream_waiters, self._stream_waiters = self._stream_waiters, {}
        for waiters in stream_waiters.values():
            for waiter in waiters:
                if not waiter.called:
                    waiter.errback(ClientClosedError("the HTTP client is closed"))
        waiting = []
        for connection in list(self._connections):
            d: Deferred[None] = Deferred()
            self._closed_waiters.setdefault(connection, []).append(d)
            waiting.append(d)
            if connection.busy:
                connection.transport.abort()
            else:
                connection.close()
        if not waiting:
            return succeed(None)
        done: Deferred[None] = gather(waiting).add_callback(lambda _: None)
        return done

    # Inside.

    async def _request(
        self,
        method: str,
        url: RequestURL,
        fields: Headers,
        body: RequestBodySource,
        follow: bool,
        read_timeout: float | None,
    ) -> Response:
        history: list[str] = []
        while True:
            response = await self._send(method, url, fields, body, read_timeout)
            location = response.headers.get(b"location")
            if not follow or response.code not in _REDIRECTS or location is None:
                response.history = history
                return response
            history.append(url.url)
            if len(history) > self.max_redirects:
                response.close()
                raise TooManyRedirectsError([*history, _join(url, location)])
            next_url = self._redirect_target(url, location, response)
            method, body = self._redirected_method(method, response.code, body, fields)
            if next_url.origin != url.origin:
                for name in _CREDENTIALS:
                    fields.remove(name)
            if not body.replayable:
                # A 307/308 asks for the body again, which was a stream.
                response.history = history[:-1]
                return response
            await response._drain()
            url = next_url

    def _redirect_target(self, url: RequestURL, location: bytes, response: Response) -> RequestURL:
        joined = _join(url, location)
        try:
            next_url = parse_url(joined)
        except InvalidRequestError as exc:
            response.close()
            raise RedirectRefusedError(f"cannot follow the redirect: {exc}", joined) from exc
        downgrade = url.scheme == "https" and next_url.scheme == "http"
        if downgrade and not self.allow_insecure_redirects:
            response.close()
            raise RedirectRefusedError("refused a redirect from https to http", joined)
        return next_url

    @staticmethod
    def _redirected_method(
        method: str, code: int, body: RequestBodySource, fields: Headers
    ) -> tuple[str, RequestBodySource]:
        becomes_get = (code == 303 and method != "HEAD") or (
            code in (301, 302) and method == "POST"
        )
        if not becomes_get:
            return method, body
        for name in _BODY_FIELDS:
            fields.remove(name)
        fields.remove(b"content-length")
        return "GET", RequestBodySource(None, None)

    async def _send(
        self,
        method: str,
        url: RequestURL,
        fields: Headers,
        body: RequestBodySource,
        read_timeout: float | None,
    ) -> Response:
        method_bytes = method.encode("ascii")
        fresh = False
        retried = False
        headers = self._request_headers(url, fields)
        target = url.url.encode("ascii") if self._proxy_for_http(url) else url.target
        origin = url.origin
        while True:
            connection = self._h2_for(origin)
            reused = True
            probing = False
            if connection is None:
                if self._may_speak_h2(url) and origin in self._probing:
                    waiting: Deferred[None] = Deferred()
                    self._probing[origin].append(waiting)
                    await waiting
                    continue
                if (
                    self._h2.get(origin)
                    and self._pool.open_count(origin) >= self._pool.max_per_key
                ):
                    # Every stream of every connection the origin may have
                    # is taken: wait for one to end.
                    waiting = Deferred()
                    self._stream_waiters.setdefault(origin, []).append(waiting)
                    await waiting
                    continue
                probing = self._may_speak_h2(url) and origin not in self._h1_origins
                if probing:
                    self._probing[origin] = []
                try:
                    lease: Lease[HTTP11ClientConnection] = await self._pool.acquire(
                        origin, lambda: self._connect(url), fresh=fresh
                    )
                    connection, reused = lease.connection, lease.reused
                    if connection.h2 is not None:
                        if not connection.is_open:
                            self._pool.release(origin, connection, False)
                            raise ResponseNeverReceivedError("the HTTP/2 connection closed")
                        self._h2.setdefault(origin, []).append(connection)
                    elif probing:
                        self._h1_origins.add(origin)
                except BaseException:
                    if probing:
                        self._end_probe(origin)
                    raise
            h2 = connection.h2
            exchange: Exchange | H2Exchange | None = None
            try:
                if h2 is not None:
                    self._h2_busy(connection)
                    exchange = h2.start(
                        method_bytes,
                        url.target,
                        headers,
                        scheme=url.scheme.encode("ascii"),
                        body_length=body.wire_length(method_bytes),
                        body=body.whole or b"",
                    )
                    writer: Any = exchange
                else:
                    if connection.alpn not in (None, "http/1.1"):
                        raise BadResponseError(f"the server chose {connection.alpn!r} by ALPN")
                    exchange = connection.start(
                        method_bytes,
                        target,
                        headers,
                        body_length=body.wire_length(method_bytes),
                        body=body.whole or b"",
                        head_only=method_bytes == b"HEAD",
                    )
                    writer = connection
                if probing:
                    # This request took the first stream; the ones that
                    # waited share the connection or go their own way.
                    probing = False
                    self._end_probe(origin)
                # A whole body went with the head (over HTTP/2, it goes out
                # within the server's windows by itself).
                whole = exchange.request_done or (h2 is not None and body.whole is not None)
                sender = None if whole else ensure_deferred(body.send(writer))
                head = await self._head(exchange, sender)
            except ResponseNeverReceivedError:
                if probing:
                    probing = False
                    self._end_probe(origin)
                if (
                    (reused or h2 is not None)
                    and not retried
                    and body.replayable
                    and method_bytes in _IDEMPOTENT
                ):
                    retried = True
                    fresh = h2 is None
                    continue
                raise
            except BaseException as exc:
                if probing:
                    self._end_probe(origin)
                if exchange is not None:
                    exchange.discard()
                elif h2 is None:  # Nothing was written: the connection is as it was.
                    reusable = connection.is_open and not connection.busy
                    reusable = reusable and not isinstance(exc, BadResponseError)
                    self._pool.release(origin, connection, reusable)
                raise
            if self.cookies is not None:
                set_cookie = head.headers.get_all(b"set-cookie")
                if set_cookie:
                    self.cookies.receive(url.url, set_cookie)
            decoder = None
            if self.decode_content and method_bytes != b"HEAD":
                decoder = decoder_for(head.headers, self.max_body_size)
            return Response(
                head=head,
                exchange=exchange,
                url=url.url,
                method=method,
                decoder=decoder,
                max_body_size=self.max_body_size,
                read_timeout=read_timeout,
                clock=self.reactor,
                alpn=connection.alpn,
            )

    def _may_speak_h2(self, url: RequestURL) -> bool:
        if url.scheme == "https":
            return self._tls_offers_h2 if self._tls is not None else self.http2
        return self.http2_prior_knowledge and not self._proxy_for_http(url)

    def _h2_for(self, origin: tuple[str, str, int]) -> HTTP11ClientConnection | None:
        for connection in self._h2.get(origin, ()):
            h2 = connection.h2
            if h2 is not None and h2.has_capacity and connection.is_open:
                return connection
        return None

    def _h2_closed(self, origin: tuple[str, str, int], connection: HTTP11ClientConnection) -> None:
        connections = self._h2.get(origin)
        if connections is None or connection not in connections:
            return
        connections.remove(connection)
        self._h2_busy(connection)
        if not connections:
            del self._h2[origin]
        self._pool.release(origin, connection, False)
        self._wake_stream_waiter(origin)

    def _end_probe(self, origin: tuple[str, str, int]) -> None:
        for waiter in self._probing.pop(origin, ()):
            if not waiter.called:  # Not cancelled meanwhile.
                waiter.callback(None)

    def _h2_stream_done(
        self, origin: tuple[str, str, int], connection: HTTP11ClientConnection
    ) -> None:
        h2 = connection.h2
        if h2 is not None and not h2.active_streams and connection.is_open:
            # Idle: closed after idle_timeout, as the pool does HTTP/1.1's.
            self._h2_busy(connection)
            self._h2_idle[connection] = self.reactor.call_later(
                self._pool.idle_timeout, connection.close
            )
        self._wake_stream_waiter(origin)

    def _h2_busy(self, connection: HTTP11ClientConnection) -> None:
        idle = self._h2_idle.pop(connection, None)
        if idle is not None and idle.active():
            idle.cancel()

    def _wake_stream_waiter(self, origin: tuple[str, str, int]) -> None:
        waiters = self._stream_waiters.get(origin)
        while waiters:
            waiter = waiters.pop(0)
            if not waiter.called:  # Not cancelled meanwhile.
                waiter.callback(None)
                break
        if not waiters:
            self._stream_waiters.pop(origin, None)

    @staticmethod
    async def _head(
        exchange: Exchange | H2Exchange, sender: Deferred[None] | None
    ) -> ResponseStarted:
        if sender is None:
            return await exchange.head
        failure: list[BaseException] = []

        def body_failed(exc: BaseException) -> None:
            failure.append(exc)
            exchange.close()

        sender.add_errback(body_failed)
        try:
            return await exchange.head
        except BaseException:
            if failure:
                raise failure[0] from None
            sender.cancel()
            raise

    def _request_headers(self, url: RequestURL, fields: Headers) -> Headers:
        # One pass over the caller's fields: the client adds Host,
        # Accept-Encoding and the jar's cookies, and leaves out the framing
        # (Content-Length, if given, became the body's) and, through a
        # tunnel, Proxy-Authorization (it would reach the origin).
        tunnelled = self._tunnelled(url)
        pairs: list[tuple[bytes, bytes]] = [(b"Host", url.authority)]
        has_accept_encoding = False
        cookies: list[bytes] = []
        for name, value in fields.raw:
            lowered = name.lower()
            if lowered == b"host":
                pairs[0] = (name, value)
                continue
            if lowered in (b"content-length", b"transfer-encoding") or (
                tunnelled and lowered == b"proxy-authorization"
            ):
                continue
            if lowered == b"accept-encoding":
                has_accept_encoding = True
            elif lowered == b"cookie" and self.cookies is not None:
                cookies.append(value)
                continue
            pairs.append((name, value))
        if self._proxy_for_http(url):
            pairs += self._proxy_headers.raw
        if self.decode_content and not has_accept_encoding:
            pairs.append((b"Accept-Encoding", ACCEPT_ENCODING))
        if self.cookies is not None:
            # RFC 6265 section 5.4: one Cookie field, the caller's first.
            cookie = self.cookies.cookie_header(url.url)
            if cookie is not None:
                cookies.append(cookie)
            if cookies:
                pairs.append((b"Cookie", b"; ".join(cookies)))
        return Headers.from_raw(pairs)

    def _proxy_for_http(self, url: RequestURL) -> bool:
        return self._proxy is not None and self._proxy[0] == "http" and url.scheme == "http"

    def _tunnelled(self, url: RequestURL) -> bool:
        return self._proxy is not None and not self._proxy_for_http(url)

    def _connect(self, url: RequestURL) -> Deferred[HTTP11ClientConnection]:
        key = url.origin

        max_header_list = self._core_limits.get("max_head_size", 65536)

        def make_h2(connection: HTTP11ClientConnection) -> H2ClientConnection:
            return H2ClientConnection(
                drained=connection.drained,
                on_closed=lambda _: self._h2_closed(key, connection),
                on_stream_done=lambda: self._h2_stream_done(key, connection),
                max_header_list_size=max_header_list,
            )

        prior = url.scheme == "http" and self._may_speak_h2(url)

        def factory(_: Address) -> HTTP11ClientConnection:
            connection = HTTP11ClientConnection(
                h2_factory=make_h2 if self.http2 or prior else None,
                prior_knowledge=prior,
                on_done=lambda c, reusable: self._pool.release(key, c, reusable),
                on_lost=lambda c: self._pool.lost(key, c),
                on_made=self._connections.add,
                on_closed=self._forget,
                core=HTTP11ClientCore(**self._core_limits),
            )
            return connection

        if self._proxy is None:
            if url.scheme == "https":
                return self.reactor.connect_tls(
                    url.host,
                    url.port,
                    factory,
                    context=self._tls_context(),
                    server_hostname=url.host,
                    timeout=self.connect_timeout,
                ).deferred
            return self.reactor.connect_tcp(
                url.host, url.port, factory, timeout=self.connect_timeout
            ).deferred
        kind, proxy_host, proxy_port = self._proxy
        proxy = TCPClientEndpoint(
            self.reactor,  # type: ignore[arg-type]
            proxy_host,
            proxy_port,
            timeout=self.connect_timeout,
        )
        endpoint: Any
        if kind == "http" and url.scheme == "http":
            endpoint = proxy
        elif kind == "http":
            endpoint = HTTPConnectEndpoint(proxy, url.host, url.port, headers=self._proxy_headers)
        else:
            from torsion.protocols import SOCKS5ClientEndpoint

            endpoint = SOCKS5ClientEndpoint(
                self.reactor, proxy, url.host, url.port, timeout=self.connect_timeout
            )
        if url.scheme == "https":
            endpoint = wrap_client_tls(
                endpoint,
                url.host,
                context=self._tls_context(),
                handshake_timeout=self.connect_timeout,
            )
        attempt: Deferred[HTTP11ClientConnection] = endpoint.connect(factory)
        if self.connect_timeout is not None:
            attempt = deadline(attempt, self.connect_timeout, self.reactor)
        return attempt

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            alpn = ("h2", "http/1.1") if self.http2 else ("http/1.1",)
            self._tls = client_context(alpn=alpn)
            self._tls_offers_h2 = self.http2
        return self._tls

    def _forget(self, connection: HTTP11ClientConnection) -> None:
        self._connections.discard(connection)
        for waiter in self._closed_waiters.pop(connection, ()):
            waiter.callback(None)

    def __repr__(self) -> str:
        return f"<HTTPClient {self._pool!r}>"


def _join(url: RequestURL, location: bytes) -> str:
    return urljoin(url.url, location.decode("latin-1").strip())


def _parse_proxy(proxy: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(proxy)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a proxy URL: {proxy!r}") from exc
    kind = parts.scheme.lower()
    if kind not in ("http", "socks5", "socks5h") or not parts.hostname:
        raise ValueError(f"a proxy is http://HOST:PORT or socks5://HOST:PORT, not {proxy!r}")
    if kind == "http":
        return ("http", parts.hostname, port or 8080)
    return ("socks5", parts.hostname, port or 1080)

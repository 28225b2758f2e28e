"""The HTTP/1.1 client connection: a sans-IO core on httptools, and its protocol.

``HTTP11ClientCore`` turns one request at a time into bytes and the server's
bytes into events (``ResponseStarted``, ``BodyData``, ``ResponseComplete``),
with no socket and no clock. Parsing is llhttp's (through httptools' response
parser); the core adds what llhttp leaves to its user: bounds on the status
line, the header count and the head's size, interim (1xx) responses skipped
up to a bound, responses that carry no body whatever their headers say (to
HEAD and CONNECT, RFC 9110 sections 9.3.2 and 9.3.6), bodies delimited by the
end of the connection (RFC 9112 section 6.3, rule 8), and the refusal of
anything the server sends that no request asked for.

Requests are checked before a byte is written: a method must be a token and
a request target may hold no control character or space, so CR, LF and NUL
never reach the wire (request splitting, CVE-2019-12387); header names and
values are checked again even when they came through ``Headers.from_raw``.

``HTTP11ClientConnection`` is the protocol around the core. Each request is
an ``Exchange``: a Deferred for the response head and a ``ResponseBody`` that
streams the body with backpressure (reading from the socket pauses while the
body's buffer is above its high-water mark). When an exchange ends, the
connection tells its owner (the pool) whether it may carry another request:
only if the response was read to its end, the request was written to its
end, and neither side said ``Connection: close``. Its call order::

    connection_made -> (start -> [write_body* -> end_body] -> on_done)* -> on_lost
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import httptools

from torsion.defer import Deferred
from torsion.internet import Protocol
from torsion.web._client_body import ResponseBody
from torsion.web._client_errors import (
    BadResponseError,
    InvalidRequestError,
    ResponseNeverReceivedError,
)
from torsion.web._headers import Headers, InvalidHeaderError

if TYPE_CHECKING:
    from torsion.web._client_h2 import H2ClientConnection

__all__ = [
    "CHUNKED",
    "BodyData",
    "Exchange",
    "HTTP11ClientConnection",
    "HTTP11ClientCore",
    "ResponseBody",
    "ResponseComplete",
    "ResponseEvent",
    "ResponseStarted",
    "check_method",
    "check_target",
    "validate_field",
]

CHUNKED: Final = -1
"""``body_length`` for a request body sent in chunks (its length unknown)."""

# RFC 9110 section 5.6.2: token = 1*tchar.
_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# RFC 9112 section 3.2: a request target holds no whitespace or control
# character (RFC 3986 allows none of them in a URI).
_TARGET_OK = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
# Field names that carry the message framing: the core writes them itself.
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})


def check_method(method: bytes) -> None:
    """Refuse a method that is not a token (a space, CR, LF, NUL...).

    Raises:
        InvalidRequestError: ``method`` may not be sent.
    """
    if not method or method.translate(None, _TCHAR):
        raise InvalidRequestError(f"invalid HTTP method {method!r}")


def check_target(target: bytes) -> None:
    """Refuse a request target holding a space or a control character.

    Raises:
        InvalidRequestError: ``target`` may not be sent.
    """
    if not target or target.translate(None, _TARGET_OK):
        raise InvalidRequestError(f"invalid request target {target!r}")


# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseStarted:
    """The head of the final response (interim 1xx responses are not reported).

    Attributes:
        code: The status code, 200 to 599.
        phrase: The reason phrase (may be empty).
        version: The protocol version, "HTTP/1.1" or "HTTP/1.0".
        headers: The header fields, as they came.
    """

    code: int
    phrase: str
    version: str
    headers: Headers


@dataclass(frozen=True, slots=True, kw_only=True)
class BodyData:
    """Bytes of the response body, its transfer coding (chunked) removed.

    Attributes:
        data: The bytes.
    """

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseComplete:
    """The response ended.

    Attributes:
        reusable: Whether, as far as the response goes, the connection may
            carry another request (keep-alive, nothing unexpected after it).
    """

    reusable: bool


ResponseEvent = ResponseStarted | BodyData | ResponseComplete


class _UnexpectedError(Exception):
    """Raised inside a parser callback for bytes after the response ended."""


# -- the sans-IO core -------------------------------------------------------------------


class HTTP11ClientCore:
    """Requests to bytes and response bytes to events, one exchange at a time.

    Args:
        max_status_line: The longest reason phrase and status line, in bytes.
        max_head_size: The most bytes the response head (status line and
            header fields, interim responses included) may take.
        max_header_count: The most header fields in one response head.
        max_interim_responses: How many 1xx responses may precede the final one.
    """

    def __init__(
        self,
        *,
        max_status_line: int = 8192,
        max_head_size: int = 65536,
        max_header_count: int = 128,
        max_interim_responses: int = 16,
    ) -> None:
        self.max_status_line = max_status_line
        self.max_head_size = max_head_size
        self.max_header_count = max_header_count
        self.max_interim_responses = max_interim_responses
        self._parser: httptools.HttpResponseParser | None = None
        self._events: list[ResponseEvent] = []
        self._chunked_request = False
        self._close_requested = False
        self._head_only = False
        self._in_exchange = False
        self._received_any = False
        self._head_done = False
        self._head_bytes = 0
        self._status = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._interim = 0
        self._in_interim = False
        self._until_eof = False
        self._finished = False
        self._complete_sent = False
        self._keep_alive = False
        self._extra = False

    @property
    def in_exchange(self) -> bool:
        """Whether a request was started and its response has not ended."""
        return self._in_exchange

    # Sending.

    def start_request(
        self,
        method: bytes,
        target: bytes,
        headers: Headers,
        *,
        body_length: int | None,
        head_only: bool = False,
    ) -> bytes:
        """Start an exchange: return the request head to write.

        Args:
            method: The method, e.g. ``b"GET"``.
            target: The request target: an origin-form path and query, an
                absolute URL (to a proxy), or ``host:port`` (CONNECT).
            headers: Every field but the framing ones, ``Host`` first.
            body_length: None for no body, its length in bytes, or
                ``CHUNKED``.
            head_only: The response carries no body whatever its headers say
                (a response to HEAD, or a 2xx to CONNECT).

        Returns:
            The head, to write before the body.

        Raises:
            InvalidRequestError: The method, target or a header may not be
                sent, or a framing header (Content-Length,
                Transfer-Encoding) is among ``headers``.
            RuntimeError: An exchange is under way.
        """
        if self._in_exchange:
            raise RuntimeError("an HTTP/1.1 exchange is already under way on this connection")
        check_method(method)
        check_target(target)
        parts = [method, b" ", target, b" HTTP/1.1\r\n"]
        close = False
        try:
            for name, value in headers.raw:
                lowered = name.lower()
                if lowered in _FRAMING:
                    raise InvalidRequestError(f"the client writes {name!r} itself")
                if lowered == b"connection" and b"close" in value.lower():
                    close = True
                validate_field(name, value)
                parts += (name, b": ", value, b"\r\n")
        except InvalidHeaderError as exc:
            raise InvalidRequestError(str(exc)) from exc
        if body_length == CHUNKED:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif body_length is not None:
            if body_length < 0:
                raise InvalidRequestError(f"invalid body length {body_length}")
            parts += (b"Content-Length: ", str(body_length).encode(), b"\r\n")
        parts.append(b"\r\n")
        self._chunked_request = body_length == CHUNKED
        self._close_requested = close
        self._head_only = head_only
        self._begin_exchange()
        return b"".join(parts)

    def body_chunk(self, data: bytes) -> bytes:
        """Return ``data`` as it goes on the wire (framed as a chunk if chunked)."""
        if not self._chunked_request:
            return data
        if not data:
            return b""  # An empty chunk would end the body.
        return b"%x\r\n%b\r\n" % (len(data), data)

    def end_body(self) -> bytes:
        """Return what ends the request body (the last chunk, if chunked)."""
        return b"0\r\n\r\n" if self._chunked_request else b""

    # Receiving.

    def _begin_exchange(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._in_exchange = True
        self._received_any = False
        self._head_done = False
        self._head_bytes = 0
        self._interim = 0
        self._in_interim = False
        self._until_eof = False
        self._finished = False
        self._complete_sent = False
        self._keep_alive = False
        self._extra = False

    def receive_data(self, data: bytes) -> list[ResponseEvent]:
        """Parse bytes from the server.

        Returns:
            The events they complete, in order.

        Raises:
            BadResponseError: The bytes are not a valid response, break a
                limit, or came when no response was expected.
        """
        if not self._in_exchange or self._parser is None:
            raise BadResponseError("the server sent data when no response was expected")
        self._received_any = True
        if not self._head_done:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _UnexpectedError):
                self._extra = True
            elif isinstance(cause, BadResponseError):
                raise cause from None
            elif not self._finished:
                raise BadResponseError(f"malformed response: {exc}") from exc
            else:
                self._extra = True
        except httptools.HttpParserError as exc:
            if not self._finished:
                raise BadResponseError(f"malformed response: {exc}") from exc
            self._extra = True
        if not self._head_done and self._head_bytes > self.max_head_size:
            raise BadResponseError(f"the response head is over {self.max_head_size} bytes")
        if self._finished and not self._complete_sent:
            self._complete_sent = True
            self._in_exchange = False
            reusable = self._keep_alive and not self._extra and not self._close_requested
            self._events.append(ResponseComplete(reusable=reusable))
        events, self._events = self._events, []
        return events

    def receive_eof(self) -> list[ResponseEvent]:
        """Take the end of the server's stream.

        Returns:
            The events it completes: a body delimited by the connection's end
            completes there.

        Raises:
            ResponseNeverReceivedError: No byte of the response had come.
            BadResponseError: The response was cut short.
        """
        if not self._in_exchange:
            return []
        self._in_exchange = False
        if not self._received_any:
            raise ResponseNeverReceivedError("the server closed the connection without a response")
        if self._head_done and self._until_eof:
            self._finished = self._complete_sent = True
            return [ResponseComplete(reusable=False)]
        raise BadResponseError("the server closed the connection in the middle of the response")

    def abandon(self) -> None:
        """End the exchange without its response (the connection is going away)."""
        self._in_exchange = False
        self._parser = None

    # httptools' callbacks.

    def on_message_begin(self) -> None:
        """A response starts (interim or final)."""
        if self._finished:
            raise _UnexpectedError
        self._status = b""
        self._headers = []
        self._header_bytes = 0

    def on_status(self, data: bytes) -> None:
        """Part of the reason phrase (llhttp may split it)."""
        status = self._status + data
        if len(status) > self.max_status_line:
            raise BadResponseError(f"the status line is over {self.max_status_line} bytes")
        self._status = status

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header field, whole."""
        headers = self._headers
        if len(headers) >= self.max_header_count:
            raise BadResponseError(f"more than {self.max_header_count} header fields")
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        """The head of a response has been read."""
        parser = self._parser
        assert parser is not None
        code: int = parser.get_status_code()
        version: str = parser.get_http_version()
        if not version.startswith("1."):
            raise BadResponseError(f"HTTP/{version} is not HTTP/1.x")
        if code < 200:
            if code == 101:
                raise BadResponseError("the server switched protocols unasked (101)")
            self._interim += 1
            if self._interim > self.max_interim_responses:
                raise BadResponseError(f"more than {self.max_interim_responses} 1xx responses")
            self._in_interim = True
            return
        self._head_done = True
        # RFC 9112 section 6.3: without Transfer-Encoding or Content-Length,
        # the body runs to the end of the connection. (A Transfer-Encoding
        # not ending in chunked does too; llhttp reports that message as not
        # keep-alive, and it ends at the close like this one.)
        sized = False
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == b"content-length":
                sized = True
            elif lowered == b"transfer-encoding":
                sized = value.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
        self._until_eof = not sized and code not in (204, 304)
        self._events.append(
            ResponseStarted(
                code=code,
                phrase=self._status.decode("latin-1"),
                version="HTTP/" + version,
                headers=Headers.from_raw(self._headers),
            )
        )
        if self._head_only:
            # llhttp cannot be told that this response has no body: the
            # exchange ends here, and whatever follows it is unexpected.
            self._keep_alive = _says_keep_alive(version, self._headers)
            self._finished = True

    def on_body(self, data: bytes) -> None:
        """Part of the body, its chunk framing removed."""
        if self._finished:
            raise _UnexpectedError
        self._events.append(BodyData(data=data))

    def on_message_complete(self) -> None:
        """A response has been read to its end."""
        if self._in_interim:
            self._in_interim = False
            return
        if self._finished:
            return  # The end of a head-only response, already reported.
        parser = self._parser
        assert parser is not None
        self._keep_alive = bool(parser.should_keep_alive())
        self._finished = True


def _says_keep_alive(version: str, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a response keeps the connection open (RFC 9112 section 9.3)."""
    connection = b",".join(v for n, v in headers if n.lower() == b"connection").lower()
    tokens = {t.strip() for t in connection.split(b",")}
    if b"close" in tokens:
        return False
    return version != "1.0" or b"keep-alive" in tokens


def validate_field(name: bytes, value: bytes) -> None:
    """Check one header field before it is written (see ``torsion.web.Headers``).

    Raises:
        InvalidHeaderError: The name is not a token or the value holds a
            control character.
    """
    if not name or name.translate(None, _TCHAR):
        raise InvalidHeaderError(f"invalid header name {name!r}")
    if value.translate(None, _FIELD_VALUE_OK):
        raise InvalidHeaderError(f"invalid header value {value!r}")


_FIELD_VALUE_OK = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))


# -- the protocol -----------------------------------------------------------------------


class Exchange:
    """One request on an ``HTTP11ClientConnection`` and the response to it.

    Attributes:
        head: Fires with the final response's head, or fails
            (``ResponseNeverReceivedError``, ``BadResponseError``,
            ``ConnectionError``).
        body: The response body, streaming.
    """

    def __init__(self, connection: HTTP11ClientConnection, high_water: int) -> None:
        self._connection = connection
        self.head: Deferred[ResponseStarted] = Deferred(self._cancel_head)
        self.body = ResponseBody(
            high_water, connection.pause_body, connection.resume_body, self.close
        )
        self.request_done = False
        self.ended = False
        self.cancelling = False

    def close(self) -> None:
        """Abandon the exchange: if it had not ended, the connection is closed."""
        self._connection.abandon(self)

    def discard(self) -> None:
        """Abandon the exchange from the code awaiting its head, which stops awaiting.

        The head is left unfired: its one reader is gone (a coroutine being
        closed must not be resumed).
        """
        self.cancelling = True
        self._connection.abandon(self)

    def _cancel_head(self, _: Deferred[ResponseStarted]) -> None:
        # The head then fails with CancelledError, not the abandonment's error.
        self.cancelling = True
        self._connection.abandon(self)


class HTTP11ClientConnection(Protocol):
    """One HTTP/1.1 connection to a server, carrying one request at a time.

    Args:
        on_done: Called once per exchange, when it has ended, with the
            connection and whether it may carry another request; when it
            may not, the connection is already closing.
        on_lost: Called when the connection is lost while no exchange is
            under way (an idle connection the server closed).
        on_made: Called when the connection is made (``connection_made``).
        on_closed: Called when the connection is lost, whatever its state
            (last of all).
        body_high_water: Unread response bytes above which reading pauses.
        core: The sans-IO core (a default one if None), for its limits.
        h2_factory: Makes the HTTP/2 side when the connection speaks
            HTTP/2: when TLS agreed on h2 by ALPN, or always if
            ``prior_knowledge``. This connection then passes every
            transport event on to it (see ``h2``).
        prior_knowledge: Speak HTTP/2 from the start (cleartext, RFC 9113
            section 3.3).
    """

    def __init__(
        self,
        *,
        on_done: Callable[[HTTP11ClientConnection, bool], object] | None = None,
        on_lost: Callable[[HTTP11ClientConnection], object] | None = None,
        on_made: Callable[[HTTP11ClientConnection], object] | None = None,
        on_closed: Callable[[HTTP11ClientConnection], object] | None = None,
        body_high_water: int = 256 * 1024,
        core: HTTP11ClientCore | None = None,
        h2_factory: Callable[[HTTP11ClientConnection], H2ClientConnection] | None = None,
        prior_knowledge: bool = False,
    ) -> None:
        self.on_done = on_done
        self._h2_factory = h2_factory
        self._prior_knowledge = prior_knowledge
        self.h2: H2ClientConnection | None = None
        self.on_lost = on_lost
        self.on_made = on_made
        self.on_closed = on_closed
        self._core = core if core is not None else HTTP11ClientCore()
        self._high_water = body_high_water
        self._exchange: Exchange | None = None
        self._closed = False
        self._reading_paused = False
        self._alpn: str | None = None

    # What the pool asks.

    @property
    def is_open(self) -> bool:
        """Whether the connection can still carry a request."""
        if self.h2 is not None:
            return self.h2.is_open and not self.transport.is_closing()
        return not self._closed and not self.transport.is_closing()

    @property
    def busy(self) -> bool:
        """Whether an exchange is under way."""
        return self._exchange is not None

    @property
    def alpn(self) -> str | None:
        """The protocol agreed by ALPN over TLS (None without TLS or ALPN)."""
        return self._alpn

    def close(self) -> None:
        """Close the connection (an exchange under way fails)."""
        self._closed = True
        if self.h2 is not None:
            self.h2.close()
        self.transport.close()

    # Requests.

    def start(
        self,
        method: bytes,
        target: bytes,
        headers: Headers,
        *,
        body_length: int | None = None,
        body: bytes = b"",
        head_only: bool = False,
    ) -> Exchange:
        """Write a request head (and a whole body, if given) and start an exchange.

        Args:
            method: The method.
            target: The request target.
            headers: The fields, ``Host`` among them, no framing ones.
            body_length: None (no body), the body's length, or ``CHUNKED``.
            body: The whole body, if it is at hand: written with the head,
                in one write, and the request is then complete.
            head_only: The response has no body (HEAD, CONNECT).

        Returns:
            The exchange; write the rest of the body with ``write_body`` and
            ``end_body`` unless it was given whole.

        Raises:
            InvalidRequestError: Nothing was written (see
                ``HTTP11ClientCore.start_request``).
            ConnectionError: The connection is closed.
            RuntimeError: An exchange is under way.
        """
        if not self.is_open:
            raise ConnectionResetError("the connection is closed")
        if self._exchange is not None:
            raise RuntimeError("an exchange is already under way on this connection")
        core = self._core
        head = core.start_request(
            method, target, headers, body_length=body_length, head_only=head_only
        )
        exchange = Exchange(self, self._high_water)
        self._exchange = exchange
        if body or body_length is None or body_length == 0:
            self.transport.write(head + core.body_chunk(body) + core.end_body())
            exchange.request_done = True
        else:
            self.transport.write(head)
        return exchange

    def write_body(self, data: bytes) -> None:
        """Write a piece of the request body (wait on ``drained()`` between pieces)."""
        if self._exchange is None or self._closed:
            raise ConnectionResetError("the connection is closed")
        framed = self._core.body_chunk(data)
        if framed:
            self.transport.write(framed)

    def end_body(self) -> None:
        """Finish the request body."""
        exchange = self._exchange
        if exchange is None or self._closed:
            raise ConnectionResetError("the connection is closed")
        end = self._core.end_body()
        if end:
            self.transport.write(end)
        exchange.request_done = True
        if exchange.ended:
            self._release(exchange, reusable=True)

    def abandon(self, exchange: Exchange) -> None:
        """Give up an exchange: if it had not ended, close the connection."""
        if exchange is not self._exchange or exchange.ended:
            return
        self._fail_exchange(BadResponseError("the request was abandoned"))

    # Flow control of the response body.

    def pause_body(self) -> None:
        """Stop reading from the socket while the body's buffer is full."""
        if not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_body(self) -> None:
        """Read again."""
        if self._reading_paused:
            self._reading_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    # The protocol's events.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The connection is up (after the TLS handshake, over TLS)."""
        super().connection_made(transport)
        # Read once: tls_info() would decode the peer's certificate each time.
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._alpn = ssl_object.selected_alpn_protocol()
        if self._h2_factory is not None and (self._prior_knowledge or self._alpn == "h2"):
            self.h2 = self._h2_factory(self)
            self.h2.connection_made(transport)
        if self.on_made is not None:
            self.on_made(self)

    def data_received(self, data: bytes) -> None:
        """Parse the server's bytes and pass the events on."""
        if self.h2 is not None:
            self.h2.data_received(data)
            return
        exchange = self._exchange
        if exchange is None:
            # RFC 9112 section 9.6: a server may send a 408 before closing an
            # idle connection; either way this connection is done.
            self.close()
            return
        try:
            events = self._core.receive_data(data)
        except BadResponseError as exc:
            self._fail_exchange(exc)
            return
        self._dispatch(exchange, events)

    def _dispatch(self, exchange: Exchange, events: list[ResponseEvent]) -> None:
        for event in events:
            if self._exchange is not exchange:
                return  # Abandoned from a callback.
            if type(event) is BodyData:
                exchange.body.feed(event.data)
            elif type(event) is ResponseStarted:
                exchange.head.callback(event)
            elif type(event) is ResponseComplete:
                exchange.ended = True
                if not exchange.head.called:  # pragma: no cover - the core reports the head first
                    exchange.head.errback(BadResponseError("a response without a head"))
                # The connection goes back first: whoever reads the body's
                # end may send its next request at once, on this connection.
                if exchange.request_done or not event.reusable:
                    self._release(exchange, event.reusable)
                exchange.body.finish()

    def eof_received(self) -> bool | None:
        """The server closed its side: a body delimited by the close ends here."""
        if self.h2 is not None:
            self.h2.eof_received()
            return None
        exchange = self._exchange
        if exchange is None:
            return None
        try:
            events = self._core.receive_eof()
        except BadResponseError as exc:
            self._fail_exchange(exc)
            return None
        self._dispatch(exchange, events)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection ended: an exchange under way fails, an idle one is forgotten."""
        super().connection_lost(exc)
        self._closed = True
        if self.h2 is not None:
            self.h2.connection_lost(exc)
        exchange = self._exchange
        if exchange is not None:
            try:
                events = self._core.receive_eof()
            except BadResponseError as error:
                if exc is not None:
                    error.__cause__ = exc
                self._fail_exchange(error)
            else:
                if exc is None:
                    # A body delimited by the close ends here when no
                    # eof_received came first (some TLS transports).
                    self._dispatch(exchange, events)
                self._fail_exchange(
                    ConnectionResetError("the connection was lost during the request")
                )
        elif self.on_lost is not None:
            on_lost, self.on_lost = self.on_lost, None
            on_lost(self)
        if self.on_closed is not None:
            on_closed, self.on_closed = self.on_closed, None
            on_closed(self)

    # Ending exchanges.

    def _fail_exchange(self, exc: BaseException) -> None:
        exchange = self._exchange
        if exchange is None:
            return
        self._core.abandon()
        exchange.ended = True
        self._closed = True
        self.transport.abort()
        if not exchange.head.called and not exchange.cancelling:
            exchange.head.errback(exc)
        exchange.body.fail(exc)
        self._release(exchange, reusable=False)

    def _release(self, exchange: Exchange, reusable: bool) -> None:
        if self._exchange is not exchange:
            return
        self._exchange = None
        if not reusable or self._closed:
            reusable = False
            self._closed = True
            self.transport.close()
            self.on_lost = None
        if self.on_done is not None:
            self.on_done(self, reusable)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "busy" if self._exchange else "idle"
        return f"<HTTP11ClientConnection {state}>"

"""One HTTP/2 stream on the server: the request a handler sees, and what waits to go out.

``H2Request`` is the ``Request`` of a stream: resources use it as they use
any request, and its response goes out through its ``H2Channel`` as HEADERS
and DATA frames. ``Stream`` is the channel's side of the stream: the
response data queued for the peer's flow-control windows, the body bytes
received and acknowledged, and the tunnel of an extended CONNECT (RFC 8441,
see ``_h2_tunnel``). The connection itself, its limits and its timers are
``_h2.H2Channel``'s.
"""

from __future__ import annotations

import asyncio
import typing
from collections import deque

import h2.errors

from torsion.defer import Deferred
from torsion.web._headers import Headers
from torsion.web._request import Request, ResponseStateError

if typing.TYPE_CHECKING:
    from torsion.web._channel import HTTPChannel
    from torsion.web._h2 import H2Channel
    from torsion.web._h2_tunnel import StreamTransport

__all__ = ["H2Request", "Stream"]

# Header fields that belong to one HTTP/1.1 connection and are not sent on
# HTTP/2 (RFC 9113 section 8.2.2).
_CONNECTION_FIELDS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_NO_BODY_CODES = frozenset({204, 304})


class Stream:
    """The channel's side of one stream: what waits to be sent on it."""

    __slots__ = (
        "acked",
        "blocked_since",
        "drain_waiters",
        "end_pending",
        "pending",
        "pending_bytes",
        "received",
        "request",
        "stream_id",
        "tunnel",
        "working",
    )

    def __init__(self, stream_id: int, request: H2Request) -> None:
        self.stream_id = stream_id
        self.request = request
        self.pending: deque[bytes] = deque()
        self.pending_bytes = 0
        self.end_pending = False
        self.drain_waiters: list[Deferred[None]] = []
        # Body bytes received (flow-controlled) and acknowledged so far.
        self.received = 0
        self.acked = 0
        # Whether the handler has yet to finish the response.
        self.working = False
        # When queued data last found no flow-control window to go out in
        # (the clock's seconds), or -1.0 while it is not held up.
        self.blocked_since = -1.0
        # The transport of the protocol an extended CONNECT switched to.
        self.tunnel: StreamTransport | None = None


class H2Request(Request):
    """A request that came on an HTTP/2 stream; its response goes out as frames.

    Resources use it exactly as they use a ``Request``; ``version`` is
    ``"HTTP/2"``. ``abort()`` resets the stream (the connection carries
    other streams). HTTP/2 has no 101: ``switch_protocols`` serves an
    extended CONNECT instead (RFC 8441), and is refused for other requests.

    Attributes:
        connect_protocol: The ``:protocol`` of an extended CONNECT (RFC 8441
            section 4), e.g. ``"websocket"``; None for other requests.
    """

    _zero_copy = False
    _stream: Stream
    connect_protocol: str | None = None

    def __init__(
        self,
        channel: H2Channel,
        stream_id: int,
        method: bytes,
        uri: bytes,
        headers: list[tuple[bytes, bytes]],
        has_body: bool,
    ) -> None:
        """Made by the HTTP/2 connection for each stream it is sent."""
        expect = has_body and any(
            name == b"expect" and value.lower() == b"100-continue" for name, value in headers
        )
        # Request reaches its connection only through what H2Request
        # overrides and the Protocol methods both channels share.
        super().__init__(
            typing.cast("HTTPChannel", channel),
            method,
            uri,
            "2",
            headers,
            True,
            expect_continue=expect,
            has_body=has_body,
        )
        self._h2 = channel
        self.stream_id = stream_id

    # -- the body, as the handler consumes it -------------------------------

    def _maybe_continue(self) -> None:
        if self._expect_continue and not self._continue_sent and not self._started:
            self._continue_sent = True
            if not self._body_complete and self._lost is None:
                self._h2._send_headers(self, [(b":status", b"100")], end=False)

    # -- the response ----------------------------------------------------------

    def _fields(self, length: int) -> list[tuple[bytes, bytes]]:
        # The response's HEADERS: ``length`` is the body's when known.
        self._started = True
        code = self.code
        fields = [(b":status", b"%d" % code)]
        fields += self._h2._site._dates.fields()
        headers = self._response_headers
        if headers is not None:
            for name, value in headers.raw:
                lowered = name.lower()
                if lowered in _CONNECTION_FIELDS:
                    continue
                if lowered == b"content-length":
                    if length >= 0:
                        continue
                    value = value.strip()
                    if not value.isdigit():
                        continue
                    self._declared_length = int(value)
                fields.append((lowered, value))
        if length >= 0 and code not in _NO_BODY_CODES:
            fields.append((b"content-length", b"%d" % length))
        return fields

    def _send_head(self) -> None:
        self._h2._send_headers(self, self._fields(-1), end=False)

    def write(self, data: bytes) -> None:
        """Send part of the response body as DATA (HEADERS first).

        Args:
            data: The next bytes of the body.

        Raises:
            ResponseStateError: The response was finished.
        """
        if self._finished:
            if self._lost is not None:
                return
            raise ResponseStateError("write() after finish()")
        if not data:
            return
        if not self._started:
            self._send_head()
        if self._head_only or self.code in _NO_BODY_CODES or self._lost is not None:
            return
        data = self._frame(data)
        if data:
            self._h2._send_data(self, data)

    def finish(self) -> None:
        """End the response (END_STREAM); the stream is then done.

        Raises:
            ResponseStateError: ``finish()`` was already called (unless the
                stream was lost, when it does nothing).
        """
        if self._finished:
            if self._lost is not None:
                return
            raise ResponseStateError("finish() called twice")
        if not self._started:
            headers = self._response_headers
            if self._head_only and headers is not None and b"content-length" in headers:
                self._h2._send_headers(self, self._fields(-1), end=True)
                self._done()
                return
            self._finish_with(b"")
            return
        if (
            0 <= self._declared_length != self._sent
            and not self._head_only
            and self.code not in _NO_BODY_CODES
        ):
            # Fewer bytes than promised: a reset tells the client it is cut.
            self._done()
            self._h2._reset(self, h2.errors.ErrorCodes.INTERNAL_ERROR)
            return
        self._h2._end(self)
        self._done()

    def _finish_with(self, body: bytes) -> None:
        if self._finished:
            if self._lost is not None:
                return
            raise ResponseStateError("the response was already finished")
        if self._started:
            self.write(body)
            self.finish()
            return
        fields = self._fields(len(body))
        self._sent = len(body)
        if self._head_only or self.code in _NO_BODY_CODES:
            body = b""
        self._h2._respond(self, fields, body)
        self._done()

    def drained(self) -> Deferred[None]:
        """Wait until this stream's queued body is small and the connection has room."""
        return self._h2._drained(self)

    def switch_protocols(self, protocol: asyncio.Protocol, headers: Headers) -> None:
        """Accept an extended CONNECT: answer 200 and carry ``protocol`` on this stream.

        RFC 8441 section 4: the 200 response (with ``headers``) opens the
        stream both ways; the request is finished. Then
        ``protocol.connection_made(transport)`` with a transport whose
        writes go out as DATA within the peer's windows, and
        ``protocol.data_received`` with what the client sends in DATA (its
        window reopening only as the protocol takes it, and not while the
        protocol paused reading). The client's END_STREAM is the protocol's
        ``eof_received``; closing the transport sends END_STREAM, aborting
        it RST_STREAM CANCEL; ``connection_lost`` comes once the stream is
        closed both ways, reset, or the connection is gone.

        Args:
            protocol: The protocol that takes the stream over.
            headers: Fields of the 200 response (connection-specific ones,
                such as ``Upgrade``, are dropped: RFC 9113 section 8.2.2).

        Raises:
            ResponseStateError: The request is not an extended CONNECT, or
                its response has started.
        """
        if self.connect_protocol is None:
            raise ResponseStateError("only an extended CONNECT switches protocols on HTTP/2")
        if self._started or self._finished:
            raise ResponseStateError("the response has started")
        self.code = 200
        fields = self._fields(-1)
        for name, value in headers:
            lowered = name.lower()
            if lowered not in _CONNECTION_FIELDS and lowered != b"content-length":
                fields.append((lowered, value))
        self._finished = True
        self._h2._tunnel(self, protocol, fields)
        waiters = self._finish_waiters
        if waiters:
            self._finish_waiters = None
            for d in waiters:
                d.callback(None)

    def abort(self) -> None:
        """Reset this stream at once (RST_STREAM INTERNAL_ERROR); other streams go on."""
        if self._lost is None:
            self._h2._reset(self, h2.errors.ErrorCodes.INTERNAL_ERROR)

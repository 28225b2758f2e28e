"""The HTTP/2 client connection: many requests at once on one connection, on h2.

``H2ClientConnection`` drives h2's client-side state machine (RFC 9113) over
a transport another protocol already holds (the HTTP/1.1 connection that
TLS chose h2 for by ALPN, or that was told to speak HTTP/2 by prior
knowledge): that protocol passes every transport event on. Each request is
an ``H2Exchange``, one stream, with the same face as an HTTP/1.1 exchange: a
Deferred of the response head and a ``ResponseBody`` streaming the body.

Flow control works both ways (RFC 9113 section 5.2). Response data is
acknowledged (a WINDOW_UPDATE) as it reaches the reader's buffer, and no
longer while that buffer is above its high-water mark: a slow reader stops
the server on that stream only. Request bodies go out within the server's
windows, the rest waiting (bounded: the writer waits on ``drained()``) for
its WINDOW_UPDATE. A RST_STREAM fails its request only; GOAWAY stops new
streams, and streams the server never processed (above its last stream id)
fail with ``ResponseNeverReceivedError`` so that the client may retry them
elsewhere. Cancelling an exchange resets its stream with CANCEL.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame

from torsion.defer import Deferred
from torsion.web._client_body import ResponseBody
from torsion.web._client_errors import (
    BadResponseError,
    InvalidRequestError,
    ResponseNeverReceivedError,
)
from torsion.web._client_http11 import ResponseStarted, check_method, check_target
from torsion.web._headers import Headers

__all__ = ["H2ClientConnection", "H2Exchange", "StreamResetError"]

# RFC 9113 section 8.2.2: fields that are about one HTTP/1.1 connection and
# may not appear in HTTP/2 (TE only as "trailers"); Host becomes :authority.
_CONNECTION_FIELDS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"}
)
_CANCEL = h2.errors.ErrorCodes.CANCEL


class _Connection(h2.connection.H2Connection):
    """h2's client connection, kept open for the streams a GOAWAY lets finish.

    h2 treats a GOAWAY received as the connection's end and refuses every
    frame after it; RFC 9113 section 6.8 says the streams up to its last
    stream id go on to completion. New streams stay refused by this module.
    """

    def _receive_goaway_frame(
        self, frame: hyperframe.frame.GoAwayFrame
    ) -> tuple[list[hyperframe.frame.Frame], list[h2.events.Event]]:
        frames, events = super()._receive_goaway_frame(frame)
        self.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return frames, events


class StreamResetError(BadResponseError):
    """The server reset the request's stream (RST_STREAM); the connection lives on.

    Attributes:
        error_code: The RST_STREAM error code (RFC 9113 section 7).
    """

    def __init__(self, message: str, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


class H2Exchange:
    """One request on an ``H2ClientConnection`` (one stream) and its response.

    Attributes:
        head: Fires with the response head, or fails.
        body: The response body, streaming.
        request_done: Whether the request has been sent to its end.
        ended: Whether the stream has ended (either way).
    """

    def __init__(self, connection: H2ClientConnection, stream_id: int, high_water: int) -> None:
        self._connection = connection
        self.stream_id = stream_id
        self.head: Deferred[ResponseStarted] = Deferred(self._cancel_head)
        self.body = ResponseBody(high_water, self._pause, self._resume, self.close)
        self.request_done = False
        self.ended = False
        self.cancelling = False
        self._paused = False
        self._unacked = 0
        self._pending = bytearray()
        self._end_pending = False
        self._drain_waiters: list[Deferred[None]] = []

    # The request body, as RequestBodySource.send writes it.

    def drained(self) -> Deferred[None]:
        """Fires once what was written has gone out within the server's windows."""
        if not self._pending or self.ended:
            return self._connection.drained()
        d: Deferred[None] = Deferred()
        self._drain_waiters.append(d)
        return d

    def write_body(self, data: bytes) -> None:
        """Send a piece of the request body (wait on ``drained()`` between pieces)."""
        if self.ended or self._connection.closed:
            raise ConnectionResetError("the stream is closed")
        self._pending += data
        self._connection._flush_stream(self)

    def end_body(self) -> None:
        """Finish the request body."""
        if self.ended or self._connection.closed:
            raise ConnectionResetError("the stream is closed")
        self._end_pending = True
        self._connection._flush_stream(self)

    # Giving up.

    def close(self) -> None:
        """Abandon the exchange: if its stream had not ended, reset it (CANCEL)."""
        self._connection._abandon(self)

    def discard(self) -> None:
        """Abandon the exchange from the code awaiting its head, which stops awaiting."""
        self.cancelling = True
        self._connection._abandon(self)

    def _cancel_head(self, _: Deferred[ResponseStarted]) -> None:
        self.cancelling = True
        self._connection._abandon(self)

    # Flow control of the response body: acknowledge only what fits the buffer.

    def _pause(self) -> None:
        self._paused = True

    def _resume(self) -> None:
        self._paused = False
        self._connection._acknowledge(self)

    def _wake_drained(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for d in waiters:
            d.callback(None)


class H2ClientConnection:
    """The HTTP/2 side of a client connection: streams multiplexed on one transport.

    The protocol holding the transport passes on ``data_received``,
    ``eof_received``, ``connection_lost``, and asks ``drained()`` of itself.

    Args:
        drained: The transport's drain (fires when its buffer is low).
        on_closed: Called once when the connection ends.
        on_stream_done: Called each time a stream ends (room for another).
        body_high_water: Unread response bytes per stream above which that
            stream's data is no longer acknowledged.
        max_header_list_size: The most bytes of response header fields (our
            SETTINGS_MAX_HEADER_LIST_SIZE, enforced on what comes).
        max_concurrent_streams: The most streams this client opens at once
            (the server's own limit applies too).
    """

    def __init__(
        self,
        *,
        drained: Callable[[], Deferred[None]],
        on_closed: Callable[[H2ClientConnection], object] | None = None,
        on_stream_done: Callable[[], object] | None = None,
        body_high_water: int = 256 * 1024,
        max_header_list_size: int = 65536,
        max_concurrent_streams: int = 100,
    ) -> None:
        self._drained = drained
        self.on_closed = on_closed
        self.on_stream_done = on_stream_done
        self._high_water = body_high_water
        self.max_header_list_size = max_header_list_size
        self.max_concurrent_streams = max_concurrent_streams
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_inbound_headers=True
        )
        self._conn = _Connection(config)
        self._conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: max_header_list_size,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: body_high_water,
            },
        )
        self._streams: dict[int, H2Exchange] = {}
        self._connection_unacked = 0
        self._reading_held = False
        self._transport: asyncio.WriteTransport | None = None
        self.closed = False
        self.goaway = False

    @property
    def is_open(self) -> bool:
        """Whether the connection can still carry a request."""
        return not self.closed and not self.goaway

    @property
    def active_streams(self) -> int:
        """How many requests are under way."""
        return len(self._streams)

    @property
    def has_capacity(self) -> bool:
        """Whether one more stream may be opened now."""
        limit = min(self.max_concurrent_streams, self._conn.remote_settings.max_concurrent_streams)
        return self.is_open and len(self._streams) < limit

    def drained(self) -> Deferred[None]:
        """Fires when the transport's write buffer is low."""
        return self._drained()

    # The transport's events, passed on.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the preface and our settings."""
        # uvloop's TLS transport is not an asyncio.Transport subclass.
        self._transport = cast("asyncio.WriteTransport", transport)
        self._conn.initiate_connection()
        # The connection's window as large as the streams' (RFC 9113 6.9.2:
        # it starts at 65,535 whatever the settings say).
        extra = self._high_water - 65535
        if extra > 0:
            self._conn.increment_flow_control_window(extra)
        self._flush()

    def data_received(self, data: bytes) -> None:
        """Take the server's frames."""
        if self.closed:
            return
        try:
            events = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued the GOAWAY; send it and end.
            self._flush()
            self._fail_all(BadResponseError(f"HTTP/2 protocol error from the server: {exc}"))
            self._close()
            return
        for event in events:
            self._handle(event)
        if self._connection_unacked and not self.closed:
            size, self._connection_unacked = self._connection_unacked, 0
            self._conn.increment_flow_control_window(size)
        self._flush()
        self._hold_reading()

    def eof_received(self) -> None:
        """The server closed its side: every stream under way fails."""
        self._fail_all(ConnectionResetError("the server closed the HTTP/2 connection"))

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection ended: every stream under way fails."""
        self.closed = True
        error = ConnectionResetError("the HTTP/2 connection was lost")
        error.__cause__ = exc
        self._fail_all(error)
        if self.on_closed is not None:
            on_closed, self.on_closed = self.on_closed, None
            on_closed(self)

    def close(self) -> None:
        """Say GOAWAY and close."""
        if not self.closed:
            self._conn.close_connection()
            self._flush()
        self._close()

    # Requests.

    def start(
        self,
        method: bytes,
        target: bytes,
        headers: Headers,
        *,
        scheme: bytes,
        body_length: int | None = None,
        body: bytes = b"",
        head_only: bool = False,
    ) -> H2Exchange:
        """Open a stream: send the request head (and a whole body, if given).

        Args:
            method: The method.
            target: The path and query (origin form).
            headers: The fields, ``Host`` among them (it becomes ``:authority``).
            scheme: ``b"https"`` or ``b"http"``.
            body_length: None (no body), the body's length, or negative
                (unknown: the stream ends when the body does).
            body: The whole body, if at hand.
            head_only: The response has no body (HEAD).

        Returns:
            The exchange; write the rest of the body with ``write_body`` and
            ``end_body`` unless it was given whole.

        Raises:
            InvalidRequestError: The method, target or a field may not be sent.
            ConnectionError: The connection is closed or going away.
        """
        del head_only  # h2 knows a HEAD response has no body from the method.
        check_method(method)
        check_target(target)
        if not self.is_open:
            raise ResponseNeverReceivedError("the HTTP/2 connection is closed or going away")
        authority = b""
        fields: list[tuple[bytes, bytes]] = []
        for name, value in headers.raw:
            lowered = name.lower()
            if lowered == b"host":
                authority = value
            elif lowered == b"te" and value.strip().lower() != b"trailers":
                continue
            if lowered in _CONNECTION_FIELDS:
                continue
            fields.append((lowered, value))
        if body_length is not None and body_length >= 0:
            fields.append((b"content-length", str(body_length).encode()))
        pseudo = [
            (b":method", method),
            (b":scheme", scheme),
            (b":authority", authority),
            (b":path", target),
        ]
        whole = bool(body) or body_length is None or body_length == 0
        stream_id = self._conn.get_next_available_stream_id()
        exchange = H2Exchange(self, stream_id, self._high_water)
        try:
            self._conn.send_headers(stream_id, pseudo + fields, end_stream=whole and not body)
        except h2.exceptions.ProtocolError as exc:
            raise InvalidRequestError(f"cannot send this request over HTTP/2: {exc}") from exc
        self._streams[stream_id] = exchange
        if whole:
            if body:
                exchange._pending += body
                exchange._end_pending = True
                self._flush_stream(exchange)
            else:
                exchange.request_done = True
        self._flush()
        return exchange

    # Inside.

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            # The connection's window reopens at once, the stream's as its
            # reader reads: one slow reader must not stall the other
            # streams. Each stream's unread data stays within its window.
            self._connection_unacked += event.flow_controlled_length
            exchange = self._streams.get(event.stream_id)
            if exchange is None:
                return  # A stream we reset.
            exchange._unacked += event.flow_controlled_length
            exchange.body.feed(event.data)
            self._acknowledge(exchange)
        elif isinstance(event, h2.events.ResponseReceived):
            self._head(event.stream_id, event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            exchange = self._streams.get(event.stream_id)
            if exchange is not None:
                if not exchange.head.called:
                    self._fail(exchange, BadResponseError("a response without a head"))
                    return
                self._end(exchange)
                exchange.body.finish()
        elif isinstance(event, h2.events.StreamReset):
            exchange = self._streams.get(event.stream_id)
            if exchange is not None:
                code = int(event.error_code)
                if event.remote_reset and code == h2.errors.ErrorCodes.REFUSED_STREAM:
                    # RFC 9113 section 8.7: not processed, safe to retry.
                    self._fail(
                        exchange, ResponseNeverReceivedError("the server refused the stream")
                    )
                else:
                    name = getattr(event.error_code, "name", str(code))
                    self._fail(
                        exchange, StreamResetError(f"the server reset the stream ({name})", code)
                    )
        elif isinstance(event, h2.events.WindowUpdated):
            targets = list(self._streams.values())
            if event.stream_id:
                exchange = self._streams.get(event.stream_id)
                targets = [exchange] if exchange is not None else []
            for exchange in targets:
                self._flush_stream(exchange)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = True
            last = event.last_stream_id if event.last_stream_id is not None else 0
            for stream_id, exchange in list(self._streams.items()):
                if stream_id > last:
                    self._fail(
                        exchange, ResponseNeverReceivedError("the server went away (GOAWAY)")
                    )
            if not self._streams:
                self._close()
        elif isinstance(
            event, h2.events.InformationalResponseReceived | h2.events.TrailersReceived
        ):
            pass  # 1xx heads are not reported; trailers are not kept.

    def _head(self, stream_id: int, raw: list[tuple[bytes, bytes]]) -> None:
        exchange = self._streams.get(stream_id)
        if exchange is None:
            return
        size = sum(len(n) + len(v) + 32 for n, v in raw)
        if size > self.max_header_list_size:
            self._fail(
                exchange,
                BadResponseError(
                    f"the response's header list is over {self.max_header_list_size}"
                ),
            )
            return
        code = 0
        fields: list[tuple[bytes, bytes]] = []
        for name, value in raw:
            if name == b":status":
                code = int(value)
            elif not name.startswith(b":"):
                fields.append((name, value))
        exchange.head.callback(
            ResponseStarted(
                code=code, phrase="", version="HTTP/2", headers=Headers.from_raw(fields)
            )
        )

    def _acknowledge(self, exchange: H2Exchange) -> None:
        if exchange._paused or not exchange._unacked or self.closed:
            return
        size, exchange._unacked = exchange._unacked, 0
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._conn.increment_flow_control_window(size, exchange.stream_id)
        self._flush()

    def _flush_stream(self, exchange: H2Exchange) -> None:
        if self.closed or exchange.ended or exchange.request_done:
            return
        conn = self._conn
        stream_id = exchange.stream_id
        pending = exchange._pending
        try:
            while pending:
                room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
                if room <= 0:
                    break
                piece = bytes(pending[:room])
                del pending[:room]
                conn.send_data(stream_id, piece)
            if not pending and exchange._end_pending:
                conn.end_stream(stream_id)
                exchange.request_done = True
        except h2.exceptions.StreamClosedError:
            return
        self._flush()
        if not pending:
            exchange._wake_drained()

    def _abandon(self, exchange: H2Exchange) -> None:
        if exchange.ended:
            return
        if not self.closed:
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self._conn.reset_stream(exchange.stream_id, _CANCEL)
            self._flush()
        self._fail(exchange, BadResponseError("the request was abandoned"))

    def _fail(self, exchange: H2Exchange, exc: BaseException) -> None:
        if exchange.ended:
            return
        self._end(exchange)
        if not exchange.head.called and not exchange.cancelling:
            exchange.head.errback(exc)
        exchange.body.fail(exc)
        exchange._wake_drained()

    def _end(self, exchange: H2Exchange) -> None:
        exchange.ended = True
        self._streams.pop(exchange.stream_id, None)
        if self.goaway and not self._streams:
            self._close()
        if self.on_stream_done is not None:
            self.on_stream_done()

    def _fail_all(self, exc: BaseException) -> None:
        for exchange in list(self._streams.values()):
            self._fail(exchange, exc)

    def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _hold_reading(self) -> None:
        # What h2 answers by itself (PING and SETTINGS acknowledgements)
        # must not pile up behind a server that sends and never reads
        # (CVE-2019-9512, CVE-2019-9515 turned round): while the transport's
        # buffer is full, read no more.
        transport = self._transport
        if self._reading_held or transport is None or transport.is_closing():
            return
        drained = self._drained()
        if drained.called:
            return
        reading = cast("asyncio.ReadTransport", transport)
        reading.pause_reading()
        self._reading_held = True

        def resume(_: object) -> None:
            self._reading_held = False
            if not transport.is_closing():
                reading.resume_reading()

        drained.add_both(resume)

    def _close(self) -> None:
        self.goaway = True
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "going away" if self.goaway else "open"
        return f"<H2ClientConnection {state}, {len(self._streams)} streams>"

"""``H2Channel``: the HTTP/2 server connection (RFC 9113), on h2's state machine.

Each stream becomes a ``Request`` (an ``H2Request``, which frames the
response as HEADERS and DATA instead of HTTP/1.1 bytes), so every resource
serves HTTP/2 unchanged. The site hands a connection over to this channel
when TLS's ALPN chose ``h2``, or when a cleartext connection begins with
the HTTP/2 preface (prior knowledge, RFC 9113 section 3.3). The HTTP/1.1
``Upgrade: h2c`` dance is not offered (RFC 9113 section 3.1 deprecates it).
``H2Request`` and the channel's record of each stream live in
``_h2_stream``; the transport of a protocol carried on a stream by an
extended CONNECT in ``_h2_tunnel``.

Bounds and defences:

* Streams served at once: ``ServerLimits.max_streams``, announced in
  SETTINGS_MAX_CONCURRENT_STREAMS; a stream the client resets whose handler
  is still running keeps counting, and streams past the bound are refused
  (REFUSED_STREAM), so resetting cannot make the server do unbounded work
  (CVE-2023-44487, "rapid reset").
* Request bodies: each stream's receive window is ``ServerLimits.body_buffer``
  and the connection's is a multiple of it; window updates are sent only as
  the handler consumes the body, so buffering is bounded per stream and per
  connection. A body over ``max_body`` gets 413 (or a reset once the
  response has started).
* Time: a request body the handler waits for that sees nothing from the
  client for ``body_timeout`` gets 408 (a reset once the response has
  started); a connection with no stream for ``idle_timeout`` gets GOAWAY.
* Slow readers: a stream whose response data has waited for flow-control
  window (the client sends no WINDOW_UPDATE) for the write timeout is reset
  with CANCEL (RFC 9113 section 5.4.2); a connection whose transport has
  stayed paused (the client does not read) for the write timeout is aborted,
  since a GOAWAY would only queue behind the bytes the client is not
  reading. Each wait restarts when data goes out, so a slow reader that
  keeps reading is never cut off. The write timeout is
  ``ServerLimits.write_timeout``.
* Header blocks: SETTINGS_MAX_HEADER_LIST_SIZE is ``max_head_bytes``, and h2
  refuses more than 64 CONTINUATION frames (CVE-2024-27316 class).
* Floods: PINGs (CVE-2019-9512), SETTINGS (CVE-2019-9515) and stream resets
  (CVE-2019-9514, CVE-2023-44487) are counted per second; past their bound
  the connection ends with GOAWAY ENHANCE_YOUR_CALM. Reading also pauses
  while the transport's write buffer is full, so the answers h2 makes by
  itself (PING and SETTINGS acknowledgements, resets) cannot pile up.
* Output: DATA is sent only within the peer's flow-control windows (a
  window driven negative by a smaller SETTINGS_INITIAL_WINDOW_SIZE simply
  waits to become positive again); ``request.drained()`` waits while a
  stream's queued body is over its bound or the transport is full.

Extended CONNECT (RFC 8441): the server announces
SETTINGS_ENABLE_CONNECT_PROTOCOL=1 on every connection (``H2Channel.
enable_connect_protocol``), since which resources accept it is only known
when a request reaches one: a CONNECT with ``:protocol`` is routed by its
``:path`` like any request (``H2Request.connect_protocol`` says which
protocol), and a resource that accepts it calls ``switch_protocols``, which
answers 200 and carries the new protocol's bytes as the stream's DATA
(flow-controlled both ways, the stream's end as the protocol's end of file,
RST_STREAM CANCEL as its abort). ``WebSocketResource`` does so for
``:protocol`` ``websocket`` (RFC 8441 section 5). A ``:protocol`` on a
connection that did not announce the setting is malformed: the stream is
reset with PROTOCOL_ERROR (RFC 8441 section 4).

A connection error sends GOAWAY with its code (COMPRESSION_ERROR for a
header block HPACK cannot decode) and closes the socket; a client's GOAWAY
is not answered with another. h2's output is flushed once per read, and at
once for writes made outside a read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import typing

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.frame import GoAwayFrame

from torsion.defer import Deferred, fail, succeed
from torsion.internet import DelayedCall, Protocol
from torsion.web._h2_stream import H2Request, Stream
from torsion.web._h2_tunnel import StreamTransport
from torsion.web._http11 import HTTPProtocolError
from torsion.web._request import Request
from torsion.web._resource import render_error

if typing.TYPE_CHECKING:
    from torsion.web._site import Site

__all__ = ["PREFACE", "H2Channel", "H2Request"]

_log = logging.getLogger("torsion.web")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Per-second bounds on what a client can make the server do for nothing.
_MAX_PINGS = 50
_MAX_SETTINGS = 50
# Client resets per second, as a multiple of max_streams.
_RESETS_PER_STREAM = 2
# The connection's receive window, as a multiple of the stream window.
_CONNECTION_WINDOW_STREAMS = 16
# Seconds a connection ended with GOAWAY may take to flush before it is
# aborted (a client that does not read cannot hold it open).
_CLOSE_GRACE = 10.0
# A stream's queued response body past which drained() waits.
_STREAM_HIGH = 65536
_ENHANCE_YOUR_CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


class H2Channel(Protocol):
    """One HTTP/2 server connection; ``HTTPChannel`` hands connections to it.

    Call order, as for every protocol::

        connection_made [-> data_received*] -> connection_lost

    Attributes:
        enable_connect_protocol: Whether SETTINGS_ENABLE_CONNECT_PROTOCOL=1
            is announced, so that clients may send extended CONNECT (RFC
            8441); a subclass may set it False.
    """

    enable_connect_protocol: typing.ClassVar[bool] = True

    def __init__(self, site: Site) -> None:
        """Make the h2 state machine with the site's bounds as local settings."""
        self._site = site
        limits = self._limits = site.limits
        self._clock = site.reactor
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            # Inbound headers are checked (RFC 9113 section 8.2); what the
            # server sends is built here from validated fields.
            validate_inbound_headers=True,
            normalize_inbound_headers=True,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        conn = self._conn = h2.connection.H2Connection(config)
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: min(limits.body_buffer, 2**31 - 1),
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_head_bytes,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: int(
                    self.enable_connect_protocol
                ),
            },
        )
        # h2 checks incoming header blocks against the decoder's own bound.
        conn.decoder.max_header_list_size = limits.max_head_bytes
        self._streams: dict[int, Stream] = {}
        # Requests whose handlers still run, reset or not (rapid reset).
        self._working = 0
        self._in_receive = False
        self._closed = False
        self._reading_paused = False
        self._second = -1.0
        self._pings = 0
        self._settings = 0
        self._resets = 0
        self._idle: DelayedCall | None = None
        self._closing_timer: DelayedCall | None = None
        # The body timeout: when the client last sent anything, and the one
        # timer that checks streams whose bodies are awaited.
        self._last_read = 0.0
        self._body_timer: DelayedCall | None = None
        # The write timeout: when the transport paused (-1.0 while it is
        # not), and the one timer that checks it and the blocked streams.
        self._write_timeout = limits.write_timeout
        self._paused_since = -1.0
        self._write_timer: DelayedCall | None = None

    # -- asyncio protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the server's preface (its SETTINGS) and open the window."""
        super().connection_made(transport)
        conn = self._conn
        conn.initiate_connection()
        # h2 itself refuses a stream past the bound as a connection error,
        # before decoding its header block. RFC 9113 section 5.1.2 asks for
        # a stream error (REFUSED_STREAM here), which needs the block decoded
        # to keep HPACK in step: h2 stops counting once the client
        # acknowledges our SETTINGS (this value is never sent), and
        # _request counts instead.
        conn.local_settings.max_concurrent_streams = 2**31 - 1
        window = min(self._limits.body_buffer * _CONNECTION_WINDOW_STREAMS, 2**31 - 1)
        if window > 65535:
            conn.increment_flow_control_window(window - 65535)
        self._flush()
        self._wait_idle()

    def data_received(self, data: bytes) -> None:
        """Run what arrived through h2, act on its events, flush once."""
        if self._closed:
            return
        self._in_receive = True
        if self._body_timer is not None:
            self._last_read = self._clock.seconds()
        try:
            try:
                events = self._conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                self._connection_error(exc)
                return
            for event in events:
                if self._event(event):
                    # The connection is ending: the rest is not acted on.
                    return
        finally:
            self._in_receive = False
        self._flush()

    def eof_received(self) -> bool | None:
        """The client sends no more: close once everything is written."""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail every stream still open, and stop the timer."""
        self._closed = True
        self._lost = True
        self._cancel_idle()
        for timer in (self._closing_timer, self._body_timer, self._write_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._closing_timer = self._body_timer = self._write_timer = None
        error = exc if exc is not None else ConnectionResetError("connection closed")
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            self._lose(stream, error)
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The transport is full: stop reading too, so answers cannot pile up."""
        super().pause_writing()
        if self._closed:
            return
        if self._paused_since < 0:
            self._paused_since = self._clock.seconds()
            self._arm_write_timer(self._write_timeout)
        if not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        for stream in list(self._streams.values()):
            if stream.tunnel is not None:
                self._tunnel_flow(stream)

    def resume_writing(self) -> None:
        """Room again: read on, and send what the windows allow."""
        super().resume_writing()
        self._paused_since = -1.0
        if self._reading_paused and not self._closed:
            self._reading_paused = False
            self.transport.resume_reading()
        for stream in list(self._streams.values()):
            # Window updates were not read while paused: that time is the
            # connection's wait, not the stream's.
            stream.blocked_since = -1.0
            self._pump(stream)
        self._flush()

    # -- h2's events ---------------------------------------------------------

    def _event(self, event: h2.events.Event) -> bool:
        # Act on one event; True once the connection is closing.
        if isinstance(event, h2.events.RequestReceived):
            self._request(event)
        elif isinstance(event, h2.events.DataReceived):
            self._data(event)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._streams.get(event.stream_id or 0)
            if stream is not None:
                if stream.tunnel is not None:
                    stream.tunnel._eof()
                else:
                    stream.request._end_body()
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id:
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    self._pump(stream)
            else:
                for stream in list(self._streams.values()):
                    self._pump(stream)
        elif isinstance(event, h2.events.StreamReset):
            self._count("resets")
            stream = self._streams.pop(event.stream_id or 0, None)
            if stream is not None:
                self._lose(stream, ConnectionResetError("the client reset the stream"))
        elif isinstance(event, h2.events.PingReceived):
            self._count("pings")
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._count("settings")
            # A new initial window changes every stream's window (it may
            # now be positive again, or negative: _pump waits for that).
            for stream in list(self._streams.values()):
                self._pump(stream)
        elif isinstance(event, h2.events.ConnectionTerminated):
            # The client said GOAWAY: no reply in kind (RFC 9113 section
            # 6.8); what was written goes, then the connection closes.
            self._closed = True
            self._flush()
            self.transport.close()
        return self._closed

    def _request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id or 0
        method = path = authority = b""
        protocol: bytes | None = None
        fields: list[tuple[bytes, bytes]] = []
        cookies: list[bytes] = []
        for name, value in event.headers or ():
            name = bytes(name)
            value = bytes(value)
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
                elif name == b":protocol":
                    protocol = value
            elif name == b"cookie":
                cookies.append(value)
            else:
                fields.append((name, value))
        if cookies:
            # RFC 9113 section 8.2.3: crumbs sent apart are one field again.
            fields.append((b"cookie", b"; ".join(cookies)))
        if authority and not any(name == b"host" for name, _ in fields):
            fields.insert(0, (b"host", authority))
        if protocol is not None and not self.enable_connect_protocol:
            # RFC 8441 section 4 (h2 checks it came with CONNECT, :scheme
            # and :path): without the setting sent, the request is malformed
            # (RFC 9113 section 8.1.1).
            self._conn.reset_stream(stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return
        has_body = event.stream_ended is None
        request = H2Request(self, stream_id, method, path or authority, fields, has_body)
        if protocol is not None:
            request.connect_protocol = protocol.decode("latin-1")
        stream = Stream(stream_id, request)
        request._stream = stream
        limit = self._limits.max_streams
        if len(self._streams) >= limit or self._working >= limit:
            # Past SETTINGS_MAX_CONCURRENT_STREAMS: refused, and the client
            # may retry it (RFC 9113 sections 5.1.2 and 8.7).
            self._conn.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        self._streams[stream_id] = stream
        stream.working = True
        self._working += 1
        self._cancel_idle()
        length = _content_length(fields)
        if length > self._limits.max_body:
            request._fail_body(HTTPProtocolError(413, "request body too large"))
            request._finish_with(render_error(request, 413))
            return
        if has_body and self._body_timer is None:
            self._last_read = self._clock.seconds()
            timeout = self._limits.body_timeout
            self._body_timer = self._clock.call_later(timeout, self._check_bodies)
        self._site._render(request)

    def _data(self, event: h2.events.DataReceived) -> None:
        stream_id = event.stream_id or 0
        flowed = event.flow_controlled_length or 0
        data = bytes(event.data or b"")
        stream = self._streams.get(stream_id)
        if stream is None:
            # A stream already answered or refused: give the window back.
            if flowed:
                self._conn.acknowledge_received_data(flowed, stream_id)
            return
        request = stream.request
        # Padding is never the handler's to consume.
        padding = flowed - len(data)
        stream.received += flowed
        stream.acked += padding
        if padding:
            self._conn.acknowledge_received_data(padding, stream_id)
        if stream.tunnel is not None:
            stream.tunnel._receive(data)
            return
        if request._discarding or request._body_error is not None:
            stream.acked += len(data)
            if data:
                self._conn.acknowledge_received_data(len(data), stream_id)
            return
        if stream.received > self._limits.max_body:
            error = HTTPProtocolError(413, "request body too large")
            request._fail_body(error)
            if not request._started and not request._finished:
                request._finish_with(render_error(request, 413))
            else:
                self._reset(request, h2.errors.ErrorCodes.CANCEL)
            return
        request._feed_body(data)
        self._body_consumed(request)

    # -- for H2Request -------------------------------------------------------

    def _body_consumed(self, request: Request) -> None:
        # Window updates for what the handler took from the buffer (all of
        # it while the whole body is being collected: max_body bounds that).
        stream = typing.cast(H2Request, request)._stream
        if stream.stream_id not in self._streams:
            return
        held = 0 if request._collecting is not None else request._body_buffered
        consumed = stream.received - held - stream.acked
        if consumed > 0:
            stream.acked += consumed
            try:
                self._conn.acknowledge_received_data(consumed, stream.stream_id)
            except h2.exceptions.StreamClosedError:
                return
            if not self._in_receive:
                self._flush()

    def _send_headers(
        self, request: H2Request, fields: list[tuple[bytes, bytes]], end: bool
    ) -> None:
        stream = request._stream
        if self._closed or stream.stream_id not in self._streams:
            return
        try:
            self._conn.send_headers(stream.stream_id, fields, end_stream=end)
        except h2.exceptions.ProtocolError as exc:
            # The stream closed under us (reset in the same read, say).
            _log.debug("HTTP/2 stream %d: headers not sent: %s", stream.stream_id, exc)
            return
        if end:
            self._stream_done(stream)
        if not self._in_receive:
            self._flush()

    def _respond(self, request: H2Request, fields: list[tuple[bytes, bytes]], body: bytes) -> None:
        # A whole response: in one HEADERS and one DATA when the window and
        # the frame size allow it (the common case), else queued.
        stream = request._stream
        if not body:
            self._send_headers(request, fields, end=True)
            return
        conn = self._conn
        stream_id = stream.stream_id
        if (
            self._closed
            or stream_id not in self._streams
            or len(body) > conn.max_outbound_frame_size
            or self._writing_paused
            or len(body) > conn.local_flow_control_window(stream_id)
        ):
            self._send_headers(request, fields, end=False)
            self._send_data(request, body)
            self._end(request)
            return
        try:
            conn.send_headers(stream_id, fields)
            conn.send_data(stream_id, body, end_stream=True)
        except h2.exceptions.ProtocolError as exc:
            _log.debug("HTTP/2 stream %d: response not sent: %s", stream_id, exc)
            return
        self._stream_done(stream)
        if not self._in_receive:
            self._flush()

    def _send_data(self, request: H2Request, data: bytes) -> None:
        stream = request._stream
        if self._closed or stream.stream_id not in self._streams:
            return
        stream.pending.append(data)
        stream.pending_bytes += len(data)
        self._pump(stream)
        # Flushed even within a read: a handler streaming from there must
        # see the transport fill (drained() waits then), or a client with
        # wide windows would have h2 buffer all of it.
        self._flush()

    def _end(self, request: H2Request) -> None:
        stream = request._stream
        if self._closed or stream.stream_id not in self._streams:
            return
        stream.end_pending = True
        self._pump(stream)
        if not self._in_receive:
            self._flush()

    def _reset(self, request: H2Request, code: int) -> None:
        stream = request._stream
        if self._streams.pop(stream.stream_id, None) is None or self._closed:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._conn.reset_stream(stream.stream_id, code)
        self._lose(stream, ConnectionResetError("the stream was reset"))
        if not self._in_receive:
            self._flush()

    def _drained(self, request: H2Request) -> Deferred[None]:
        stream = request._stream
        if request._lost is not None or self._closed:
            return fail(ConnectionResetError("connection closed"))
        if stream.pending_bytes <= _STREAM_HIGH and not self._writing_paused:
            return succeed(None)
        d: Deferred[None] = Deferred()
        stream.drain_waiters.append(d)
        return d

    def _request_done(self, request: Request) -> None:
        # The handler finished its response (it may still be queued).
        stream = typing.cast(H2Request, request)._stream
        if stream.working:
            stream.working = False
            self._working -= 1
        if self._site.access_log is not None:
            self._site._log_access(request)
        if not self._working and not self._streams:
            self._wait_idle()

    # -- extended CONNECT (RFC 8441) ------------------------------------------

    def _tunnel(
        self, request: H2Request, protocol: asyncio.Protocol, fields: list[tuple[bytes, bytes]]
    ) -> None:
        # The 200 goes out; the stream is the protocol's from now on.
        stream = request._stream
        transport = StreamTransport(self, stream, protocol)
        alive = not self._closed and stream.stream_id in self._streams
        if alive:
            stream.tunnel = transport
            self._send_headers(request, fields, end=False)
        if stream.working:
            # The handler's part is done: the stream still counts against
            # max_streams for as long as it is open.
            stream.working = False
            self._working -= 1
        if self._site.access_log is not None:
            self._site._log_access(request)
        protocol.connection_made(transport)
        if not alive:
            transport._gone(request._lost or ConnectionResetError("the stream was reset"))
            return
        # DATA that came before the switch waited as the request's body.
        held = b"".join(request._body_chunks)
        request._body_chunks.clear()
        request._body_buffered = 0
        if held:
            transport._receive(held)
        if request._body_complete:
            transport._eof()
        if not self._in_receive:
            self._flush()

    def _tunnel_flow(self, stream: Stream) -> None:
        # The switched protocol writes while the stream's queue is small
        # and the connection's transport has room.
        tunnel = stream.tunnel
        if tunnel is None or tunnel._lost:
            return
        full = self._writing_paused or stream.pending_bytes > _STREAM_HIGH
        if full != tunnel._writing_paused:
            tunnel._writing_paused = full
            if full:
                tunnel._protocol.pause_writing()
            else:
                tunnel._protocol.resume_writing()

    def _tunnel_ack(self, stream: Stream, held: int) -> None:
        # The window reopens by what the protocol took (not what it holds).
        consumed = stream.received - held - stream.acked
        if consumed > 0 and stream.stream_id in self._streams:
            stream.acked += consumed
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self._conn.acknowledge_received_data(consumed, stream.stream_id)
            if not self._in_receive:
                self._flush()

    # -- output ----------------------------------------------------------------

    def _pump(self, stream: Stream) -> None:
        # Move queued DATA into h2 as far as the peer's windows allow; a
        # window at or below zero (RFC 9113 section 6.9.2) waits for updates.
        conn = self._conn
        stream_id = stream.stream_id
        pending = stream.pending
        if self._writing_paused or stream_id not in self._streams:
            return
        sent = False
        try:
            while pending:
                window = conn.local_flow_control_window(stream_id)
                if window <= 0:
                    break
                sent = True
                size = min(window, conn.max_outbound_frame_size)
                chunk = pending[0]
                if len(chunk) <= size:
                    pending.popleft()
                else:
                    pending[0] = chunk[size:]
                    chunk = chunk[:size]
                stream.pending_bytes -= len(chunk)
                conn.send_data(stream_id, chunk)
            if not pending and stream.end_pending:
                stream.end_pending = False
                conn.end_stream(stream_id)
                self._stream_done(stream)
        except h2.exceptions.ProtocolError as exc:
            _log.debug("HTTP/2 stream %d: data not sent: %s", stream_id, exc)
            self._streams.pop(stream_id, None)
            self._lose(stream, ConnectionResetError("the stream closed"))
            return
        if pending:
            # Held for window: the wait starts now, or goes on if nothing
            # went out (the clock is read only for a stream held up).
            if sent or stream.blocked_since < 0:
                stream.blocked_since = self._clock.seconds()
                self._arm_write_timer(self._write_timeout)
        elif stream.blocked_since >= 0:
            stream.blocked_since = -1.0
        if stream.drain_waiters and stream.pending_bytes <= _STREAM_HIGH:
            waiters, stream.drain_waiters = stream.drain_waiters, []
            for d in waiters:
                d.callback(None)
        if stream.tunnel is not None:
            self._tunnel_flow(stream)

    def _stream_done(self, stream: Stream) -> None:
        # Our side of the stream is closed: it leaves the table once the
        # request's body is in too (or is dropped: it is not wanted).
        request = stream.request
        self._streams.pop(stream.stream_id, None)
        if not request._body_complete:
            request._discarding = True
            request._body_chunks.clear()
            request._body_buffered = 0
            # RFC 9113 section 8.1: the rest of the body is not needed.
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._conn.reset_stream(stream.stream_id, h2.errors.ErrorCodes.NO_ERROR)
        if stream.tunnel is not None:
            # Closed both ways now: the switched protocol's connection ends.
            stream.tunnel._gone(None)
        if not self._working and not self._streams:
            self._wait_idle()

    def _lose(self, stream: Stream, error: BaseException) -> None:
        request = stream.request
        if stream.working:
            # Its handler may run on, but its work is no longer owed.
            stream.working = False
            self._working -= 1
        waiters, stream.drain_waiters = stream.drain_waiters, []
        stream.pending.clear()
        stream.pending_bytes = 0
        request._connection_lost(error)
        for d in waiters:
            d.errback(error)
        if stream.tunnel is not None:
            stream.tunnel._gone(error)

    def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data and not self._lost:
            self.transport.write(data)

    # -- errors, floods and time -------------------------------------------------

    def _connection_error(self, exc: h2.exceptions.ProtocolError) -> None:
        cause = exc.__cause__
        if isinstance(cause, OversizedHeaderListError):
            code = int(_ENHANCE_YOUR_CALM)
        elif isinstance(cause, HPACKError):
            # RFC 9113 section 4.3: a header block that cannot be decoded.
            code = int(h2.errors.ErrorCodes.COMPRESSION_ERROR)
        else:
            code = int(exc.error_code)
        _log.debug("HTTP/2 connection error %d: %s", code, exc)
        self._close_with(code)

    def _close_with(self, code: int) -> None:
        # GOAWAY with our own code (what h2 queued is dropped), then close.
        self._conn.data_to_send()
        frame = GoAwayFrame(stream_id=0)
        frame.last_stream_id = self._conn.highest_inbound_stream_id
        frame.error_code = code
        self._closed = True
        self._cancel_idle()
        if not self._lost:
            self.transport.write(frame.serialize())
            self.transport.close()
            self._closing_timer = self._clock.call_later(_CLOSE_GRACE, self._abort_late)

    def _abort_late(self) -> None:
        self._closing_timer = None
        if not self._lost:
            self.transport.abort()

    def _count(self, what: str) -> None:
        # Counts per second of the clock; past a bound, the connection ends.
        now = self._clock.seconds()
        if now - self._second >= 1.0:
            self._second = now
            self._pings = self._settings = self._resets = 0
        if what == "pings":
            self._pings += 1
        elif what == "settings":
            self._settings += 1
        else:
            self._resets += 1
        if (
            self._pings > _MAX_PINGS
            or self._settings > _MAX_SETTINGS
            or self._resets > _RESETS_PER_STREAM * self._limits.max_streams
        ):
            _log.info(
                "HTTP/2 flood from %s: %d pings, %d settings, %d resets in a second",
                _peer(self),
                self._pings,
                self._settings,
                self._resets,
            )
            self._close_with(int(_ENHANCE_YOUR_CALM))

    def _check_bodies(self) -> None:
        # RFC 9113 leaves stalls to the server: a body the handler waits
        # for (not one held because the handler does not read) that has
        # seen nothing from the client for body_timeout gets 408, as on
        # HTTP/1.1, or a reset once the response has started.
        self._body_timer = None
        if self._closed:
            return
        waiting = [
            stream
            for stream in self._streams.values()
            if stream.tunnel is None
            and not stream.request._body_complete
            and not stream.request._discarding
            and stream.request._body_error is None
        ]
        if not waiting:
            return
        timeout = self._limits.body_timeout
        left = self._last_read + timeout - self._clock.seconds()
        if left > 0:
            self._body_timer = self._clock.call_later(left, self._check_bodies)
            return
        stalled = [
            s for s in waiting if not s.request._body_buffered or s.request._collecting is not None
        ]
        for stream in stalled:
            request = stream.request
            error = HTTPProtocolError(408, "request body stalled")
            if request._started or request._finished:
                self._reset(request, h2.errors.ErrorCodes.CANCEL)
            else:
                request._finish_with(render_error(request, 408))
                request._connection_lost(error)
        if len(stalled) < len(waiting):
            # Bodies held for handlers that do not read: not the client's fault.
            self._body_timer = self._clock.call_later(timeout, self._check_bodies)
        if not self._in_receive:
            self._flush()

    def _arm_write_timer(self, delay: float) -> None:
        # One timer for the connection, armed only when none is: it checks
        # the timestamps when it fires, and re-arms for the next deadline.
        if self._write_timer is None and not self._closed:
            self._write_timer = self._clock.call_later(delay, self._check_writes)

    def _check_writes(self) -> None:
        self._write_timer = None
        if self._closed:
            return
        now = self._clock.seconds()
        timeout = self._write_timeout
        if 0 <= self._paused_since <= now - timeout:
            # The client has read nothing for the whole timeout: a GOAWAY
            # would wait behind what it is not reading, so the connection
            # is aborted (the streams fail in connection_lost).
            _log.info(
                "HTTP/2 client %s read nothing for %g seconds: connection aborted",
                _peer(self),
                timeout,
            )
            self._closed = True
            self._cancel_idle()
            self.transport.abort()
            return
        if self._paused_since >= 0:
            # While paused, the client's WINDOW_UPDATEs are not read: the
            # streams' waits start again when the transport resumes.
            self._arm_write_timer(max(self._paused_since + timeout - now, 0.0))
            return
        deadline = -1.0
        for stream in list(self._streams.values()):
            since = stream.blocked_since
            if since < 0 or not stream.pending:
                continue
            if since <= now - timeout:
                # RFC 9113 section 5.4.2: a stream error ends this stream
                # only; the others (and the connection) go on.
                _log.info(
                    "HTTP/2 client %s opened no window on stream %d for %g seconds: reset",
                    _peer(self),
                    stream.stream_id,
                    timeout,
                )
                self._reset(stream.request, h2.errors.ErrorCodes.CANCEL)
            elif deadline < 0 or since + timeout < deadline:
                deadline = since + timeout
        if deadline >= 0:
            self._arm_write_timer(max(deadline - now, 0.0))
        if not self._in_receive:
            self._flush()

    def _wait_idle(self) -> None:
        if self._idle is None and not self._closed:
            self._idle = self._clock.call_later(self._limits.idle_timeout, self._idle_out)

    def _cancel_idle(self) -> None:
        idle, self._idle = self._idle, None
        if idle is not None and idle.active():
            idle.cancel()

    def _idle_out(self) -> None:
        self._idle = None
        if self._closed or self._streams or self._working:
            return
        self._close_with(int(h2.errors.ErrorCodes.NO_ERROR))


def _content_length(fields: list[tuple[bytes, bytes]]) -> int:
    for name, value in fields:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return -1


def _peer(protocol: Protocol) -> str:
    try:
        return str(protocol.peer)
    except Exception:
        return "?"

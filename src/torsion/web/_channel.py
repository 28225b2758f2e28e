"""``HTTPChannel``: the HTTP/1.1 server connection, glue around the parser.

The channel feeds the bytes it receives to ``RequestParser`` and keeps the
connection's order and bounds:

* Requests are answered strictly in the order they came. Pipelined requests
  are parsed ahead and held (at most ``max_pipelined``; reading pauses
  past it); each is rendered only when every response before it is
  finished, so responses can never interleave (CVE-2023-46137,
  CVE-2024-41671). Requests past the bound in one read stay unparsed
  bytes, from the exact start of the next request, until half the
  pipeline is free; where that start cannot be known exactly (after a
  chunked body), the requests read so far are answered and the connection
  closes (the client retries the rest, RFC 9112 section 9.3.2).
* A request body the handler does not read is held up to ``body_buffer``
  bytes, then reading pauses until the handler reads.
* The next request is not rendered while the transport's write buffer is
  full, so a client that sends without reading cannot make responses pile
  up.
* One timer per connection, moved rather than remade per request: the
  header timeout (408) from a request's first byte to the end of its head,
  the body timeout (408) while a body the server is reading stalls, the
  idle timeout between requests.
* Slow readers: a connection whose transport stays paused (its write
  buffer full, the client not reading) for ``write_timeout`` is aborted.
  A second timer exists only while the transport is paused, so a
  keep-alive request answered at once arms and reads nothing for it; a
  pause that ends in time restarts the wait. A connection being closed
  whose buffer the client never takes is aborted ``write_timeout`` after
  the close, since ``transport.close()`` waits for the buffer to drain.

When the site serves HTTP/2, a connection for which TLS's ALPN chose
``h2``, or a cleartext one that begins with the HTTP/2 preface (prior
knowledge), is handed to ``H2Channel`` before any HTTP/1.1 is parsed.
"""

from __future__ import annotations

import asyncio
import logging
import typing
from collections import deque

from torsion.internet import DelayedCall, Protocol
from torsion.web._h2 import PREFACE, H2Channel
from torsion.web._http11 import HTTPProtocolError, RequestParser
from torsion.web._request import Request

if typing.TYPE_CHECKING:
    from torsion.web._site import Site

__all__ = ["HTTPChannel"]

_log = logging.getLogger("torsion.web")

# The HTTP/2 preface's first line.
_PRI = PREFACE[:16]

# What the connection's one timer is waiting for.
_NOTHING = 0
_HEAD = 1
_IDLE = 2
_BODY = 3


class HTTPChannel(Protocol):
    """One HTTP/1.1 server connection; made by ``Site`` for each client.

    Call order, as for every protocol::

        connection_made [-> data_received*] [-> eof_received] -> connection_lost

    Attributes:
        h2_channel: The class of the channel an HTTP/2 connection is handed to.
    """

    h2_channel: type[H2Channel] = H2Channel

    def __init__(self, site: Site) -> None:
        """Make the connection's parser; nothing happens until connection_made."""
        self._site = site
        # Read for every request: instance attributes are found faster
        # than the base class's defaults.
        self._lost = False
        self._writing_paused = False
        self._limits = limits = site.limits
        self._max_pipelined = limits.max_pipelined
        self._idle_timeout = limits.idle_timeout
        self._clock = site.reactor
        self._seconds = site.reactor.seconds
        self._date_lines = site._dates.lines
        self._parser = RequestParser(self, site.limits)
        self._queue: deque[Request] = deque()
        self._receiving: Request | None = None
        self._rendering: Request | None = None
        self._closing = False
        self._reading_paused = False
        self._pending_error: bytes | None = None
        self._timer: DelayedCall | None = None
        # When the timer is due, and when what it waits for is.
        self._timer_due = 0.0
        self._deadline = 0.0
        self._waiting_for = _NOTHING
        self._in_receive = False
        self._switched: asyncio.Protocol | None = None
        self._held: bytes | None = None
        self._eof_while_held = False
        # Whether the first bytes are still to be checked for the preface.
        self._sniffing = site.http2
        self._sniffed = b""
        # The write timeout: since when output has waited for the client
        # (the transport paused, or a close waiting for the buffer to
        # drain; -1.0 while nothing waits), and the timer that exists only
        # while something does. (Two attributes, the limit read from
        # _limits: past 30 attributes an instance loses CPython's shared
        # key dictionary, and every attribute read on the hot path slows.)
        self._write_since = -1.0
        self._write_timer: DelayedCall | None = None

    # -- asyncio protocol ----------------------------------------------------

    @property
    def switched_to(self) -> asyncio.Protocol | None:
        """The protocol the connection was handed to (HTTP/2, a 101 switch), if any."""
        return self._switched

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the header timeout for the first request (or hand over to HTTP/2)."""
        super().connection_made(transport)
        if self._sniffing:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                self._to_h2(b"")
                return
        self._wait(_HEAD, self._limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        """Parse what arrived; requests are rendered as their turn comes."""
        if self._switched is not None:
            self._switched.data_received(data)
            return
        if self._sniffing or self._sniffed:
            # RFC 9113 section 3.3: prior knowledge starts with the preface.
            # Its request line (which no HTTP/1.1 request has) decides; the
            # HTTP/2 channel checks the rest, and a wrong rest gets GOAWAY.
            if self._sniffed:
                data = self._sniffed + data
                self._sniffed = b""
            self._sniffing = False
            if data[:1] == b"P" and _PRI.startswith(data[:16]):
                if len(data) >= len(PREFACE):
                    self._to_h2(data)
                else:
                    # Part of the preface: wait for the rest.
                    self._sniffed = data
                return
        if self._held is not None:
            # The pipeline is full and reading paused; a read already on its
            # way joins the bytes held.
            self._held += data
            return
        parser = self._parser
        self._in_receive = True
        try:
            parser.receive_data(data)
        except HTTPProtocolError as exc:
            self._in_receive = False
            self._refuse(exc.status, exc.reason)
            return
        self._in_receive = False
        if parser.held is not None:
            self._held = parser.held
            parser.held = None
            self._update_reading()
            return
        if parser.upgraded:
            # The request asked to switch protocols: nothing after its head
            # is HTTP/1.1. Either its handler switched (the new protocol
            # gets those bytes), or reading waits until it does; a plain
            # answer instead ends the connection.
            if self.switched_to is not None:
                self._hand_over()
            else:
                self._close_after_queue()
                if not self._lost and not self.transport.is_closing():
                    self._reading_paused = True
                    self.transport.pause_reading()
            return
        # The timer is moved once per read, not once per request: a head
        # that began in this read must end within the header timeout, and
        # a connection left with nothing to do waits for the idle one.
        if parser.reading_head:
            if self._waiting_for != _HEAD and not self._reading_paused:
                self._wait(_HEAD, self._limits.header_timeout)
        elif not self._queue and self._receiving is None and not self._closing:
            # (_wait, inline: once per read, the timer is seldom moved.)
            self._waiting_for = _IDLE
            self._deadline = deadline = self._seconds() + self._idle_timeout
            if self._timer is None or self._timer_due > deadline:
                self._wait(_IDLE, self._idle_timeout)

    def eof_received(self) -> bool | None:
        """The client will send no more: answer what was asked, then close."""
        if self._switched is not None:
            return self._switched.eof_received()
        if self._held is not None:
            # Requests are still held unparsed: answer them first.
            self._eof_while_held = True
            return True
        self._parser.stop()
        if self._queue and self._receiving is None:
            self._close_after_queue()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail what is still pending, and stop the timer."""
        # The requests are marked lost before the base class fails the
        # drained() waiters: a handler woken by that failure must find its
        # request lost, not report the error as its own.
        self._lost = True
        self._parser.stop()
        self._waiting_for = _NOTHING
        for timer in (self._timer, self._write_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = self._write_timer = None
        self._write_since = -1.0
        error = exc if exc is not None else ConnectionResetError("connection closed")
        receiving = self._receiving
        self._receiving = None
        self._held = None
        queue = list(self._queue)
        self._queue.clear()
        self._rendering = None
        for request in queue:
            request._connection_lost(error)
        if receiving is not None and receiving not in queue:
            receiving._fail_body(error)
        super().connection_lost(exc)
        if self._switched is not None:
            self._switched.connection_lost(exc)

    def pause_writing(self) -> None:
        """The write buffer is full: wait (or tell the protocol switched to).

        The write timeout starts; a switched connection's protocol owns it.
        """
        super().pause_writing()
        if self._switched is not None:
            self._switched.pause_writing()
            return
        if self._write_since < 0 and not self._lost:
            self._start_write_wait()

    def resume_writing(self) -> None:
        """The write buffer drained: render the next request if one waits."""
        # Cleared first: a handler woken by the drain may fill the buffer
        # again at once, and that pause starts a new wait. A close still
        # waits for the whole buffer, so its wait goes on.
        if not self.transport.is_closing():
            self._write_since = -1.0
        super().resume_writing()
        if self._switched is not None:
            self._switched.resume_writing()
            return
        self._next()

    # -- the parser's owner --------------------------------------------------

    def message_begun(self) -> None:
        """A request's first byte: nothing more is read once closing."""
        if self._closing:
            self._parser.stop()

    def head_received(
        self,
        method: bytes,
        target: bytes,
        version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        expect_continue: bool,
        has_body: bool,
    ) -> None:
        """A request's head was read: queue it, render it if its turn has come."""
        self._waiting_for = _NOTHING
        request = Request(
            self, method, target, version, headers, keep_alive, expect_continue, has_body
        )
        parser = self._parser
        if parser.upgrading:
            request._upgrade = True
        if has_body:
            self._receiving = request
            self._wait(_BODY, self._limits.body_timeout)
        queue = self._queue
        queue.append(request)
        count = len(queue)
        if count >= self._max_pipelined:
            # Full: the next request is kept unparsed until there is room.
            parser.hold_next = True
            if count > self._max_pipelined:
                # More requests in one read than may wait: answer these,
                # drop the rest, close (RFC 9112 section 9.3.2: the client
                # retries).
                parser.stop()
                self._closing = True
        if count == 1:
            # Its turn has come (what _next does, without the call).
            if self._rendering is None and not self._lost and not self._writing_paused:
                self._rendering = request
                if self._reading_paused:
                    self._update_reading()
                self._site._render(request)
        else:
            self._update_reading()

    def body_received(self, data: bytes) -> None:
        """Part of the body of the request being read."""
        request = self._receiving
        if request is None:  # pragma: no cover - the parser only calls with a body
            return
        request._feed_body(data)
        if self._waiting_for == _BODY:
            self._deadline = self._seconds() + self._limits.body_timeout
        if request._body_buffered > self._limits.body_buffer:
            self._update_reading()

    def message_complete(self) -> None:
        """A request ended: wait for the next, unless this one closes."""
        request = self._receiving
        if request is not None:
            self._receiving = None
            if self._waiting_for == _BODY:
                self._waiting_for = _NOTHING
            request._end_body()
            if self._reading_paused:
                self._update_reading()
        if self._queue:
            last = self._queue[-1]
            if not last.keep_alive:
                self._parser.stop()
                self._closing = True

    # -- for Request ---------------------------------------------------------

    def _write(self, data: bytes) -> None:
        # (Request's whole-response path does the same inline.)
        if not self._lost:
            self.transport.write(data)

    def _abort(self) -> None:
        if not self._lost:
            self.transport.abort()

    def _body_consumed(self, request: Request) -> None:
        if self._reading_paused and request is self._receiving:
            self._update_reading()

    def _request_done(self, request: Request) -> None:
        # The response to the request being rendered is finished.
        queue = self._queue
        if not queue or queue[0] is not request:  # pragma: no cover - a bug if so
            raise RuntimeError(f"{request!r} finished out of turn")
        queue.popleft()
        self._rendering = None
        site = self._site
        if site.access_log is not None:
            site._log_access(request)
        if not request.keep_alive:
            self._parser.stop()
            self._closing = True
            self._held = None
            for later in queue:
                later._connection_lost(ConnectionResetError("connection closed"))
            queue.clear()
            self._close()
            return
        if self._held is not None:
            # Held bytes are parsed again once half the pipeline is free, so
            # that each resumption reads several requests, not one.
            if len(queue) <= self._limits.max_pipelined // 2:
                self._next()
                self._parse_held()
                return
        elif self._parser.hold_next and len(queue) < self._max_pipelined:
            self._parser.hold_next = False
        if (
            not queue
            and self._in_receive
            and not self._closing
            and not self._reading_paused
            and self._pending_error is None
        ):
            # Answered while its read is parsed, with nothing else to do:
            # all _next would do is find so (the read's end moves the
            # timer).
            return
        self._next()

    def _parse_held(self) -> None:
        # Room in the pipeline again: parse what was held, then read on.
        held, self._held = self._held, None
        if held is None or self._lost:
            return
        self._parser.restart()
        self.data_received(held)
        if self._held is None:
            if self._eof_while_held:
                self.eof_received()
            else:
                self._update_reading()

    def _switch(self, request: Request, protocol: asyncio.Protocol) -> None:
        # The request's handler answered 101: the connection leaves HTTP/1.1.
        queue = self._queue
        if queue and queue[0] is request:
            queue.popleft()
        self._rendering = None
        if self._site.access_log is not None:
            self._site._log_access(request)
        if not self._in_receive:
            # (While reading, the parser stops by itself at the switch, and
            # keeps the bytes after it for the new protocol.)
            self._parser.stop()
        self._closing = True
        self._waiting_for = _NOTHING
        self._stop_write_timer()
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        # This channel stays the transport's protocol and passes every event
        # on: whatever wraps it (connection tracking, limits) still sees the
        # connection end.
        self._switched = protocol
        protocol.connection_made(self.transport)
        if not self._in_receive:
            self._hand_over()

    def _to_h2(self, data: bytes) -> None:
        # The connection speaks HTTP/2: the H2 channel takes it whole.
        self._sniffing = False
        self._parser.stop()
        self._closing = True
        self._waiting_for = _NOTHING
        self._stop_write_timer()
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        h2 = self.h2_channel(self._site)
        self._switched = h2  # Events are passed on, as after a switch.
        h2.connection_made(self.transport)
        if data:
            h2.data_received(data)

    def _hand_over(self) -> None:
        # The bytes read past the switching request's head go to the new
        # protocol, and reading (paused while it was awaited) goes on.
        protocol = self._switched
        if protocol is None:  # pragma: no cover - called only after a switch
            return
        data = self._parser.upgrade_data
        self._parser.upgrade_data = b""
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
        if data:
            protocol.data_received(data)

    # -- order, bounds and time ----------------------------------------------

    def _next(self) -> None:
        # Render the request whose turn it is, if the writes can take it.
        queue = self._queue
        if self._rendering is not None or self._lost:
            return
        if queue:
            if self._writing_paused:
                return
            request = self._rendering = queue[0]
            if self._reading_paused:
                self._update_reading()
            self._site._render(request)
            return
        if self._pending_error is not None:
            self._write(self._pending_error)
            self._pending_error = None
            self._close()
        elif self._closing:
            self._close()
        elif self._receiving is None and self._waiting_for == _NOTHING and not self._in_receive:
            self._wait(_IDLE, self._limits.idle_timeout)
        if self._reading_paused:
            self._update_reading()

    def _update_reading(self) -> None:
        request = self._receiving
        pause = (len(self._queue) >= self._limits.max_pipelined or self._held is not None) or (
            request is not None
            and request._body_buffered > self._limits.body_buffer
            and request._collecting is None
        )
        if pause != self._reading_paused and not self._lost:
            self._reading_paused = pause
            if pause:
                self.transport.pause_reading()
                if self._waiting_for in (_BODY, _HEAD):
                    # The request waits for us, not for the client.
                    self._waiting_for = _NOTHING
            else:
                self.transport.resume_reading()
                if self._waiting_for == _NOTHING:
                    if request is not None:
                        self._wait(_BODY, self._limits.body_timeout)
                    elif self._parser.reading_head:
                        self._wait(_HEAD, self._limits.header_timeout)

    def _refuse(self, status: int, reason: str) -> None:
        # A request broke the protocol: answer it in its turn, then close.
        self._parser.stop()
        self._closing = True
        self._waiting_for = _NOTHING
        response = self._site._error_response(status, reason)
        receiving = self._receiving
        self._receiving = None
        if receiving is not None and receiving is self._rendering:
            # The request being answered is the one refused (a body too
            # large, say): its error replaces its response, or, if its
            # response has started, only closing can end it.
            error = HTTPProtocolError(status, reason)
            self._queue.clear()
            self._rendering = None
            receiving.code = status
            started = receiving._started
            receiving._connection_lost(error)
            if started:
                self._abort()
            else:
                self._write(response)
                self._close()
            return
        if receiving is not None:
            error = HTTPProtocolError(status, reason)
            if receiving._finished:
                # Its response went out already (the body was being
                # skipped): nothing is owed, only the close.
                receiving._fail_body(error)
                self._queue.clear()
                self._close()
                return
            # A request still waiting for its turn: the error is its answer.
            if receiving in self._queue:
                self._queue.remove(receiving)
            receiving._connection_lost(error)
        if not self._queue:
            self._write(response)
            self._close()
        else:
            self._pending_error = response

    def _close_after_queue(self) -> None:
        self._parser.stop()
        self._closing = True
        if not self._queue:
            self._close()

    def _close(self) -> None:
        self._waiting_for = _NOTHING
        if not self._lost:
            self.transport.close()
            # close() waits for the write buffer to drain, forever if the
            # client never reads: the connection gets the write timeout
            # (counted from the pause, if the transport is paused already).
            if self._write_since < 0:
                self._start_write_wait()

    def _start_write_wait(self) -> None:
        self._write_since = self._seconds()
        # Armed lazily: a timer left from an earlier wait checks this one
        # when it fires.
        if self._write_timer is None:
            self._write_timer = self._clock.call_later(
                self._limits.write_timeout, self._check_writes
            )

    def _check_writes(self) -> None:
        self._write_timer = None
        since = self._write_since
        if since < 0 or self._lost or self._switched is not None:
            return
        timeout = self._limits.write_timeout
        left = since + timeout - self._seconds()
        if left > 0:
            # The wait that armed the timer ended and a later one began.
            self._write_timer = self._clock.call_later(left, self._check_writes)
            return
        if self.transport.is_closing():
            message = "HTTP/1.1 client %s did not take the last response in %g seconds"
        else:
            message = "HTTP/1.1 client %s read nothing for %g seconds"
        _log.info(message + ": connection aborted", _peer(self), timeout)
        self._write_since = -1.0
        self.transport.abort()

    def _stop_write_timer(self) -> None:
        # A switched connection's protocol owns its flow control.
        self._write_since = -1.0
        timer, self._write_timer = self._write_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _wait(self, what: int, seconds: float) -> None:
        # Move the one timer: it is made again only when it has run.
        self._waiting_for = what
        self._deadline = deadline = self._seconds() + seconds
        timer = self._timer
        if timer is None:
            self._timer = timer = self._clock.call_later(seconds, self._timed_out)
            self._timer_due = timer.get_time()
        elif self._timer_due > deadline:
            # A shorter wait than the one the timer was set for.
            timer.reset(seconds)
            self._timer_due = timer.get_time()

    def _timed_out(self) -> None:
        self._timer = None
        what = self._waiting_for
        if what == _NOTHING or self._lost:
            return
        left = self._deadline - self._seconds()
        if left > 0:
            self._timer = timer = self._clock.call_later(left, self._timed_out)
            self._timer_due = timer.get_time()
            return
        self._waiting_for = _NOTHING
        if what == _HEAD:
            # Slowloris: a head that never ends gets 408 (RFC 9110 15.5.9).
            self._refuse(408, "request head not received in time")
        elif what == _BODY:
            self._refuse(408, "request body stalled")
        else:
            self._close()


def _peer(protocol: Protocol) -> str:
    # For the log only: a transport may not know its peer.
    try:
        return str(protocol.peer)
    except Exception:
        return "?"

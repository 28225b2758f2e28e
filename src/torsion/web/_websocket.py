"""WebSocket resources (RFC 6455): the opening handshake, then a connection per client.

``WebSocketResource`` answers a GET that asks to upgrade to WebSocket: it
checks the handshake (RFC 6455 section 4.2.1), asks the ``check_origin``
hook, chooses a subprotocol and permessage-deflate (RFC 7692) when the client
offers them, answers ``101 Switching Protocols`` and hands the connection to
the application's handler as a ``WebSocket``::

    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    root.put_child("echo", WebSocketResource(echo, reactor=reactor))

The frames are wsproto's: torsion keeps the bounds and the timing around
them. A message longer than ``max_message_size`` closes the connection with
1009; at most ``max_queue`` received messages wait for the handler, after
which reading pauses (the client's sends then wait on TCP); ``send`` waits
while the transport's write buffer is full. Pings are answered at once; a
connection silent for ``idle_timeout`` is closed with 1001; a close this side
starts is given ``close_timeout`` for the client's reply before the
connection is cut. The server closes the TCP connection once the close
handshake is done (RFC 6455 section 7.1.1).

Taking the connection over from HTTP/1.1 needs the server connection to
stop reading HTTP and hand its transport on: the resource calls the
request's ``switch_protocols(protocol, headers)`` (see
``SwitchingRequest``).

The same resource serves WebSocket over HTTP/2 (RFC 8441): a CONNECT with
``:protocol`` ``websocket`` is checked as section 5 says (version 13, no
key: the stream itself is the proof), answered 200, and the stream carries
the frames; the HTTP/2 request's ``switch_protocols`` gives the WebSocket a
transport on that stream, flow-controlled both ways. A CONNECT with another
``:protocol`` gets 501 (the server does not implement it), a plain CONNECT
405 (this is not a proxy).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import typing
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol
from wsproto.utilities import LocalProtocolError

from torsion.defer import Deferred, ensure_deferred, fail, succeed
from torsion.errors import TorsionError
from torsion.internet import Clock, DelayedCall, Protocol
from torsion.web._headers import Headers
from torsion.web._request import Request
from torsion.web._resource import Resource, handles, render_error

__all__ = [
    "SwitchingRequest",
    "WebSocket",
    "WebSocketClosedError",
    "WebSocketHandler",
    "WebSocketResource",
    "websocket_accept",
]

_log = logging.getLogger("torsion.web.websocket")

# RFC 6455 section 1.3.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Close codes (RFC 6455 section 7.4.1).
NORMAL = 1000
GOING_AWAY = 1001
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
ABNORMAL = 1006
_QUIET_CODES = frozenset({NORMAL, GOING_AWAY})

WebSocketHandler: typing.TypeAlias = Callable[["WebSocket"], Awaitable[None]]
"""An application's handler: called with each new connection, awaited until it returns."""


class WebSocketClosedError(TorsionError, ConnectionError):
    """The WebSocket connection is closed: nothing more can be received or sent.

    Attributes:
        code: The close code (1006 when the connection ended without a close
            frame).
        reason: The close reason the closing side gave.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        """Record the code and reason."""
        super().__init__(f"WebSocket closed with {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason


class SwitchingRequest(typing.Protocol):
    """The server connection's hook for leaving HTTP/1.1 (RFC 9110 section 15.2.2).

    ``switch_protocols`` writes ``HTTP/1.1 101 Switching Protocols`` with
    ``headers``, ends the request (no further HTTP is read or written on the
    connection, and its timers stop), and gives the connection to
    ``protocol``: ``protocol.connection_made(transport)``, then
    ``protocol.data_received`` with any bytes read past the request's head;
    from then on the connection's events are passed on to ``protocol``.

    On HTTP/2 the same call accepts an extended CONNECT (RFC 8441): the
    answer is 200 and ``protocol`` gets the stream instead of the connection.
    """

    def switch_protocols(self, protocol: asyncio.Protocol, headers: Headers) -> None:
        """Answer 101 with ``headers`` and hand the connection to ``protocol``."""
        ...


def websocket_accept(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value for a client's key (RFC 6455 section 4.2.2).

    Args:
        key: The client's ``Sec-WebSocket-Key``, as sent.

    Returns:
        base64(SHA-1(key + the RFC's GUID)).
    """
    return base64.b64encode(hashlib.sha1(key + _GUID, usedforsecurity=False).digest())


def _tokens(values: list[bytes]) -> list[bytes]:
    # The comma-separated tokens of every field with this name, lower-cased.
    return [t.strip().lower() for v in values for t in v.split(b",") if t.strip()]


class WebSocket(Protocol):
    """One WebSocket connection: what the handler receives from and sends to.

    The handler's side::

        message = await ws.receive()      # str for text, bytes for binary
        await ws.send("text" or b"bytes")
        await ws.ping(b"payload")         # until the pong comes back
        await ws.close(1000, "bye")       # until the connection is closed
        async for message in ws: ...      # until the client closes

    ``receive`` and ``send`` raise ``WebSocketClosedError`` once the
    connection is closed; iteration ends quietly after a close with 1000 or
    1001 and raises it after any other.

    As an asyncio protocol (after the switch), the call order is::

        connection_made [-> data_received*] [-> eof_received] -> connection_lost

    Attributes:
        request: The HTTP request that opened the connection (path, headers,
            client address).
        subprotocol: The subprotocol agreed on, if any.
        close_code: The close code once closed (None before).
        close_reason: The close reason once closed.
    """

    def __init__(
        self,
        request: Request,
        *,
        clock: Clock,
        subprotocol: str | None = None,
        extensions: Sequence[PerMessageDeflate] = (),
        max_message_size: int = 1 << 20,
        max_queue: int = 16,
        idle_timeout: float | None = 300.0,
        close_timeout: float = 10.0,
    ) -> None:
        """Made by ``WebSocketResource`` once the handshake is accepted."""
        self.request = request
        self.subprotocol = subprotocol
        self.close_code: int | None = None
        self.close_reason = ""
        self._clock = clock
        self._ws = Connection(ConnectionType.SERVER, extensions=list(extensions))
        self._max_message_size = max_message_size
        self._max_queue = max_queue
        self._idle_timeout = idle_timeout
        self._close_timeout = close_timeout
        self._messages: deque[str | bytes] = deque()
        self._fragments: list[str | bytes] = []
        self._fragment_size = 0
        self._receiver: Deferred[str | bytes] | None = None
        self._closed_waiters: list[Deferred[None]] = []
        self._pings: dict[bytes, Deferred[None]] = {}
        self._ping_count = 0
        self._reading_paused = False
        self._last_heard = 0.0
        self._idle_timer: DelayedCall | None = None
        self._close_timer: DelayedCall | None = None
        self._error: WebSocketClosedError | None = None

    # -- the handler's side ------------------------------------------------------

    @property
    def open(self) -> bool:
        """Whether messages can still be sent (no close was sent or received)."""
        return self._ws.state is ConnectionState.OPEN and not self._lost

    def receive(self) -> Deferred[str | bytes]:
        """The next message: ``str`` for a text message, ``bytes`` for binary.

        Returns:
            A Deferred (await it) of the message; it fails with
            ``WebSocketClosedError`` once the connection is closed and every
            message received before was taken.

        Raises:
            RuntimeError: Another ``receive()`` is waiting.
        """
        if self._receiver is not None:
            raise RuntimeError("a WebSocket has one reader at a time")
        if self._messages:
            message = self._messages.popleft()
            if self._reading_paused and len(self._messages) < self._max_queue:
                self._reading_paused = False
                if not self._lost:
                    self.transport.resume_reading()
            return succeed(message)
        if self._error is not None:
            return fail(self._error)

        def cancel(d: Deferred[str | bytes]) -> None:
            if self._receiver is d:
                self._receiver = None

        waiter: Deferred[str | bytes] = Deferred(cancel)
        self._receiver = waiter
        return waiter

    async def send(self, message: str | bytes) -> None:
        """Send one message (text for ``str``, binary for ``bytes``), then wait to drain.

        Args:
            message: The message.

        Raises:
            WebSocketClosedError: The connection is closing or closed.
            TypeError: ``message`` is neither ``str`` nor ``bytes``.
        """
        if isinstance(message, str):
            event: Event = TextMessage(data=message)
        elif isinstance(message, bytes | bytearray | memoryview):
            event = BytesMessage(data=bytes(message))
        else:
            raise TypeError(f"a WebSocket message is str or bytes, not {type(message).__name__}")
        self._send(event)
        await self.drained()

    def ping(self, payload: bytes = b"") -> Deferred[None]:
        """Send a ping; the Deferred fires when its pong comes back.

        Args:
            payload: Up to 125 bytes; an empty payload gets a unique one.

        Returns:
            A Deferred firing with None at the pong, or failing with
            ``WebSocketClosedError`` if the connection closes first.

        Raises:
            WebSocketClosedError: The connection is closing or closed.
            ValueError: The payload is longer than 125 bytes.
        """
        if len(payload) > 125:
            raise ValueError("a ping's payload is at most 125 bytes (RFC 6455 section 5.5)")
        if not payload:
            self._ping_count += 1
            payload = b"torsion-%d" % self._ping_count
        d: Deferred[None] = Deferred()
        self._send(Ping(payload=payload))
        self._pings[payload] = d
        return d

    def close(self, code: int = NORMAL, reason: str = "") -> Deferred[None]:
        """Start the close handshake and wait until the connection is closed.

        The client has ``close_timeout`` seconds to answer before the
        connection is cut.

        Args:
            code: The close code (1000 for a normal close).
            reason: A short reason (at most 123 bytes of UTF-8).

        Returns:
            A Deferred firing once the connection is closed.
        """
        if self._lost:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed_waiters.append(d)
        if self._ws.state is ConnectionState.OPEN:
            self._start_close(code, reason)
        return d

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        """Iterate over the messages until the client closes."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str | bytes]:
        while True:
            try:
                message = await self.receive()
            except WebSocketClosedError as exc:
                if exc.code in _QUIET_CODES:
                    return
                raise
            yield message

    # -- the asyncio protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The connection is ours: start the idle timer."""
        super().connection_made(transport)
        self._last_heard = self._clock.seconds()
        if self._idle_timeout is not None:
            self._idle_timer = self._clock.call_later(self._idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        """Frames arrived: queue messages, answer pings and closes."""
        self._last_heard = self._clock.seconds()
        if self._ws.state is ConnectionState.CLOSED:
            return
        self._ws.receive_data(data)
        for event in self._ws.events():
            self._event(event)
            if self._lost or self.transport.is_closing():
                return

    def eof_received(self) -> bool | None:
        """The client stopped sending without a close frame: close our side too."""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail whatever waits, fire ``close()``'s Deferreds, stop the timers."""
        super().connection_lost(exc)
        for timer in (self._idle_timer, self._close_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._idle_timer = self._close_timer = None
        if self.close_code is None:
            # RFC 6455 section 7.1.5: no close frame came.
            self.close_code = ABNORMAL
        error = self._error = WebSocketClosedError(self.close_code, self.close_reason)
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            receiver.errback(error)
        pings, self._pings = self._pings, {}
        for d in pings.values():
            d.errback(error)
        waiters, self._closed_waiters = self._closed_waiters, []
        for d in waiters:
            d.callback(None)

    # -- inside ------------------------------------------------------------------------

    def _send(self, event: Event) -> None:
        if self._lost:
            raise WebSocketClosedError(self.close_code or ABNORMAL, self.close_reason)
        try:
            data = self._ws.send(event)
        except LocalProtocolError:
            raise WebSocketClosedError(self.close_code or NORMAL, self.close_reason) from None
        self.transport.write(data)

    def _event(self, event: Event) -> None:
        if isinstance(event, Message):
            self._message_part(event)
        elif isinstance(event, Ping):
            # RFC 6455 section 5.5.2: answer as soon as is practical; once
            # our close is sent, nothing more may follow it (section 5.5.1).
            if self._ws.state is ConnectionState.OPEN:
                self.transport.write(self._ws.send(event.response()))
        elif isinstance(event, Pong):
            d = self._pings.pop(bytes(event.payload), None)
            if d is not None:
                d.callback(None)
        elif isinstance(event, CloseConnection):
            self._close_received(event)

    def _message_part(self, event: Message[typing.Any]) -> None:
        data = event.data
        self._fragment_size += len(data)
        if self._fragment_size > self._max_message_size:
            self._fail(MESSAGE_TOO_BIG, "message too big")
            return
        self._fragments.append(data)
        if not event.message_finished:
            return
        fragments, self._fragments = self._fragments, []
        self._fragment_size = 0
        message: str | bytes
        if isinstance(event, TextMessage):
            message = "".join(typing.cast(list[str], fragments))
        else:
            message = b"".join(typing.cast(list[bytes], fragments))
        receiver = self._receiver
        if receiver is not None:
            self._receiver = None
            receiver.callback(message)
            return
        self._messages.append(message)
        if len(self._messages) >= self._max_queue and not self._reading_paused:
            # The handler is behind: let TCP hold the client back.
            self._reading_paused = True
            self.transport.pause_reading()

    def _close_received(self, event: CloseConnection) -> None:
        state = self._ws.state
        if state is ConnectionState.OPEN:
            # wsproto found the frames broken: the code says how.
            self._fail(event.code, event.reason or "")
            return
        self.close_code = event.code
        self.close_reason = event.reason or ""
        if state is ConnectionState.REMOTE_CLOSING:
            # Echo the code (RFC 6455 section 5.5.1), then end the TCP
            # connection: the server closes first (section 7.1.1).
            self.transport.write(self._ws.send(event.response()))
        self.transport.close()

    def _fail(self, code: int, reason: str) -> None:
        # RFC 6455 section 7.1.7: send a close and drop the connection
        # without waiting for the reply.
        if self._ws.state is ConnectionState.OPEN:
            self.transport.write(self._ws.send(CloseConnection(code=code, reason=reason)))
        self.close_code = code
        self.close_reason = reason
        _log.debug("WebSocket from %s failed: %d %s", self.request.request_line, code, reason)
        self.transport.close()

    def _start_close(self, code: int, reason: str) -> None:
        self.transport.write(self._ws.send(CloseConnection(code=code, reason=reason)))
        self.close_code = code
        self.close_reason = reason
        self._close_timer = self._clock.call_later(self._close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if not self._lost:
            self.transport.abort()

    def _check_idle(self) -> None:
        self._idle_timer = None
        if self._lost or self._idle_timeout is None:
            return
        left = self._last_heard + self._idle_timeout - self._clock.seconds()
        if left > 0:
            self._idle_timer = self._clock.call_later(left, self._check_idle)
            return
        if self._ws.state is ConnectionState.OPEN:
            self._start_close(GOING_AWAY, "idle")
        elif self._close_timer is None:
            self.transport.abort()


class WebSocketResource(Resource):
    """A resource that opens WebSocket connections and runs ``handler`` on each.

    It answers both openings: a GET asking to upgrade (HTTP/1.1, RFC 6455)
    and an extended CONNECT with ``:protocol`` ``websocket`` (HTTP/2, RFC
    8441); the handler sees the same ``WebSocket`` either way.

    A request that is not a WebSocket handshake is answered 426 (with
    ``Upgrade: websocket``) when it asked for no upgrade, and 400 when its
    handshake is malformed; an unsupported ``Sec-WebSocket-Version`` gets 426
    with the version this server speaks (RFC 6455 section 4.4); an origin
    ``check_origin`` refuses gets 403. A CONNECT for another protocol gets
    501, a CONNECT without ``:protocol`` 405.

    Args:
        handler: ``async def handler(ws)``, run for each connection; when it
            returns the connection is closed with 1000, when it raises with
            1011 (the error logged).
        reactor: The clock of the timeouts.
        subprotocols: The subprotocols spoken, preferred first; the first
            the client also offers is chosen, else none.
        check_origin: Called with the ``Origin`` field (None when absent)
            and the request; False refuses the handshake (403). None accepts
            every origin: browsers send cookies with a cross-site WebSocket
            handshake, so a site that relies on cookies should check.
        compression: Accept permessage-deflate when the client offers it.
        max_message_size: The most bytes (characters, for text) a received
            message may have; past it the connection is closed with 1009.
        max_queue: Received messages waiting for the handler before reading
            pauses.
        idle_timeout: Seconds without a frame from the client before the
            connection is closed with 1001 (None: never).
        close_timeout: Seconds the client has to answer a close.
    """

    is_leaf = True

    def __init__(
        self,
        handler: WebSocketHandler,
        *,
        reactor: Clock,
        subprotocols: Sequence[str] = (),
        check_origin: Callable[[str | None, Request], bool] | None = None,
        compression: bool = True,
        max_message_size: int = 1 << 20,
        max_queue: int = 16,
        idle_timeout: float | None = 300.0,
        close_timeout: float = 10.0,
    ) -> None:
        """Make the resource."""
        super().__init__()
        if max_message_size < 1 or max_queue < 1:
            raise ValueError("max_message_size and max_queue must be positive")
        self.handler = handler
        self.reactor = reactor
        self.subprotocols = list(subprotocols)
        self.check_origin = check_origin
        self.compression = compression
        self.max_message_size = max_message_size
        self.max_queue = max_queue
        self.idle_timeout = idle_timeout
        self.close_timeout = close_timeout

    @handles("GET")
    def upgrade(self, request: Request) -> bytes | None:
        """Check the handshake, answer 101 and start the handler; or refuse."""
        headers = request.headers
        if b"websocket" not in _tokens(headers.get_all(b"upgrade")):
            request.response_headers.set(b"Upgrade", b"websocket")
            request.response_headers.set(b"Sec-WebSocket-Version", b"13")
            return render_error(request, 426, "This resource speaks WebSocket only.")
        refusal = self._check(request)
        if refusal is not None:
            return refusal
        switch = getattr(request, "switch_protocols", None)
        if switch is None:
            return render_error(request, 501, "This server cannot switch protocols.")
        key = headers.get(b"sec-websocket-key", b"").strip()
        answer = Headers(
            [
                (b"Upgrade", b"websocket"),
                (b"Connection", b"Upgrade"),
                (b"Sec-WebSocket-Accept", websocket_accept(key)),
            ]
        )
        return self._accept(request, answer)

    @handles("CONNECT")
    def connect(self, request: Request) -> bytes | None:
        """Accept an HTTP/2 extended CONNECT for ``websocket`` (RFC 8441); or refuse."""
        protocol: str | None = getattr(request, "connect_protocol", None)
        if protocol is None:
            # A plain CONNECT asks for a tunnel to another host.
            request.response_headers.set(b"Allow", b"GET, HEAD, OPTIONS")
            return render_error(request, 405)
        if protocol.lower() != "websocket":
            return render_error(request, 501, "This resource speaks WebSocket only.")
        versions = request.headers.get_all(b"sec-websocket-version")
        if versions != [b"13"]:
            # RFC 8441 section 5 keeps RFC 6455's version check (4.4).
            request.response_headers.set(b"Sec-WebSocket-Version", b"13")
            if not versions:
                return render_error(request, 400, "The handshake lacks its version.")
            return render_error(request, 426, "This server speaks WebSocket version 13.")
        # No key and no accept: the stream is the proof (RFC 8441 section 5).
        return self._accept(request, Headers())

    def _accept(self, request: Request, answer: Headers) -> bytes | None:
        # The origin, the subprotocol and the extensions, as both openings
        # negotiate them; then the switch, and the handler.
        headers = request.headers
        origin = headers.get_str(b"origin")
        if self.check_origin is not None and not self.check_origin(origin, request):
            return render_error(request, 403, "This origin may not open a WebSocket here.")
        subprotocol = self._subprotocol(headers)
        if subprotocol is not None:
            answer.add(b"Sec-WebSocket-Protocol", subprotocol)
        extensions: list[PerMessageDeflate] = []
        if self.compression:
            deflate, accepted = _accept_deflate(
                headers.get_all(b"sec-websocket-extensions"), self.max_message_size
            )
            if deflate is not None:
                extensions.append(deflate)
                answer.add(b"Sec-WebSocket-Extensions", accepted)
        ws = WebSocket(
            request,
            clock=self.reactor,
            subprotocol=subprotocol,
            extensions=extensions,
            max_message_size=self.max_message_size,
            max_queue=self.max_queue,
            idle_timeout=self.idle_timeout,
            close_timeout=self.close_timeout,
        )
        typing.cast(SwitchingRequest, request).switch_protocols(ws, answer)
        self._run(ws)
        return None

    def _check(self, request: Request) -> bytes | None:
        # RFC 6455 section 4.2.1; None when the handshake is good.
        headers = request.headers
        if request.version != "HTTP/1.1":
            return render_error(request, 400, "A WebSocket handshake is HTTP/1.1.")
        if b"upgrade" not in _tokens(headers.get_all(b"connection")):
            return render_error(request, 400, "The handshake lacks Connection: Upgrade.")
        versions = headers.get_all(b"sec-websocket-version")
        if versions != [b"13"]:
            # RFC 6455 section 4.4: say which version this server speaks.
            request.response_headers.set(b"Sec-WebSocket-Version", b"13")
            if not versions:
                return render_error(request, 400, "The handshake lacks its version.")
            return render_error(request, 426, "This server speaks WebSocket version 13.")
        keys = headers.get_all(b"sec-websocket-key")
        if len(keys) != 1 or not _valid_key(keys[0].strip()):
            return render_error(request, 400, "The handshake's key is not valid.")
        return None

    def _subprotocol(self, headers: Headers) -> str | None:
        offered = {
            t.strip().decode("latin-1")
            for v in headers.get_all(b"sec-websocket-protocol")
            for t in v.split(b",")
        }
        for name in self.subprotocols:
            if name in offered:
                return name
        return None

    def _run(self, ws: WebSocket) -> None:
        # The handler runs until it returns; then the connection is closed.
        d = ensure_deferred(_call(self.handler, ws))

        def returned(_: object) -> None:
            if ws.open:
                ws.close(NORMAL)

        def failed(exc: BaseException) -> None:
            if isinstance(exc, WebSocketClosedError):
                _log.debug("WebSocket handler stopped: %s", exc)
                return
            _log.error("WebSocket handler failed for %s", ws.request.request_line, exc_info=exc)
            if ws.open:
                ws.close(INTERNAL_ERROR)

        d.add_callbacks(returned, failed)


async def _call(handler: WebSocketHandler, ws: WebSocket) -> None:
    await handler(ws)


def _valid_key(key: bytes) -> bool:
    # RFC 6455 section 4.1: 16 random bytes, base64-encoded (24 characters).
    if len(key) != 24:
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


class _BoundedDeflate(PerMessageDeflate):
    """permessage-deflate whose inflating stops past the message size bound.

    wsproto inflates each received piece whole, so a few kilobytes of
    compressed zeros could become many megabytes before the bound on
    messages is checked: here no piece inflates to more than the bound.
    """

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self.max_size = max_size

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        """Inflate ``data``, refusing (1009) what would pass the bound."""
        decompressor = self._decompressor
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        if decompressor is None:  # pragma: no cover - set up by the frame's header
            return CloseReason.INTERNAL_ERROR
        try:
            inflated = decompressor.decompress(bytes(data), self.max_size + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        if len(inflated) > self.max_size or decompressor.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated


def _accept_deflate(values: list[bytes], max_size: int) -> tuple[PerMessageDeflate | None, bytes]:
    # The first permessage-deflate offer wsproto accepts, and the answer to it.
    for value in values:
        for offer in value.decode("latin-1").split(","):
            name = offer.split(";", 1)[0].strip()
            if name != PerMessageDeflate.name:
                continue
            deflate = _BoundedDeflate(max_size)
            accepted = deflate.accept(offer.strip())
            if accepted is None or accepted is False:
                continue
            if accepted is True or not accepted:
                return deflate, name.encode("ascii")
            return deflate, f"{name}; {accepted}".encode("ascii")
    return None, b""

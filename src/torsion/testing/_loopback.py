"""``loopback``: two protocols connected to each other in memory.

Bytes one protocol writes arrive at the other's ``data_received``, EOF and
close travel the same way, and every callback runs synchronously from the
call that caused it, with no event loop and no clock::

    pair = loopback(client_protocol, server_protocol)
    # both connection_made() have run, and whatever they wrote was delivered
    client_protocol.send_command(...)   # the server has answered by now

Deliveries are queued and run one at a time, never nested, so a protocol that
writes from inside ``data_received`` does not re-enter its peer. Each end keeps
asyncio's call order::

    connection_made [-> data_received*] [-> eof_received] -> connection_lost

``close()`` flushes what was written, then the peer sees ``eof_received()``
(and closes in turn unless that returns true); ``abort()`` drops what was
written, and the peer's ``connection_lost`` gets a ``ConnectionResetError``.
A paused reader (``pause_reading()``) receives nothing until it resumes, and
the writer's buffer grows meanwhile, with ``pause_writing``/``resume_writing``
at the transport's water marks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, cast

from torsion.testing._flow import WriteFlow, accepts_write

__all__ = ["Loopback", "LoopbackTransport", "loopback"]

_Buffer = bytes | bytearray | memoryview


class _Eof:
    """The sender called ``write_eof()``."""


class _Close:
    """The sender closed: what it wrote has all been delivered."""


class _Lost:
    """The end's connection is gone; ``connection_lost(exc)`` is due."""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception | None) -> None:
        self.exc = exc


_EOF = _Eof()
_CLOSE = _Close()
_Message = bytes | _Eof | _Close | _Lost


class _End:
    """One side of the connection: its protocol, transport and inbox."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        self.protocol = protocol
        self.transport: LoopbackTransport
        self.peer: _End
        # Messages travelling to this end, oldest first.
        self.inbox: deque[_Message] = deque()
        self.inbox_bytes = 0
        self.reading = True
        self.closing = False
        self.eof_written = False
        self.eof_received = False
        self.aborted = False
        self.lost = False
        self.flow = WriteFlow()

    def ready(self) -> bool:
        """Return whether the next message in the inbox can be delivered now."""
        if not self.inbox:
            return False
        # A closing end reads nothing, so it is never paused: its inbox drains.
        return self.reading or self.closing or isinstance(self.inbox[0], _Lost)


class Loopback:
    """A connected pair of protocols and the transports between them.

    Attributes:
        client: The client-side protocol.
        server: The server-side protocol.
        client_transport: The transport the client writes to.
        server_transport: The transport the server writes to.
        auto_pump: Whether each write, EOF and close is delivered at once.
    """

    def __init__(
        self,
        client: asyncio.Protocol,
        server: asyncio.Protocol,
        *,
        client_address: Any,
        server_address: Any,
        auto_pump: bool,
    ) -> None:
        self.auto_pump = auto_pump
        self._delivering = False
        self._client = _End(client)
        self._server = _End(server)
        self._client.peer = self._server
        self._server.peer = self._client
        self._client.transport = LoopbackTransport(
            self, self._client, sockname=client_address, peername=server_address
        )
        self._server.transport = LoopbackTransport(
            self, self._server, sockname=server_address, peername=client_address
        )

    @property
    def client(self) -> asyncio.Protocol:
        """The client-side protocol."""
        return self._client.protocol

    @property
    def server(self) -> asyncio.Protocol:
        """The server-side protocol."""
        return self._server.protocol

    @property
    def client_transport(self) -> LoopbackTransport:
        """The transport the client writes to."""
        return self._client.transport

    @property
    def server_transport(self) -> LoopbackTransport:
        """The transport the server writes to."""
        return self._server.transport

    def pump(self) -> bool:
        """Deliver everything that can be delivered now, in order.

        With ``auto_pump`` on this already happens after every write, EOF,
        close and ``resume_reading``. Called from inside a delivery it does
        nothing (the delivery under way goes on). An exception raised by a
        protocol's callback propagates from here (or from the write that
        caused it); what was still queued stays queued.

        Returns:
            Whether anything was delivered.
        """
        if self._delivering:
            return False
        self._delivering = True
        moved = False
        try:
            ends = (self._client, self._server)
            progressed = True
            while progressed:
                progressed = False
                for end in ends:
                    if end.ready():
                        self._deliver(end, end.inbox.popleft())
                        progressed = moved = True
        finally:
            self._delivering = False
        return moved

    def _start(self) -> None:
        self._delivering = True
        try:
            # The server accepts first, so a client greeting finds it ready.
            self._server.protocol.connection_made(self._server.transport)
            self._client.protocol.connection_made(self._client.transport)
        finally:
            self._delivering = False
        self._kick()

    def _kick(self) -> None:
        if self.auto_pump:
            self.pump()

    def _deliver(self, end: _End, message: _Message) -> None:
        if isinstance(message, _Close):
            # The sender has flushed everything and is gone.
            self._lose(end.peer, None)
            if not end.closing:
                self._receive_eof(end)
        elif end.lost:
            return
        elif isinstance(message, bytes):
            end.inbox_bytes -= len(message)
            sender = end.peer
            if not sender.lost:
                sender.flow.update(end.inbox_bytes, sender.protocol)
            if not end.closing:
                end.protocol.data_received(message)
        elif isinstance(message, _Lost):
            self._lose(end, message.exc)
        else:
            self._receive_eof(end)

    def _receive_eof(self, end: _End) -> None:
        if end.closing or end.eof_received:
            return
        end.eof_received = True
        keep_open = end.protocol.eof_received()
        if not keep_open:
            end.transport.close()

    def _lose(self, end: _End, exc: Exception | None) -> None:
        if end.lost:
            return
        end.lost = True
        end.closing = True
        _drop_data(end)
        end.protocol.connection_lost(exc)

    # What the transports ask for.

    def _write(self, end: _End, data: bytes) -> None:
        peer = end.peer
        if peer.closing:
            # Nobody reads on the far side any more: the bytes go nowhere.
            return
        peer.inbox.append(data)
        peer.inbox_bytes += len(data)
        end.flow.update(peer.inbox_bytes, end.protocol)
        self._kick()

    def _write_eof(self, end: _End) -> None:
        end.eof_written = True
        end.peer.inbox.append(_EOF)
        self._kick()

    def _close(self, end: _End) -> None:
        end.closing = True
        # What the peer sent and we have not read is dropped, as a closed socket drops it.
        _drop_data(end)
        end.peer.inbox.append(_CLOSE)
        self._kick()

    def _abort(self, end: _End) -> None:
        end.closing = True
        end.aborted = True
        peer = end.peer
        # Everything in flight either way is dropped.
        end.inbox.clear()
        end.inbox_bytes = 0
        peer.inbox.clear()
        peer.inbox_bytes = 0
        end.inbox.append(_Lost(None))
        peer.inbox.append(_Lost(ConnectionResetError("connection reset by peer (loopback abort)")))
        self._kick()

    def _resume(self) -> None:
        self._kick()


class LoopbackTransport(asyncio.Transport):
    """One end's transport in a ``loopback`` pair, with asyncio's contract."""

    def __init__(
        self,
        connection: Loopback,
        end: _End,
        *,
        sockname: Any,
        peername: Any,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._info = {"sockname": sockname, "peername": peername, **(extra or {})}
        self._connection = connection
        self._end = end

    @property
    def peer(self) -> Any:
        """The remote address."""
        return self._info["peername"]

    @property
    def host(self) -> Any:
        """The local address."""
        return self._info["sockname"]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Return "peername", "sockname" or another entry given at creation."""
        return self._info.get(name, default)

    def is_closing(self) -> bool:
        """Return whether this end was closed or its connection lost."""
        return self._end.closing

    def close(self) -> None:
        """Close after what was written is delivered; the peer sees EOF."""
        if not self._end.closing:
            self._connection._close(self._end)

    def abort(self) -> None:
        """Close now, dropping what was not delivered; the peer sees a reset."""
        if not (self._end.lost or self._end.aborted):
            self._connection._abort(self._end)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand this end's events to ``protocol`` from now on."""
        self._end.protocol = cast(asyncio.Protocol, protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        """Return this end's protocol."""
        return self._end.protocol

    def is_reading(self) -> bool:
        """Return whether data is delivered to this end."""
        return self._end.reading and not self._end.closing

    def pause_reading(self) -> None:
        """Hold data for this end until ``resume_reading()``."""
        self._end.reading = False

    def resume_reading(self) -> None:
        """Deliver held data and keep delivering."""
        if not self._end.reading:
            self._end.reading = True
            self._connection._resume()

    def write(self, data: _Buffer) -> None:
        """Send ``data`` to the peer (dropped, as asyncio drops it, once closed).

        Raises:
            TypeError: ``data`` is not bytes-like.
            RuntimeError: ``write_eof()`` was called.
        """
        if accepts_write(data, eof_written=self._end.eof_written, closing=self._end.closing):
            self._connection._write(self._end, bytes(data))

    def writelines(self, list_of_data: Iterable[_Buffer]) -> None:
        """Send each buffer in turn."""
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        """Half-close: the peer sees ``eof_received()`` after the data sent."""
        if not (self._end.closing or self._end.eof_written):
            self._connection._write_eof(self._end)

    def can_write_eof(self) -> bool:
        """Return True: a loopback end can half-close."""
        return True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks of the bytes not yet delivered to the peer."""
        self._end.flow.set_limits(high, low)
        self._end.flow.update(self.get_write_buffer_size(), self._end.protocol)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """Return the ``(low, high)`` water marks."""
        return self._end.flow.low, self._end.flow.high

    def get_write_buffer_size(self) -> int:
        """Return how many written bytes the peer has not received yet."""
        return self._end.peer.inbox_bytes

    def __repr__(self) -> str:
        state = "closing" if self._end.closing else "open"
        return f"<LoopbackTransport {state} {self.host!r} -> {self.peer!r}>"


def _drop_data(end: _End) -> None:
    # Keep only the peer's close, which still has to end the peer's side.
    end.inbox = deque(m for m in end.inbox if isinstance(m, _Close))
    end.inbox_bytes = 0


def loopback(
    client: asyncio.Protocol,
    server: asyncio.Protocol,
    *,
    client_address: Any = ("127.0.0.1", 49152),
    server_address: Any = ("127.0.0.1", 8080),
    auto_pump: bool = True,
) -> Loopback:
    """Connect ``client`` and ``server`` to each other in memory.

    Both protocols' ``connection_made`` run before this returns (the server's
    first), and so does every delivery they cause unless ``auto_pump`` is off.

    Args:
        client: The protocol that "connected".
        server: The protocol that "accepted".
        client_address: The client end's address (the server's peername).
        server_address: The server end's address (the client's peername).
        auto_pump: Deliver as things are written; if false, nothing moves until
            ``Loopback.pump()`` is called, so a test can look in between.

    Returns:
        The connection, for its transports and ``pump()``.
    """
    connection = Loopback(
        client,
        server,
        client_address=client_address,
        server_address=server_address,
        auto_pump=auto_pump,
    )
    connection._start()
    return connection

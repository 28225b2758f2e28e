"""The transport of a protocol carried on one HTTP/2 stream (extended CONNECT, RFC 8441).

A resource that accepts an extended CONNECT calls
``H2Request.switch_protocols``; the protocol it passes then speaks over
``StreamTransport``: its writes go out as DATA within the peer's
flow-control windows, closing sends END_STREAM, aborting RST_STREAM CANCEL
(RFC 8441 section 5). What the client sends in DATA is passed on as it
comes, or held while the protocol has paused reading; the client's window
reopens only by what the protocol took, so the bytes held stay bounded by
the stream's window. The client's END_STREAM is the protocol's
``eof_received``, and ``connection_lost`` comes once the stream is closed
both ways, reset, or the connection is gone.
"""

from __future__ import annotations

import asyncio
import typing
from collections import deque

import h2.errors

if typing.TYPE_CHECKING:
    from torsion.web._h2 import H2Channel
    from torsion.web._h2_stream import Stream

__all__ = ["StreamTransport"]


class StreamTransport(asyncio.Transport):
    """The transport of a protocol carried on one stream by an extended CONNECT."""

    def __init__(self, channel: H2Channel, stream: Stream, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._channel = channel
        self._stream = stream
        self._protocol = protocol
        self._closing = False
        self._lost = False
        self._aborted = False
        self._reading = True
        self._writing_paused = False
        # What came while reading was paused, and whether the end came too.
        self._held: deque[bytes] = deque()
        self._held_bytes = 0
        self._eof_held = False

    # -- for the protocol ------------------------------------------------------

    def get_extra_info(self, name: str, default: typing.Any = None) -> typing.Any:
        """What the connection's transport says (peer and socket names, TLS)."""
        return self._channel.transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        """Whether the stream is closing or closed."""
        return self._closing or self._lost

    def close(self) -> None:
        """End our side of the stream (END_STREAM once what is queued is sent)."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._channel._end(self._stream.request)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` as DATA on the stream (sent within the peer's windows)."""
        if self._closing or self._lost or not data:
            return
        self._channel._send_data(self._stream.request, bytes(data))

    def writelines(self, list_of_data: typing.Iterable[bytes | bytearray | memoryview]) -> None:
        """Queue each piece, as ``write`` does."""
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        """End our side of the stream; reading goes on until the client ends too."""
        self.close()

    def can_write_eof(self) -> bool:
        """True: END_STREAM ends one side."""
        return True

    def abort(self) -> None:
        """Reset the stream at once (RST_STREAM CANCEL; RFC 8441 section 5)."""
        if self._lost:
            return
        self._closing = self._aborted = True
        request = self._stream.request
        self._channel._reset(request, h2.errors.ErrorCodes.CANCEL)

    def is_reading(self) -> bool:
        """Whether DATA is passed on as it comes."""
        return self._reading and not self._lost

    def pause_reading(self) -> None:
        """Hold DATA back: the client's window stays closed past what it sent."""
        self._reading = False

    def resume_reading(self) -> None:
        """Pass on what was held, and reopen the client's window."""
        if self._reading or self._lost:
            self._reading = True
            return
        self._reading = True
        while self._held and self._passing:
            data = self._held.popleft()
            self._held_bytes -= len(data)
            self._protocol.data_received(data)
        if not self._open:
            # data_received ended the stream.
            return
        self._channel._tunnel_ack(self._stream, self._held_bytes)
        if self._eof_held and not self._held and self._reading:
            self._eof_held = False
            self._eof()

    def get_write_buffer_size(self) -> int:
        """Bytes queued on the stream, waiting for the peer's windows."""
        return self._stream.pending_bytes

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand the stream to another protocol."""
        self._protocol = typing.cast(asyncio.Protocol, protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The protocol the stream is carried for."""
        return self._protocol

    # -- for the channel -------------------------------------------------------------

    @property
    def _open(self) -> bool:
        return not self._lost

    @property
    def _passing(self) -> bool:
        # Whether DATA goes on to the protocol now (it may pause or close
        # the stream from inside data_received).
        return self._reading and not self._lost

    def _receive(self, data: bytes) -> None:
        if self._lost:
            return
        if not self._reading or self._held:
            # Bounded by the stream's window, which stays closed meanwhile.
            self._held.append(data)
            self._held_bytes += len(data)
            return
        if data:
            self._protocol.data_received(data)
        if not self._lost:
            self._channel._tunnel_ack(self._stream, self._held_bytes)

    def _eof(self) -> None:
        if self._lost:
            return
        if not self._reading or self._held:
            self._eof_held = True
            return
        if not self._protocol.eof_received():
            self.close()

    def _gone(self, error: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._held.clear()
        self._held_bytes = 0
        exc = None if self._aborted else error
        self._protocol.connection_lost(exc if isinstance(exc, Exception) else None)

"""The echo service (RFC 862): every byte received is sent back.

Backpressure matters even here: a client that sends without reading would
otherwise grow the server's write buffer without bound, so reading pauses
while the transport's buffer is above its high-water mark.
"""

from __future__ import annotations

import asyncio

from torsion.internet import Protocol

__all__ = ["Echo"]


class Echo(Protocol):
    """Sends back whatever it receives, pausing reads while writes back up."""

    def data_received(self, data: bytes) -> None:
        """Send the bytes straight back."""
        self.transport.write(data)

    def pause_writing(self) -> None:
        """The peer is not reading what we send: stop reading what it sends."""
        super().pause_writing()
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        """The write buffer drained: read again."""
        super().resume_writing()
        self.transport.resume_reading()

    def eof_received(self) -> bool | None:
        """The peer finished sending: finish writing what is queued, then close."""
        if isinstance(self.transport, asyncio.WriteTransport) and self.transport.can_write_eof():
            self.transport.write_eof()
        return None

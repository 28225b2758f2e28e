"""Holding a new connection until its real protocol is chosen, then handing it over.

Some client connections are made before the code that made them knows they
will be kept: happy eyeballs races several attempts and keeps one; a TLS
wrapper runs the handshake before the application may see the connection.
``Handover`` is the stand-in protocol for that time. It keeps what arrives
(bounded), and ``hand_over`` gives the transport to the real protocol and
replays what was kept, in order, as if the real protocol had been there all
along.
"""

from __future__ import annotations

import asyncio

from torsion.internet._listener import abort_transport

__all__ = ["Handover", "HandoverOverflowError"]

# A server may speak first (an SMTP banner, say); more than this before the
# handover is not a greeting.
_MAX_HELD = 64 * 1024


class HandoverOverflowError(ConnectionError):
    """The peer sent more than a stand-in protocol keeps before the handover."""


class Handover(asyncio.Protocol):
    """A stand-in protocol: keeps a connection's first events for its real protocol.

    Attributes:
        transport: The connection's transport, once made.
        lost: None while connected; the connection's end (an exception, or
            ``ConnectionResetError`` for a clean close) once it was lost
            before the handover.
    """

    def __init__(self, *, max_held: int = _MAX_HELD) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.lost: BaseException | None = None
        self._held: list[bytes] = []
        self._held_size = 0
        self._max_held = max_held
        self._eof = False
        self._writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport for the real protocol."""
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Keep the bytes; drop the connection if too many arrive."""
        self._held_size += len(data)
        if self._held_size > self._max_held:
            self.lost = HandoverOverflowError(
                f"the peer sent over {self._max_held} bytes before the connection was ready"
            )
            if self.transport is not None:
                abort_transport(self.transport)
            return
        self._held.append(data)

    def eof_received(self) -> bool:
        """Keep the end of input; the real protocol decides whether to close."""
        self._eof = True
        return True

    def pause_writing(self) -> None:
        """Noted, for the real protocol."""
        self._writing_paused = True

    def resume_writing(self) -> None:
        """Noted, for the real protocol."""
        self._writing_paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection went before the handover."""
        if self.lost is None:
            self.lost = exc if exc is not None else ConnectionResetError("connection closed")

    def hand_over(self, protocol: asyncio.BaseProtocol) -> None:
        """Give the connection to ``protocol`` and replay what arrived meanwhile.

        ``protocol`` gets ``connection_made`` with the transport, then
        ``pause_writing`` if the transport is paused, then the kept data and
        end of input in order.

        Raises:
            ConnectionError: The connection was lost before the handover
                (the protocol is not called).
        """
        transport = self.transport
        if self.lost is not None or transport is None:
            raise ConnectionResetError("the connection was lost before it was ready") from (
                self.lost
            )
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._writing_paused:
            protocol.pause_writing()
        held, self._held = self._held, []
        if isinstance(protocol, asyncio.Protocol):
            for data in held:
                if transport.is_closing():
                    return
                protocol.data_received(data)
            if self._eof and not transport.is_closing() and not protocol.eof_received():
                transport.close()

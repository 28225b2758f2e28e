"""The protocol base class: what reacts to a connection's events.

torsion uses asyncio's transport/protocol contract unchanged, so a protocol
runs over any asyncio transport (TCP here; TLS, Unix sockets and in-memory
test transports later). The call order, for one connection::

    connection_made [-> data_received*] [-> eof_received] -> connection_lost

with ``pause_writing`` / ``resume_writing`` in between whenever the
transport's write buffer crosses its high / low water marks.

A factory is any callable that takes the peer's address and returns a new
protocol for that connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeAlias, cast

__all__ = ["Address", "Protocol", "ProtocolFactory"]

Address: TypeAlias = tuple[Any, ...]
"""A socket address as asyncio reports it: ``(host, port)`` for IPv4,
``(host, port, flowinfo, scope_id)`` for IPv6."""


class Protocol(asyncio.Protocol):
    """Base class for protocols: override the events you care about.

    Attributes:
        transport: The connection's transport, set by ``connection_made``;
            write to it with ``self.transport.write(data)``.
    """

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Called once, when the connection is up; keeps ``transport``.

        Call ``super().connection_made(transport)`` when overriding.
        """
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Called with each chunk of bytes as it arrives (any size, any split)."""

    def eof_received(self) -> bool | None:
        """Called when the peer closed its side for writing.

        Returns:
            True to keep our side open (to finish writing), or None/False to
            have the transport close the connection.
        """
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Called once, last, when the connection is closed.

        Args:
            exc: None for a clean close, or the error that broke it.
        """


ProtocolFactory: TypeAlias = Callable[[Address], asyncio.BaseProtocol | None]
"""Builds the protocol for a new connection from the peer's address; a server
factory may return None to refuse the connection (it is closed at once)."""

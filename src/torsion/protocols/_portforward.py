"""A TCP port forwarder: listen here, connect there, pass the bytes both ways.

``PortForward`` is a protocol factory: each connection it is given opens a
connection to its destination endpoint, and once that is up the two are
spliced (``torsion.internet.splice``): backpressure each way, half-closes
passed through, either side's end closing the other. What the client sends
before the destination answers is held, bounded, and sent first.

A destination that cannot be reached closes the client's connection and is
logged once, without a traceback; a client that goes away while its
destination is still being connected cancels that attempt.
"""

from __future__ import annotations

import asyncio
import logging

from torsion.defer import Deferred
from torsion.internet import Address, ClientEndpoint, Forwarder, splice

__all__ = ["PortForward"]

_log = logging.getLogger("torsion.protocols.portforward")


class PortForward:
    """A factory whose connections are forwarded to ``destination``.

    Listen with it as with any factory::

        reactor.listen_tcp(8080, PortForward(TCPClientEndpoint(reactor, "10.0.0.5", 80)))

    Args:
        destination: Where each connection goes (any client endpoint: TCP,
            a host name, TLS, a Unix socket, a SOCKS proxy...).

    Attributes:
        active: The connections being forwarded now (or connecting).
    """

    def __init__(self, destination: ClientEndpoint) -> None:
        self.destination = destination
        self.active = 0

    def __call__(self, address: Address) -> Forwarder:
        """Return the protocol for a new connection from ``address``."""
        return _Incoming(self, address)

    def __repr__(self) -> str:
        return f"<PortForward to {self.destination!r}>"


class _Incoming(Forwarder):
    """The accepted connection: connects onward, then splices."""

    def __init__(self, forward: PortForward, peer: Address) -> None:
        super().__init__()
        self._forward = forward
        self._peer = peer
        self._attempt: Deferred[Forwarder] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._forward.active += 1
        attempt = self._forward.destination.connect(lambda _: Forwarder())
        self._attempt = attempt
        attempt.add_callbacks(self._connected, self._failed)

    def _connected(self, outgoing: Forwarder) -> None:
        self._attempt = None
        splice(self, outgoing)

    def _failed(self, exc: BaseException) -> None:
        self._attempt = None
        if isinstance(exc, asyncio.CancelledError):
            return  # the client went away first
        _log.warning(
            "Cannot forward the connection from %s to %r: %s",
            self._peer,
            self._forward.destination,
            exc or type(exc).__name__,
        )
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forward.active -= 1
        attempt, self._attempt = self._attempt, None
        if attempt is not None:
            attempt.cancel()
        super().connection_lost(exc)

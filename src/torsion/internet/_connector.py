"""A connection attempt you can await, cancel, and later disconnect.

``connect_tcp``, ``connect_tls`` and ``connect_unix`` return a ``Connector``:
await it (or its ``deferred``) for the connected protocol; ``cancel()`` stops
an attempt still under way; ``disconnect()`` does that, or closes the
connection once it is made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, Generic, Literal, TypeVar

from torsion.defer import Deferred
from torsion.internet._address import Address

__all__ = ["Connector"]

P = TypeVar("P", bound=asyncio.BaseProtocol)

ConnectorState = Literal["connecting", "connected", "failed", "disconnected"]


class Connector(Generic[P]):
    """One outgoing connection: the attempt, then the connection it made.

    Args:
        attempt: Fires with the transport and the protocol once connected
            (``connection_made`` already called), or fails; cancelling it
            must stop the attempt.
        destination: Where it connects to, for ``repr`` and for callers.

    Attributes:
        destination: Where the connection goes: an address, or the
            ``host:port`` asked for before it was resolved.
        deferred: Fires with the protocol once connected, or fails with the
            attempt's error (``ConnectionRefusedError``, ``TimeoutError``,
            ``DNSLookupError``, ``CancelledError`` after ``cancel()``, ...).
    """

    __slots__ = ("_state", "_transport", "deferred", "destination")

    def __init__(
        self,
        attempt: Deferred[tuple[asyncio.BaseTransport, P]],
        destination: Address | str,
    ) -> None:
        self.destination = destination
        self._state: ConnectorState = "connecting"
        self._transport: asyncio.BaseTransport | None = None
        self.deferred: Deferred[P] = Deferred(lambda _: attempt.cancel())
        attempt.add_callbacks(self._made, self._failed)

    @classmethod
    def start(
        cls,
        loop: asyncio.AbstractEventLoop,
        attempt: Coroutine[Any, Any, tuple[asyncio.BaseTransport, P]],
        destination: Address | str,
    ) -> Connector[P]:
        """Run ``attempt`` as a task on ``loop``; cancelling cancels the task."""
        return cls(Deferred.from_future(loop.create_task(attempt)), destination)

    def _made(self, made: tuple[asyncio.BaseTransport, P]) -> None:
        transport, protocol = made
        self._state = "connected"
        self._transport = transport
        self.deferred.callback(protocol)

    def _failed(self, exc: BaseException) -> None:
        self._state = "failed"
        self.deferred.errback(exc)

    @property
    def state(self) -> ConnectorState:
        """Where the connection is: connecting, connected, failed (or cancelled), disconnected."""
        return self._state

    @property
    def transport(self) -> asyncio.BaseTransport | None:
        """The connection's transport once connected (None before)."""
        return self._transport

    def cancel(self) -> None:
        """Stop the attempt if it is still under way (``deferred`` fails with CancelledError).

        Does nothing once the attempt has ended.
        """
        if self._state == "connecting":
            self.deferred.cancel()

    def disconnect(self) -> None:
        """Cancel the attempt, or close the connection it made (flushing writes first)."""
        if self._state == "connecting":
            self.cancel()
        elif self._state == "connected" and self._transport is not None:
            self._state = "disconnected"
            self._transport.close()

    def __await__(self) -> Generator[Any, None, P]:
        return self.deferred.__await__()

    def __repr__(self) -> str:
        return f"<Connector {self._state} to {self.destination}>"

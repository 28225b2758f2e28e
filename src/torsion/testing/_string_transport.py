r"""``StringTransport``: a transport that records what a protocol writes.

It keeps asyncio's transport contract, so a protocol under test cannot tell it
from a socket, and it runs no loop: the test hands the protocol bytes itself
and reads back what it wrote::

    transport = StringTransport()
    protocol.connection_made(transport)
    protocol.data_received(b"HELO example.org\r\n")
    assert transport.value() == b"250 ...\r\n"

Nothing is sent anywhere and no callback of the protocol is ever called by the
transport except ``pause_writing``/``resume_writing`` (when given the
protocol): closing it only records that it was closed, and the test calls
``connection_lost`` when it wants to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from torsion.testing._flow import WriteFlow, accepts_write

__all__ = ["StringTransport"]

_Buffer = bytes | bytearray | memoryview


class StringTransport(asyncio.Transport):
    """An in-memory transport that records written bytes and state changes.

    Its write buffer is the bytes written and not yet ``clear()``-ed: with a
    protocol attached, writing past the high-water mark calls the protocol's
    ``pause_writing()`` and clearing calls ``resume_writing()``, so a test
    plays the network draining the buffer.

    Attributes:
        peer: The remote address (``get_extra_info("peername")``).
        host: The local address (``get_extra_info("sockname")``).
        closed: Whether ``close()`` or ``abort()`` was called.
        aborted: Whether ``abort()`` was called.
        eof_written: Whether ``write_eof()`` was called.
    """

    def __init__(
        self,
        protocol: asyncio.BaseProtocol | None = None,
        *,
        peer: Any = ("192.0.2.2", 54321),
        host: Any = ("192.0.2.1", 12345),
        extra: Mapping[str, Any] | None = None,
        can_write_eof: bool = True,
    ) -> None:
        """Make a transport, open and reading, with nothing written.

        Args:
            protocol: The protocol told about flow control (optional).
            peer: The remote address (default in TEST-NET-1).
            host: The local address.
            extra: More ``get_extra_info`` entries.
            can_write_eof: What ``can_write_eof()`` answers.
        """
        super().__init__()
        self._info = dict(extra or {})
        self._protocol = protocol
        self.peer = peer
        self.host = host
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self._can_write_eof = can_write_eof
        self._reading = True
        self._data = bytearray()
        self._flow = WriteFlow()

    # What the test reads.

    def value(self) -> bytes:
        """Return every byte written since the transport was made or cleared."""
        return bytes(self._data)

    def clear(self) -> None:
        """Forget the bytes written so far (the network took them)."""
        self._data.clear()
        self._flow.update(0, self._protocol)

    # asyncio's BaseTransport.

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Return ``peer`` for "peername", ``host`` for "sockname", else ``extra``."""
        if name == "peername":
            return self.peer
        if name == "sockname":
            return self.host
        return self._info.get(name, default)

    def is_closing(self) -> bool:
        """Return whether the transport was closed or aborted."""
        return self.closed

    def close(self) -> None:
        """Record that the protocol closed the transport."""
        self.closed = True

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Attach the protocol told about flow control."""
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        """Return the attached protocol.

        Raises:
            RuntimeError: No protocol was attached.
        """
        if self._protocol is None:
            raise RuntimeError("no protocol is attached to this StringTransport")
        return self._protocol

    # asyncio's ReadTransport.

    def is_reading(self) -> bool:
        """Return whether reading is on (not paused, not closed)."""
        return self._reading and not self.closed

    def pause_reading(self) -> None:
        """Record that the protocol wants no data for now."""
        self._reading = False

    def resume_reading(self) -> None:
        """Record that the protocol wants data again."""
        self._reading = True

    # asyncio's WriteTransport.

    def write(self, data: _Buffer) -> None:
        """Record ``data`` (dropped, as asyncio drops it, once closed).

        Raises:
            TypeError: ``data`` is not bytes-like.
            RuntimeError: ``write_eof()`` was called.
        """
        if not accepts_write(data, eof_written=self.eof_written, closing=self.closed):
            return
        self._data += data
        self._flow.update(len(self._data), self._protocol)

    def writelines(self, list_of_data: Iterable[_Buffer]) -> None:
        """Record each buffer in turn."""
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        """Record that the protocol half-closed the connection."""
        if not self.closed:
            self.eof_written = True

    def can_write_eof(self) -> bool:
        """Return whether ``write_eof()`` is supported (configurable)."""
        return self._can_write_eof

    def abort(self) -> None:
        """Record that the protocol aborted the connection."""
        self.closed = True
        self.aborted = True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks of the write buffer, as asyncio does."""
        self._flow.set_limits(high, low)
        self._flow.update(len(self._data), self._protocol)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """Return the ``(low, high)`` water marks."""
        return self._flow.low, self._flow.high

    def get_write_buffer_size(self) -> int:
        """Return how many written bytes have not been cleared."""
        return len(self._data)

    def __repr__(self) -> str:
        state = "aborted" if self.aborted else "closed" if self.closed else "open"
        return f"<StringTransport {state}, {len(self._data)} bytes written>"

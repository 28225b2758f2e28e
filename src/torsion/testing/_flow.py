"""Write-side flow control shared by the in-memory transports.

asyncio's contract: a transport calls its protocol's ``pause_writing()`` when
its write buffer grows past the high-water mark and ``resume_writing()`` once
it has drained to the low-water mark or below, never twice in a row.
"""

from __future__ import annotations

import asyncio

__all__ = ["WriteFlow", "accepts_write"]

_DEFAULT_HIGH = 64 * 1024


class WriteFlow:
    """The high/low water marks of one transport and whether it is paused."""

    __slots__ = ("high", "low", "paused")

    def __init__(self) -> None:
        self.high = _DEFAULT_HIGH
        self.low = _DEFAULT_HIGH // 4
        self.paused = False

    def set_limits(self, high: int | None, low: int | None) -> None:
        """Set the water marks with asyncio's defaults and checks.

        Raises:
            ValueError: The marks are not ``high >= low >= 0``.
        """
        if high is None:
            high = _DEFAULT_HIGH if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self.high = high
        self.low = low

    def update(self, size: int, protocol: asyncio.BaseProtocol | None) -> None:
        """Pause or resume ``protocol`` for a write buffer of ``size`` bytes."""
        if protocol is None:
            return
        if not self.paused and size > self.high:
            self.paused = True
            protocol.pause_writing()
        elif self.paused and size <= self.low:
            self.paused = False
            protocol.resume_writing()


def accepts_write(data: object, *, eof_written: bool, closing: bool) -> bool:
    """Check a ``write()`` as asyncio's transports do; return whether to send it.

    Writes after ``close()`` and empty writes are dropped silently.

    Raises:
        TypeError: ``data`` is not bytes-like.
        RuntimeError: ``write_eof()`` was called.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
    if eof_written:
        raise RuntimeError("Cannot call write() after write_eof()")
    return not closing and len(data) > 0

"""Splitting a child process's output into lines for the log, with a bound.

Output arrives in chunks of any size; each complete line goes to the log as
it is finished. A line longer than the bound is logged in pieces rather
than kept, so a child that writes without newlines costs a bounded buffer.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["MAX_LINE", "LineSplitter"]

MAX_LINE = 16 * 1024


class LineSplitter:
    """Calls ``emit(line)`` for each line of what is ``feed()``-ed (newline removed).

    Args:
        emit: Called with each line, decoded as UTF-8 (bad bytes replaced).
        max_line: The longest line kept whole, in bytes.
    """

    def __init__(self, emit: Callable[[str], object], *, max_line: int = MAX_LINE) -> None:
        self._emit = emit
        self._max_line = max_line
        self._partial = bytearray()

    def feed(self, data: bytes) -> None:
        """Take more output."""
        self._partial += data
        start = 0
        while (end := self._partial.find(b"\n", start)) != -1:
            self._send(self._partial[start:end])
            start = end + 1
        del self._partial[:start]
        while len(self._partial) > self._max_line:
            self._send(self._partial[: self._max_line])
            del self._partial[: self._max_line]

    def flush(self) -> None:
        """The output ended: pass on what is left, if anything."""
        if self._partial:
            self._send(self._partial)
            self._partial.clear()

    def _send(self, line: bytes | bytearray) -> None:
        self._emit(bytes(line).rstrip(b"\r").decode("utf-8", "replace"))

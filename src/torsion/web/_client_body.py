"""A response body on its way from the connection to its reader, bounded.

The connection feeds it; one reader takes the pieces in order. While more
than the high-water mark waits unread, the connection stops reading from
the socket, so a slow reader slows the server instead of filling memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from torsion.defer import Deferred, fail, succeed
from torsion.web._client_errors import BadResponseError

__all__ = ["ResponseBody"]


class ResponseBody:
    """A response body arriving from the connection: a bounded buffer with one reader.

    ``receive()`` returns the next piece (``b""`` at the end). While more
    than ``high_water`` bytes wait unread, the connection stops reading from
    the socket; it starts again once they fall to ``high_water // 4``.

    Args:
        high_water: The buffered bytes above which reading pauses.
        pause: Called to pause reading from the socket.
        resume: Called to resume it.
        abandon: Called by ``close()`` when the body had not ended.
    """

    def __init__(
        self,
        high_water: int,
        pause: Callable[[], None],
        resume: Callable[[], None],
        abandon: Callable[[], None],
    ) -> None:
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._high = high_water
        self._low = high_water // 4
        self._pause = pause
        self._resume = resume
        self._abandon = abandon
        self._paused = False
        self._done = False
        self._error: BaseException | None = None
        self._waiter: Deferred[bytes] | None = None
        self.received = 0

    @property
    def done(self) -> bool:
        """Whether the body ended (completely, or with an error)."""
        return self._done

    def feed(self, data: bytes) -> None:
        """Take bytes from the connection."""
        if self._done:
            return
        self.received += len(data)
        waiter = self._waiter
        if waiter is not None and not self._chunks:
            self._waiter = None
            waiter.callback(data)
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > self._high and not self._paused:
            self._paused = True
            self._pause()

    def finish(self) -> None:
        """The body ended."""
        if self._done:
            return
        self._done = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.callback(b"")

    def fail(self, exc: BaseException) -> None:
        """The body will not end well."""
        if self._done:
            return
        self._done = True
        self._error = exc
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.errback(exc)

    def receive(self) -> Deferred[bytes]:
        """Wait for the next piece of the body.

        Returns:
            A Deferred of the next bytes, ``b""`` once the body has ended; it
            fails with the error that broke the body. Cancelling it only
            stops the wait.

        Raises:
            RuntimeError: Another ``receive()`` is still waiting.
        """
        if self._chunks:
            data = self._chunks.popleft()
            self._buffered -= len(data)
            if self._paused and self._buffered <= self._low:
                self._paused = False
                self._resume()
            return succeed(data)
        if self._error is not None:
            return fail(self._error)
        if self._done:
            return succeed(b"")
        if self._waiter is not None:
            raise RuntimeError("a response body has one reader at a time")

        def cancel(d: Deferred[bytes]) -> None:
            if self._waiter is d:
                self._waiter = None

        waiter: Deferred[bytes] = Deferred(cancel)
        self._waiter = waiter
        return waiter

    def close(self) -> None:
        """Drop the body; if it had not ended, the connection is closed."""
        self._chunks.clear()
        self._buffered = 0
        if not self._done:
            self._done = True
            self._error = BadResponseError("the response body was closed before its end")
            waiter, self._waiter = self._waiter, None
            if waiter is not None:
                waiter.errback(self._error)
            self._abandon()

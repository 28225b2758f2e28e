"""Time built on any ``Clock``: repeating calls (``LoopingCall``) and ``defer_later``.

Both only use ``clock.seconds()`` and ``clock.call_later()``, so they run the
same on the reactor and on ``torsion.testing.Clock``, where a test moves time
by hand.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from torsion.defer import Deferred, awaitable_deferred, maybe_deferred
from torsion.errors import LoopingCallError
from torsion.internet._delayed import Clock, DelayedCall

__all__ = ["LoopingCall", "defer_later"]

T = TypeVar("T")

# Float error, in fractions of an interval: ``start + n * interval`` and a
# clock that added ``interval`` n times differ in the last bits. A time this
# close below a boundary counts as on it, and calls are scheduled this much
# early (asyncio fires timers within its clock resolution anyway), so that a
# call is neither late by one interval nor counted one interval short.
_EPSILON = 1e-7
_EARLY = 1e-8


class LoopingCall:
    """Call a function every ``interval`` seconds of a clock.

    Calls are aligned on ``start_time + n * interval``. If the clock jumps
    (a busy process, a suspended laptop, ``Clock.advance`` in a test) past
    several of those times, the function is called once, not once per missed
    interval; ``last_count`` then tells how many intervals that call covers,
    and a LoopingCall made with ``with_count`` passes that number to the
    function. If the function returns a Deferred (or is a coroutine function),
    the next call waits until it has finished.

    Args:
        f: What to call.
        *args: Its arguments.
        clock: The clock that times the calls (the reactor, or a fake one).

    Attributes:
        f: What is called.
        args: Its arguments.
        clock: The clock; it may be replaced while the call is not running.
        interval: The interval given to ``start()``, or None before that.
        running: Whether the call is started and not stopped.
        start_time: When ``start()`` was called, on the clock's scale.
        last_count: How many intervals the most recent call covered: 1 when
            it ran on time, more when the clock skipped some.
        call: The scheduled next call, if one is scheduled now.
    """

    def __init__(self, f: Callable[..., object], /, *args: Any, clock: Clock) -> None:
        self.f = f
        self.args = args
        self.clock = clock
        self.interval: float | None = None
        self.running = False
        self.start_time = 0.0
        self.last_count = 0
        self.call: DelayedCall | None = None
        self._pass_count = False
        self._deferred: Deferred[LoopingCall] | None = None
        self._waiting: Deferred[Any] | None = None
        self._last_index = 0

    @classmethod
    def with_count(cls, f: Callable[..., object], /, *args: Any, clock: Clock) -> LoopingCall:
        """Make a LoopingCall that calls ``f(count, *args)``.

        ``count`` is how many intervals passed since the previous call: 1
        normally, more when the clock skipped intervals. Summing the counts
        gives the number of intervals elapsed, however late the calls were.
        """
        call = cls(f, *args, clock=clock)
        call._pass_count = True
        return call

    def start(self, interval: float, now: bool = True) -> Deferred[LoopingCall]:
        """Start calling the function every ``interval`` seconds.

        Args:
            interval: Seconds between calls; 0 calls again as soon as the
                clock lets it.
            now: Call the function at once, rather than after one interval.

        Returns:
            A Deferred that fires with this LoopingCall when ``stop()`` is
            called, or fails with the exception the function raised (or its
            Deferred failed with). Cancelling it stops the calls.

        Raises:
            LoopingCallError: It is already running.
            ValueError: ``interval`` is negative.
        """
        if self.running:
            raise LoopingCallError(f"{self!r} is already running")
        if interval < 0:
            raise ValueError(f"interval must not be negative, got {interval}")
        self.running = True
        self.interval = interval
        self.start_time = self.clock.seconds()
        d: Deferred[LoopingCall] = Deferred(self._cancel)
        self._deferred = d
        if now:
            self._last_index = -1
            self._run(0)
        else:
            self._last_index = 0
            self._schedule(1)
        return d

    def stop(self) -> None:
        """Stop the calls; the Deferred from ``start()`` fires with this LoopingCall.

        If the function's Deferred is still pending, that Deferred fires once
        it has finished.

        Raises:
            LoopingCallError: It is not running.
        """
        if not self.running:
            raise LoopingCallError(f"{self!r} is not running")
        self.running = False
        if self.call is not None:
            self.call.cancel()
            self.call = None
        if self._waiting is None:
            self._finish()

    def reset(self) -> None:
        """Start the intervals over from now: the next call is one interval away.

        Does nothing while the function's Deferred is pending (the next call is
        scheduled from when it finishes anyway).

        Raises:
            LoopingCallError: It is not running.
        """
        if not self.running:
            raise LoopingCallError(f"{self!r} is not running")
        if self.call is None:
            return
        self.call.cancel()
        self.call = None
        self.start_time = self.clock.seconds()
        self._last_index = 0
        self._schedule(1)

    # -- the loop ---------------------------------------------------------------

    def _index_at(self, when: float) -> int:
        """Return which interval ``when`` falls in (0 is the start)."""
        interval = self.interval
        assert interval  # Callers handle the zero interval.
        return math.floor((when - self.start_time) / interval + _EPSILON)

    def _schedule(self, index: int) -> None:
        """Schedule the call for the start of interval ``index``."""
        interval = self.interval
        assert interval is not None  # Set by start().
        if interval == 0:
            self.call = self.clock.call_later(0, self._due, index)
            return
        due = self.start_time + (index - _EARLY) * interval
        self.call = self.clock.call_later(max(0.0, due - self.clock.seconds()), self._due, index)

    def _due(self, index: int) -> None:
        self.call = None
        if self.interval:
            index = max(index, self._index_at(self.clock.seconds()))
        self._run(index)

    def _run(self, index: int) -> None:
        count = index - self._last_index if self.interval else 1
        self._last_index = index
        self.last_count = count
        try:
            result = self.f(count, *self.args) if self._pass_count else self.f(*self.args)
        except Exception as exc:  # It ends the loop, through the Deferred.
            self._failed(exc)
            return
        waiting = awaitable_deferred(result)
        if waiting is None:
            self._done(None)
            return
        self._waiting = waiting
        waiting.add_callbacks(self._done, self._failed)

    def _done(self, _: object) -> None:
        self._waiting = None
        if not self.running:
            self._finish()
            return
        if not self.interval:
            self._schedule(self._last_index + 1)
            return
        # The next interval after now: after a slow Deferred some may be gone.
        self._schedule(max(self._last_index, self._index_at(self.clock.seconds())) + 1)

    def _failed(self, exc: BaseException) -> None:
        self._waiting = None
        self.running = False
        if self.call is not None:
            self.call.cancel()
            self.call = None
        d, self._deferred = self._deferred, None
        if d is not None:
            d.errback(exc)

    def _finish(self) -> None:
        d, self._deferred = self._deferred, None
        if d is not None:
            d.callback(self)

    def _cancel(self, _: Deferred[LoopingCall]) -> None:
        # Cancelling start()'s Deferred: stop, and let it fail with CancelledError.
        self._deferred = None
        self.running = False
        if self.call is not None:
            self.call.cancel()
            self.call = None
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.cancel()

    def __repr__(self) -> str:
        name = getattr(self.f, "__qualname__", repr(self.f))
        state = f"every {self.interval}s" if self.running else "stopped"
        return f"<LoopingCall {name} {state}>"


@overload
def defer_later(clock: Clock, delay: float, /) -> Deferred[None]: ...


@overload
def defer_later(
    clock: Clock, delay: float, f: Callable[..., Awaitable[T]], /, *args: Any
) -> Deferred[T]: ...


@overload
def defer_later(clock: Clock, delay: float, f: Callable[..., T], /, *args: Any) -> Deferred[T]: ...


def defer_later(
    clock: Clock, delay: float, f: Callable[..., Any] | None = None, /, *args: Any
) -> Deferred[Any]:
    """Return a Deferred that fires ``delay`` seconds from now.

    Args:
        clock: The clock to wait on.
        delay: Seconds to wait.
        f: Called with ``args`` when the time comes; the Deferred fires with
            what it returns (waiting for it if it returns a Deferred or a
            coroutine), or fails with what it raises. Without ``f`` the
            Deferred fires with None.
        *args: Arguments for ``f``.

    Returns:
        The Deferred. Cancelling it before the time comes cancels the call.
    """

    def cancel(_: Deferred[Any]) -> None:
        if call.active():
            call.cancel()

    d: Deferred[Any] = Deferred(cancel)
    if f is not None:
        d.add_callback(lambda _: maybe_deferred(f, *args))
    call = clock.call_later(delay, d.callback, None)
    return d

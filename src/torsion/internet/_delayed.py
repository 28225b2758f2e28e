"""Scheduled calls: the ``Clock`` interface and the ``DelayedCall`` handle.

``DelayedCall`` is shared by the reactor and by ``torsion.testing.Clock``: each
owner keeps its calls in its own structure (asyncio timers, a sorted list)
and the handle asks its owner to cancel or move it. ``LoopClock`` is the
reactor's: it keeps each call as a timer on the asyncio loop.

This module is compiled with mypyc where the build allows (see setup.py):
scheduling and firing a call is the reactor's hottest path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final, Protocol

from mypy_extensions import mypyc_attr

from torsion.errors import AlreadyCalledDelayedError, AlreadyCancelledError

__all__ = ["Clock", "DelayedCall", "DelayedCallOwner", "LoopClock"]


class Clock(Protocol):
    """Something that tells the time and runs functions later.

    The reactor is one; ``torsion.testing.Clock`` is a fake one whose time only
    moves when a test says so.
    """

    def seconds(self) -> float:
        """Return the current time in seconds, on this clock's own scale."""
        ...

    def call_later(self, delay: float, f: Callable[..., object], /, *args: Any) -> DelayedCall:
        """Call ``f(*args)`` once ``delay`` seconds have passed."""
        ...


class DelayedCallOwner(Protocol):
    """What a ``DelayedCall`` needs from the clock that scheduled it."""

    def seconds(self) -> float:
        """Return the owner's current time."""
        ...

    def _cancel_delayed(self, call: DelayedCall) -> None: ...

    def _reschedule_delayed(self, call: DelayedCall) -> None: ...


# A call's state; plain integers, which compiled code keeps unboxed.
_PENDING: Final = 0
_CALLED: Final = 1
_CANCELLED: Final = 2
_STATE_NAMES: Final = ("pending", "called", "cancelled")


class DelayedCall:
    """A call scheduled for a later time, which can be cancelled or moved.

    Attributes:
        time: When the call is due, on its clock's scale.
        func: What will be called.
        args: The positional arguments it will be called with.
        handle: The owner's private bookkeeping (an asyncio timer, ...).
    """

    __slots__ = ("_next", "_owner", "_prev", "_state", "args", "func", "handle", "time")

    def __init__(
        self,
        owner: DelayedCallOwner,
        time: float,
        func: Callable[..., object],
        args: tuple[Any, ...],
    ) -> None:
        self._owner = owner
        self._state = _PENDING
        self.time = time
        self.func = func
        self.args = args
        self.handle: Any = None
        # Links in the owner's list of pending calls, if it keeps one (as
        # ``LoopClock`` does); the call unlinks itself when it runs.
        self._prev: DelayedCall | None = None
        self._next: DelayedCall | None = None

    def active(self) -> bool:
        """Return whether the call has neither run nor been cancelled."""
        return self._state == _PENDING

    @property
    def called(self) -> bool:
        """Whether the call has run."""
        return self._state == _CALLED

    @property
    def cancelled(self) -> bool:
        """Whether the call was cancelled before it ran."""
        return self._state == _CANCELLED

    def get_time(self) -> float:
        """Return when the call is due."""
        return self.time

    def cancel(self) -> None:
        """Cancel the call so that it never runs.

        Raises:
            AlreadyCancelledError: It was already cancelled.
            AlreadyCalledDelayedError: It has already run.
        """
        self._check_active()
        self._state = _CANCELLED
        self._owner._cancel_delayed(self)

    def reset(self, seconds_from_now: float) -> None:
        """Move the call so that it is due ``seconds_from_now`` from now."""
        self._check_active()
        self.time = self._owner.seconds() + seconds_from_now
        self._owner._reschedule_delayed(self)

    def delay(self, seconds: float) -> None:
        """Move the call ``seconds`` later than it was (earlier if negative)."""
        self._check_active()
        self.time += seconds
        self._owner._reschedule_delayed(self)

    def run(self) -> None:
        """Run the call now; its owner calls this when the call is due.

        Exceptions from the function propagate to the owner, which reports
        them its own way.
        """
        self._state = _CALLED
        # Dropping the handle breaks the cycle call -> timer -> call, so that
        # a call that ran is freed at once rather than by the GC.
        self.handle = None
        self._unlink()
        self.func(*self.args)

    def __call__(self) -> None:
        # The loop's timers call the call itself: that spares a bound method
        # per call, fewer objects for the GC to walk while many are pending.
        self.run()

    def _link_after(self, before: DelayedCall) -> None:
        after = before._next
        self._prev = before
        self._next = after
        before._next = self
        if after is not None:
            after._prev = self

    def _unlink(self) -> None:
        before = self._prev
        if before is None:
            return
        after = self._next
        before._next = after
        if after is not None:
            after._prev = before
        self._prev = self._next = None

    def _check_active(self) -> None:
        if self._state == _CANCELLED:
            raise AlreadyCancelledError(f"{self!r} was already cancelled")
        if self._state == _CALLED:
            raise AlreadyCalledDelayedError(f"{self!r} has already run")

    def __repr__(self) -> str:
        name = getattr(self.func, "__qualname__", repr(self.func))
        return f"<DelayedCall {_STATE_NAMES[self._state]} at {self.time:.6f}: {name}>"


@mypyc_attr(allow_interpreted_subclasses=True)
class LoopClock:
    """A ``Clock`` over an asyncio loop: each call is a timer on the loop.

    The reactor is one (it subclasses this, so that its ``call_later`` is
    this compiled method itself, not a wrapper around it).

    Args:
        loop: The loop whose timers run the calls.
    """

    __slots__ = ("_at_time", "_call_at", "_call_later", "_pending", "_time")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._time = loop.time
        self._call_at = loop.call_at
        self._call_later = loop.call_later
        # asyncio's own loops schedule by absolute time (their call_later
        # wraps call_at); uvloop schedules by delay (its call_at wraps
        # call_later). Use whichever is the primitive.
        self._at_time = isinstance(loop, asyncio.BaseEventLoop)
        # The pending calls, linked after this placeholder: cheaper in time
        # and memory than a set, for what may be a great many calls.
        self._pending = DelayedCall(self, 0.0, _nothing, ())

    def seconds(self) -> float:
        """Return the loop's monotonic time, in seconds."""
        return self._time()

    def call_later(self, delay: float, f: Callable[..., object], /, *args: Any) -> DelayedCall:
        """Call ``f(*args)`` on the loop's thread ``delay`` seconds from now.

        An exception ``f`` raises goes to the loop's exception handler (which
        logs it).

        Returns:
            A handle to ``cancel()``, ``reset()`` or ``delay()`` the call.
        """
        call = DelayedCall(self, self._time() + delay, f, args)
        if self._at_time:
            call.handle = self._call_at(call.time, call)
        else:
            call.handle = self._call_later(delay, call)
        call._link_after(self._pending)
        return call

    def get_delayed_calls(self) -> list[DelayedCall]:
        """Return the calls scheduled with ``call_later`` that have not run, soonest first."""
        calls = []
        call = self._pending._next
        while call is not None:
            calls.append(call)
            call = call._next
        calls.sort(key=_call_time)
        return calls

    def _cancel_delayed(self, call: DelayedCall) -> None:
        call.handle.cancel()
        call.handle = None
        call._unlink()

    def _reschedule_delayed(self, call: DelayedCall) -> None:
        call.handle.cancel()
        if self._at_time:
            call.handle = self._call_at(call.time, call)
        else:
            call.handle = self._call_later(call.time - self._time(), call)


def _call_time(call: DelayedCall) -> float:
    return call.time


def _nothing() -> None:
    pass

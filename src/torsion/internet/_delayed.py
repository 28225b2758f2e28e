"""Scheduled calls: the ``Clock`` interface and the ``DelayedCall`` handle.

``DelayedCall`` is shared by the reactor and by ``torsion.testing.Clock``: each
owner keeps its calls in its own structure (an asyncio timer, a sorted list)
and the handle asks its owner to cancel or move it.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

from torsion.errors import AlreadyCalledDelayedError, AlreadyCancelledError

__all__ = ["Clock", "DelayedCall", "DelayedCallOwner"]


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


class _State(Enum):
    PENDING = "pending"
    CALLED = "called"
    CANCELLED = "cancelled"


_PENDING = _State.PENDING
_CALLED = _State.CALLED
_CANCELLED = _State.CANCELLED


class DelayedCall:
    """A call scheduled for a later time, which can be cancelled or moved.

    Attributes:
        time: When the call is due, on its clock's scale.
        func: What will be called.
        args: The positional arguments it will be called with.
        handle: The owner's private bookkeeping (an asyncio timer, ...).
    """

    __slots__ = ("_owner", "_state", "args", "func", "handle", "time")

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

    def active(self) -> bool:
        """Return whether the call has neither run nor been cancelled."""
        return self._state is _PENDING

    @property
    def called(self) -> bool:
        """Whether the call has run."""
        return self._state is _CALLED

    @property
    def cancelled(self) -> bool:
        """Whether the call was cancelled before it ran."""
        return self._state is _CANCELLED

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
        self.func(*self.args)

    def _check_active(self) -> None:
        if self._state is _CANCELLED:
            raise AlreadyCancelledError(f"{self!r} was already cancelled")
        if self._state is _CALLED:
            raise AlreadyCalledDelayedError(f"{self!r} has already run")

    def __repr__(self) -> str:
        name = getattr(self.func, "__qualname__", repr(self.func))
        return f"<DelayedCall {self._state.value} at {self.time:.6f}: {name}>"

"""A fake clock whose time moves only when a test moves it.

``Clock`` satisfies ``torsion.internet``'s ``Clock`` interface, so code that
takes a clock (or a reactor, for its time) can be driven deterministically::

    clock = Clock()
    call = clock.call_later(5, fired.append, "x")
    clock.advance(4.9)      # nothing yet
    clock.advance(0.1)      # fired == ["x"]

Calls run in time order; calls due at the same time run in the order they were
scheduled (a call that is reset or delayed counts as scheduled anew).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable
from typing import Any

from torsion.internet._delayed import DelayedCall

__all__ = ["Clock"]


class Clock:
    """A clock for tests: time starts where you say and moves when you say.

    Scheduled calls live in a heap keyed by (time, order of scheduling), so
    scheduling and running are O(log n); cancelled and moved calls leave a
    stale heap entry behind that is skipped (and purged when they pile up).
    """

    def __init__(self, start: float = 0.0) -> None:
        """Make a clock that reads ``start`` seconds.

        Args:
            start: The initial time.
        """
        self._now = float(start)
        # Entries are [time, sequence, call]; a stale entry has call None.
        self._heap: list[list[Any]] = []
        self._sequence = 0
        self._live = 0

    def seconds(self) -> float:
        """Return the clock's current time."""
        return self._now

    def call_later(self, delay: float, f: Callable[..., object], /, *args: Any) -> DelayedCall:
        """Schedule ``f(*args)`` to run once the clock has moved ``delay`` on.

        Args:
            delay: Seconds from now; zero means "on the next ``advance``".
            f: What to call.
            *args: Its positional arguments.

        Returns:
            The handle that can cancel, reset or delay the call.

        Raises:
            ValueError: ``delay`` is negative or not a number.
        """
        _check_amount(delay, "delay")
        call = DelayedCall(self, self._now + delay, f, args)
        self._push(call)
        return call

    def advance(self, amount: float) -> None:
        """Move time forward by ``amount`` and run every call now due.

        Calls run in time order, and calls due at the same time in the order
        they were scheduled. A call that schedules another for a time not after
        the new time sees it run within this same ``advance``, as with
        Twisted's ``Clock``. If a call raises, the exception propagates at once;
        the calls still due stay pending and run on the next ``advance``.

        Args:
            amount: Seconds to move forward; may be zero.

        Raises:
            ValueError: ``amount`` is negative or not a number.
        """
        _check_amount(amount, "amount")
        self._now += amount
        heap = self._heap
        now = self._now
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            call: DelayedCall | None = entry[2]
            if call is None:
                continue
            self._live -= 1
            call.run()

    def pump(self, timings: Iterable[float]) -> None:
        """Advance by each amount in turn, running what falls due after each.

        Args:
            timings: The successive amounts.
        """
        for amount in timings:
            self.advance(amount)

    def get_delayed_calls(self) -> list[DelayedCall]:
        """Return the calls still pending, soonest first."""
        entries = sorted(entry for entry in self._heap if entry[2] is not None)
        return [entry[2] for entry in entries]

    def _push(self, call: DelayedCall) -> None:
        entry = [call.time, self._sequence, call]
        self._sequence += 1
        call.handle = entry
        heapq.heappush(self._heap, entry)
        self._live += 1

    def _forget(self, call: DelayedCall) -> None:
        entry = call.handle
        if entry is None:
            return
        entry[2] = None
        call.handle = None
        self._live -= 1
        # Keep stale entries from outnumbering live ones for long.
        if len(self._heap) > 64 and self._live < len(self._heap) // 2:
            # In place: ``advance`` may be iterating over this very list.
            self._heap[:] = [entry for entry in self._heap if entry[2] is not None]
            heapq.heapify(self._heap)

    def _cancel_delayed(self, call: DelayedCall) -> None:
        self._forget(call)

    def _reschedule_delayed(self, call: DelayedCall) -> None:
        self._forget(call)
        self._push(call)

    def __repr__(self) -> str:
        return f"<Clock at {self._now:.6f} with {self._live} pending>"


def _check_amount(value: float, name: str) -> None:
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, not {value!r}")

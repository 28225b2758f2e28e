"""``TimerService``: call a function every so often while the application runs.

A ``LoopingCall`` as a service: it starts with the tree and stops with it.
If the function returns a Deferred or a coroutine, the next call waits for
it, and stopping waits for the call under way. A call that fails is logged
and the calls go on (a cron-like job should not die with its first error).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from torsion.defer import Deferred, awaitable_deferred, succeed
from torsion.internet import Clock, LoopingCall

__all__ = ["TimerService"]

_log = logging.getLogger(__name__)


class TimerService:
    """Calls ``f(*args)`` every ``interval`` seconds while it runs.

    Args:
        interval: Seconds between calls.
        f: What to call; it may return a Deferred or be an ``async def``.
        *args: Its arguments.
        clock: The clock (the reactor, or a fake one in tests).
        now: Call at once on start, rather than one interval later.

    Attributes:
        interval, f, args, clock: As given.
        failures: How many calls have failed so far.
    """

    def __init__(
        self,
        interval: float,
        f: Callable[..., object],
        /,
        *args: Any,
        clock: Clock,
        now: bool = True,
    ) -> None:
        if interval < 0:
            raise ValueError(f"interval must not be negative, got {interval}")
        self.interval = interval
        self.f = f
        self.args = args
        self.clock = clock
        self.now = now
        self.failures = 0
        self._call: LoopingCall | None = None
        self._done: Deferred[LoopingCall] | None = None

    @property
    def running(self) -> bool:
        """Whether it was started and not stopped since."""
        return self._call is not None

    def start_service(self) -> None:
        """Start calling (at once, unless ``now`` was False)."""
        if self._call is not None:
            return
        self._call = LoopingCall(self._guarded, clock=self.clock)
        self._done = self._call.start(self.interval, now=self.now)

    def _guarded(self) -> Deferred[None] | None:
        try:
            result = self.f(*self.args)
        except Exception as exc:
            self._failed(exc)
            return None
        d = awaitable_deferred(result)
        if d is None:
            return None
        return d.add_callbacks(lambda _: None, self._failed)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        _log.error(
            "Timed call %r failed: %r", self.f, exc, exc_info=(type(exc), exc, exc.__traceback__)
        )

    def stop_service(self) -> Awaitable[None]:
        """Stop calling; the Deferred fires once the call under way (if any) finished.

        Cancelling it cancels that call.
        """
        call, done = self._call, self._done
        self._call = self._done = None
        if call is None or done is None:
            return succeed(None)
        call.stop()
        return done.add_callback(lambda _: None)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<TimerService {state}, every {self.interval:g}s: {self.f!r}>"

"""System events: triggers that run when the reactor starts, stops, or is told to.

An event (``"startup"``, ``"shutdown"``, or any name) fires in three phases:
every ``"before"`` trigger runs first, and any of them may hold the event by
returning a Deferred or a coroutine; once all of those have finished (or a
timeout ran out), the ``"during"`` triggers run, then the ``"after"`` ones.
Each trigger runs once, the next time its event fires, and is then gone.

``ReactorCore`` is the interface of what starts and stops: ``run``, ``stop``
and the triggers.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from torsion.defer import CancelledError, Deferred, awaitable_deferred
from torsion.internet._delayed import Clock, DelayedCall

__all__ = ["Phase", "ReactorCore", "SystemEvents", "TriggerId"]

_log = logging.getLogger("torsion.internet")

Phase = Literal["before", "during", "after"]

_PHASES: tuple[Phase, ...] = ("before", "during", "after")


@dataclass(frozen=True, slots=True)
class TriggerId:
    """Names one registered trigger, to remove it later.

    Attributes:
        event: The event it belongs to.
        phase: The phase it runs in.
        number: What tells it apart from the others.
    """

    event: str
    phase: Phase
    number: int


class ReactorCore(Protocol):
    """What runs, stops, and announces that it starts and stops.

    Application code that hooks into start-up and shutdown asks for this.
    """

    @property
    def running(self) -> bool:
        """Whether the reactor has started and is not shutting down."""
        ...

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Run until ``stop()`` is called."""
        ...

    def stop(self) -> None:
        """Fire the shutdown triggers, then stop running."""
        ...

    def call_when_running(self, f: Callable[..., object], /, *args: Any) -> TriggerId | None:
        """Call ``f(*args)`` once running (now, if it already is)."""
        ...

    def add_system_event_trigger(
        self, phase: Phase, event: str, f: Callable[..., object], /, *args: Any
    ) -> TriggerId:
        """Call ``f(*args)`` in ``phase`` of the next firing of ``event``."""
        ...

    def remove_system_event_trigger(self, trigger_id: TriggerId) -> None:
        """Remove a trigger that has not run yet."""
        ...

    def fire_system_event(self, event: str) -> Deferred[None]:
        """Fire ``event``, returning a Deferred that fires when all phases ran."""
        ...


class _Trigger:
    __slots__ = ("args", "f", "id")

    def __init__(
        self, trigger_id: TriggerId, f: Callable[..., object], args: tuple[Any, ...]
    ) -> None:
        self.id = trigger_id
        self.f = f
        self.args = args

    def describe(self) -> str:
        return getattr(self.f, "__qualname__", None) or repr(self.f)


class _Firing:
    """One firing of one event, from its ``before`` phase to its end."""

    __slots__ = (
        "collecting",
        "continued",
        "event",
        "expired",
        "held",
        "on_before_done",
        "timeout",
        "timer",
        "waiters",
    )

    def __init__(
        self, event: str, timeout: float | None, on_before_done: Callable[[], object] | None
    ) -> None:
        self.event = event
        self.timeout = timeout
        self.on_before_done = on_before_done
        self.held: dict[Deferred[Any], _Trigger] = {}
        self.waiters: list[Deferred[None]] = []
        self.timer: DelayedCall | None = None
        self.collecting = True
        self.continued = False
        self.expired = False


class SystemEvents:
    """The triggers of one reactor, and the firing of its events.

    Args:
        clock: Times the bound on held events.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._triggers: dict[str, dict[Phase, list[_Trigger]]] = {}
        self._firings: dict[str, _Firing] = {}
        self._numbers = itertools.count(1)

    def add(
        self, phase: Phase, event: str, f: Callable[..., object], args: tuple[Any, ...]
    ) -> TriggerId:
        """Register ``f(*args)`` for ``phase`` of the next firing of ``event``.

        Raises:
            ValueError: ``phase`` is not one of before, during, after.
        """
        if phase not in _PHASES:
            raise ValueError(f"phase must be one of {', '.join(_PHASES)}, not {phase!r}")
        trigger_id = TriggerId(event, phase, next(self._numbers))
        phases = self._triggers.setdefault(event, {"before": [], "during": [], "after": []})
        phases[phase].append(_Trigger(trigger_id, f, args))
        return trigger_id

    def remove(self, trigger_id: TriggerId) -> None:
        """Remove a trigger that has not run yet.

        Raises:
            ValueError: No such trigger is waiting (it ran, or was removed).
        """
        phases = self._triggers.get(trigger_id.event)
        if phases is not None:
            triggers = phases.get(trigger_id.phase, [])
            for i, trigger in enumerate(triggers):
                if trigger.id == trigger_id:
                    del triggers[i]
                    return
        raise ValueError(f"no such trigger waiting: {trigger_id!r}")

    def pending(self, event: str, phase: Phase) -> int:
        """Return how many triggers wait for ``phase`` of ``event``."""
        phases = self._triggers.get(event)
        return len(phases[phase]) if phases else 0

    def is_firing(self, event: str) -> bool:
        """Return whether ``event`` is firing now."""
        return event in self._firings

    def fire(
        self,
        event: str,
        *,
        timeout: float | None = None,
        on_before_done: Callable[[], object] | None = None,
    ) -> Deferred[None]:
        """Fire ``event``: its before, during and after triggers, in that order.

        Args:
            event: The event's name.
            timeout: The longest the ``before`` triggers may hold the event,
                in seconds; after that the ones not finished are logged and
                cancelled and the event goes on. None waits as long as it takes.
            on_before_done: Called between the ``before`` and ``during``
                phases (the reactor marks itself running there).

        Returns:
            A Deferred that fires with None once the ``after`` triggers ran.
            If the event is firing already, it fires when that firing ends.
        """
        done: Deferred[None] = Deferred()
        firing = self._firings.get(event)
        if firing is not None:
            firing.waiters.append(done)
            return done
        firing = _Firing(event, timeout, on_before_done)
        firing.waiters.append(done)
        self._firings[event] = firing
        triggers = self._take(event, "before")
        while triggers:
            for trigger in triggers:
                d = self._call(trigger, "before")
                if d is None:
                    continue
                if d.called:
                    # Already finished: only its error, if any, is left to report.
                    d.add_errback(self._reporter(trigger, "before"))
                    continue
                firing.held[d] = trigger
                d.add_callbacks(self._held_done(firing, d), self._held_failed(firing, d))
            # Before-triggers added by before-triggers run in this firing too.
            triggers = self._take(event, "before")
        firing.collecting = False
        if firing.held and not firing.continued:
            if timeout is not None:
                firing.timer = self._clock.call_later(
                    timeout, self._expire, firing, f"did not finish within {timeout:g}s"
                )
        elif not firing.continued:
            self._continue(firing)
        return done

    def expire(self, event: str, reason: str = "were given up on") -> None:
        """Stop waiting for the ``before`` triggers holding ``event``, if any."""
        firing = self._firings.get(event)
        if firing is not None and not firing.continued:
            self._expire(firing, reason)

    def abandon(self, event: str) -> None:
        """Forget a firing of ``event`` that can no longer finish.

        For when the loop stopped under it: its held triggers are cancelled,
        its remaining phases never run, and the event can fire afresh.
        """
        firing = self._firings.pop(event, None)
        if firing is None:
            return
        firing.continued = True
        firing.expired = True
        if firing.timer is not None:
            if firing.timer.active():
                firing.timer.cancel()
            firing.timer = None
        for d in list(firing.held):
            d.cancel()

    # -- the phases ---------------------------------------------------------------

    def _take(self, event: str, phase: Phase) -> list[_Trigger]:
        """Remove and return the triggers waiting for a phase of an event."""
        phases = self._triggers.get(event)
        if phases is None:
            return []
        taken, phases[phase] = phases[phase], []
        return taken

    def _call(self, trigger: _Trigger, phase: Phase) -> Deferred[Any] | None:
        try:
            result = trigger.f(*trigger.args)
        except Exception as exc:  # A failing trigger must not stop the rest.
            self._report(exc, trigger, phase)
            return None
        return awaitable_deferred(result)

    def _held_done(self, firing: _Firing, d: Deferred[Any]) -> Callable[[object], None]:
        def done(_: object) -> None:
            firing.held.pop(d, None)
            if not firing.held and not firing.continued and not firing.collecting:
                self._continue(firing)

        return done

    def _held_failed(self, firing: _Firing, d: Deferred[Any]) -> Callable[[BaseException], None]:
        def failed(exc: BaseException) -> None:
            trigger = firing.held.pop(d, None)
            if trigger is not None and not (firing.expired and isinstance(exc, CancelledError)):
                self._report(exc, trigger, "before")
            if not firing.held and not firing.continued and not firing.collecting:
                self._continue(firing)

        return failed

    def _expire(self, firing: _Firing, reason: str) -> None:
        if firing.timer is not None:
            if firing.timer.active():
                firing.timer.cancel()
            firing.timer = None
        if firing.held:
            names = ", ".join(trigger.describe() for trigger in firing.held.values())
            _log.warning(
                "%r before-triggers %s, going on without them: %s", firing.event, reason, names
            )
        firing.expired = True
        # Cancelling lets them clean up; their cancellation is not an error to report.
        for d in list(firing.held):
            d.cancel()
        if not firing.continued:
            self._continue(firing)

    def _continue(self, firing: _Firing) -> None:
        firing.continued = True
        if firing.timer is not None:
            if firing.timer.active():
                firing.timer.cancel()
            firing.timer = None
        if firing.on_before_done is not None:
            firing.on_before_done()
        phases: tuple[Phase, Phase] = ("during", "after")
        for phase in phases:
            triggers = self._take(firing.event, phase)
            while triggers:
                for trigger in triggers:
                    d = self._call(trigger, phase)
                    if d is not None:
                        d.add_errback(self._reporter(trigger, phase))
                # Triggers added to this phase while it ran run too.
                triggers = self._take(firing.event, phase)
        if self._firings.get(firing.event) is firing:
            del self._firings[firing.event]
        for waiter in firing.waiters:
            waiter.callback(None)

    def _reporter(self, trigger: _Trigger, phase: Phase) -> Callable[[BaseException], None]:
        def report(exc: BaseException) -> None:
            self._report(exc, trigger, phase)

        return report

    def _report(self, exc: BaseException, trigger: _Trigger, phase: Phase) -> None:
        _log.error(
            "%s trigger %s for %r failed: %r",
            phase,
            trigger.describe(),
            trigger.id.event,
            exc,
            exc_info=(type(exc), exc, exc.__traceback__),
        )

"""run/stop, system event triggers, held shutdown, restarts and signals."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from torsion.defer import CancelledError, Deferred
from torsion.errors import (
    ReactorAlreadyRunningError,
    ReactorError,
    ReactorNotRunningError,
)
from torsion.internet import Reactor, SystemEvents, defer_later
from torsion.testing import Clock

Run = Callable[..., None]


def test_run_fires_startup_and_stop_fires_shutdown(real_reactor: Reactor, run: Run) -> None:
    events: list[str] = []
    r = real_reactor
    r.add_system_event_trigger("before", "startup", events.append, "before startup")
    r.add_system_event_trigger("during", "startup", events.append, "during startup")
    r.add_system_event_trigger("after", "startup", events.append, "after startup")
    r.add_system_event_trigger("before", "shutdown", events.append, "before shutdown")
    r.add_system_event_trigger("during", "shutdown", events.append, "during shutdown")
    r.add_system_event_trigger("after", "shutdown", events.append, "after shutdown")

    def running() -> None:
        events.append(f"running={r.running}")
        r.stop()
        events.append(f"stopping, running={r.running}")

    r.call_when_running(running)
    assert not r.running
    run(r)
    assert events == [
        "before startup",
        "during startup",
        "running=True",
        "stopping, running=False",
        "after startup",
        "before shutdown",
        "during shutdown",
        "after shutdown",
    ]
    assert not r.running


def test_call_when_running_while_running_calls_now(real_reactor: Reactor, run: Run) -> None:
    seen: list[str] = []

    def running() -> None:
        assert real_reactor.call_when_running(seen.append, "now") is None
        seen.append("after")
        real_reactor.stop()

    real_reactor.call_when_running(running)
    run(real_reactor)
    assert seen == ["now", "after"]


def test_stop_when_not_running_raises(real_reactor: Reactor, run: Run) -> None:
    with pytest.raises(ReactorNotRunningError):
        real_reactor.stop()
    errors: list[BaseException] = []

    def twice() -> None:
        real_reactor.stop()
        try:
            real_reactor.stop()
        except ReactorNotRunningError as exc:
            errors.append(exc)

    real_reactor.call_when_running(twice)
    run(real_reactor)
    assert len(errors) == 1
    with pytest.raises(ReactorNotRunningError):
        real_reactor.stop()


def test_run_while_running_raises(real_reactor: Reactor, run: Run) -> None:
    errors: list[BaseException] = []

    def again() -> None:
        try:
            real_reactor.run()
        except ReactorAlreadyRunningError as exc:
            errors.append(exc)
        with pytest.raises(ReactorAlreadyRunningError):
            real_reactor.close()
        real_reactor.stop()

    real_reactor.call_when_running(again)
    run(real_reactor)
    assert len(errors) == 1


def test_closed_reactor_cannot_run() -> None:
    reactor = Reactor(uvloop=False)
    reactor.close()
    with pytest.raises(ReactorError):
        reactor.run()


def test_same_reactor_runs_again(real_reactor: Reactor, run: Run) -> None:
    runs: list[int] = []
    for i in range(3):
        real_reactor.add_system_event_trigger("after", "shutdown", runs.append, i)
        real_reactor.call_when_running(real_reactor.stop)
        run(real_reactor)
    assert runs == [0, 1, 2]


def test_reactors_created_again(loop_name: str, run: Run) -> None:
    for _ in range(3):
        reactor = Reactor(uvloop=loop_name == "uvloop")
        reactor.call_when_running(reactor.stop)
        run(reactor)
        reactor.close()


def test_calls_scheduled_before_run_survive_a_stop(real_reactor: Reactor, run: Run) -> None:
    seen: list[int] = []
    real_reactor.call_later(0, real_reactor.stop)
    run(real_reactor)
    later = real_reactor.call_later(0, seen.append, 1)
    real_reactor.call_when_running(real_reactor.stop)
    run(real_reactor)
    # The second run's startup and the call are in the same turn of the loop.
    assert seen == [1] or later.active()
    if later.active():
        later.cancel()


def test_before_shutdown_deferred_holds_shutdown(real_reactor: Reactor, run: Run) -> None:
    events: list[str] = []
    r = real_reactor

    def before() -> Deferred[None]:
        events.append("before")
        d = defer_later(r, 0.01)
        d.add_callback(lambda _: events.append("held done"))
        return d

    async def before_coroutine() -> None:
        await defer_later(r, 0.02)
        events.append("coroutine done")

    r.add_system_event_trigger("before", "shutdown", before)
    r.add_system_event_trigger("before", "shutdown", before_coroutine)
    r.add_system_event_trigger("during", "shutdown", events.append, "during")
    r.call_when_running(r.stop)
    run(r)
    assert events == ["before", "held done", "coroutine done", "during"]
    assert r.get_delayed_calls() == []


def test_held_shutdown_is_bounded(
    real_reactor: Reactor, caplog: pytest.LogCaptureFixture, run: Run
) -> None:
    r = real_reactor
    r.shutdown_timeout = 0.05
    never: Deferred[None] = Deferred()
    outcome: list[BaseException] = []
    never.add_errback(outcome.append)
    events: list[str] = []

    def stuck_trigger() -> Deferred[None]:
        return never

    r.add_system_event_trigger("before", "shutdown", stuck_trigger)
    r.add_system_event_trigger("after", "shutdown", events.append, "after")
    r.call_when_running(r.stop)
    with caplog.at_level(logging.WARNING, logger="torsion.internet"):
        run(r)
    assert events == ["after"]
    assert "stuck_trigger" in caplog.text
    assert "0.05s" in caplog.text
    # Given up on, it was cancelled so that it can clean up.
    assert len(outcome) == 1
    assert isinstance(outcome[0], CancelledError)
    assert r.get_delayed_calls() == []


def test_failing_triggers_are_logged_and_the_rest_run(
    real_reactor: Reactor, caplog: pytest.LogCaptureFixture, run: Run
) -> None:
    events: list[str] = []

    def broken() -> None:
        raise RuntimeError("trigger broke")

    async def broken_later() -> None:
        await defer_later(real_reactor, 0)
        raise RuntimeError("held trigger broke")

    r = real_reactor
    r.add_system_event_trigger("before", "shutdown", broken)
    r.add_system_event_trigger("before", "shutdown", broken_later)
    r.add_system_event_trigger("during", "shutdown", broken)
    r.add_system_event_trigger("after", "shutdown", events.append, "after")
    r.call_when_running(r.stop)
    with caplog.at_level(logging.ERROR, logger="torsion.internet"):
        run(r)
    assert events == ["after"]
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 3
    assert all("broke" in message for message in failures)


def test_remove_system_event_trigger(real_reactor: Reactor, run: Run) -> None:
    events: list[str] = []
    trigger = real_reactor.add_system_event_trigger("during", "shutdown", events.append, "x")
    real_reactor.remove_system_event_trigger(trigger)
    with pytest.raises(ValueError, match="no such trigger"):
        real_reactor.remove_system_event_trigger(trigger)
    real_reactor.call_when_running(real_reactor.stop)
    run(real_reactor)
    assert events == []


def test_bad_phase_raises(real_reactor: Reactor) -> None:
    with pytest.raises(ValueError, match="phase"):
        real_reactor.add_system_event_trigger("whenever", "shutdown", print)  # type: ignore[arg-type]


# -- SystemEvents on a fake clock ------------------------------------------------------


def test_custom_event_fires_its_phases_once() -> None:
    events = SystemEvents(Clock())
    seen: list[str] = []
    events.add("after", "reload", seen.append, ("after",))
    events.add("before", "reload", seen.append, ("before",))
    events.add("during", "reload", seen.append, ("during",))
    done = events.fire("reload")
    assert done.called
    assert seen == ["before", "during", "after"]
    events.fire("reload")
    assert seen == ["before", "during", "after"]


def test_firing_again_while_firing_waits_for_the_same_firing() -> None:
    clock = Clock()
    events = SystemEvents(clock)
    seen: list[str] = []
    hold: Deferred[None] = Deferred()
    events.add("before", "e", lambda: hold, ())
    events.add("during", "e", seen.append, ("during",))
    first = events.fire("e")
    second = events.fire("e")
    assert events.is_firing("e")
    assert not first.called
    assert not second.called
    hold.callback(None)
    assert first.called
    assert second.called
    assert seen == ["during"]


def test_triggers_added_while_firing_run_in_that_firing() -> None:
    events = SystemEvents(Clock())
    seen: list[str] = []

    def add_more() -> None:
        seen.append("first")
        events.add("before", "e", seen.append, ("added before",))
        events.add("after", "e", seen.append, ("added after",))

    events.add("before", "e", add_more, ())
    events.fire("e")
    assert seen == ["first", "added before", "added after"]


def test_timeout_on_a_fake_clock() -> None:
    clock = Clock()
    events = SystemEvents(clock)
    hold: Deferred[None] = Deferred()
    hold.add_errback(lambda exc: None)
    events.add("before", "e", lambda: hold, ())
    done = events.fire("e", timeout=5)
    clock.advance(4.9)
    assert not done.called
    clock.advance(0.1)
    assert done.called
    assert clock.get_delayed_calls() == []


def test_timer_is_cancelled_when_held_triggers_finish() -> None:
    clock = Clock()
    events = SystemEvents(clock)
    hold: Deferred[None] = Deferred()
    events.add("before", "e", lambda: hold, ())
    done = events.fire("e", timeout=5)
    assert len(clock.get_delayed_calls()) == 1
    hold.callback(None)
    assert done.called
    assert clock.get_delayed_calls() == []


def test_held_trigger_that_fired_synchronously_does_not_skip_others() -> None:
    events = SystemEvents(Clock())
    seen: list[str] = []
    first: Deferred[None] = Deferred()

    def second() -> None:
        first.callback(None)  # releases the only held trigger mid-phase
        seen.append("second")

    events.add("before", "e", lambda: first, ())
    events.add("before", "e", second, ())
    events.add("during", "e", seen.append, ("during",))
    events.fire("e")
    assert seen == ["second", "during"]


# -- signals ------------------------------------------------------------------------


@pytest.fixture
def sigterm_guard() -> Iterator[list[int]]:
    """Handle SIGTERM in Python during the test, so it can never kill pytest."""
    received: list[int] = []

    def guard(signum: int, frame: Any) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGTERM, guard)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_stops_gracefully(
    real_reactor: Reactor, sigterm_guard: list[int], run: Run
) -> None:
    events: list[str] = []
    guard = signal.getsignal(signal.SIGTERM)
    real_reactor.add_system_event_trigger("before", "shutdown", events.append, "before")
    real_reactor.add_system_event_trigger("after", "shutdown", events.append, "after")
    real_reactor.call_when_running(os.kill, os.getpid(), signal.SIGTERM)
    run(real_reactor, install_signal_handlers=True)
    assert events == ["before", "after"]
    assert real_reactor._signal == signal.SIGTERM
    # The reactor's handler went away; the one from before is back.
    assert sigterm_guard == []
    assert signal.getsignal(signal.SIGTERM) is guard


def test_sigint_stops_gracefully(real_reactor: Reactor, run: Run) -> None:
    events: list[str] = []
    real_reactor.add_system_event_trigger("after", "shutdown", events.append, "after")
    real_reactor.call_when_running(os.kill, os.getpid(), signal.SIGINT)
    run(real_reactor, install_signal_handlers=True)
    assert events == ["after"]
    assert real_reactor._signal == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_second_signal_stops_without_waiting(
    real_reactor: Reactor, sigterm_guard: list[int], caplog: pytest.LogCaptureFixture, run: Run
) -> None:
    never: Deferred[None] = Deferred()
    cancelled: list[BaseException] = []
    never.add_errback(cancelled.append)

    def stuck() -> Deferred[None]:
        # Asked to stop while stopping: the user does not want to wait.
        real_reactor.call_later(0, os.kill, os.getpid(), signal.SIGTERM)
        return never

    real_reactor.add_system_event_trigger("before", "shutdown", stuck)
    real_reactor.call_when_running(os.kill, os.getpid(), signal.SIGTERM)
    with caplog.at_level(logging.WARNING, logger="torsion.internet"):
        run(real_reactor, install_signal_handlers=True)
    assert len(cancelled) == 1
    assert "again" in caplog.text
    assert sigterm_guard == []


def test_first_signal_while_stopping_for_another_reason_waits(
    real_reactor: Reactor, sigterm_guard: list[int], caplog: pytest.LogCaptureFixture, run: Run
) -> None:
    slow: Deferred[None] = Deferred()
    outcome: list[object] = []
    slow.add_both(outcome.append)

    def stopping() -> Deferred[None]:
        # Stopped by the program; a supervisor's SIGTERM then arrives.
        real_reactor.call_later(0, os.kill, os.getpid(), signal.SIGTERM)
        real_reactor.call_later(0.01, slow.callback, None)
        return slow

    real_reactor.add_system_event_trigger("before", "shutdown", stopping)
    real_reactor.call_when_running(real_reactor.stop)
    with caplog.at_level(logging.INFO, logger="torsion.internet"):
        run(real_reactor, install_signal_handlers=True)
    assert outcome == [None]  # the shutdown was waited for, not given up on
    assert "Received SIGTERM while shutting down" in caplog.text
    assert "again" not in caplog.text
    assert real_reactor._signal == signal.SIGTERM
    assert sigterm_guard == []


def test_signal_handlers_can_be_left_alone(
    real_reactor: Reactor, sigterm_guard: list[int], run: Run
) -> None:
    real_reactor.call_when_running(os.kill, os.getpid(), signal.SIGTERM)
    real_reactor.call_later(0.01, real_reactor.stop)
    run(real_reactor)
    assert sigterm_guard == [signal.SIGTERM]
    assert real_reactor._signal is None


def test_stop_during_held_startup_then_run_again(real_reactor: Reactor, run: Run) -> None:
    r = real_reactor
    never: Deferred[None] = Deferred()
    cancelled: list[BaseException] = []
    never.add_errback(cancelled.append)
    r.add_system_event_trigger("before", "startup", lambda: never)
    r.call_later(0, r.stop)
    run(r)
    # The loop stopped under the held startup: it was given up, not left hanging.
    assert len(cancelled) == 1
    assert not r._events.is_firing("startup")
    events: list[str] = []
    r.add_system_event_trigger("during", "startup", events.append, "second startup")
    r.call_when_running(r.stop)
    run(r)
    assert events == ["second startup"]

"""SessionTimer: a session's inactivity timeout, not moved on every command."""

from __future__ import annotations

import gc
import weakref

from torsion.mail._session_timer import SessionTimer
from torsion.testing import Clock


def test_expires_only_after_a_whole_period_left_alone() -> None:
    clock = Clock()
    expired: list[float] = []
    timer = SessionTimer(clock, lambda: 10.0, lambda: expired.append(clock.seconds()))
    timer.touch()
    clock.advance(6)
    timer.touch()  # the timer is not moved: one call pending all along
    assert len(clock.get_delayed_calls()) == 1
    clock.advance(4)  # the first period ends: 6 s are left of the second
    assert expired == []
    clock.advance(5.9)
    assert expired == []
    clock.advance(0.1)
    assert expired == [16.0]
    assert clock.get_delayed_calls() == []


def test_the_timeout_may_change_or_be_none() -> None:
    clock = Clock()
    expired: list[float] = []
    timeout: list[float | None] = [None]
    timer = SessionTimer(clock, lambda: timeout[0], lambda: expired.append(clock.seconds()))
    timer.touch()
    assert clock.get_delayed_calls() == []  # no timeout applies (a reply is owed)
    timeout[0] = 5.0
    timer.touch()
    timeout[0] = 2.0  # a shorter one applies from the next check
    clock.advance(5)
    assert expired == [5.0]


def test_stopped_it_never_fires_and_leaves_no_timer() -> None:
    clock = Clock()
    expired: list[float] = []
    timer = SessionTimer(clock, lambda: 1.0, lambda: expired.append(clock.seconds()))
    timer.touch()
    timer.stop()
    timer.touch()
    clock.advance(10)
    assert expired == []
    assert clock.get_delayed_calls() == []


def test_a_pending_timer_outlives_a_spell_without_timeout() -> None:
    clock = Clock()
    expired: list[float] = []
    timeout: list[float | None] = [5.0]
    timer = SessionTimer(clock, lambda: timeout[0], lambda: expired.append(clock.seconds()))
    timer.touch()
    timeout[0] = None  # the server is busy: the client is not timed
    timer.touch()
    clock.advance(20)  # the timer fired and found no timeout: nothing expires
    assert expired == []
    assert clock.get_delayed_calls() == []
    timeout[0] = 5.0  # answered: the client's time counts from here
    timer.touch()
    clock.advance(4.9)
    assert expired == []
    clock.advance(0.1)
    assert expired == [25.0]


def test_a_stopped_timer_lets_its_session_go_without_the_cycle_collector() -> None:
    class Session:
        def __init__(self, clock: Clock) -> None:
            self.timer = SessionTimer(clock, self.timeout, self.expired)

        def timeout(self) -> float:
            return 1.0

        def expired(self) -> None:
            raise AssertionError("stopped")

    clock = Clock()
    session = Session(clock)
    session.timer.touch()
    session.timer.stop()
    gone = weakref.ref(session)
    gc.disable()
    try:
        del session
        assert gone() is None  # freed by its reference count: no cycle left
    finally:
        gc.enable()
    assert clock.get_delayed_calls() == []

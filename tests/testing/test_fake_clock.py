"""torsion.testing.Clock: fake time for tests."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.errors import AlreadyCalledDelayedError, AlreadyCancelledError
from torsion.internet._delayed import Clock as ClockInterface
from torsion.internet._delayed import DelayedCall
from torsion.testing import Clock


def test_time_starts_where_asked_and_moves_only_on_advance():
    assert Clock().seconds() == 0.0
    clock = Clock(100.5)
    assert clock.seconds() == 100.5
    clock.advance(2)
    assert clock.seconds() == 102.5
    clock.advance(0)
    assert clock.seconds() == 102.5


def test_satisfies_the_clock_interface():
    clock: ClockInterface = Clock()
    call = clock.call_later(1, print)
    assert isinstance(call, DelayedCall)
    call.cancel()


def test_call_runs_when_due_not_before():
    clock = Clock()
    fired = []
    call = clock.call_later(5, fired.append, "x")
    assert call.get_time() == 5
    clock.advance(4.999)
    assert fired == []
    assert call.active()
    clock.advance(0.001)
    assert fired == ["x"]
    assert call.called
    assert not call.active()


def test_call_later_zero_runs_on_next_advance():
    clock = Clock()
    fired = []
    clock.call_later(0, fired.append, 1)
    assert fired == []
    clock.advance(0)
    assert fired == [1]


def test_positional_arguments_are_passed():
    clock = Clock()
    seen = []
    clock.call_later(1, lambda *args: seen.append(args), 1, "two", None)
    clock.advance(1)
    assert seen == [(1, "two", None)]


def test_calls_run_in_time_order():
    clock = Clock()
    order = []
    clock.call_later(3, order.append, "c")
    clock.call_later(1, order.append, "a")
    clock.call_later(2, order.append, "b")
    clock.advance(10)
    assert order == ["a", "b", "c"]


def test_equal_times_run_in_scheduling_order():
    clock = Clock()
    order = []
    for name in "abcdefgh":
        clock.call_later(1, order.append, name)
    clock.advance(1)
    assert order == list("abcdefgh")


def test_each_call_sees_its_own_time_during_a_big_advance():
    # Time is the new time while calls run (as Twisted's Clock does).
    clock = Clock()
    seen = []
    clock.call_later(1, lambda: seen.append(clock.seconds()))
    clock.call_later(2, lambda: seen.append(clock.seconds()))
    clock.advance(5)
    assert seen == [5, 5]


def test_calls_scheduled_during_advance_for_now_or_earlier_run_in_the_same_advance():
    clock = Clock()
    order = []

    def first():
        order.append("first")
        clock.call_later(0, order.append, "scheduled now")
        clock.call_later(1, order.append, "due before the new time")
        clock.call_later(10, order.append, "later")

    clock.call_later(1, first)
    clock.call_later(3, order.append, "original at 3")
    clock.advance(3)
    # At time 3: "first" ran, then its two calls (due at 3 and 4 -> only the first
    # is due), then the original call due at 3 which was scheduled before them.
    assert order == ["first", "original at 3", "scheduled now"]
    clock.advance(1)
    assert order[-1] == "due before the new time"
    clock.advance(10)
    assert order[-1] == "later"


def test_reentrant_chain_of_zero_delays_runs_to_the_end():
    clock = Clock()
    count = []

    def again():
        count.append(1)
        if len(count) < 100:
            clock.call_later(0, again)

    clock.call_later(0, again)
    clock.advance(0)
    assert len(count) == 100


def test_cancel_prevents_the_call_and_removes_it():
    clock = Clock()
    fired = []
    call = clock.call_later(1, fired.append, 1)
    other = clock.call_later(2, fired.append, 2)
    call.cancel()
    assert call.cancelled
    assert not call.active()
    assert clock.get_delayed_calls() == [other]
    clock.advance(5)
    assert fired == [2]


def test_cancel_twice_or_after_running_raises():
    clock = Clock()
    call = clock.call_later(1, lambda: None)
    call.cancel()
    with pytest.raises(AlreadyCancelledError):
        call.cancel()
    with pytest.raises(AlreadyCancelledError):
        call.reset(1)
    ran = clock.call_later(1, lambda: None)
    clock.advance(1)
    with pytest.raises(AlreadyCalledDelayedError):
        ran.cancel()
    with pytest.raises(AlreadyCalledDelayedError):
        ran.delay(1)


def test_a_call_can_cancel_a_later_one_due_in_the_same_advance():
    clock = Clock()
    fired = []
    victim = clock.call_later(2, fired.append, "victim")
    clock.call_later(1, victim.cancel)
    clock.advance(5)
    assert fired == []


def test_reset_moves_the_call_relative_to_now():
    clock = Clock()
    fired = []
    call = clock.call_later(5, fired.append, 1)
    clock.advance(2)
    call.reset(10)
    assert call.get_time() == 12
    clock.advance(9)
    assert fired == []
    clock.advance(1)
    assert fired == [1]


def test_reset_earlier_runs_earlier():
    clock = Clock()
    order = []
    call = clock.call_later(10, order.append, "moved")
    clock.call_later(5, order.append, "fixed")
    call.reset(1)
    clock.advance(10)
    assert order == ["moved", "fixed"]


def test_delay_moves_relative_to_the_due_time():
    clock = Clock()
    fired = []
    call = clock.call_later(5, fired.append, 1)
    call.delay(3)
    assert call.get_time() == 8
    clock.advance(7)
    assert fired == []
    call.delay(-2)
    assert call.get_time() == 6
    clock.advance(0)
    assert fired == [1]


def test_a_moved_call_counts_as_scheduled_anew_among_equal_times():
    clock = Clock()
    order = []
    moved = clock.call_later(1, order.append, "moved")
    clock.call_later(1, order.append, "stayed")
    moved.reset(1)
    clock.advance(1)
    assert order == ["stayed", "moved"]


def test_pump_advances_by_each_amount():
    clock = Clock()
    seen = []
    for delay in (1, 2, 3, 4):
        clock.call_later(delay, lambda: seen.append(clock.seconds()))
    clock.pump([1.5, 1, 10])
    assert clock.seconds() == 12.5
    assert seen == [1.5, 2.5, 12.5, 12.5]


def test_get_delayed_calls_is_sorted_and_pending_only():
    clock = Clock()
    b = clock.call_later(2, print)
    a = clock.call_later(1, print)
    c = clock.call_later(2, print)
    ran = clock.call_later(0, print)
    assert clock.get_delayed_calls() == [ran, a, b, c]
    clock.advance(0)
    assert clock.get_delayed_calls() == [a, b, c]
    b.cancel()
    assert clock.get_delayed_calls() == [a, c]


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan])
def test_negative_or_nan_delays_and_advances_are_rejected(bad):
    clock = Clock()
    with pytest.raises(ValueError, match="non-negative"):
        clock.call_later(bad, print)
    with pytest.raises(ValueError, match="non-negative"):
        clock.advance(bad)
    assert clock.get_delayed_calls() == []
    assert clock.seconds() == 0


def test_an_exception_propagates_and_the_rest_stays_pending():
    clock = Clock()
    fired = []

    def boom():
        raise RuntimeError("boom")

    clock.call_later(1, fired.append, "before")
    clock.call_later(2, boom)
    clock.call_later(3, fired.append, "after")
    with pytest.raises(RuntimeError, match="boom"):
        clock.advance(5)
    assert fired == ["before"]
    assert clock.seconds() == 5
    assert len(clock.get_delayed_calls()) == 1
    clock.advance(0)
    assert fired == ["before", "after"]


def test_many_cancellations_keep_the_schedule_right():
    clock = Clock()
    fired = []
    calls = [clock.call_later(i % 7, fired.append, i) for i in range(500)]
    for call in calls[::2]:
        call.cancel()
    assert len(clock.get_delayed_calls()) == 250
    clock.advance(100)
    assert fired == sorted(range(1, 500, 2), key=lambda i: (i % 7, i))
    assert clock.get_delayed_calls() == []


operations = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), st.integers(0, 20)),
        st.tuples(st.just("cancel"), st.integers(0, 1000)),
        st.tuples(st.just("reset"), st.integers(0, 1000), st.integers(0, 20)),
        st.tuples(st.just("advance"), st.integers(0, 10)),
    ),
    max_size=60,
)


@given(operations)
def test_runs_exactly_what_a_simple_model_runs(ops):
    """Compare with a model: a list sorted by (time, scheduling order)."""
    clock = Clock()
    model: list[list] = []  # [time, order, name]
    order = 0
    handles = []
    fired = []
    expected = []
    now = 0
    for op in ops:
        if op[0] == "schedule":
            name = len(handles)
            handles.append((clock.call_later(op[1], fired.append, name), name))
            model.append([now + op[1], order, name])
            order += 1
        elif op[0] in ("cancel", "reset") and handles:
            call, name = handles[op[1] % len(handles)]
            entry = next((e for e in model if e[2] == name), None)
            if entry is None:
                continue
            if op[0] == "cancel":
                call.cancel()
                model.remove(entry)
            else:
                call.reset(op[2])
                entry[0], entry[1] = now + op[2], order
                order += 1
        elif op[0] == "advance":
            clock.advance(op[1])
            now += op[1]
            due = sorted(e for e in model if e[0] <= now)
            expected += [e[2] for e in due]
            model = [e for e in model if e[0] > now]
    assert fired == expected
    assert clock.get_delayed_calls() == [handles[e[2]][0] for e in sorted(model)]

"""LoopingCall and defer_later on a fake clock: deterministic, no loop at all."""

from __future__ import annotations

from typing import Any

import pytest

from torsion.defer import CancelledError, Deferred, succeed
from torsion.errors import LoopingCallError
from torsion.internet import LoopingCall, defer_later
from torsion.testing import Clock


def outcome(d: Deferred[Any]) -> list[Any]:
    """Collect what a Deferred fires with (the exception itself on failure)."""
    seen: list[Any] = []
    d.add_callbacks(seen.append, seen.append)
    return seen


# -- LoopingCall ------------------------------------------------------------------


def test_calls_now_then_every_interval() -> None:
    clock = Clock()
    times: list[float] = []
    call = LoopingCall(lambda: times.append(clock.seconds()), clock=clock)
    d = call.start(1.0)
    assert times == [0.0]
    clock.pump([1.0, 1.0, 1.0])
    assert times == [0.0, 1.0, 2.0, 3.0]
    assert "every 1.0s" in repr(call)
    call.stop()
    assert outcome(d) == [call]
    assert not call.running
    assert clock.get_delayed_calls() == []


def test_now_false_waits_one_interval() -> None:
    clock = Clock()
    calls: list[float] = []
    call = LoopingCall(lambda: calls.append(clock.seconds()), clock=clock)
    call.start(2.0, now=False)
    assert calls == []
    clock.advance(1.9)
    assert calls == []
    clock.advance(0.1)
    assert calls == [2.0]
    call.stop()


def test_arguments_are_passed() -> None:
    clock = Clock()
    seen: list[tuple[int, str]] = []
    call = LoopingCall(lambda a, b: seen.append((a, b)), 1, "x", clock=clock)
    call.start(1.0)
    assert seen == [(1, "x")]
    call.stop()


def test_with_count_reports_skipped_intervals() -> None:
    clock = Clock()
    counts: list[int] = []
    call = LoopingCall.with_count(counts.append, clock=clock)
    call.start(1.0)
    assert counts == [1]
    clock.advance(3.5)  # the calls due at 1, 2 and 3 collapse into one
    assert counts == [1, 3]
    assert call.last_count == 3
    clock.advance(0.5)  # back on the grid: due at 4
    assert counts == [1, 3, 1]
    # The counts add up to the intervals elapsed, late or not.
    assert sum(counts) == 5
    call.stop()


def test_with_count_and_arguments() -> None:
    clock = Clock()
    seen: list[tuple[int, str]] = []
    call = LoopingCall.with_count(lambda n, tag: seen.append((n, tag)), "t", clock=clock)
    call.start(1.0, now=False)
    clock.advance(2.0)
    assert seen == [(2, "t")]
    call.stop()


def test_plain_call_is_told_through_last_count() -> None:
    clock = Clock()
    call = LoopingCall(lambda: None, clock=clock)
    call.start(1.0)
    assert call.last_count == 1
    clock.advance(5.0)
    assert call.last_count == 5
    call.stop()


def test_float_intervals_do_not_drift_or_miscount() -> None:
    clock = Clock()
    counts: list[int] = []
    call = LoopingCall.with_count(counts.append, clock=clock)
    call.start(0.1)
    clock.pump([0.1] * 100)
    assert counts == [1] * 101
    call.stop()


def test_large_clock_values_count_right() -> None:
    # A real loop's monotonic time can be large; float resolution shrinks.
    clock = Clock(start=987654.321)
    counts: list[int] = []
    call = LoopingCall.with_count(counts.append, clock=clock)
    call.start(0.01)
    clock.pump([0.01] * 300)
    assert counts == [1] * 301
    clock.advance(0.05)
    assert counts[-1] == 5
    call.stop()


def test_failure_stops_and_errbacks() -> None:
    clock = Clock()
    ticks: list[int] = []

    def f() -> None:
        ticks.append(1)
        if len(ticks) == 2:
            raise ValueError("boom")

    call = LoopingCall(f, clock=clock)
    seen = outcome(call.start(1.0))
    clock.advance(1.0)
    assert len(seen) == 1
    assert isinstance(seen[0], ValueError)
    assert not call.running
    assert clock.get_delayed_calls() == []
    clock.advance(5.0)
    assert len(ticks) == 2


def test_deferred_result_delays_next_call() -> None:
    clock = Clock()
    pending: list[Deferred[None]] = []
    times: list[float] = []

    def f() -> Deferred[None]:
        times.append(clock.seconds())
        d: Deferred[None] = Deferred()
        pending.append(d)
        return d

    call = LoopingCall(f, clock=clock)
    call.start(1.0)
    assert times == [0.0]
    clock.advance(2.5)  # still waiting for the first Deferred: no call
    assert times == [0.0]
    assert clock.get_delayed_calls() == []
    pending[0].callback(None)  # finished at 2.5: next call on the grid, at 3
    clock.advance(0.5)
    assert times == [0.0, 3.0]
    assert call.last_count == 3
    pending[1].callback(None)
    call.stop()


def test_failing_deferred_errbacks() -> None:
    clock = Clock()
    d: Deferred[None] = Deferred()
    call = LoopingCall(lambda: d, clock=clock)
    seen = outcome(call.start(1.0))
    d.errback(KeyError("k"))
    assert len(seen) == 1
    assert isinstance(seen[0], KeyError)
    assert not call.running


def test_coroutine_function_is_awaited() -> None:
    clock = Clock()
    done: list[float] = []

    async def f() -> None:
        await defer_later(clock, 0.5)
        done.append(clock.seconds())

    call = LoopingCall(f, clock=clock)
    call.start(1.0)
    clock.advance(0.5)
    assert done == [0.5]
    clock.advance(0.5)  # next call at 1.0, done at 1.5
    clock.advance(0.5)
    assert done == [0.5, 1.5]
    call.stop()
    clock.advance(0.5)  # let the one started at 2.0 finish
    assert not call.running


def test_stop_while_waiting_fires_after_the_deferred() -> None:
    clock = Clock()
    inner: Deferred[None] = Deferred()
    call = LoopingCall(lambda: inner, clock=clock)
    seen = outcome(call.start(1.0))
    call.stop()
    assert seen == []
    inner.callback(None)
    assert seen == [call]
    assert clock.get_delayed_calls() == []


def test_cancel_start_deferred_stops() -> None:
    clock = Clock()
    calls: list[int] = []
    call = LoopingCall(lambda: calls.append(1), clock=clock)
    d = call.start(1.0)
    seen = outcome(d)
    d.cancel()
    assert len(seen) == 1
    assert isinstance(seen[0], CancelledError)
    assert not call.running
    assert clock.get_delayed_calls() == []


def test_cancel_while_waiting_cancels_the_inner_deferred() -> None:
    clock = Clock()
    cancelled: list[Deferred[None]] = []
    inner: Deferred[None] = Deferred(cancelled.append)
    call = LoopingCall(lambda: inner, clock=clock)
    d = call.start(1.0)
    seen = outcome(d)
    d.cancel()
    assert isinstance(seen[0], CancelledError)
    assert cancelled == [inner]
    assert not call.running


def test_zero_interval_calls_again_at_once() -> None:
    clock = Clock()
    calls: list[int] = []

    def f() -> None:
        calls.append(1)
        if len(calls) == 5:
            call.stop()

    call = LoopingCall.with_count(lambda n: f(), clock=clock)
    d = call.start(0)
    clock.advance(0)
    assert calls == [1] * 5
    assert outcome(d) == [call]
    assert call.last_count == 1


def test_stop_from_inside_first_call() -> None:
    clock = Clock()

    def f() -> None:
        call.stop()

    call = LoopingCall(f, clock=clock)
    assert outcome(call.start(1.0)) == [call]
    assert clock.get_delayed_calls() == []


def test_reset_restarts_the_intervals() -> None:
    clock = Clock()
    times: list[float] = []
    call = LoopingCall(lambda: times.append(clock.seconds()), clock=clock)
    call.start(1.0)
    clock.advance(0.7)
    call.reset()
    clock.advance(0.7)
    assert times == [0.0]
    clock.advance(0.3)
    assert times == [0.0, 1.7]
    call.stop()


def test_restart_after_stop() -> None:
    clock = Clock()
    calls: list[float] = []
    call = LoopingCall(lambda: calls.append(clock.seconds()), clock=clock)
    call.start(1.0)
    call.stop()
    clock.advance(10)
    call.start(2.0)
    clock.advance(2.0)
    assert calls == [0.0, 10.0, 12.0]
    call.stop()


def test_misuse_raises() -> None:
    clock = Clock()
    call = LoopingCall(lambda: None, clock=clock)
    with pytest.raises(LoopingCallError):
        call.stop()
    with pytest.raises(LoopingCallError):
        call.reset()
    with pytest.raises(ValueError, match="negative"):
        call.start(-1)
    call.start(1.0)
    with pytest.raises(LoopingCallError):
        call.start(1.0)
    call.stop()
    assert "LoopingCall" in repr(call)


# -- defer_later -------------------------------------------------------------------


def test_defer_later_fires_after_delay() -> None:
    clock = Clock()
    d = defer_later(clock, 2.0)
    seen = outcome(d)
    clock.advance(1.9)
    assert seen == []
    clock.advance(0.1)
    assert seen == [None]


def test_defer_later_calls_function() -> None:
    clock = Clock()
    d = defer_later(clock, 1.0, lambda a, b: a + b, 2, 3)
    seen = outcome(d)
    clock.advance(1.0)
    assert seen == [5]


def test_defer_later_function_raising() -> None:
    clock = Clock()

    def boom() -> None:
        raise OSError("no")

    seen = outcome(defer_later(clock, 1.0, boom))
    clock.advance(1.0)
    assert isinstance(seen[0], OSError)


def test_defer_later_function_returning_deferred_or_coroutine() -> None:
    clock = Clock()
    seen = outcome(defer_later(clock, 1.0, lambda: succeed("d")))

    async def later() -> str:
        await defer_later(clock, 1.0)
        return "coro"

    seen_coro = outcome(defer_later(clock, 1.0, later))
    clock.advance(1.0)
    assert seen == ["d"]
    assert seen_coro == []
    clock.advance(1.0)
    assert seen_coro == ["coro"]


def test_defer_later_cancel() -> None:
    clock = Clock()
    called: list[int] = []
    d = defer_later(clock, 1.0, called.append, 1)
    seen = outcome(d)
    d.cancel()
    assert isinstance(seen[0], CancelledError)
    assert clock.get_delayed_calls() == []
    clock.advance(2.0)
    assert called == []

"""Tests for gather, settle, race and timeout."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from _outcome import Outcome
from hypothesis import given
from hypothesis import strategies as st

from torsion.defer import (
    BaseFailureGroup,
    CancelledError,
    Deferred,
    Failed,
    FailureGroup,
    Succeeded,
    ensure_deferred,
    fail,
    gather,
    race,
    settle,
    succeed,
    timeout,
)
from torsion.errors import TorsionError
from torsion.testing import Clock

# -- helpers ------------------------------------------------------------------


class Work:
    """A pending Deferred whose canceller is recorded (and may fire it)."""

    def __init__(self, on_cancel: Any = None) -> None:
        self.cancelled = 0
        self.on_cancel = on_cancel
        self.d: Deferred[Any] = Deferred(self._cancel)

    def _cancel(self, d: Deferred[Any]) -> None:
        self.cancelled += 1
        if self.on_cancel is not None:
            self.on_cancel(d)


async def awaiting(d: Deferred[Any], then: Any = None) -> Any:
    value = await d
    return value if then is None else then(value)


# -- gather -------------------------------------------------------------------


def test_gather_of_nothing_fires_at_once() -> None:
    out = Outcome(gather([]))
    assert out.called
    assert out.value == []


def test_gather_results_are_in_input_order() -> None:
    ds: list[Deferred[int]] = [Deferred() for _ in range(3)]
    out = Outcome(gather(ds))
    ds[2].callback(2)
    ds[0].callback(0)
    assert not out.called
    ds[1].callback(1)
    assert out.value == [0, 1, 2]


def test_gather_takes_the_inputs_results() -> None:
    a: Deferred[str] = Deferred()
    out = Outcome(gather([a, succeed("b")]))
    a.callback("a")
    assert out.value == ["a", "b"]
    seen: list[Any] = []
    a.add_callback(seen.append)
    assert seen == [None]


def test_gather_accepts_coroutines_and_starts_them() -> None:
    d: Deferred[int] = Deferred()
    coro = awaiting(d, lambda v: v * 10)
    out = Outcome(gather([coro, succeed(1)]))
    assert inspect.getcoroutinestate(coro) == inspect.CORO_SUSPENDED
    d.callback(4)
    assert out.value == [40, 1]


def test_gather_accepts_an_iterator() -> None:
    out = Outcome(gather(succeed(i) for i in range(4)))
    assert out.value == [0, 1, 2, 3]


def test_gather_fail_fast_fails_with_the_first_error_and_cancels_the_rest() -> None:
    works = [Work() for _ in range(3)]
    out = Outcome(gather([w.d for w in works]))
    error = ValueError("boom")
    works[1].d.errback(error)
    assert out.error is error
    assert [w.cancelled for w in works] == [1, 0, 1]


def test_gather_fail_fast_cancels_before_firing() -> None:
    works = [Work() for _ in range(2)]
    gathered = gather([w.d for w in works])
    seen: list[int] = []
    gathered.add_errback(lambda _: seen.append(works[1].cancelled))
    works[0].d.errback(ValueError())
    assert seen == [1]


def test_gather_fail_fast_drops_what_the_cancelled_ones_end_with() -> None:
    # One loser's canceller fires it with its own error, another with a value:
    # neither reaches the gather, and the error is not logged as unhandled.
    raising = Work(lambda d: d.errback(KeyError("late")))
    valued = Work(lambda d: d.callback("late"))
    first: Deferred[Any] = Deferred()
    out = Outcome(gather([first, raising.d, valued.d]))
    error = ValueError("first")
    first.errback(error)
    assert out.error is error
    assert (raising.cancelled, valued.cancelled) == (1, 1)


def test_gather_fail_fast_later_failures_are_dropped() -> None:
    # An input with no canceller ignores the cancellation and fails later.
    a: Deferred[int] = Deferred()
    b: Deferred[int] = Deferred(lambda d: None)
    out = Outcome(gather([a, b]))
    a.errback(ValueError())
    assert isinstance(out.error, ValueError)
    assert b.called  # failed with CancelledError by cancel()


def test_gather_fail_fast_with_an_input_failed_already() -> None:
    later = Work()
    pending: Deferred[int] = Deferred()
    coro = awaiting(pending)
    error = ValueError("early")
    out = Outcome(gather([fail(error), later.d, coro]))
    assert out.error is error
    assert later.cancelled == 1
    # The coroutine was started, then cancelled while it awaited.
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    assert pending.called


def test_gather_fail_fast_with_a_cancelled_input_fails_with_cancelled_error() -> None:
    a: Deferred[int] = Deferred()
    b = Work()
    out = Outcome(gather([a, b.d]))
    a.cancel()
    assert isinstance(out.error, CancelledError)
    assert b.cancelled == 1


def test_gather_collect_all_succeeds_like_fail_fast() -> None:
    ds: list[Deferred[int]] = [Deferred(), Deferred()]
    out = Outcome(gather(ds, fail_fast=False))
    ds[1].callback(1)
    ds[0].callback(0)
    assert out.value == [0, 1]


def test_gather_collect_all_waits_and_groups_errors_in_input_order() -> None:
    works = [Work() for _ in range(4)]
    out = Outcome(gather([w.d for w in works], fail_fast=False))
    late, early = ValueError("late"), KeyError("early")
    works[3].d.errback(early)
    works[0].d.callback(0)
    works[1].d.errback(late)
    assert not out.called
    assert [w.cancelled for w in works] == [0, 0, 0, 0]
    works[2].d.callback(2)
    group = out.error
    assert isinstance(group, FailureGroup)
    assert isinstance(group, ExceptionGroup)
    assert isinstance(group, TorsionError)
    assert group.exceptions == (late, early)
    assert "2 of 4" in str(group)


def test_gather_collect_all_with_a_cancelled_input_is_a_base_group() -> None:
    a: Deferred[int] = Deferred()
    b: Deferred[int] = Deferred()
    out = Outcome(gather([a, b], fail_fast=False))
    a.cancel()
    b.errback(ValueError())
    group = out.error
    assert type(group) is BaseFailureGroup
    assert not isinstance(group, Exception)
    assert [type(e) for e in group.exceptions] == [CancelledError, ValueError]


def test_gather_except_star_picks_the_group_apart() -> None:
    d = gather([fail(ValueError(1)), fail(KeyError(2)), succeed(3)], fail_fast=False)
    caught: list[Any] = []

    async def main() -> None:
        try:
            await d
        except* ValueError as group:
            caught.append(group.exceptions)
        except* KeyError as group:
            caught.append(group.exceptions)

    out = Outcome(ensure_deferred(main()))
    assert out.called
    assert out.error is None
    assert [type(e) for (e,) in caught] == [ValueError, KeyError]


@pytest.mark.parametrize("fail_fast", [True, False])
def test_cancelling_gather_cancels_pending_inputs(fail_fast: bool) -> None:
    done: Deferred[int] = Deferred()
    works = [Work(), Work()]
    gathered = gather([done, works[0].d, works[1].d], fail_fast=fail_fast)
    out = Outcome(gathered)
    done.callback(0)
    gathered.cancel()
    assert isinstance(out.error, CancelledError)
    assert [w.cancelled for w in works] == [1, 1]


def test_cancelling_gather_fails_it_even_if_inputs_end_with_values() -> None:
    works = [Work(lambda d: d.callback("partial")), Work(lambda d: d.errback(KeyError()))]
    gathered = gather([w.d for w in works], fail_fast=False)
    out = Outcome(gathered)
    gathered.cancel()
    assert isinstance(out.error, CancelledError)


def test_cancelling_a_coroutine_that_awaits_gather_cancels_the_inputs() -> None:
    works = [Work(), Work()]

    async def main() -> list[Any]:
        return await gather([w.d for w in works])

    d = ensure_deferred(main())
    out = Outcome(d)
    d.cancel()
    assert isinstance(out.error, CancelledError)
    assert [w.cancelled for w in works] == [1, 1]


def test_gather_rejects_what_is_not_a_deferred_and_closes_the_coroutines() -> None:
    d: Deferred[int] = Deferred()
    coro = awaiting(d)
    with pytest.raises(TypeError, match="not 42"):
        gather([coro, 42])  # type: ignore[list-item]
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    assert not d.called


def test_gather_rejects_a_deferred_given_twice() -> None:
    d: Deferred[int] = Deferred()
    with pytest.raises(ValueError, match="twice"):
        gather([d, d])
    # Nothing was added to d's chain.
    out = Outcome(d)
    d.callback(1)
    assert out.value == 1


@given(st.permutations(range(8)))
def test_gather_order_does_not_depend_on_firing_order(order: list[int]) -> None:
    ds: list[Deferred[int]] = [Deferred() for _ in order]
    out = Outcome(gather(ds))
    for i in order:
        assert not out.called
        ds[i].callback(i * i)
    assert out.value == [i * i for i in range(len(order))]


@given(
    st.lists(st.booleans(), min_size=1, max_size=8).flatmap(
        lambda fails: st.tuples(st.just(fails), st.permutations(range(len(fails))))
    )
)
def test_gather_collect_all_groups_errors_in_input_order(
    case: tuple[list[bool], list[int]],
) -> None:
    fails, order = case
    ds: list[Deferred[int]] = [Deferred() for _ in fails]
    errors = [ValueError(i) for i in range(len(fails))]
    out = Outcome(gather(ds, fail_fast=False))
    for i in order:
        if fails[i]:
            ds[i].errback(errors[i])
        else:
            ds[i].callback(i)
    if any(fails):
        assert isinstance(out.error, FailureGroup)
        assert list(out.error.exceptions) == [e for e, f in zip(errors, fails, strict=True) if f]
    else:
        assert out.value == list(range(len(fails)))


@given(
    st.lists(st.booleans(), min_size=1, max_size=8).flatmap(
        lambda fails: st.tuples(st.just(fails), st.permutations(range(len(fails))))
    )
)
def test_gather_fail_fast_fails_with_the_first_error_in_time(
    case: tuple[list[bool], list[int]],
) -> None:
    fails, order = case
    works = [Work() for _ in fails]
    out = Outcome(gather([w.d for w in works]))
    first_failure = next((i for i in order if fails[i]), None)
    for i in order:
        if works[i].d.called:
            continue  # cancelled by the gather
        if fails[i]:
            works[i].d.errback(ValueError(i))
        else:
            works[i].d.callback(i)
    if first_failure is None:
        assert out.value == list(range(len(fails)))
    else:
        assert isinstance(out.error, ValueError)
        assert out.error.args == (first_failure,)
        position = order.index(first_failure)
        assert {i for i, w in enumerate(works) if w.cancelled} == set(order[position + 1 :])


# -- settle -------------------------------------------------------------------


def test_settle_of_nothing_fires_at_once() -> None:
    out = Outcome(settle([]))
    assert out.value == []


def test_settle_reports_every_outcome_in_input_order() -> None:
    a: Deferred[int] = Deferred()
    b: Deferred[int] = Deferred()
    c: Deferred[int] = Deferred()
    out = Outcome(settle([a, b, c]))
    error = ValueError("b")
    b.errback(error)
    c.callback(3)
    assert not out.called
    a.callback(1)
    assert out.value == [Succeeded(1), Failed(error), Succeeded(3)]


def test_settle_accepts_coroutines() -> None:
    d: Deferred[int] = Deferred()

    async def broken() -> int:
        raise KeyError("k")

    out = Outcome(settle([awaiting(d), broken()]))
    d.callback(5)
    first, second = out.value
    assert first == Succeeded(5)
    assert isinstance(second, Failed)
    assert isinstance(second.error, KeyError)


def test_outcomes_unwrap_and_match() -> None:
    error = ValueError("x")
    ok: Succeeded[int] = Succeeded(3)
    bad = Failed(error)
    assert ok.ok
    assert not bad.ok
    assert ok.unwrap() == 3
    with pytest.raises(ValueError, match="x"):
        bad.unwrap()
    described = []
    for outcome in (ok, bad):
        match outcome:
            case Succeeded(value):
                described.append(("value", value))
            case Failed(err):
                described.append(("error", err))
    assert described == [("value", 3), ("error", error)]


def test_cancelling_settle_cancels_pending_and_fails_it() -> None:
    works = [Work(), Work(lambda d: d.callback("partial"))]
    settled = settle([succeed(0), works[0].d, works[1].d])
    out = Outcome(settled)
    settled.cancel()
    assert isinstance(out.error, CancelledError)
    assert [w.cancelled for w in works] == [1, 1]


def test_settle_input_cancelled_by_someone_else_is_a_failed_outcome() -> None:
    a: Deferred[int] = Deferred()
    out = Outcome(settle([a]))
    a.cancel()
    [outcome] = out.value
    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, CancelledError)


def test_settle_rejects_non_deferreds() -> None:
    with pytest.raises(TypeError):
        settle(["nope"])  # type: ignore[list-item]


# -- race ---------------------------------------------------------------------


def test_race_fires_with_the_first_success_and_cancels_the_others() -> None:
    works = [Work() for _ in range(3)]
    out = Outcome(race([w.d for w in works]))
    works[1].d.callback("winner")
    assert out.value == (1, "winner")
    assert [w.cancelled for w in works] == [1, 0, 1]


def test_race_cancels_losers_before_firing() -> None:
    works = [Work(), Work()]
    raced = race([w.d for w in works])
    seen: list[int] = []
    raced.add_callback(lambda _: seen.append(works[1].cancelled))
    works[0].d.callback(0)
    assert seen == [1]


def test_race_failures_do_not_end_it_while_one_may_win() -> None:
    works = [Work() for _ in range(3)]
    out = Outcome(race([w.d for w in works]))
    works[0].d.errback(ValueError())
    works[2].d.errback(KeyError())
    assert not out.called
    works[1].d.callback("late winner")
    assert out.value == (1, "late winner")
    assert [w.cancelled for w in works] == [0, 0, 0]


def test_race_all_failing_fails_with_every_error_in_input_order() -> None:
    ds: list[Deferred[int]] = [Deferred() for _ in range(3)]
    out = Outcome(race(ds))
    errors = [ValueError(0), KeyError(1), OSError(2)]
    for i in (2, 0, 1):
        ds[i].errback(errors[i])
    assert isinstance(out.error, FailureGroup)
    assert list(out.error.exceptions) == errors


def test_race_all_failing_with_a_cancellation_is_a_base_group() -> None:
    a: Deferred[int] = Deferred()
    out = Outcome(race([a, fail(ValueError())]))
    a.cancel()
    assert type(out.error) is BaseFailureGroup


def test_race_drops_what_the_losers_end_with() -> None:
    raising = Work(lambda d: d.errback(KeyError("loser")))
    valued = Work(lambda d: d.callback("also ran"))
    winner: Deferred[str] = Deferred()
    out = Outcome(race([raising.d, winner, valued.d]))
    winner.callback("first")
    assert out.value == (1, "first")


def test_race_winner_already_fired_cancels_coroutines_started_after_it() -> None:
    pending: Deferred[int] = Deferred()
    coro = awaiting(pending)
    later = Work()
    out = Outcome(race([succeed("now"), coro, later.d]))
    assert out.value == (0, "now")
    assert later.cancelled == 1
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_race_takes_the_results() -> None:
    a: Deferred[str] = Deferred()
    out = Outcome(race([a]))
    a.callback("x")
    assert out.value == (0, "x")
    seen: list[Any] = []
    a.add_callback(seen.append)
    assert seen == [None]


def test_cancelling_race_cancels_all_and_fails_with_cancelled_error() -> None:
    works = [Work(), Work(lambda d: d.callback("value on cancel"))]
    raced = race([w.d for w in works])
    out = Outcome(raced)
    raced.cancel()
    assert isinstance(out.error, CancelledError)
    assert [w.cancelled for w in works] == [1, 1]


def test_race_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        race([])


@given(st.permutations(range(6)), st.integers(0, 5))
def test_race_winner_is_the_first_success_in_time(order: list[int], fails_first: int) -> None:
    # The first `fails_first` inputs to fire fail; the next one wins.
    works = [Work() for _ in order]
    out = Outcome(race([w.d for w in works]))
    winner = order[fails_first]
    for i in order[:fails_first]:
        works[i].d.errback(ValueError(i))
    works[winner].d.callback(winner)
    assert out.value == (winner, winner)
    assert {i for i, w in enumerate(works) if w.cancelled} == set(order[fails_first + 1 :])


# -- timeout ------------------------------------------------------------------


def test_timeout_passes_an_early_result_and_leaves_no_call() -> None:
    clock = Clock()
    d: Deferred[int] = Deferred()
    assert timeout(d, 5, clock) is d
    assert len(clock.get_delayed_calls()) == 1
    out = Outcome(d)
    clock.advance(4)
    d.callback(7)
    assert out.value == 7
    assert clock.get_delayed_calls() == []
    clock.advance(10)
    assert out.value == 7


def test_timeout_passes_an_early_error_unchanged_and_leaves_no_call() -> None:
    clock = Clock()
    d: Deferred[int] = Deferred()
    out = Outcome(timeout(d, 5, clock))
    error = ValueError("mine")
    d.errback(error)
    assert out.error is error
    assert clock.get_delayed_calls() == []


def test_timeout_expiry_cancels_and_fails_with_timeout_error() -> None:
    clock = Clock()
    work = Work()
    out = Outcome(timeout(work.d, 5, clock))
    clock.advance(4.9)
    assert not out.called
    clock.advance(0.1)
    assert work.cancelled == 1
    assert isinstance(out.error, TimeoutError)
    assert isinstance(out.error.__cause__, CancelledError)
    assert "5" in str(out.error)
    assert clock.get_delayed_calls() == []


def test_timeout_of_a_deferred_without_canceller_ignores_a_late_result() -> None:
    clock = Clock()
    d: Deferred[int] = Deferred()
    out = Outcome(timeout(d, 1, clock))
    clock.advance(1)
    assert isinstance(out.error, TimeoutError)
    d.callback(1)  # the work finishing late is ignored, as after any cancel


def test_timeout_a_canceller_value_wins() -> None:
    clock = Clock()
    work = Work(lambda d: d.callback("partial"))
    out = Outcome(timeout(work.d, 1, clock))
    clock.advance(1)
    assert out.value == "partial"


def test_timeout_a_canceller_error_wins() -> None:
    clock = Clock()
    error = ConnectionAbortedError()
    work = Work(lambda d: d.errback(error))
    out = Outcome(timeout(work.d, 1, clock))
    clock.advance(1)
    assert out.error is error


def test_timeout_of_a_fired_deferred_schedules_nothing() -> None:
    clock = Clock()
    out = Outcome(timeout(succeed(3), 1, clock))
    assert out.value == 3
    assert clock.get_delayed_calls() == []


def test_timeout_of_a_coroutine() -> None:
    clock = Clock()
    work = Work()
    out = Outcome(timeout(awaiting(work.d), 2, clock))
    clock.advance(2)
    assert work.cancelled == 1
    assert isinstance(out.error, TimeoutError)


def test_timeout_while_waiting_on_a_chained_deferred_cancels_the_inner_one() -> None:
    clock = Clock()
    inner = Work()
    outer: Deferred[int] = Deferred()
    outer.add_callback(lambda _: inner.d)
    outer.callback(0)
    out = Outcome(timeout(outer, 3, clock))
    assert len(clock.get_delayed_calls()) == 1
    clock.advance(3)
    assert inner.cancelled == 1
    assert isinstance(out.error, TimeoutError)


def test_timeout_cancelled_by_the_caller_stays_cancelled_error() -> None:
    clock = Clock()
    d: Deferred[int] = Deferred()
    out = Outcome(timeout(d, 3, clock))
    d.cancel()
    assert isinstance(out.error, CancelledError)
    assert clock.get_delayed_calls() == []


@pytest.mark.parametrize("seconds", [-1, float("nan")])
def test_timeout_refuses_bad_seconds_before_touching_anything(seconds: float) -> None:
    clock = Clock()
    d: Deferred[int] = Deferred()
    with pytest.raises(ValueError, match="seconds"):
        timeout(d, seconds, clock)
    assert clock.get_delayed_calls() == []
    out = Outcome(d)
    d.cancel()
    assert isinstance(out.error, CancelledError)  # no timeout step was added


def test_timeout_of_a_gather() -> None:
    clock = Clock()
    works = [Work(), Work()]
    out = Outcome(timeout(gather([w.d for w in works]), 1, clock))
    clock.advance(1)
    assert [w.cancelled for w in works] == [1, 1]
    assert isinstance(out.error, TimeoutError)


def test_timeout_and_gather_on_a_real_asyncio_loop() -> None:
    async def main() -> tuple[list[int], bool]:
        loop = asyncio.get_running_loop()
        a: Deferred[int] = Deferred()
        b: Deferred[int] = Deferred()
        loop.call_soon(b.callback, 2)
        loop.call_soon(a.callback, 1)
        results = await timeout(gather([a, b]), 60, loop)
        never: Deferred[int] = Deferred()
        try:
            await timeout(never, 0, loop)
        except TimeoutError:
            expired = True
        else:
            expired = False
        return results, expired

    assert asyncio.run(main()) == ([1, 2], True)

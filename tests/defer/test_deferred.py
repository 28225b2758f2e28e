"""The Deferred callback chain: firing, chaining, pausing, cancelling, reporting."""

from __future__ import annotations

import contextvars
import gc
import logging
from typing import Any

import pytest
from _outcome import results_of

from torsion.defer import (
    AlreadyCalledError,
    CancelledError,
    Deferred,
    fail,
    succeed,
)


def test_callbacks_fire_in_order_each_fed_by_the_last() -> None:
    d: Deferred[int] = Deferred()
    trace: list[int] = []

    def step(n: int) -> int:
        trace.append(n)
        return n + 1

    d.add_callback(step).add_callback(step).add_callback(step)
    assert trace == []
    d.callback(1)
    assert trace == [1, 2, 3]
    assert results_of(d) == [4]


def test_callback_added_after_firing_runs_at_once() -> None:
    d = succeed(5)
    seen: list[int] = []
    d.add_callback(seen.append)
    assert seen == [5]


def test_errback_gets_the_exception_itself_with_its_traceback() -> None:
    d: Deferred[int] = Deferred()

    def boom(_: int) -> int:
        raise ValueError("bad")

    caught: list[BaseException] = []
    d.add_callback(boom).add_errback(caught.append)
    d.callback(1)
    [exc] = caught
    assert isinstance(exc, ValueError)
    assert str(exc) == "bad"
    assert exc.__traceback__ is not None
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "boom" in frames


def test_errors_skip_callbacks_and_an_errback_recovers() -> None:
    d: Deferred[int] = Deferred()
    trace: list[str] = []
    d.add_callback(lambda _: trace.append("skipped"))
    d.add_errback(lambda exc: f"recovered from {exc}")
    d.add_errback(lambda _: trace.append("skipped too"))
    d.errback(KeyError("k"))
    assert trace == []
    assert results_of(d) == ["recovered from 'k'"]


def test_add_callbacks_runs_exactly_one_side_and_its_error_goes_on() -> None:
    d: Deferred[int] = Deferred()
    errback_calls: list[BaseException] = []

    def broken(_: int) -> int:
        raise RuntimeError("from callback")

    d.add_callbacks(broken, errback_calls.append)
    caught: list[BaseException] = []
    d.add_errback(caught.append)
    d.callback(0)
    assert errback_calls == []
    assert isinstance(caught[0], RuntimeError)


def test_add_both_sees_results_and_errors() -> None:
    ok = succeed(1)
    bad = fail(OSError("x"))
    assert results_of(ok) == [1]
    [exc] = results_of(bad)
    assert isinstance(exc, OSError)


def test_errback_without_argument_takes_the_current_exception() -> None:
    d: Deferred[int] = Deferred()
    try:
        raise LookupError("now")
    except LookupError:
        d.errback()
    [exc] = results_of(d)
    assert isinstance(exc, LookupError)


def test_errback_without_argument_or_current_exception_is_a_type_error() -> None:
    d: Deferred[int] = Deferred()
    with pytest.raises(TypeError):
        d.errback()
    with pytest.raises(TypeError):
        d.errback("not an exception")  # type: ignore[arg-type]
    assert not d.called


def test_firing_twice_raises_already_called() -> None:
    d: Deferred[int] = Deferred()
    d.callback(1)
    with pytest.raises(AlreadyCalledError):
        d.callback(2)
    with pytest.raises(AlreadyCalledError):
        d.errback(ValueError())
    assert results_of(d) == [1]


def test_callback_with_a_deferred_is_refused() -> None:
    d: Deferred[Any] = Deferred()
    with pytest.raises(TypeError):
        d.callback(Deferred())


def test_returning_a_pending_deferred_pauses_until_it_fires() -> None:
    outer: Deferred[int] = Deferred()
    inner: Deferred[int] = Deferred()
    trace: list[Any] = []
    outer.add_callback(lambda _: inner)
    outer.add_callback(trace.append)
    outer.callback(0)
    assert trace == []
    assert outer.paused
    inner.callback(7)
    assert trace == [7]
    assert not outer.paused
    assert results_of(inner) == [None]


def test_returning_a_fired_deferred_continues_with_its_result() -> None:
    outer: Deferred[int] = Deferred()
    inner = succeed(3)
    outer.add_callback(lambda _: inner)
    outer.callback(0)
    assert results_of(outer) == [3]
    assert results_of(inner) == [None]


def test_chained_error_continues_on_the_error_path_and_is_not_reported_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outer: Deferred[int] = Deferred()
    inner: Deferred[int] = Deferred()
    outer.add_callback(lambda _: inner)
    outer.callback(0)
    inner.errback(ValueError("inner"))
    [exc] = results_of(outer)
    assert isinstance(exc, ValueError)
    gc.collect()
    assert "Unhandled error" not in caplog.text


def test_returning_itself_from_a_callback_is_an_error() -> None:
    d: Deferred[Any] = Deferred()
    d.add_callback(lambda _: d)
    d.callback(1)
    [exc] = results_of(d)
    assert isinstance(exc, TypeError)


def test_deep_chains_do_not_exhaust_the_stack() -> None:
    depth = 5000
    innermost: Deferred[int] = Deferred()
    current: Deferred[int] = innermost
    for _ in range(depth):
        outer: Deferred[int] = Deferred()
        outer.add_callback(lambda _, inner=current: inner)
        outer.callback(0)
        current = outer
    innermost.callback(99)
    assert results_of(current) == [99]


def test_pause_queues_results_until_unpause() -> None:
    d: Deferred[int] = Deferred()
    seen: list[int] = []
    d.pause()
    d.add_callback(seen.append)
    d.callback(1)
    assert seen == []
    d.pause()
    d.unpause()
    assert seen == []
    d.unpause()
    assert seen == [1]


def test_pause_from_inside_a_callback_stops_the_chain() -> None:
    d: Deferred[int] = Deferred()
    seen: list[int] = []

    def pause_it(value: int) -> int:
        d.pause()
        return value + 1

    d.add_callback(pause_it).add_callback(seen.append)
    d.callback(1)
    assert seen == []
    d.unpause()
    assert seen == [2]


def test_unpause_without_pause_is_an_error() -> None:
    with pytest.raises(ValueError, match="not paused"):
        Deferred().unpause()


def test_callbacks_added_while_running_run_in_the_same_pass() -> None:
    d: Deferred[int] = Deferred()
    seen: list[str] = []

    def add_more(value: int) -> int:
        d.add_callback(lambda v: seen.append(f"late {v}"))
        return value * 10

    d.add_callback(add_more)
    d.callback(2)
    assert seen == ["late 20"]


def test_cancel_without_canceller_fails_with_cancelled_and_ignores_late_result() -> None:
    d: Deferred[int] = Deferred()
    d.cancel()
    [exc] = results_of(d)
    assert isinstance(exc, CancelledError)
    d.callback(1)  # the work finished anyway: ignored once
    with pytest.raises(AlreadyCalledError):
        d.callback(2)


def test_cancel_runs_the_canceller_which_may_fire_it() -> None:
    calls: list[Deferred[str]] = []

    def canceller(d: Deferred[str]) -> None:
        calls.append(d)
        d.callback("stopped cleanly")

    d: Deferred[str] = Deferred(canceller)
    d.cancel()
    assert calls == [d]
    assert results_of(d) == ["stopped cleanly"]


def test_cancel_with_a_canceller_that_does_not_fire_it() -> None:
    d: Deferred[str] = Deferred(lambda _: None)
    d.cancel()
    [exc] = results_of(d)
    assert isinstance(exc, CancelledError)
    with pytest.raises(AlreadyCalledError):
        d.callback("too late")


def test_a_failing_canceller_becomes_the_error() -> None:
    def canceller(_: Deferred[int]) -> None:
        raise OSError("cannot stop")

    d: Deferred[int] = Deferred(canceller)
    d.cancel()
    [exc] = results_of(d)
    assert isinstance(exc, OSError)


def test_cancel_after_firing_does_nothing() -> None:
    d = succeed(1)
    d.cancel()
    assert results_of(d) == [1]


def test_cancel_reaches_the_chained_inner_deferred() -> None:
    cancelled: list[bool] = []
    inner: Deferred[int] = Deferred(lambda _: cancelled.append(True))
    outer: Deferred[int] = Deferred()
    outer.add_callback(lambda _: inner)
    outer.callback(0)
    outer.cancel()
    assert cancelled == [True]
    [exc] = results_of(outer)
    assert isinstance(exc, CancelledError)


def test_unhandled_error_is_logged_when_collected(
    caplog: pytest.LogCaptureFixture, unhandled_errors: list[BaseException]
) -> None:
    d: Deferred[int] = Deferred()
    d.errback(ZeroDivisionError("lost"))
    with caplog.at_level(logging.ERROR, logger="torsion.defer"):
        del d
        gc.collect()
    [record] = [r for r in caplog.records if hasattr(r, "torsion_unhandled_error")]
    assert isinstance(record.torsion_unhandled_error, ZeroDivisionError)
    assert "ZeroDivisionError: lost" in record.getMessage()
    assert record.exc_info is not None
    assert unhandled_errors == [record.torsion_unhandled_error]


def test_handled_errors_and_cancellations_are_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="torsion.defer"):
        d: Deferred[int] = Deferred()
        d.errback(ValueError("seen"))
        d.add_errback(lambda _: None)
        c: Deferred[int] = Deferred()
        c.cancel()
        del d, c
        gc.collect()
    assert caplog.records == []


def test_error_raised_by_a_late_callback_is_reported_once_it_is_the_final_result(
    caplog: pytest.LogCaptureFixture, unhandled_errors: list[BaseException]
) -> None:
    with caplog.at_level(logging.ERROR, logger="torsion.defer"):
        d = succeed(1)

        def boom(_: int) -> None:
            raise RuntimeError("late")

        d.add_callback(boom)
        del d
        gc.collect()
    assert [r.torsion_unhandled_error.args for r in caplog.records] == [("late",)]
    assert [e.args for e in unhandled_errors] == [("late",)]


def test_callbacks_run_in_the_context_they_were_added_in() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="outside")
    d: Deferred[None] = Deferred()
    seen: list[str] = []

    def add_inside() -> None:
        var.set("inside")
        d.add_callback(lambda _: seen.append(var.get()))

    contextvars.copy_context().run(add_inside)
    d.callback(None)
    assert seen == ["inside"]
    assert var.get() == "outside"


def test_repr_tells_the_state() -> None:
    d: Deferred[int] = Deferred()
    assert "waiting" in repr(d)
    d.callback(3)
    assert "result=3" in repr(d)
    e = fail(KeyError("gone"))
    assert "failed with KeyError" in repr(e)
    e.add_errback(lambda _: None)


def test_chain_deferred_passes_the_result_on() -> None:
    a: Deferred[int] = Deferred()
    b: Deferred[int] = Deferred()
    a.chain_deferred(b)
    a.callback(4)
    assert results_of(b) == [4]
    assert results_of(a) == [None]

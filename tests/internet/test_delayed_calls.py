"""call_later on a real reactor: DelayedCall handles over the loop's timers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from torsion.defer import Deferred
from torsion.errors import AlreadyCalledDelayedError, AlreadyCancelledError
from torsion.internet import Reactor

Wait = Callable[..., Any]


def test_seconds_is_the_loop_time(real_reactor: Reactor) -> None:
    before = real_reactor.loop.time()
    now = real_reactor.seconds()
    assert before <= now <= real_reactor.loop.time()


def test_call_later_runs_in_time_order(real_reactor: Reactor, wait: Wait) -> None:
    done: Deferred[None] = Deferred()
    order: list[str] = []
    real_reactor.call_later(0.02, order.append, "late")
    real_reactor.call_later(0, order.append, "soon")
    real_reactor.call_later(0.01, order.append, "middle")
    real_reactor.call_later(0.03, done.callback, None)
    wait(real_reactor, done)
    assert order == ["soon", "middle", "late"]
    assert real_reactor.get_delayed_calls() == []


def test_delayed_call_state_and_pending_list(real_reactor: Reactor, wait: Wait) -> None:
    done: Deferred[None] = Deferred()
    call = real_reactor.call_later(0, done.callback, None)
    other = real_reactor.call_later(100, lambda: None)
    assert call.active()
    assert real_reactor.get_delayed_calls() == [call, other]
    assert call.time <= other.time
    wait(real_reactor, done)
    assert call.called
    assert not call.active()
    assert real_reactor.get_delayed_calls() == [other]
    with pytest.raises(AlreadyCalledDelayedError):
        call.cancel()
    other.cancel()
    assert other.cancelled
    assert real_reactor.get_delayed_calls() == []
    with pytest.raises(AlreadyCancelledError):
        other.cancel()


def test_cancelled_call_never_runs(real_reactor: Reactor, wait: Wait) -> None:
    ran: list[int] = []
    done: Deferred[None] = Deferred()
    call = real_reactor.call_later(0, ran.append, 1)
    call.cancel()
    real_reactor.call_later(0.01, done.callback, None)
    wait(real_reactor, done)
    assert ran == []


def test_reset_and_delay_move_the_call(real_reactor: Reactor, wait: Wait) -> None:
    order: list[str] = []
    done: Deferred[None] = Deferred()
    moved = real_reactor.call_later(100, order.append, "moved")
    pushed = real_reactor.call_later(0, order.append, "pushed")
    real_reactor.call_later(0.01, order.append, "marker")
    moved.reset(0.005)
    pushed.delay(0.015)
    assert moved.time < pushed.time
    real_reactor.call_later(0.03, done.callback, None)
    wait(real_reactor, done)
    assert order == ["moved", "marker", "pushed"]
    assert real_reactor.get_delayed_calls() == []


def test_error_in_call_goes_to_the_loop_handler(real_reactor: Reactor, wait: Wait) -> None:
    contexts: list[dict[str, Any]] = []
    real_reactor.loop.set_exception_handler(lambda loop, context: contexts.append(context))
    done: Deferred[None] = Deferred()

    def boom() -> None:
        raise ZeroDivisionError("x")

    real_reactor.call_later(0, boom)
    real_reactor.call_later(0.01, done.callback, None)
    wait(real_reactor, done)
    assert len(contexts) == 1
    assert isinstance(contexts[0]["exception"], ZeroDivisionError)
    assert real_reactor.get_delayed_calls() == []


def test_many_calls_leave_nothing_pending(real_reactor: Reactor, wait: Wait) -> None:
    count = 0
    done: Deferred[None] = Deferred()

    def tick() -> None:
        nonlocal count
        count += 1
        if count == 1000:
            done.callback(None)

    for _ in range(1000):
        real_reactor.call_later(0, tick)
    wait(real_reactor, done)
    assert real_reactor.get_delayed_calls() == []


def test_reactor_on_the_running_loop_is_not_owned() -> None:
    async def main() -> None:
        reactor = Reactor()
        assert reactor.loop is asyncio.get_running_loop()
        d: Deferred[str] = Deferred()
        reactor.call_later(0, d.callback, "ok")
        assert await d == "ok"
        reactor.close()
        assert not reactor.loop.is_closed()

    asyncio.run(main())


def test_given_loop_is_not_closed_by_close() -> None:
    loop = asyncio.new_event_loop()
    try:
        reactor = Reactor(loop)
        assert reactor.loop is loop
        reactor.close()
        reactor.close()  # idempotent
        assert not loop.is_closed()
    finally:
        loop.close()


def test_uvloop_false_gives_the_stdlib_loop() -> None:
    reactor = Reactor(uvloop=False)
    try:
        assert isinstance(reactor.loop, asyncio.BaseEventLoop)
        assert "idle" in repr(reactor)
    finally:
        reactor.close()
    assert "closed" in repr(reactor)

"""LoopClock: the reactor's calls kept as loop timers, and its list of pending calls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
import uvloop

from torsion.internet._delayed import LoopClock


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _noop() -> None:
    pass


def test_pending_list_survives_unlinking_from_every_position(
    loop: asyncio.AbstractEventLoop,
) -> None:
    clock = LoopClock(loop)
    calls = [clock.call_later(10 + i, _noop) for i in range(6)]
    assert clock.get_delayed_calls() == calls

    # Cancel the newest (the head of the list), the oldest (its tail) and one
    # in the middle; then run one directly, as the loop's timer would.
    for index in (5, 0, 2):
        calls[index].cancel()
    calls[3]()
    assert clock.get_delayed_calls() == [calls[1], calls[4]]
    assert calls[3].called
    assert calls[3].handle is None

    calls[1].cancel()
    calls[4].cancel()
    assert clock.get_delayed_calls() == []


def test_reset_keeps_a_call_pending_once(loop: asyncio.AbstractEventLoop) -> None:
    clock = LoopClock(loop)
    first = clock.call_later(5, _noop)
    second = clock.call_later(1, _noop)
    first.reset(0.5)
    second.delay(-0.75)
    assert clock.get_delayed_calls() == [second, first]
    timers = [call.handle for call in (second, first)]
    assert [timer.when() for timer in timers] == [second.time, first.time]


@pytest.mark.parametrize("new_loop", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_calls_run_on_the_loop_and_leave_the_list(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    loop = new_loop()
    try:
        clock = LoopClock(loop)
        ran: list[int] = []
        for i in range(3):
            clock.call_later(0, ran.append, i)
        clock.call_later(0, loop.stop)
        loop.run_forever()
        assert ran == [0, 1, 2]
        assert clock.get_delayed_calls() == []
    finally:
        loop.close()

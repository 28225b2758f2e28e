"""The plugin's fixtures, used directly by this suite's own tests."""

from __future__ import annotations

import asyncio
import gc

import pytest

from torsion.defer import Deferred, succeed
from torsion.internet import Reactor
from torsion.testing import Clock


async def test_async_test_runs_on_the_reactor_loop(reactor):
    assert isinstance(reactor, Reactor)
    assert asyncio.get_running_loop() is reactor.loop
    d: Deferred[str] = Deferred()
    reactor.call_later(0, d.callback, "fired")
    assert await d == "fired"


async def test_async_test_without_a_reactor_gets_a_fresh_loop():
    loop = asyncio.get_running_loop()
    assert not loop.is_closed()
    await asyncio.sleep(0)


def test_deferred_returning_test(reactor):
    d: Deferred[int] = Deferred()
    reactor.call_later(0, d.callback, 1)
    return d.add_callback(lambda value: None)


def test_already_fired_deferred_returning_test():
    return succeed(None)


def test_clock_fixture_is_fresh(clock):
    assert isinstance(clock, Clock)
    assert clock.seconds() == 0
    assert clock.get_delayed_calls() == []


def test_unhandled_errors_fixture_lets_a_test_inspect_them(unhandled_errors):
    d: Deferred[int] = Deferred()
    d.errback(LookupError("deliberately unhandled"))
    del d
    gc.collect()
    assert len(unhandled_errors) == 1
    assert isinstance(unhandled_errors[0], LookupError)


@pytest.mark.timeout(5)
async def test_timeout_marker_is_accepted():
    await asyncio.sleep(0)

"""Fixtures for the reactor tests: real reactors on each event loop, and waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from torsion.internet import Reactor

try:
    import uvloop  # noqa: F401
except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
    LOOPS = ["asyncio"]
else:
    LOOPS = ["asyncio", "uvloop"]


@pytest.fixture(params=LOOPS)
def loop_name(request: pytest.FixtureRequest) -> str:
    """Each event loop the reactor must run on."""
    return str(request.param)


@pytest.fixture
def real_reactor(loop_name: str) -> Iterator[Reactor]:
    """A new reactor owning a new loop of each kind; closed afterwards."""
    reactor = Reactor(uvloop=loop_name == "uvloop")
    if loop_name == "uvloop":
        assert type(reactor.loop).__module__.startswith("uvloop")
    yield reactor
    reactor.close()
    assert reactor.loop.is_closed()


Wait = Callable[..., Any]


@pytest.fixture
def wait() -> Wait:
    """Run a reactor's loop until an awaitable (a Deferred, say) has its outcome.

    A test never sleeps: it waits for the very thing it expects, with a
    generous timeout that only a broken test hits.
    """

    def wait(reactor: Reactor, awaitable: Awaitable[Any], timeout: float = 10.0) -> Any:
        async def waiter() -> Any:
            return await awaitable

        return reactor.loop.run_until_complete(asyncio.wait_for(waiter(), timeout))

    return wait


Run = Callable[..., None]


@pytest.fixture
def run() -> Run:
    """Run a reactor until it stops, failing (not hanging) if it never does.

    Signal handlers are off unless asked for. The watchdog is a raw loop
    timer, so it never shows among the reactor's delayed calls.
    """

    def run(reactor: Reactor, *, install_signal_handlers: bool = False) -> None:
        fired: list[bool] = []

        def watchdog() -> None:
            fired.append(True)
            reactor.loop.stop()

        handle = reactor.loop.call_later(10.0, watchdog)
        try:
            reactor.run(install_signal_handlers=install_signal_handlers)
        finally:
            handle.cancel()
        assert not fired, "the reactor did not stop within 10 s"

    return run

"""Fixtures for the application tests: real reactors on each loop, and waiting."""

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
    """Each event loop the services must run on."""
    return str(request.param)


@pytest.fixture
def real_reactor(loop_name: str) -> Iterator[Reactor]:
    """A new reactor owning a new loop of each kind; closed afterwards."""
    reactor = Reactor(uvloop=loop_name == "uvloop")
    yield reactor
    reactor.close()


Wait = Callable[..., Any]


@pytest.fixture
def wait() -> Wait:
    """Run a reactor's loop until an awaitable has its outcome (10 s at most)."""

    def wait(reactor: Reactor, awaitable: Awaitable[Any], timeout: float = 10.0) -> Any:
        async def waiter() -> Any:
            return await awaitable

        return reactor.loop.run_until_complete(asyncio.wait_for(waiter(), timeout))

    return wait

"""The event loop and reactor one test runs on, made fresh for each test.

The pytest plugin makes a ``TestRuntime`` when a test first needs one (the
``reactor`` fixture, or an ``async def`` test), runs the test's coroutine on it
as an asyncio task under a timeout, and closes it after the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from torsion.internet import Reactor

__all__ = [
    "LOOP_NAMES",
    "TestRuntime",
    "TestTimeout",
    "describe_await_chain",
    "uvloop_available",
]

LOOP_NAMES = ("asyncio", "uvloop")

# How long a timed-out test's task may take to finish after being cancelled.
_CANCEL_GRACE = 1.0


class TestTimeout(Exception):  # noqa: N818 -- it reads as what happened to the test
    """A test did not finish within its timeout.

    Attributes:
        stack: Where the test's task was waiting when it was cancelled.
    """

    __test__ = False

    def __init__(self, timeout: float, stack: str) -> None:
        super().__init__(f"timed out after {timeout:g} s")
        self.timeout = timeout
        self.stack = stack


def uvloop_available() -> bool:
    """Return whether uvloop can be imported."""
    return importlib.util.find_spec("uvloop") is not None


def _new_loop(loop_name: str) -> asyncio.AbstractEventLoop:
    if loop_name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if loop_name != "asyncio":
        raise ValueError(f"unknown event loop {loop_name!r}; choose one of {LOOP_NAMES}")
    return asyncio.new_event_loop()


class TestRuntime:
    """A fresh event loop, and the reactor on it once someone asks for it.

    Attributes:
        loop: The test's event loop.
        loop_name: "asyncio" or "uvloop".
    """

    __test__ = False

    def __init__(self, loop_name: str = "asyncio") -> None:
        self.loop_name = loop_name
        self.loop = _new_loop(loop_name)
        self._reactor: Reactor | None = None

    @property
    def has_reactor(self) -> bool:
        """Whether the reactor was made."""
        return self._reactor is not None

    @property
    def reactor(self) -> Reactor:
        """The reactor on this runtime's loop, made on first use."""
        if self._reactor is None:
            self._reactor = Reactor(self.loop)
        return self._reactor

    def run(self, make: Callable[[], Awaitable[Any]], *, timeout: float | None) -> Any:
        """Run ``make()`` as a task on the loop until it is done or times out.

        Args:
            make: Called on the running loop to give the awaitable to run.
            timeout: Seconds before the task is cancelled; None for no limit.

        Returns:
            The awaitable's result.

        Raises:
            TestTimeout: The timeout expired; the task was cancelled.
        """
        return self.loop.run_until_complete(self._supervise(make, timeout))

    async def _supervise(self, make: Callable[[], Awaitable[Any]], limit: float | None) -> Any:
        task = asyncio.ensure_future(make())
        if limit is None:
            return await task
        done, _ = await asyncio.wait({task}, timeout=limit)
        if task in done:
            return task.result()
        stack = describe_await_chain(task)
        task.cancel()
        await asyncio.wait({task}, timeout=_CANCEL_GRACE)
        if task.done() and not task.cancelled():
            # The test swallowed the cancellation: its outcome is still a timeout.
            with contextlib.suppress(BaseException):
                task.result()
        raise TestTimeout(limit, stack)

    def close(self) -> None:
        """Close the reactor, cancel leftover tasks, then close the loop."""
        loop = self.loop
        if loop.is_closed() or loop.is_running():
            return
        try:
            if self._reactor is not None:
                # Closes its listening ports (running the loop a little) and
                # joins its worker threads.
                self._reactor.close()
        finally:
            try:
                _cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()


def describe_await_chain(task: asyncio.Task[Any]) -> str:
    """Describe where ``task`` is waiting, following what each coroutine awaits.

    ``Task.print_stack`` shows only the outermost coroutine; following
    ``cr_await`` (and ``gi_yieldfrom`` for generator-based awaitables such
    as a Deferred's) gives the whole chain down to what blocks it.
    """
    frames = []
    current: Any = task.get_coro()
    while current is not None:
        frame = _frame_of(current)
        if frame is None:
            break
        frames.append((frame, frame.f_lineno))
        current = _awaited_by(current)
    lines = ["Where the test was waiting (most recent call last):\n"]
    lines += traceback.StackSummary.extract(frames).format()
    if current is not None:
        lines.append(f"  waiting for {current!r}\n")
    return "".join(lines)


def _frame_of(awaitable: Any) -> Any:
    for name in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(awaitable, name, None)
        if frame is not None:
            return frame
    return None


def _awaited_by(awaitable: Any) -> Any:
    for name in ("cr_await", "gi_yieldfrom", "ag_await"):
        inner = getattr(awaitable, name, None)
        if inner is not None:
            return inner
    return None


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

"""Coroutines driven by Deferreds: ``ensure_deferred`` and ``maybe_deferred``.

``ensure_deferred`` runs an ``async def`` coroutine synchronously as far as it
can go, with no event loop needed: awaiting a Deferred that already has a
result continues at once, awaiting a pending one resumes the coroutine from
that Deferred's callback. So tests on a fake clock drive coroutines simply by
advancing the clock. Awaiting asyncio futures (or a bare ``yield``, as
``asyncio.sleep(0)`` does) needs the running loop, as it would in a Task.

Each coroutine runs every step in a ``contextvars`` context copied when it was
started, as an asyncio Task does.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar, overload

from torsion.defer._deferred import (
    CancelledError,
    Deferred,
    _Waiter,
    fail,
    report_unhandled,
    succeed,
)

__all__ = ["awaitable_deferred", "ensure_deferred", "maybe_deferred"]

_copy_context = contextvars.copy_context

T = TypeVar("T")


@overload
def ensure_deferred(coro: Deferred[T]) -> Deferred[T]: ...


@overload
def ensure_deferred(coro: Coroutine[Any, Any, T]) -> Deferred[T]: ...


@overload
def ensure_deferred(coro: Generator[Any, Any, T]) -> Deferred[T]: ...


def ensure_deferred(
    coro: Deferred[T] | Coroutine[Any, Any, T] | Generator[Any, Any, T],
) -> Deferred[T]:
    """Run a coroutine, returning a Deferred of what it returns.

    A Deferred is returned as it is. Cancelling the returned Deferred cancels
    whatever the coroutine is awaiting at that moment, which raises
    ``CancelledError`` inside it.

    Raises:
        TypeError: ``coro`` is neither a coroutine nor a Deferred.
    """
    if isinstance(coro, Deferred):
        return coro
    if not isinstance(coro, Coroutine | Generator):
        raise TypeError(f"ensure_deferred() needs a coroutine or a Deferred, not {coro!r}")
    d: _CoroutineDeferred[T] = _CoroutineDeferred(coro)
    d._step(None, False)
    return d


class _CoroutineDeferred(Deferred[T]):
    """The Deferred of a running coroutine, which also steps the coroutine.

    One object instead of a Deferred plus a driver keeps starting a coroutine
    cheap; it is never exposed as anything but a ``Deferred``.
    """

    __slots__ = ("_context", "_coro", "_future", "_handle", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, T] | Generator[Any, Any, T]) -> None:
        # Deferred.__init__ inlined: starting a coroutine is a hot path.
        self._callbacks = []
        self._canceller = _cancel_coroutine
        self._called = False
        self._failed = False
        self._paused = 0
        self._running = False
        self._result = None
        self._chained_to = None
        self._logger = None
        self._suppress_already_called = False
        self._coro = coro
        self._context = _copy_context()
        self._waiting: Deferred[Any] | None = None
        self._future: asyncio.Future[Any] | None = None
        self._handle: asyncio.Handle | None = None

    def _step(self, value: Any, failed: bool) -> None:
        coro = self._coro
        run = self._context.run
        while True:
            try:
                yielded = run(coro.throw, value) if failed else run(coro.send, value)
            except StopIteration as stop:
                outcome, failed = stop.value, False
            except BaseException as exc:  # the coroutine's error is its result
                outcome, failed = exc, True
            else:
                if self._wait_on(yielded):
                    return
                value, failed = self._bad_yield(yielded), True
                continue
            # Fired outside the except clause, so that errors raised by the
            # callbacks are not chained to the coroutine's exit.
            self._finish(outcome, failed)
            return

    def _finish(self, outcome: Any, failed: bool) -> None:
        if not self._called:
            if failed:
                self.errback(outcome)
            elif isinstance(outcome, Deferred):
                # Returning a Deferred passes on its result, as a callback's would.
                outcome.chain_deferred(self)
            else:
                self.callback(outcome)
        elif failed and not isinstance(outcome, CancelledError):
            # Cancelled earlier, the coroutine went on and then failed: its
            # Deferred already has an outcome, so nobody else will see this.
            report_unhandled(outcome, "a cancelled coroutine")

    def _wait_on(self, yielded: Any) -> bool:
        """Arrange to resume once what the coroutine yielded is ready."""
        if type(yielded) is _Waiter:
            self._waiting = yielded.deferred
            yielded.wait(self._resume_awaiter)
            return True
        if isinstance(yielded, Deferred):
            # A generator that yields Deferreds directly gets the result sent in.
            self._waiting = yielded
            yielded.add_callbacks(self._resume, self._resume_failed)
            return True
        if getattr(yielded, "_asyncio_future_blocking", None) is not None:
            yielded._asyncio_future_blocking = False
            self._future = yielded
            yielded.add_done_callback(self._future_done)
            return True
        if yielded is None:
            # A bare yield asks to be resumed on the next loop iteration.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return False
            self._handle = loop.call_soon(self._resume_soon)
            return True
        return False

    @staticmethod
    def _bad_yield(yielded: Any) -> BaseException:
        if yielded is None:
            return RuntimeError("a bare yield needs a running event loop to resume")
        return TypeError(f"a coroutine yielded {yielded!r}, which is not awaitable")

    def _resume_awaiter(self) -> None:
        # The waiter holds the outcome; Deferred.__await__ reads it from there.
        self._waiting = None
        self._step(None, False)

    def _resume(self, result: Any) -> None:
        self._waiting = None
        self._step(result, False)

    def _resume_failed(self, exc: BaseException) -> None:
        self._waiting = None
        self._step(exc, True)

    def _future_done(self, future: asyncio.Future[Any]) -> None:
        # The future's own __await__ reads its result once resumed.
        if self._future is future:
            self._future = None
            self._step(None, False)

    def _resume_soon(self) -> None:
        self._handle = None
        self._step(None, False)


def _cancel_coroutine(d: Deferred[Any]) -> None:
    """Cancel what a coroutine awaits, which raises CancelledError inside it."""
    assert isinstance(d, _CoroutineDeferred)
    if d._waiting is not None:
        d._waiting.cancel()
    elif d._future is not None:
        future, d._future = d._future, None
        future.remove_done_callback(d._future_done)
        future.cancel()
        d._step(CancelledError(), True)
    elif d._handle is not None:
        handle, d._handle = d._handle, None
        handle.cancel()
        d._step(CancelledError(), True)


def maybe_deferred(f: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Deferred[Any]:
    """Call ``f`` and return a Deferred of its outcome, whatever its shape.

    A returned Deferred is passed through, a coroutine is run with
    ``ensure_deferred``, an asyncio future is bridged, a plain value becomes
    an already-fired Deferred and a raised exception a failed one.
    """
    try:
        result = f(*args, **kwargs)
    except BaseException as exc:
        return fail(exc)
    waiting = awaitable_deferred(result)
    return succeed(result) if waiting is None else waiting


def awaitable_deferred(value: object) -> Deferred[Any] | None:
    """Return a Deferred for ``value`` if it is something to wait for, else None.

    A Deferred is returned as it is, a coroutine is started with
    ``ensure_deferred`` and an asyncio future is bridged; anything else is a
    plain value, which has nothing to wait for.
    """
    if isinstance(value, Deferred):
        return value
    if isinstance(value, Coroutine):
        return ensure_deferred(value)
    if asyncio.isfuture(value):
        return Deferred.from_future(value)
    return None

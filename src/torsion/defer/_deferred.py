"""Deferred: a result that is not there yet, and the chain of callbacks it feeds.

A ``Deferred`` holds a list of (callback, errback) pairs. When a result
arrives (``callback(value)``) or an error does (``errback(exc)``), the pairs run
synchronously, in order: each success feeds the next callback, each raised
exception feeds the next errback, and an errback that returns normally puts the
chain back on the success path. Errbacks receive the exception object itself;
its traceback is in ``__traceback__``.

A callback that returns another Deferred pauses the outer chain until the inner
one fires; the inner one's result then continues the outer chain, and the inner
Deferred is left holding ``None``. Chains of any depth run iteratively, so a
long series of chained Deferreds never exhausts the Python stack.

An error that reaches the end of a chain with nobody to handle it is logged
(logger ``torsion.defer``) when the Deferred is garbage-collected;
``torsion.testing`` turns such reports into test failures. Cancellation
(``asyncio.CancelledError``) is never reported that way: the canceller knew.

Callbacks added while a Deferred is still waiting run in the ``contextvars``
context that was current when they were added, as asyncio's done-callbacks do.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sys
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar, cast, overload

from torsion.errors import AlreadyCalledError

__all__ = [
    "CancelledError",
    "Deferred",
    "fail",
    "succeed",
]

T = TypeVar("T")
U = TypeVar("U")

CancelledError = asyncio.CancelledError

_log = logging.getLogger("torsion.defer")
_copy_context = contextvars.copy_context

# The callback slot of an entry whose errback slot is a Deferred waiting on
# this one: when the chain reaches it, the result moves to that Deferred.
_CHAIN: Any = object()

_Entry = tuple[Any, Any, "contextvars.Context | None"]


class _ErrorLogger:
    """Reports an error nobody handled when the Deferred holding it is collected.

    Kept apart from ``Deferred`` so that only failed Deferreds pay for a
    finalizer.
    """

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error: BaseException | None = error

    def __del__(self) -> None:
        if self.error is not None:
            report_unhandled(self.error)


def report_unhandled(error: BaseException, what: str = "Deferred") -> None:
    """Log an error that nobody will handle, as torsion reports them all.

    The record (logger ``torsion.defer``, level ERROR) carries the exception
    in its ``torsion_unhandled_error`` attribute, which the test kit looks for.
    """
    # At interpreter shutdown logging may be gone; nothing is left to tell.
    with contextlib.suppress(Exception):
        _log.error(
            "Unhandled error in %s: %s",
            what,
            _describe(error),
            exc_info=(type(error), error, error.__traceback__),
            extra={"torsion_unhandled_error": error},
        )


def _discard(_: object) -> None:
    """Drop a value (a canceller's result is not used)."""


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Deferred(Generic[T]):
    """A result that will arrive later, with callbacks waiting for it.

    Args:
        canceller: Called with the Deferred when ``cancel()`` is called before
            a result arrived; it should stop the work and may fire the
            Deferred itself. If it does not, the Deferred fails with
            ``CancelledError``.

    Deferred is compiled with mypyc where the build allows, and so cannot be
    subclassed: wrap one, or add callbacks, instead.
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_called",
        "_canceller",
        "_chained_to",
        "_failed",
        "_logger",
        "_paused",
        "_result",
        "_running",
        "_suppress_already_called",
    )

    def __init__(self, canceller: Callable[[Deferred[T]], None] | None = None) -> None:
        self._callbacks: list[_Entry] = []
        self._canceller = canceller
        self._called = False
        self._failed = False
        self._paused = 0
        self._running = False
        self._result: Any = None
        self._chained_to: Deferred[Any] | None = None
        self._logger: _ErrorLogger | None = None
        self._suppress_already_called = False

    # -- inspection ---------------------------------------------------------

    @property
    def called(self) -> bool:
        """Whether a result (or an error) has arrived."""
        return self._called

    @property
    def paused(self) -> bool:
        """Whether the chain is paused, by ``pause()`` or by a chained Deferred."""
        return self._paused > 0

    def __repr__(self) -> str:
        if not self._called:
            state = "waiting"
        elif self._chained_to is not None:
            state = f"waiting on {self._chained_to!r}"
        elif self._failed:
            state = f"failed with {_describe(self._result)}"
        else:
            state = f"result={self._result!r}"
        return f"<Deferred at {id(self):#x} {state}>"

    # -- adding callbacks -----------------------------------------------------

    @overload
    def add_callback(self, callback: Callable[[T], Deferred[U]]) -> Deferred[U]: ...

    @overload
    def add_callback(self, callback: Callable[[T], U]) -> Deferred[U]: ...

    def add_callback(self, callback: Callable[[T], Any]) -> Deferred[Any]:
        """Add a callback for the success path; errors pass it by.

        Returns:
            This Deferred, now carrying what the callback returns.
        """
        if self._called:
            self._callbacks.append((callback, None, None))
            if not self._paused and not self._running:
                self._run_callbacks()
        else:
            self._callbacks.append((callback, None, _copy_context()))
        return self

    @overload
    def add_errback(self, errback: Callable[[BaseException], Deferred[U]]) -> Deferred[T | U]: ...

    @overload
    def add_errback(self, errback: Callable[[BaseException], U]) -> Deferred[T | U]: ...

    def add_errback(self, errback: Callable[[BaseException], Any]) -> Deferred[Any]:
        """Add an errback for the error path; results pass it by.

        The errback receives the exception. Returning a value recovers (the
        chain continues on the success path); raising continues the error path.
        """
        if self._called:
            self._callbacks.append((None, errback, None))
            if not self._paused and not self._running:
                self._run_callbacks()
        else:
            self._callbacks.append((None, errback, _copy_context()))
        return self

    @overload
    def add_both(self, callback: Callable[[T | BaseException], Deferred[U]]) -> Deferred[U]: ...

    @overload
    def add_both(self, callback: Callable[[T | BaseException], U]) -> Deferred[U]: ...

    def add_both(self, callback: Callable[[Any], Any]) -> Deferred[Any]:
        """Add one function for both paths: it gets the result or the exception."""
        return self.add_callbacks(callback, callback)

    def add_callbacks(
        self,
        callback: Callable[[T], Any] | None,
        errback: Callable[[BaseException], Any] | None = None,
    ) -> Deferred[Any]:
        """Add a callback and an errback as one step of the chain.

        Exactly one of them runs: an exception raised by ``callback`` goes to
        the *next* step's errback, not to this ``errback``. Either may be None
        to let that path pass by.
        """
        if self._called:
            self._callbacks.append((callback, errback, None))
            if not self._paused and not self._running:
                self._run_callbacks()
        else:
            self._callbacks.append((callback, errback, _copy_context()))
        return self

    def chain_deferred(self, other: Deferred[T]) -> Deferred[None]:
        """Fire ``other`` with this Deferred's result, leaving ``None`` here."""
        return self.add_callbacks(other.callback, other.errback)

    # -- firing ---------------------------------------------------------------

    def callback(self, result: T) -> None:
        """Give the Deferred its result and run the callbacks.

        Raises:
            AlreadyCalledError: It already had a result.
            TypeError: ``result`` is a Deferred (return it from a callback to
                chain instead).
        """
        if self._called:
            if self._suppress_already_called:
                self._suppress_already_called = False
                return
            raise AlreadyCalledError(f"{self!r} already has a result")
        if isinstance(result, Deferred):
            raise TypeError("callback() takes a result, not a Deferred; chain it instead")
        self._called = True
        self._result = result
        if self._callbacks and not self._paused:
            self._run_callbacks()

    def errback(self, exc: BaseException | None = None) -> None:
        """Give the Deferred an error and run the errbacks.

        Args:
            exc: The exception. If omitted, the exception being handled now.

        Raises:
            AlreadyCalledError: It already had a result.
            TypeError: No exception was given and none is being handled.
        """
        if exc is None:
            exc = sys.exc_info()[1]
            if exc is None:
                raise TypeError("errback() without an argument needs an exception being handled")
        elif not isinstance(exc, BaseException):
            raise TypeError(f"errback() takes an exception, not {type(exc).__name__}")
        if self._called:
            if self._suppress_already_called:
                self._suppress_already_called = False
                return
            raise AlreadyCalledError(f"{self!r} already has a result")
        self._called = True
        self._failed = True
        self._result = exc
        if not self._paused:
            self._run_callbacks()

    def pause(self) -> None:
        """Stop running callbacks until ``unpause()``; results queue up."""
        self._paused += 1

    def unpause(self) -> None:
        """Undo one ``pause()``; the chain runs on once none remain.

        Raises:
            ValueError: The Deferred was not paused.
        """
        if self._paused == 0:
            raise ValueError("unpause() of a Deferred that is not paused")
        self._paused -= 1
        if not self._paused and self._called:
            self._run_callbacks()

    def cancel(self) -> None:
        """Ask for the work behind this Deferred to stop.

        Before a result arrived: the canceller runs, and unless it fired the
        Deferred, the Deferred fails with ``CancelledError``; a result the work
        delivers afterwards is then ignored (once). While the chain waits on a
        chained Deferred: that one is cancelled instead. Afterwards: nothing.
        """
        if not self._called:
            self._cancel_waiting()
        elif self._chained_to is not None:
            self._chained_to.cancel()

    def _cancel_waiting(self) -> None:
        canceller = self._canceller
        if canceller is None:
            self._suppress_already_called = True
        else:
            try:
                canceller(self)
            except BaseException as exc:  # becomes the Deferred's error
                if not self._called:
                    self.errback(exc)
                    return
                _log.exception("Canceller of %r failed", self)
        if not self._called:
            self.errback(CancelledError())

    # -- the engine -----------------------------------------------------------

    def _run_callbacks(self) -> None:
        if self._running or self._paused:
            # Fired again from inside one of its own callbacks: the loop
            # already running picks up what is new.
            return
        outer = _run_steps(self)
        if outer is None:
            return
        # The chain handed its result to a Deferred that was waiting on it.
        # Walk on iteratively: run the waiter, then come back for the rest.
        stack: list[Deferred[Any]] = [self, outer]
        while stack:
            current = stack[-1]
            if current._paused or current._running:
                stack.pop()
                continue
            outer = _run_steps(current)
            if outer is None:
                stack.pop()
            else:
                stack.append(outer)

    # -- awaiting -------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, T]:
        # Awaiting takes the result, as a chained callback would, so that an
        # error handed to the awaiting coroutine is not also reported unhandled.
        if self._called and not self._paused and not self._running:
            result = self._result
            self._result = None
            if self._failed:
                self._failed = False
                if self._logger is not None:
                    self._logger.error = None
                    self._logger = None
                raise result
            return cast(T, result)
        waiter = _Waiter(self)
        yield waiter
        return cast(T, waiter.result())

    def __iter__(self) -> Generator[Any, None, T]:
        # ``yield from d`` in a generator-based coroutine. Spelled as a method,
        # not an alias of ``__await__``, so that mypyc can compile it.
        return self.__await__()

    # -- asyncio bridge -------------------------------------------------------

    @classmethod
    def from_future(cls, future: asyncio.Future[T] | Awaitable[T]) -> Deferred[T]:
        """Return a Deferred that fires with an asyncio future's outcome.

        Coroutines and other awaitables are wrapped in a task first (which
        needs a running loop). Cancelling the Deferred cancels the future.
        """
        fut = asyncio.ensure_future(future)
        d: Deferred[T] = cls(lambda _: _discard(fut.cancel()))

        def done(f: asyncio.Future[T]) -> None:
            if d._called:
                return
            if f.cancelled():
                d.errback(CancelledError())
                return
            exc = f.exception()
            if exc is None:
                d.callback(f.result())
            else:
                d.errback(exc)

        fut.add_done_callback(done)
        return d

    def as_future(self, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Future[T]:
        """Return an asyncio future with this Deferred's outcome.

        The future takes the result (the Deferred is left holding ``None``).
        Cancelling the future cancels the Deferred.

        Args:
            loop: The loop the future belongs to; the running loop if omitted.
        """
        if loop is None:
            loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def succeeded(result: T) -> None:
            if not future.done():
                future.set_result(result)

        def failed(exc: BaseException) -> None:
            if future.done():
                return
            if isinstance(exc, CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)

        def future_done(f: asyncio.Future[T]) -> None:
            if f.cancelled():
                self.cancel()

        self.add_callbacks(succeeded, failed)
        future.add_done_callback(future_done)
        return future


def _run_steps(current: Deferred[Any]) -> Deferred[Any] | None:
    """Run ``current``'s pending steps until they end, it pauses, or it hands off.

    Returns the Deferred that was waiting on ``current`` and can now go on, if
    the chain reached such a hand-off; the caller runs it, then calls again
    for the rest of ``current``'s steps.
    """
    callbacks = current._callbacks
    handed_to: Deferred[Any] | None = None
    result = current._result
    failed = current._failed
    if callbacks:
        current._running = True
        done = 0
        try:
            # Iterating while callbacks append more is fine: the list iterator
            # looks at the length each time.
            for callback, errback, context in callbacks:
                done += 1
                if callback is _CHAIN:
                    waiter: Deferred[Any] = errback
                    waiter._result = result
                    waiter._failed = failed
                    waiter._chained_to = None
                    result = None
                    failed = False
                    waiter._paused -= 1
                    if not waiter._paused:
                        handed_to = waiter
                        break
                    continue
                fn = errback if failed else callback
                if fn is None:
                    continue
                try:
                    result = fn(result) if context is None else context.run(fn, result)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as exc:
                    result = exc
                    failed = True
                else:
                    failed = False
                    if isinstance(result, Deferred):
                        inner: Deferred[Any] = result
                        if inner is current:
                            result = TypeError(f"a callback of {current!r} returned it")
                            failed = True
                        elif inner._called and not inner._paused and not inner._running:
                            # Already settled: take its result without pausing.
                            result = inner._result
                            failed = inner._failed
                            inner._result = None
                            inner._failed = False
                            if inner._logger is not None:
                                inner._logger.error = None
                                inner._logger = None
                        else:
                            current._paused += 1
                            current._chained_to = inner
                            inner._callbacks.append((_CHAIN, current, None))
                if current._paused:
                    break
        finally:
            current._running = False
            current._result = result
            current._failed = failed
            del callbacks[:done]
    # Keep the unhandled-error report in step with the result now held.
    if failed:
        logger = current._logger
        if logger is not None:
            logger.error = result
        elif not isinstance(result, CancelledError):
            current._logger = _ErrorLogger(result)
    elif current._logger is not None:
        current._logger.error = None
        current._logger = None
    return handed_to


class _Waiter:
    """What ``await deferred`` yields while the Deferred has no result yet.

    torsion's coroutine driver recognises it and waits on the Deferred
    directly (``wait``). To an asyncio Task it looks like a future (the
    duck-typed protocol ``Task`` uses for foreign futures), so a pending
    Deferred can be awaited from plain asyncio code as well. Either way the
    waiter takes the Deferred's result, leaving ``None`` behind.
    """

    __slots__ = (
        "_asyncio_future_blocking",
        "_done",
        "_failed",
        "_result",
        "_resume",
        "deferred",
    )

    def __init__(self, deferred: Deferred[Any]) -> None:
        self.deferred = deferred
        self._asyncio_future_blocking = True
        self._done = False
        self._failed = False
        self._result: Any = None
        self._resume: Callable[[], object] | None = None

    def wait(self, resume: Callable[[], object]) -> None:
        """Call ``resume()`` once the Deferred has fired and ``result()`` is ready."""
        self._resume = resume
        self.deferred.add_callbacks(self._succeeded, self._failed_with)

    def result(self) -> Any:
        if not self._done:
            # Only reachable if a driver resumed the coroutine too early.
            raise asyncio.InvalidStateError("the awaited Deferred has no result yet")
        if self._failed:
            raise self._result
        return self._result

    def _succeeded(self, result: Any) -> None:
        self._done = True
        self._result = result
        self._resume()  # type: ignore[misc]

    def _failed_with(self, exc: BaseException) -> None:
        self._done = True
        self._failed = True
        self._result = exc
        self._resume()  # type: ignore[misc]

    # The part of the future protocol that asyncio.Task uses.

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._done and self._failed and isinstance(self._result, CancelledError)

    def add_done_callback(
        self,
        fn: Callable[[Any], object],
        *,
        context: contextvars.Context | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.wait(lambda: loop.call_soon(fn, self, context=context))

    def cancel(self, msg: object = None) -> bool:
        if self._done:
            return False
        self.deferred.cancel()
        return True


def succeed(result: T) -> Deferred[T]:
    """Return a Deferred that already has ``result``."""
    d: Deferred[T] = Deferred()
    d._called = True
    d._result = result
    return d


def fail(exc: BaseException | None = None) -> Deferred[Any]:
    """Return a Deferred that already failed with ``exc`` (default: the current one)."""
    d: Deferred[Any] = Deferred()
    d.errback(exc)
    return d

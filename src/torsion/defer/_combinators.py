"""Waiting on several Deferreds at once, and on one for a limited time.

``gather`` wants every result (and by default gives up on the first error),
``settle`` wants every outcome whatever it is, ``race`` wants the first
success, and ``timeout`` gives up on one Deferred after a while.

The combinators take their inputs' results the way ``await`` does: each input
Deferred is left holding ``None``, and every error an input ends with is
handled by the combinator (it reaches the combinator's own Deferred or is
deliberately dropped), so none is logged as unhandled. Pass each Deferred once;
coroutines are started with ``ensure_deferred``.

Cancelling a combinator's Deferred cancels every input still waiting and fails
the combinator with ``CancelledError``, whatever those inputs end with, so that
cancelling a coroutine that awaits a combinator really stops it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Literal, NoReturn, Protocol, TypeAlias, TypeVar, cast

from torsion.defer._coroutines import ensure_deferred
from torsion.defer._deferred import CancelledError, Deferred, succeed
from torsion.errors import BaseFailureGroup

__all__ = [
    "Failed",
    "Outcome",
    "Succeeded",
    "gather",
    "race",
    "settle",
    "timeout",
]

T = TypeVar("T")

_Input: TypeAlias = "Deferred[T] | Coroutine[Any, Any, T]"


# -- outcomes -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Succeeded(Generic[T]):
    """The outcome of something that produced a value.

    Attributes:
        value: What it produced.
    """

    value: T

    @property
    def ok(self) -> Literal[True]:
        """Always true: this is a success."""
        return True

    def unwrap(self) -> T:
        """Return the value."""
        return self.value


@dataclass(frozen=True, slots=True)
class Failed:
    """The outcome of something that raised.

    Attributes:
        error: What it raised (its traceback in ``__traceback__``).
    """

    error: BaseException

    @property
    def ok(self) -> Literal[False]:
        """Always false: this is a failure."""
        return False

    def unwrap(self) -> NoReturn:
        """Raise the error again."""
        raise self.error


Outcome: TypeAlias = Succeeded[T] | Failed
"""What ``settle`` reports per input; tell the two apart with ``match`` or ``isinstance``."""


# -- inputs -------------------------------------------------------------------


def _deferreds(items: Iterable[_Input[T]], caller: str) -> list[Deferred[T]]:
    """Check the inputs, then turn each into a Deferred (starting coroutines).

    Nothing is started unless every input is acceptable; if one is not, the
    coroutines given are closed, as the caller gave them away.
    """
    given: list[Any] = list(items)  # checked below: callers are not always typed
    problem: Exception | None = None
    seen: set[int] = set()
    for item in given:
        if not isinstance(item, Deferred | Coroutine | Generator):
            problem = TypeError(f"{caller}() takes Deferreds and coroutines, not {item!r}")
            break
        if id(item) in seen:
            problem = ValueError(f"{caller}() was given {item!r} twice")
            break
        seen.add(id(item))
    if problem is not None:
        for item in given:
            if isinstance(item, Coroutine | Generator):
                item.close()
        raise problem
    return [ensure_deferred(item) for item in given]


class _Watcher:
    """What the combinators share: the inputs, which have settled, and cancelling.

    ``done`` is set once the combinator's own outcome is decided (or it was
    cancelled); from then on the inputs' outcomes are taken and dropped.
    """

    __slots__ = ("deferreds", "done", "settled")

    def __init__(self, deferreds: list[Deferred[Any]]) -> None:
        self.deferreds = deferreds
        self.settled = [False] * len(deferreds)
        self.done = False

    def watch(self) -> None:
        """Add this watcher's callbacks to every input, in order."""
        for index, d in enumerate(self.deferreds):
            d.add_callbacks(self._callback_for(index), self._errback_for(index))

    def _callback_for(self, index: int) -> Callable[[Any], None]:
        def succeeded(value: Any) -> None:
            self.settled[index] = True
            if not self.done:
                self.succeeded(index, value)

        return succeeded

    def _errback_for(self, index: int) -> Callable[[BaseException], None]:
        def failed(error: BaseException) -> None:
            self.settled[index] = True
            if not self.done:
                self.failed(index, error)

        return failed

    def succeeded(self, index: int, value: Any) -> None:
        """Input ``index`` produced ``value`` while the outcome is open."""
        raise NotImplementedError

    def failed(self, index: int, error: BaseException) -> None:
        """Input ``index`` failed with ``error`` while the outcome is open."""
        raise NotImplementedError

    def cancel(self, _: object = None) -> None:
        """Decide nothing more, and cancel every input still waiting.

        Used as the combinator's canceller, and after the outcome is decided
        early. Inputs not watched yet are cancelled too; ``watch`` then takes
        whatever they ended with.
        """
        self.done = True
        for index, d in enumerate(self.deferreds):
            if not self.settled[index]:
                d.cancel()


# -- gather -------------------------------------------------------------------


def gather(items: Iterable[_Input[T]], *, fail_fast: bool = True) -> Deferred[list[T]]:
    """Wait for every input; fire with their results, in input order.

    Args:
        items: Deferreds and coroutines (which are started at once).
        fail_fast: If true, the first input to fail makes the others be
            cancelled (whatever they end with is dropped) and the gather fail
            with that same error. If false, every input is waited for and, if
            any failed, the gather fails with a ``BaseFailureGroup`` holding
            every error in input order (a ``FailureGroup`` unless one of them
            is a ``CancelledError`` or another non-``Exception``).

    Returns:
        A Deferred of the list of results; ``[]`` at once for no inputs.
        Cancelling it cancels the inputs still waiting and fails it with
        ``CancelledError``.

    Raises:
        TypeError: An input is neither a Deferred nor a coroutine.
        ValueError: The same Deferred (or coroutine) was given twice.
    """
    deferreds = _deferreds(items, "gather")
    if not deferreds:
        return succeed([])
    return _Gather(deferreds, fail_fast).result


class _Gather(_Watcher, Generic[T]):
    __slots__ = ("errors", "fail_fast", "failures", "remaining", "result", "values")

    def __init__(self, deferreds: list[Deferred[T]], fail_fast: bool) -> None:
        super().__init__(deferreds)
        self.fail_fast = fail_fast
        self.values: list[Any] = [None] * len(deferreds)
        self.errors: list[BaseException | None] = [None] * len(deferreds)
        self.failures = 0
        self.remaining = len(deferreds)
        self.result: Deferred[list[T]] = Deferred(self.cancel)
        self.watch()

    def succeeded(self, index: int, value: Any) -> None:
        self.values[index] = value
        self._count()

    def failed(self, index: int, error: BaseException) -> None:
        if self.fail_fast:
            self.cancel()
            self.result.errback(error)
            return
        self.errors[index] = error
        self.failures += 1
        self._count()

    def _count(self) -> None:
        self.remaining -= 1
        if self.remaining:
            return
        self.done = True
        if not self.failures:
            self.result.callback(self.values)
            return
        errors = [e for e in self.errors if e is not None]
        message = f"{len(errors)} of {len(self.errors)} gathered failed"
        self.result.errback(BaseFailureGroup(message, errors))


# -- settle -------------------------------------------------------------------


def settle(items: Iterable[_Input[T]]) -> Deferred[list[Outcome[T]]]:
    """Wait for every input and report how each one ended, in input order.

    The Twisted ``DeferredList`` with ``consumeErrors=True``: errors become
    ``Failed`` entries and are never logged as unhandled. (Its
    ``fireOnOneCallback`` is ``race`` and its ``fireOnOneErrback`` is
    ``gather``.)

    Args:
        items: Deferreds and coroutines (which are started at once).

    Returns:
        A Deferred of one ``Succeeded`` or ``Failed`` per input; ``[]`` at once
        for no inputs. It only fails if cancelled: that cancels the inputs
        still waiting and fails it with ``CancelledError``.

    Raises:
        TypeError: An input is neither a Deferred nor a coroutine.
        ValueError: The same Deferred (or coroutine) was given twice.
    """
    deferreds = _deferreds(items, "settle")
    if not deferreds:
        return succeed([])
    return _Settle(deferreds).result


class _Settle(_Watcher, Generic[T]):
    __slots__ = ("outcomes", "remaining", "result")

    def __init__(self, deferreds: list[Deferred[T]]) -> None:
        super().__init__(deferreds)
        self.outcomes: list[Outcome[T] | None] = [None] * len(deferreds)
        self.remaining = len(deferreds)
        self.result: Deferred[list[Outcome[T]]] = Deferred(self.cancel)
        self.watch()

    def succeeded(self, index: int, value: Any) -> None:
        self.outcomes[index] = Succeeded(value)
        self._count()

    def failed(self, index: int, error: BaseException) -> None:
        self.outcomes[index] = Failed(error)
        self._count()

    def _count(self) -> None:
        self.remaining -= 1
        if not self.remaining:
            self.done = True
            self.result.callback(cast("list[Outcome[T]]", self.outcomes))


# -- race ---------------------------------------------------------------------


def race(items: Iterable[_Input[T]]) -> Deferred[tuple[int, T]]:
    """Wait for the first input to succeed, and cancel the others.

    Failures do not end the race while some input may still succeed. The
    losers are cancelled before the race fires, and what they end with is
    dropped.

    Args:
        items: Deferreds and coroutines (which are started at once); at least
            one.

    Returns:
        A Deferred of ``(index, result)`` of the winner. If every input fails,
        it fails with a ``BaseFailureGroup`` of their errors in input order (a
        ``FailureGroup`` unless one is a ``CancelledError`` or another
        non-``Exception``). Cancelling it cancels every input still waiting and
        fails it with ``CancelledError``.

    Raises:
        TypeError: An input is neither a Deferred nor a coroutine.
        ValueError: No inputs, or the same Deferred given twice.
    """
    deferreds = _deferreds(items, "race")
    if not deferreds:
        raise ValueError("race() needs at least one Deferred or coroutine")
    return _Race(deferreds).result


class _Race(_Watcher, Generic[T]):
    __slots__ = ("errors", "failures", "result")

    def __init__(self, deferreds: list[Deferred[T]]) -> None:
        super().__init__(deferreds)
        self.errors: list[BaseException | None] = [None] * len(deferreds)
        self.failures = 0
        self.result: Deferred[tuple[int, T]] = Deferred(self.cancel)
        self.watch()

    def succeeded(self, index: int, value: Any) -> None:
        self.cancel()
        self.result.callback((index, value))

    def failed(self, index: int, error: BaseException) -> None:
        self.errors[index] = error
        self.failures += 1
        if self.failures == len(self.errors):
            self.done = True
            errors = [e for e in self.errors if e is not None]
            self.result.errback(BaseFailureGroup(f"all {len(errors)} raced failed", errors))


# -- timeout ------------------------------------------------------------------


class _Cancellable(Protocol):
    """A scheduled call that can be called off (``DelayedCall``, ``asyncio.TimerHandle``)."""

    def cancel(self) -> None:
        """Stop the call from happening."""
        ...


class _Scheduler(Protocol):
    """What ``timeout`` needs of a clock: the reactor, ``testing.Clock``, an asyncio loop."""

    def call_later(self, delay: float, f: Callable[..., object], /, *args: Any) -> _Cancellable:
        """Call ``f(*args)`` once ``delay`` seconds have passed."""
        ...


def timeout(d: _Input[T], seconds: float, clock: _Scheduler) -> Deferred[T]:
    """Give up on ``d`` if it has not fired within ``seconds`` on ``clock``.

    On expiry ``d`` is cancelled, and if that makes it fail with
    ``CancelledError``, the error becomes the builtin ``TimeoutError`` (the
    ``CancelledError`` as its ``__cause__``). If ``d``'s canceller makes it end
    some other way (a partial result, its own error), that outcome wins and is
    passed on unchanged. If ``d`` fires first, the timer is cancelled: no call
    stays scheduled on the clock either way.

    The conversion is a step added to ``d``'s own chain, so it applies to
    callbacks added after this call; earlier ones see the ``CancelledError``.

    Args:
        d: The Deferred (or a coroutine, which is started).
        seconds: How long to wait.
        clock: Where to schedule the expiry: anything with
            ``call_later(delay, f, *args)`` returning a handle with
            ``cancel()``.

    Returns:
        ``d`` itself (or the coroutine's Deferred), with the timeout in place.

    Raises:
        ValueError: ``seconds`` is negative or not a number (nothing is
            started or changed then).
    """
    if not seconds >= 0:
        raise ValueError(f"timeout() needs seconds >= 0, not {seconds!r}")
    deferred = ensure_deferred(d)
    timer: _Cancellable | None = None
    expired = False
    settled = False

    def expire() -> None:
        nonlocal expired
        expired = True
        deferred.cancel()

    def stop_timer() -> None:
        nonlocal settled
        settled = True
        if timer is not None and not expired:
            timer.cancel()

    def succeeded(result: T) -> T:
        stop_timer()
        return result

    def failed(error: BaseException) -> NoReturn:
        stop_timer()
        if expired and isinstance(error, CancelledError):
            raise TimeoutError(f"timed out after {seconds} seconds") from error
        raise error

    deferred.add_callbacks(succeeded, failed)
    if not settled:
        timer = clock.call_later(seconds, expire)
    return deferred

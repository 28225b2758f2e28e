"""Sharing things among Deferreds: a lock, a semaphore and a queue.

None of them needs an event loop: a waiter is a Deferred that fires, from
within ``release()`` or ``put()``, when its turn comes. Waiters are served in
the order they started waiting (first come, first served), and a waiter that
is cancelled leaves the line.

A waiter's callbacks run synchronously inside the ``release()`` or ``put()``
that served it. If they release or put again, the next waiter is served by the
loop already running rather than by a nested call, so a long line of waiters
never deepens the stack.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Generic, ParamSpec, Self, TypeVar, overload

from torsion.defer._coroutines import maybe_deferred
from torsion.defer._deferred import Deferred, succeed
from torsion.errors import QueueOverflowError

__all__ = ["DeferredLock", "DeferredQueue", "DeferredSemaphore"]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")


class _Limiter:
    """A pool of tokens handed out first come, first served.

    Invariant outside ``_serve``: waiters only wait while no token is free.
    """

    __slots__ = ("_limit", "_serving", "_tokens", "_waiters")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._tokens = limit
        self._waiters: deque[Deferred[Any]] = deque()
        self._serving = False

    @property
    def locked(self) -> bool:
        """Whether an ``acquire()`` now would have to wait."""
        return self._tokens == 0 or bool(self._waiters)

    @property
    def waiting(self) -> int:
        """How many ``acquire()`` calls are waiting for their turn."""
        return len(self._waiters)

    def acquire(self) -> Deferred[Self]:
        """Take a token, now or when one is released.

        Returns:
            A Deferred that fires with this object once the token is held.
            Cancelling it while it waits gives up the place in line.
        """
        if self._tokens and not self._waiters:
            self._tokens -= 1
            return succeed(self)
        waiter: Deferred[Self] = Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        return waiter

    def release(self) -> None:
        """Give a token back; the longest waiter (if any) gets it at once.

        Raises:
            RuntimeError: No token is held.
        """
        if self._tokens >= self._limit:
            raise RuntimeError(f"release() of {self!r}, which is not acquired")
        self._tokens += 1
        self._serve()

    def _serve(self) -> None:
        if self._serving:
            return  # The loop below is running further up the stack.
        self._serving = True
        try:
            while self._tokens and self._waiters:
                self._tokens -= 1
                self._waiters.popleft().callback(self)
        finally:
            self._serving = False

    @overload
    def run(
        self, f: Callable[P, Deferred[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Deferred[R]: ...

    @overload
    def run(
        self, f: Callable[P, Coroutine[Any, Any, R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Deferred[R]: ...

    @overload
    def run(self, f: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Deferred[R]: ...

    def run(self, f: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Deferred[Any]:
        """Acquire, call ``f(*args, **kwargs)``, and release once it has finished.

        ``f`` may return a value, a Deferred or a coroutine (see
        ``maybe_deferred``); the token is released when that outcome arrives,
        success or failure.

        Returns:
            A Deferred of ``f``'s outcome. Cancelling it while it waits for the
            token gives up the place in line (``f`` is never called);
            afterwards it cancels what ``f`` returned.
        """

        def release_after(_: object) -> Deferred[Any]:
            outcome = maybe_deferred(f, *args, **kwargs)
            outcome.add_callbacks(self._release_passing, self._release_raising)
            return outcome

        return self.acquire().add_callback(release_after)

    def _release_passing(self, result: R) -> R:
        self.release()
        return result

    def _release_raising(self, error: BaseException) -> Any:
        self.release()
        raise error

    def __aenter__(self) -> Deferred[Self]:
        return self.acquire()

    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Deferred[None]:
        self.release()
        return succeed(None)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} at {id(self):#x} "
            f"{self._tokens}/{self._limit} free, {len(self._waiters)} waiting>"
        )


class DeferredLock(_Limiter):
    """A lock for code that waits on Deferreds: one holder at a time.

    ``async with lock:`` holds it for a block (torsion coroutines and asyncio
    tasks alike); ``lock.run(f, *args)`` for one call; ``acquire()`` and
    ``release()`` by hand otherwise. It is not reentrant: a holder that
    acquires again waits for itself.
    """

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(1)


class DeferredSemaphore(_Limiter):
    """At most ``limit`` holders at a time; the API is ``DeferredLock``'s.

    Args:
        tokens: How many may hold it at once (at least 1).

    Raises:
        ValueError: ``tokens`` is less than 1.
    """

    __slots__ = ()

    def __init__(self, tokens: int) -> None:
        if tokens < 1:
            raise ValueError(f"a DeferredSemaphore needs at least one token, not {tokens}")
        super().__init__(tokens)

    @property
    def tokens(self) -> int:
        """How many tokens are free now."""
        return self._tokens

    @property
    def limit(self) -> int:
        """How many tokens there are in all."""
        return self._limit


class DeferredQueue(Generic[T]):
    """A first-in, first-out queue whose ``get()`` waits with a Deferred.

    Args:
        size: How many items may wait in the queue for a getter; ``None`` for
            no limit.
        backlog: How many ``get()`` calls may wait for an item; ``None`` for
            no limit.

    Raises:
        ValueError: ``size`` or ``backlog`` is negative.
    """

    __slots__ = ("_backlog", "_getters", "_items", "_serving", "_size")

    def __init__(self, size: int | None = None, backlog: int | None = None) -> None:
        if size is not None and size < 0:
            raise ValueError(f"size must not be negative, not {size}")
        if backlog is not None and backlog < 0:
            raise ValueError(f"backlog must not be negative, not {backlog}")
        self._size = size
        self._backlog = backlog
        self._items: deque[T] = deque()
        self._getters: deque[Deferred[T]] = deque()
        self._serving = False

    @property
    def size(self) -> int | None:
        """How many items may wait in the queue (``None``: no limit)."""
        return self._size

    @property
    def backlog(self) -> int | None:
        """How many ``get()`` calls may wait (``None``: no limit)."""
        return self._backlog

    @property
    def pending(self) -> int:
        """How many ``get()`` calls are waiting for an item."""
        return len(self._getters)

    def __len__(self) -> int:
        """How many items are in the queue, waiting for a ``get()``."""
        return len(self._items)

    def put(self, item: T) -> None:
        """Hand ``item`` to the longest-waiting getter, or queue it.

        Raises:
            QueueOverflowError: No getter is waiting and ``size`` items
                already are.
        """
        if not self._getters and self._size is not None and len(self._items) >= self._size:
            raise QueueOverflowError(f"the queue is full ({self._size} items)")
        self._items.append(item)
        self._serve()

    def get(self) -> Deferred[T]:
        """Take the oldest item, now or when one is put.

        Returns:
            A Deferred of the item. Cancelling it while it waits gives up the
            place in line.

        Raises:
            QueueOverflowError: The queue is empty and ``backlog`` getters
                already wait.
        """
        if self._items and not self._getters:
            return succeed(self._items.popleft())
        if self._backlog is not None and len(self._getters) >= self._backlog:
            raise QueueOverflowError(f"too many get() calls waiting ({self._backlog})")
        getter: Deferred[T] = Deferred(self._getters.remove)
        self._getters.append(getter)
        self._serve()
        return getter

    def _serve(self) -> None:
        if self._serving:
            return  # The loop below is running further up the stack.
        self._serving = True
        try:
            while self._items and self._getters:
                self._getters.popleft().callback(self._items.popleft())
        finally:
            self._serving = False

    def __repr__(self) -> str:
        return (
            f"<DeferredQueue at {id(self):#x} {len(self._items)} items, "
            f"{len(self._getters)} getters waiting>"
        )

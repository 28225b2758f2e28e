"""A pool of client connections, kept per origin for reuse.

``ConnectionPool`` hands out connections by key (the HTTP client's key is
the origin: scheme, host, port, and the proxy in between): an idle one if it
has one (the most recently used, likeliest to be still open), else a new
one while the key and the whole pool are under their limits, else the
caller waits its turn, first come first served. A connection given back as
reusable stays idle for ``idle_timeout`` seconds and is then closed; one
given back as not reusable is closed at once and frees its place. One timer
sweeps the idle connections, whatever their number. When the
pool is full and a caller waits for another origin, the idle connection
unused the longest is closed to make room.

The pool knows nothing of HTTP: it needs of a connection only ``is_open``
and ``close()``, and of time only a ``Clock``, so it is tested on a fake one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from torsion.defer import Deferred, QueueOverflowError, fail, succeed
from torsion.internet import Clock, DelayedCall
from torsion.web._client_errors import ClientClosedError

__all__ = ["ConnectionPool", "Lease", "PooledConnection"]


class PooledConnection(Protocol):
    """What the pool needs of a connection."""

    @property
    def is_open(self) -> bool:
        """Whether it can still carry a request."""
        ...

    def close(self) -> None:
        """Close it."""
        ...


K = TypeVar("K", bound=Hashable)
C = TypeVar("C", bound=PooledConnection)


@dataclass(frozen=True, slots=True)
class Lease(Generic[C]):
    """A connection handed out by the pool.

    Attributes:
        connection: The connection; give it back with ``release``.
        reused: Whether it carried requests before (it may have been closed
            by the server since: see ``ResponseNeverReceivedError``).
    """

    connection: C
    reused: bool


@dataclass(eq=False, slots=True)
class _Idle(Generic[C]):
    connection: C
    since: float


class _Waiter(Generic[K, C]):
    """One call to ``acquire``: waiting its turn, then connecting."""

    __slots__ = ("attempt", "connect", "fresh", "key", "pool", "result")

    def __init__(
        self, pool: ConnectionPool[K, C], key: K, connect: Callable[[], Deferred[C]], fresh: bool
    ) -> None:
        self.pool = pool
        self.key = key
        self.connect = connect
        self.fresh = fresh
        self.attempt: Deferred[C] | None = None
        self.result: Deferred[Lease[C]] = Deferred(self._cancel)

    def _cancel(self, _: Deferred[Lease[C]]) -> None:
        if self.attempt is not None:
            self.attempt.cancel()
        elif self in self.pool._waiters:
            self.pool._waiters.remove(self)


class ConnectionPool(Generic[K, C]):
    """Connections kept by key, bounded per key and in all.

    Args:
        clock: Times idle connections out.
        max_per_key: The most connections (connecting, busy or idle) per key.
        max_total: The most connections in all.
        idle_timeout: Seconds an idle connection is kept.
        max_waiters: The most callers waiting for a connection at once; one
            more fails at once with ``QueueOverflowError``.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        max_per_key: int = 10,
        max_total: int = 100,
        idle_timeout: float = 60.0,
        max_waiters: int = 10_000,
    ) -> None:
        if max_per_key < 1 or max_total < 1:
            raise ValueError("a pool needs room for at least one connection")
        if idle_timeout < 0:
            raise ValueError(f"idle_timeout must not be negative, not {idle_timeout}")
        self._clock = clock
        self.max_per_key = max_per_key
        self.max_total = max_total
        self.idle_timeout = idle_timeout
        self.max_waiters = max_waiters
        self._open: dict[K, int] = {}
        self._total = 0
        self._idle: dict[K, list[_Idle[C]]] = {}
        self._waiters: deque[_Waiter[K, C]] = deque()
        self._closed = False
        # One timer for every idle connection, not one each: a connection
        # taken and given back per request would otherwise cost a timer
        # scheduled and cancelled per request.
        self._sweeper: DelayedCall | None = None

    # What is in the pool.

    def open_count(self, key: K | None = None) -> int:
        """How many connections are open or opening, for ``key`` or in all."""
        return self._total if key is None else self._open.get(key, 0)

    def idle_count(self, key: K | None = None) -> int:
        """How many connections are idle, for ``key`` or in all."""
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(idle) for idle in self._idle.values())

    @property
    def waiting(self) -> int:
        """How many callers wait for a connection."""
        return len(self._waiters)

    # Taking and giving back.

    def acquire(
        self, key: K, connect: Callable[[], Deferred[C]], *, fresh: bool = False
    ) -> Deferred[Lease[C]]:
        """Get a connection for ``key``: an idle one, a new one, or the next free one.

        Args:
            key: Which connections will do (the origin).
            connect: Makes a new connection; its Deferred fires with it
                (cancelling it must stop the attempt).
            fresh: Take no idle connection: make a new one (closing an idle
                one of ``key`` if that is what stands in the way).

        Returns:
            A Deferred of the ``Lease``; it fails with what ``connect``
            failed with, or ``ClientClosedError`` once the pool is closed.
            Cancelling it stops the attempt or the wait.
        """
        if self._closed:
            return fail(ClientClosedError("the HTTP client is closed"))
        if not fresh:
            connection = self._take_idle(key)
            if connection is not None:
                return succeed(Lease(connection, True))
        elif self._open.get(key, 0) >= self.max_per_key or self._total >= self.max_total:
            self._close_one_idle(key)
        waiter = _Waiter(self, key, connect, fresh)
        if self._open.get(key, 0) < self.max_per_key and (
            self._total < self.max_total or self._evict_idle()
        ):
            self._start(waiter)
            return waiter.result
        if len(self._waiters) >= self.max_waiters:
            return fail(QueueOverflowError(f"{self.max_waiters} requests wait for a connection"))
        self._waiters.append(waiter)
        return waiter.result

    def release(self, key: K, connection: C, reusable: bool) -> None:
        """Give a connection back once its request has ended.

        Args:
            key: The key it was acquired for.
            connection: The connection.
            reusable: Whether it may carry another request; if not, the pool
                closes it (if it is still open) and frees its place.
        """
        if not reusable or self._closed or not connection.is_open:
            if connection.is_open:
                connection.close()
            self._forget(key)
            return
        for waiter in self._waiters:
            if waiter.key == key and not waiter.fresh:
                self._waiters.remove(waiter)
                waiter.result.callback(Lease(connection, True))
                return
        self._idle.setdefault(key, []).append(_Idle(connection, self._clock.seconds()))
        if self._sweeper is None:
            self._sweeper = self._clock.call_later(self.idle_timeout, self._sweep)
        self._wake()

    def lost(self, key: K, connection: C) -> None:
        """An idle connection was closed (by the server): forget it."""
        idle = self._idle.get(key)
        if not idle:
            return
        for index, entry in enumerate(idle):
            if entry.connection is connection:
                del idle[index]
                if not idle:
                    del self._idle[key]
                self._forget(key)
                return

    def close(self) -> None:
        """Close every idle connection and fail every waiter with ``ClientClosedError``.

        Connections in use are closed when they are given back.
        """
        self._closed = True
        idle, self._idle = self._idle, {}
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for key, entries in idle.items():
            for entry in entries:
                entry.connection.close()
                self._forget(key, wake=False)
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            waiter.result.errback(ClientClosedError("the HTTP client is closed"))

    # Inside.

    def _take_idle(self, key: K) -> C | None:
        idle = self._idle.get(key)
        while idle:
            entry = idle.pop()
            if entry.connection.is_open:
                if not idle:
                    del self._idle[key]
                return entry.connection
            self._forget(key, wake=False)
        self._idle.pop(key, None)
        return None

    def _start(self, waiter: _Waiter[K, C]) -> None:
        key = waiter.key
        result = waiter.result
        self._open[key] = self._open.get(key, 0) + 1
        self._total += 1
        try:
            attempt = waiter.connect()
        except BaseException as exc:
            self._forget(key)
            result.errback(exc)
            return

        def made(connection: C) -> None:
            if result.called or self._closed:
                # Cancelled, and the attempt won anyway; or the pool closed
                # while it connected.
                connection.close()
                self._forget(key)
                if not result.called:
                    result.errback(ClientClosedError("the HTTP client is closed"))
                return
            result.callback(Lease(connection, False))

        def failed(exc: BaseException) -> None:
            self._forget(key)
            if not result.called:
                result.errback(exc)

        waiter.attempt = attempt
        attempt.add_callbacks(made, failed)

    def _forget(self, key: K, *, wake: bool = True) -> None:
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)
        self._total -= 1
        if wake:
            self._wake()

    def _sweep(self) -> None:
        self._sweeper = None
        now = self._clock.seconds()
        oldest: float | None = None
        for key, entries in list(self._idle.items()):
            kept = []
            for entry in entries:
                if now - entry.since >= self.idle_timeout:
                    entry.connection.close()
                    self._forget(key, wake=False)
                else:
                    kept.append(entry)
                    if oldest is None or entry.since < oldest:
                        oldest = entry.since
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]
        if oldest is not None:
            self._sweeper = self._clock.call_later(oldest + self.idle_timeout - now, self._sweep)
        self._wake()

    def _close_one_idle(self, key: K) -> bool:
        idle = self._idle.get(key)
        if not idle:
            return False
        entry = idle.pop(0)
        if not idle:
            del self._idle[key]
        entry.connection.close()
        self._forget(key, wake=False)
        return True

    def _evict_idle(self) -> bool:
        # Only the pool's total stands in the way: close the idle connection
        # unused the longest, whatever its key.
        oldest: tuple[float, K] | None = None
        for key, entries in self._idle.items():
            if entries and (oldest is None or entries[0].since < oldest[0]):
                oldest = (entries[0].since, key)
        if oldest is None:
            return False
        return self._close_one_idle(oldest[1])

    def _wake(self) -> None:
        if self._closed:
            return
        for waiter in list(self._waiters):
            if waiter not in self._waiters:
                continue  # Taken meanwhile, by a callback run from here.
            key = waiter.key
            if not waiter.fresh:
                connection = self._take_idle(key)
                if connection is not None:
                    self._waiters.remove(waiter)
                    waiter.result.callback(Lease(connection, True))
                    continue
            if self._open.get(key, 0) >= self.max_per_key:
                continue
            if self._total >= self.max_total and not self._evict_idle():
                continue
            self._waiters.remove(waiter)
            self._start(waiter)

    def __repr__(self) -> str:
        return f"<ConnectionPool {self._total} open, {self.idle_count()} idle>"

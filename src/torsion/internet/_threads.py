"""Threads: a bounded worker pool, the ``ThreadRunner`` interface, blocking calls.

The reactor's thread runs the event loop and must never block. Blocking work
(a DB-API call, a CPU-heavy function, ``getaddrinfo``) goes to a
``ThreadPool`` worker with ``call_in_thread`` or ``defer_to_thread``; a worker
(or any other thread) hands work back to the reactor's thread with
``call_from_thread``, or waits for its result with
``blocking_call_from_thread``.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from torsion.defer import Deferred, maybe_deferred
from torsion.errors import ReactorThreadError

__all__ = ["ThreadPool", "ThreadRunner", "blocking_call_from_thread"]

T = TypeVar("T")

_log = logging.getLogger("torsion.internet")

# What a worker is told when a job is done: (succeeded, result or exception).
OnResult = Callable[[bool, Any], object]

_Job = tuple["OnResult | None", Callable[..., Any], tuple[Any, ...]]


class ThreadRunner(Protocol):
    """Something that runs functions in worker threads and back on its own thread.

    The reactor is one. Code that only needs threads asks for this.
    """

    def call_in_thread(self, f: Callable[..., object], /, *args: Any) -> None:
        """Run ``f(*args)`` in a worker thread; its result is dropped, errors logged."""
        ...

    def call_from_thread(self, f: Callable[..., object], /, *args: Any) -> None:
        """Run ``f(*args)`` on the reactor's thread; safe to call from any thread."""
        ...

    def defer_to_thread(self, f: Callable[..., T], /, *args: Any) -> Deferred[T]:
        """Run ``f(*args)`` in a worker thread; the result arrives on the reactor's thread."""
        ...

    def in_reactor_thread(self) -> bool:
        """Return whether the caller is running on the reactor's thread."""
        ...


class ThreadPool:
    """A bounded pool of worker threads that grows on demand.

    Workers start when work arrives and no worker is idle, up to
    ``max_workers``; ``start()`` starts ``min_workers`` at once. Workers stay
    until ``stop()``, which lets the work already queued finish and joins
    every worker. A stopped pool starts again when it is given work, so a
    reactor can run again after it stopped.

    Workers are daemon threads, so a pool nobody stopped cannot keep the
    interpreter from exiting.

    Args:
        min_workers: Workers ``start()`` starts before any work arrives.
        max_workers: The most workers that run at once.
        name: The prefix of the workers' thread names.

    Raises:
        ValueError: The bounds are not ``0 <= min_workers <= max_workers``
            with ``max_workers >= 1``.
    """

    def __init__(
        self, min_workers: int = 0, max_workers: int = 10, *, name: str = "torsion-worker"
    ) -> None:
        if max_workers < 1 or not 0 <= min_workers <= max_workers:
            raise ValueError(
                f"need 0 <= min_workers <= max_workers and max_workers >= 1, "
                f"got {min_workers} and {max_workers}"
            )
        self.min_workers = min_workers
        self.max_workers = max_workers
        self.name = name
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: set[threading.Thread] = set()
        self._idle = 0
        self._working = 0
        self._queued = 0
        self._numbers = itertools.count(1)
        # While stopping, one sentinel per worker is queued and no worker
        # starts, so that each sentinel ends exactly one of those workers.
        self._stopping: list[threading.Thread] | None = None

    @property
    def worker_count(self) -> int:
        """How many worker threads are alive, idle or working."""
        return len(self._workers)

    @property
    def working_count(self) -> int:
        """How many workers are running a job right now."""
        return self._working

    @property
    def queued_count(self) -> int:
        """How many jobs wait for a worker."""
        return self._queued

    def start(self) -> None:
        """Start workers until ``min_workers`` are alive."""
        with self._lock:
            while len(self._workers) < self.min_workers:
                self._start_worker()

    def call_in_thread(self, f: Callable[..., object], /, *args: Any) -> None:
        """Run ``f(*args)`` in a worker; an exception it raises is logged."""
        self._submit((None, f, args))

    def call_in_thread_with_callback(
        self, on_result: OnResult, f: Callable[..., object], /, *args: Any
    ) -> None:
        """Run ``f(*args)`` in a worker, then ``on_result(succeeded, result)`` there.

        ``on_result`` runs in the worker thread, with ``True`` and what ``f``
        returned, or ``False`` and the exception it raised.
        """
        self._submit((on_result, f, args))

    def stop(self) -> None:
        """Let queued work finish, then end and join every worker.

        Calling it again, or on a pool with no workers, does nothing. A worker
        that calls it only stops the others (a thread cannot join itself).
        """
        with self._lock:
            workers = self._stopping
            if workers is None:
                workers = list(self._workers)
                if not workers:
                    return
                self._stopping = workers
                for _ in workers:
                    self._queue.put(None)
        me = threading.current_thread()
        for worker in workers:
            if worker is not me:
                worker.join()

    def _submit(self, job: _Job) -> None:
        with self._lock:
            self._queued += 1
            self._queue.put(job)
            if (
                self._stopping is None
                and self._queued > self._idle
                and len(self._workers) < self.max_workers
            ):
                self._start_worker()

    def _start_worker(self) -> None:
        # Called with the lock held.
        worker = threading.Thread(
            target=self._work, name=f"{self.name}-{next(self._numbers)}", daemon=True
        )
        self._workers.add(worker)
        self._idle += 1
        worker.start()

    def _work(self) -> None:
        get = self._queue.get
        lock = self._lock
        while True:
            job = get()
            with lock:
                self._idle -= 1
                if job is None:
                    self._worker_stopped()
                    return
                self._queued -= 1
                self._working += 1
            on_result, f, args = job
            del job
            try:
                result = f(*args)
                succeeded = True
            except BaseException as exc:  # Handed to on_result, or logged.
                result = exc
                succeeded = False
            del f, args
            # The job is done once it returned: counted as such before its
            # result is handed back, or the loop could see the result (and a
            # test end) while this worker still counts as working.
            with lock:
                self._working -= 1
                self._idle += 1
            try:
                if on_result is not None:
                    on_result(succeeded, result)
                elif not succeeded:
                    _log.error(
                        "Unhandled error in a thread: %r",
                        result,
                        exc_info=(type(result), result, result.__traceback__),
                    )
            except BaseException:  # A worker must outlive its jobs.
                _log.exception("Error while handing a thread's result back")
            del result, on_result

    def _worker_stopped(self) -> None:
        # Called with the lock held, by a worker that took a sentinel.
        self._workers.discard(threading.current_thread())
        if self._workers:
            return
        self._stopping = None
        # Work given while stopping waits behind the sentinels: start again for it.
        while self._queued > self._idle and len(self._workers) < self.max_workers:
            self._start_worker()

    def __repr__(self) -> str:
        return (
            f"<ThreadPool {self.name!r} workers={self.worker_count} "
            f"working={self.working_count} queued={self.queued_count} "
            f"max={self.max_workers}>"
        )


def blocking_call_from_thread(reactor: ThreadRunner, f: Callable[..., Any], /, *args: Any) -> Any:
    """Run ``f(*args)`` on the reactor's thread and wait there for its outcome.

    Called from a thread other than the reactor's (a worker, say). ``f`` may
    return a plain value, a Deferred or a coroutine; the caller blocks until
    it has a result, then gets it back, or gets its exception raised.

    Args:
        reactor: What runs ``f``, typically the ``Reactor``.
        f: What to call on the reactor's thread.
        *args: Its arguments.

    Returns:
        What ``f`` returned, or what its Deferred or coroutine ended with.

    Raises:
        ReactorThreadError: Called on the reactor's own thread, where waiting
            would deadlock.
    """
    if reactor.in_reactor_thread():
        raise ReactorThreadError(
            "blocking_call_from_thread() was called on the reactor's thread; it would "
            "wait for itself forever (call the function directly or await it)"
        )
    done = threading.Event()
    outcome: list[tuple[bool, Any]] = []

    def succeeded(result: Any) -> None:
        outcome.append((True, result))
        done.set()

    def failed(exc: BaseException) -> None:
        outcome.append((False, exc))
        done.set()

    def start() -> None:
        maybe_deferred(f, *args).add_callbacks(succeeded, failed)

    reactor.call_from_thread(start)
    done.wait()
    ok, value = outcome.pop()
    if ok:
        return value
    try:
        raise value
    finally:
        del value

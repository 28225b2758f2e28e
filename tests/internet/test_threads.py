"""The thread pool and the reactor's thread functions, with no sleeps."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import pytest

from torsion.defer import CancelledError, Deferred, succeed
from torsion.errors import ReactorThreadError
from torsion.internet import Reactor, ThreadPool, blocking_call_from_thread, defer_later

Wait = Callable[..., Any]
Run = Callable[..., None]
TIMEOUT = 10.0


# -- ThreadPool -------------------------------------------------------------------


def test_pool_is_bounded_and_grows_on_demand() -> None:
    pool = ThreadPool(max_workers=2)
    gate = threading.Event()
    started = threading.Semaphore(0)
    finished = threading.Semaphore(0)

    def job() -> None:
        started.release()
        assert gate.wait(TIMEOUT)
        finished.release()

    assert pool.worker_count == 0
    try:
        for _ in range(5):
            pool.call_in_thread(job)
        assert started.acquire(timeout=TIMEOUT)
        assert started.acquire(timeout=TIMEOUT)
        assert pool.worker_count == 2
        assert pool.working_count == 2
        assert pool.queued_count == 3
        assert "workers=2" in repr(pool)
    finally:
        gate.set()
    for _ in range(5):
        assert finished.acquire(timeout=TIMEOUT)
    pool.stop()
    assert pool.worker_count == 0
    assert pool.working_count == 0
    assert pool.queued_count == 0


def test_idle_worker_is_reused() -> None:
    pool = ThreadPool(max_workers=5)
    names: list[str] = []
    done = threading.Semaphore(0)

    def job() -> None:
        names.append(threading.current_thread().name)
        done.release()

    for _ in range(3):
        pool.call_in_thread(job)
        assert done.acquire(timeout=TIMEOUT)
    assert len(set(names)) == 1
    assert pool.worker_count == 1
    pool.stop()


def test_stop_lets_queued_work_finish_and_is_idempotent() -> None:
    pool = ThreadPool(max_workers=1)
    ran: list[int] = []
    for i in range(10):
        pool.call_in_thread(ran.append, i)
    pool.stop()
    assert ran == list(range(10))
    pool.stop()
    assert pool.worker_count == 0


def test_stopped_pool_starts_again() -> None:
    pool = ThreadPool()
    pool.stop()  # never started: nothing to do
    done = threading.Event()
    pool.call_in_thread(done.set)
    assert done.wait(TIMEOUT)
    pool.stop()
    again = threading.Event()
    pool.call_in_thread(again.set)
    assert again.wait(TIMEOUT)
    pool.stop()
    assert pool.worker_count == 0


def test_work_given_while_stopping_still_runs() -> None:
    pool = ThreadPool(max_workers=1)
    gate = threading.Event()
    started = threading.Event()
    ran = threading.Event()

    def first() -> None:
        started.set()
        assert gate.wait(TIMEOUT)

    pool.call_in_thread(first)
    assert started.wait(TIMEOUT)
    stopper = threading.Thread(target=pool.stop)
    stopper.start()
    pool.call_in_thread(ran.set)  # queued behind the stop
    gate.set()
    stopper.join(TIMEOUT)
    assert ran.wait(TIMEOUT)
    pool.stop()
    assert pool.worker_count == 0


def test_min_workers_start_eagerly() -> None:
    pool = ThreadPool(min_workers=2, max_workers=3)
    pool.start()
    assert pool.worker_count == 2
    pool.start()
    assert pool.worker_count == 2
    pool.stop()
    assert pool.worker_count == 0


@pytest.mark.parametrize(("low", "high"), [(-1, 2), (3, 2), (0, 0)])
def test_bad_bounds(low: int, high: int) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        ThreadPool(low, high)


def test_callback_gets_result_or_exception() -> None:
    pool = ThreadPool()
    results: list[tuple[bool, Any]] = []
    done = threading.Semaphore(0)

    def on_result(ok: bool, value: Any) -> None:
        results.append((ok, value))
        done.release()

    def boom() -> None:
        raise KeyError("k")

    pool.call_in_thread_with_callback(on_result, lambda: 42)
    assert done.acquire(timeout=TIMEOUT)
    pool.call_in_thread_with_callback(on_result, boom)
    assert done.acquire(timeout=TIMEOUT)
    pool.stop()
    assert results[0] == (True, 42)
    assert results[1][0] is False
    assert isinstance(results[1][1], KeyError)


def test_errors_in_threads_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    pool = ThreadPool()

    def boom() -> None:
        raise ValueError("thread failed")

    with caplog.at_level(logging.ERROR, logger="torsion.internet"):
        pool.call_in_thread(boom)
        pool.stop()  # joins: the log record is there now
    assert "thread failed" in caplog.text


# -- the reactor's thread functions ---------------------------------------------------


def test_defer_to_thread_delivers_on_the_reactor_thread(real_reactor: Reactor, wait: Wait) -> None:
    main = threading.get_ident()
    where: list[int] = []
    d = real_reactor.defer_to_thread(lambda x: (threading.get_ident(), x * 2), 21)
    d.add_callback(lambda result: where.append(threading.get_ident()) or result)
    worker, value = wait(real_reactor, d)
    assert value == 42
    assert worker != main
    assert where == [main]


def test_defer_to_thread_error(real_reactor: Reactor, wait: Wait) -> None:
    def boom() -> None:
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        wait(real_reactor, real_reactor.defer_to_thread(boom))


def test_cancelled_defer_to_thread_drops_the_result(real_reactor: Reactor, wait: Wait) -> None:
    gate = threading.Event()
    d = real_reactor.defer_to_thread(gate.wait, TIMEOUT)
    seen: list[Any] = []
    d.add_callbacks(seen.append, seen.append)
    d.cancel()
    assert isinstance(seen[0], CancelledError)
    gate.set()
    after = real_reactor.defer_to_thread(lambda: "next")
    assert wait(real_reactor, after) == "next"
    real_reactor.thread_pool.stop()
    assert len(seen) == 1


def test_call_in_thread_and_call_from_thread(real_reactor: Reactor, wait: Wait) -> None:
    d: Deferred[int] = Deferred()

    def in_thread() -> None:
        real_reactor.call_from_thread(d.callback, threading.get_ident())

    real_reactor.call_in_thread(in_thread)
    worker = wait(real_reactor, d)
    assert worker != threading.get_ident()


def test_call_in_thread_errors_are_logged(
    real_reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> None:
        raise ValueError("from call_in_thread")

    with caplog.at_level(logging.ERROR, logger="torsion.internet"):
        real_reactor.call_in_thread(boom)
        real_reactor.thread_pool.stop()
    assert "from call_in_thread" in caplog.text


def test_in_reactor_thread(real_reactor: Reactor, wait: Wait) -> None:
    assert real_reactor.in_reactor_thread()
    in_worker = real_reactor.defer_to_thread(real_reactor.in_reactor_thread)
    assert wait(real_reactor, in_worker) is False

    async def inside() -> bool:
        return real_reactor.in_reactor_thread()

    assert real_reactor.loop.run_until_complete(inside())


def test_blocking_call_from_thread(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor

    async def coroutine(x: int) -> int:
        await defer_later(r, 0)
        return x + 1

    def on_reactor_thread() -> bool:
        return r.in_reactor_thread()

    def in_worker() -> list[Any]:
        return [
            blocking_call_from_thread(r, lambda: "value"),
            r.blocking_call_from_thread(succeed, "deferred"),
            r.blocking_call_from_thread(defer_later, r, 0, lambda: "later"),
            r.blocking_call_from_thread(coroutine, 1),
            r.blocking_call_from_thread(on_reactor_thread),
        ]

    assert wait(r, r.defer_to_thread(in_worker)) == ["value", "deferred", "later", 2, True]


def test_blocking_call_from_thread_raises_the_error(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor

    async def failing() -> None:
        await defer_later(r, 0)
        raise OSError("on the reactor")

    def in_worker() -> str:
        try:
            r.blocking_call_from_thread(failing)
        except OSError as exc:
            return str(exc)
        return "no error"

    assert wait(r, r.defer_to_thread(in_worker)) == "on the reactor"


def test_blocking_call_from_the_reactor_thread_refuses(real_reactor: Reactor) -> None:
    with pytest.raises(ReactorThreadError, match=r"deadlock|forever"):
        real_reactor.blocking_call_from_thread(lambda: None)

    async def inside() -> None:
        with pytest.raises(ReactorThreadError):
            blocking_call_from_thread(real_reactor, lambda: None)

    real_reactor.loop.run_until_complete(inside())


def test_run_stops_and_joins_the_pool(real_reactor: Reactor, run: Run) -> None:
    r = real_reactor
    results: list[int] = []

    def start() -> None:
        r.defer_to_thread(lambda: 7).add_callback(results.append).add_callback(lambda _: r.stop())

    r.call_when_running(start)
    run(r)
    assert results == [7]
    assert r.thread_pool.worker_count == 0


def test_worker_may_call_back_into_the_reactor_during_shutdown(
    real_reactor: Reactor, run: Run
) -> None:
    # The pool is joined while the loop still runs, so a worker that waits on
    # the reactor thread (blocking_call_from_thread) cannot deadlock shutdown.
    r = real_reactor
    gate = threading.Event()
    results: list[str] = []

    def worker() -> None:
        assert gate.wait(TIMEOUT)
        results.append(r.blocking_call_from_thread(lambda: "answered"))

    r.call_when_running(r.call_in_thread, worker)
    r.call_when_running(r.stop)
    r.add_system_event_trigger("after", "shutdown", gate.set)
    run(r)
    assert results == ["answered"]
    assert r.thread_pool.worker_count == 0


def test_busy_pool_does_not_hold_shutdown_forever(
    real_reactor: Reactor, caplog: pytest.LogCaptureFixture, run: Run
) -> None:
    r = real_reactor
    r.shutdown_timeout = 0.05
    gate = threading.Event()
    r.call_when_running(r.call_in_thread, gate.wait, TIMEOUT)
    r.call_when_running(r.stop)
    try:
        with caplog.at_level(logging.WARNING, logger="torsion.internet"):
            run(r)
        assert "still busy" in caplog.text
    finally:
        gate.set()
    r.thread_pool.stop()
    assert r.thread_pool.worker_count == 0


def test_a_job_no_longer_counts_as_working_when_its_result_is_handed_back() -> None:
    """Whoever the result wakes (a test's end, say) sees the pool idle."""
    pool = ThreadPool(max_workers=1)
    seen: queue.Queue[int] = queue.Queue()
    try:
        pool.call_in_thread_with_callback(
            lambda succeeded, result: seen.put(pool.working_count), lambda: 42
        )
        assert seen.get(timeout=TIMEOUT) == 0
    finally:
        pool.stop()

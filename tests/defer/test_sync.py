"""Tests for DeferredLock, DeferredSemaphore and DeferredQueue."""

from __future__ import annotations

import asyncio
from collections import deque

import pytest
from _outcome import Outcome
from hypothesis import given
from hypothesis import strategies as st

from torsion.defer import (
    CancelledError,
    Deferred,
    DeferredLock,
    DeferredQueue,
    DeferredSemaphore,
    QueueOverflowError,
    ensure_deferred,
)
from torsion.errors import TorsionError

# -- helpers ------------------------------------------------------------------


# -- DeferredLock ---------------------------------------------------------------


def test_lock_acquire_when_free_fires_at_once_with_the_lock() -> None:
    lock = DeferredLock()
    assert not lock.locked
    out = Outcome(lock.acquire())
    assert out.value is lock
    assert lock.locked
    lock.release()
    assert not lock.locked


def test_lock_waiters_are_served_first_come_first_served() -> None:
    lock = DeferredLock()
    order: list[int] = []
    lock.acquire()
    for i in range(4):
        lock.acquire().add_callback(lambda _, i=i: order.append(i))
    assert lock.waiting == 4
    for expected in range(4):
        lock.release()
        assert order == list(range(expected + 1))
        assert lock.locked
    lock.release()
    assert not lock.locked
    assert lock.waiting == 0


def test_lock_release_when_not_held_is_refused() -> None:
    lock = DeferredLock()
    with pytest.raises(RuntimeError, match="not acquired"):
        lock.release()
    lock.acquire()
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def test_lock_cancelled_acquire_leaves_the_line() -> None:
    lock = DeferredLock()
    lock.acquire()
    first = lock.acquire()
    second = Outcome(lock.acquire())
    first_out = Outcome(first)
    first.cancel()
    assert isinstance(first_out.error, CancelledError)
    assert lock.waiting == 1
    lock.release()
    assert second.value is lock
    assert first_out.value is None


def test_lock_cancelling_a_granted_acquire_does_nothing() -> None:
    lock = DeferredLock()
    d = lock.acquire()
    d.cancel()
    assert lock.locked
    assert Outcome(d).value is lock
    lock.release()


def test_lock_cancelling_the_only_waiter_then_release_frees_the_lock() -> None:
    lock = DeferredLock()
    lock.acquire()
    waiter = lock.acquire()
    Outcome(waiter)
    waiter.cancel()
    lock.release()
    assert not lock.locked


def test_lock_run_calls_and_releases() -> None:
    lock = DeferredLock()
    out = Outcome(lock.run(lambda a, b=0: a + b, 1, b=2))
    assert out.value == 3
    assert not lock.locked


def test_lock_run_waits_for_a_returned_deferred() -> None:
    lock = DeferredLock()
    inner: Deferred[str] = Deferred()
    out = Outcome(lock.run(lambda: inner))
    assert lock.locked
    inner.callback("done")
    assert out.value == "done"
    assert not lock.locked


def test_lock_run_runs_a_coroutine_function() -> None:
    lock = DeferredLock()
    gate: Deferred[int] = Deferred()

    async def work(n: int) -> int:
        return n + await gate

    out = Outcome(lock.run(work, 1))
    assert lock.locked
    gate.callback(1)
    assert out.value == 2
    assert not lock.locked


@pytest.mark.parametrize("how", ["raise", "fail"])
def test_lock_run_releases_on_error_and_passes_it(how: str) -> None:
    lock = DeferredLock()
    error = ValueError("in f")
    inner: Deferred[None] = Deferred()

    def f() -> Deferred[None]:
        if how == "raise":
            raise error
        return inner

    out = Outcome(lock.run(f))
    if how == "fail":
        inner.errback(error)
    assert out.error is error
    assert not lock.locked


def test_lock_run_queues_calls_in_order() -> None:
    lock = DeferredLock()
    gates: list[Deferred[None]] = [Deferred() for _ in range(3)]
    started: list[int] = []

    def step(i: int) -> Deferred[None]:
        started.append(i)
        return gates[i]

    outs = [Outcome(lock.run(step, i)) for i in range(3)]
    assert started == [0]
    gates[0].callback(None)
    assert started == [0, 1]
    gates[1].callback(None)
    gates[2].callback(None)
    assert started == [0, 1, 2]
    assert all(o.called for o in outs)
    assert not lock.locked


def test_lock_run_cancelled_while_waiting_never_calls() -> None:
    lock = DeferredLock()
    lock.acquire()
    called: list[int] = []
    d = lock.run(called.append, 1)
    out = Outcome(d)
    d.cancel()
    assert isinstance(out.error, CancelledError)
    lock.release()
    assert called == []
    assert not lock.locked


def test_lock_run_cancelled_while_running_cancels_and_releases() -> None:
    lock = DeferredLock()
    cancelled: list[int] = []
    inner: Deferred[None] = Deferred(lambda _: cancelled.append(1))
    d = lock.run(lambda: inner)
    out = Outcome(d)
    d.cancel()
    assert cancelled == [1]
    assert isinstance(out.error, CancelledError)
    assert not lock.locked


def test_lock_async_with_in_torsion_coroutines() -> None:
    lock = DeferredLock()
    gates: list[Deferred[None]] = [Deferred(), Deferred()]
    log: list[str] = []

    async def critical(name: str, gate: Deferred[None]) -> None:
        async with lock as held:
            assert held is lock
            log.append(f"{name} in")
            await gate
            log.append(f"{name} out")

    a = Outcome(ensure_deferred(critical("a", gates[0])))
    b = Outcome(ensure_deferred(critical("b", gates[1])))
    assert log == ["a in"]
    gates[0].callback(None)
    assert log == ["a in", "a out", "b in"]
    gates[1].callback(None)
    assert a.called
    assert b.called
    assert not lock.locked


def test_lock_async_with_releases_on_error() -> None:
    lock = DeferredLock()

    async def broken() -> None:
        async with lock:
            raise KeyError("inside")

    out = Outcome(ensure_deferred(broken()))
    assert isinstance(out.error, KeyError)
    assert not lock.locked


def test_lock_cancelling_a_coroutine_waiting_in_async_with_leaves_the_line() -> None:
    lock = DeferredLock()
    lock.acquire()

    async def waiter() -> None:
        async with lock:
            pytest.fail("should not get the lock")

    d = ensure_deferred(waiter())
    out = Outcome(d)
    assert lock.waiting == 1
    d.cancel()
    assert isinstance(out.error, CancelledError)
    assert lock.waiting == 0
    lock.release()
    assert not lock.locked


def test_lock_async_with_in_asyncio_tasks() -> None:
    async def main() -> list[str]:
        lock = DeferredLock()
        log: list[str] = []

        async def critical(name: str) -> None:
            async with lock:
                log.append(f"{name} in")
                await asyncio.sleep(0)
                log.append(f"{name} out")

        await asyncio.gather(critical("a"), critical("b"), critical("c"))
        assert not lock.locked
        return log

    log = asyncio.run(main())
    assert log == ["a in", "a out", "b in", "b out", "c in", "c out"]


def test_lock_a_long_line_of_synchronous_runs_does_not_recurse() -> None:
    lock = DeferredLock()
    lock.acquire()
    done: list[int] = []
    for i in range(5000):
        lock.run(done.append, i)
    lock.release()
    assert done == list(range(5000))
    assert not lock.locked


def test_lock_repr_says_how_it_is() -> None:
    lock = DeferredLock()
    lock.acquire()
    Outcome(lock.acquire())
    assert "0/1 free, 1 waiting" in repr(lock)


# -- DeferredSemaphore ----------------------------------------------------------


def test_semaphore_hands_out_its_tokens_then_makes_wait() -> None:
    sem = DeferredSemaphore(2)
    assert (sem.tokens, sem.limit, sem.locked) == (2, 2, False)
    first, second = Outcome(sem.acquire()), Outcome(sem.acquire())
    assert first.value is sem
    assert second.value is sem
    assert (sem.tokens, sem.locked) == (0, True)
    third = Outcome(sem.acquire())
    assert not third.called
    sem.release()
    assert third.value is sem
    assert sem.tokens == 0
    sem.release()
    sem.release()
    assert (sem.tokens, sem.locked) == (2, False)


def test_semaphore_needs_a_token() -> None:
    with pytest.raises(ValueError, match="at least one"):
        DeferredSemaphore(0)


def test_semaphore_release_past_the_limit_is_refused() -> None:
    sem = DeferredSemaphore(3)
    with pytest.raises(RuntimeError):
        sem.release()


def test_semaphore_run_limits_concurrency() -> None:
    sem = DeferredSemaphore(2)
    gates: list[Deferred[None]] = [Deferred() for _ in range(5)]
    running: list[int] = []
    outs = [Outcome(sem.run(lambda i=i: (running.append(i), gates[i])[1])) for i in range(5)]
    assert running == [0, 1]
    gates[1].callback(None)
    assert running == [0, 1, 2]
    gates[0].callback(None)
    gates[2].callback(None)
    assert running == [0, 1, 2, 3, 4]
    gates[3].callback(None)
    gates[4].callback(None)
    assert all(o.called for o in outs)
    assert sem.tokens == 2


@given(
    st.integers(1, 4),
    st.lists(st.sampled_from(["acquire", "release", "cancel-first", "cancel-last"]), max_size=60),
)
def test_semaphore_never_exceeds_its_limit_and_is_fair(limit: int, ops: list[str]) -> None:
    sem = DeferredSemaphore(limit)
    holders = 0
    most = 0
    granted: list[int] = []
    cancelled: set[int] = set()
    line: deque[tuple[int, Deferred[DeferredSemaphore]]] = deque()

    def grant(n: int) -> None:
        nonlocal holders, most
        holders += 1
        most = max(most, holders)
        granted.append(n)

    for n, op in enumerate(ops):
        if op == "acquire":
            d = sem.acquire()
            d.add_callbacks(lambda _, n=n: grant(n), lambda _: None)
            if not d.called:
                line.append((n, d))
        elif op == "release":
            if holders:
                holders -= 1
                sem.release()
                # The longest waiter got the token at once.
                while line and line[0][1].called:
                    line.popleft()
        elif line:
            n_cancelled, d = line.popleft() if op == "cancel-first" else line.pop()
            cancelled.add(n_cancelled)
            d.cancel()
        assert holders <= limit
        assert sem.tokens == limit - holders
        assert sem.waiting == len(line)
        assert sem.tokens == 0 or not line
    assert most <= limit
    # Tokens went out in the order they were asked for, never to a cancelled waiter.
    assert granted == sorted(granted)
    assert not cancelled & set(granted)


# -- DeferredQueue --------------------------------------------------------------


def test_queue_get_after_put_fires_at_once_in_fifo_order() -> None:
    q: DeferredQueue[str] = DeferredQueue()
    q.put("a")
    q.put("b")
    assert len(q) == 2
    assert Outcome(q.get()).value == "a"
    assert Outcome(q.get()).value == "b"
    assert len(q) == 0


def test_queue_get_before_put_waits_and_getters_are_served_in_order() -> None:
    q: DeferredQueue[int] = DeferredQueue()
    outs = [Outcome(q.get()) for _ in range(3)]
    assert q.pending == 3
    q.put(1)
    q.put(2)
    assert [o.value for o in outs] == [1, 2, None]
    assert not outs[2].called
    assert (q.pending, len(q)) == (1, 0)
    q.put(3)
    assert outs[2].value == 3


def test_queue_size_limit_refuses_puts_when_full() -> None:
    q: DeferredQueue[int] = DeferredQueue(size=2)
    q.put(1)
    q.put(2)
    with pytest.raises(QueueOverflowError):
        q.put(3)
    assert isinstance(QueueOverflowError(), TorsionError)
    assert Outcome(q.get()).value == 1
    q.put(3)
    assert len(q) == 2


def test_queue_of_size_zero_hands_over_only_to_a_waiting_getter() -> None:
    q: DeferredQueue[int] = DeferredQueue(size=0)
    with pytest.raises(QueueOverflowError):
        q.put(1)
    out = Outcome(q.get())
    q.put(2)
    assert out.value == 2


def test_queue_backlog_limit_refuses_gets() -> None:
    q: DeferredQueue[int] = DeferredQueue(backlog=1)
    waiting = Outcome(q.get())
    with pytest.raises(QueueOverflowError):
        q.get()
    q.put(1)
    assert waiting.value == 1
    q.put(2)
    assert Outcome(q.get()).value == 2  # an item is there: no waiting


def test_queue_backlog_zero_only_gets_what_is_there() -> None:
    q: DeferredQueue[int] = DeferredQueue(backlog=0)
    with pytest.raises(QueueOverflowError):
        q.get()
    q.put(5)
    assert Outcome(q.get()).value == 5


def test_queue_limits_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="size"):
        DeferredQueue(size=-1)
    with pytest.raises(ValueError, match="backlog"):
        DeferredQueue(backlog=-1)
    q: DeferredQueue[int] = DeferredQueue(size=3, backlog=4)
    assert (q.size, q.backlog) == (3, 4)


def test_queue_cancelled_get_leaves_the_line() -> None:
    q: DeferredQueue[str] = DeferredQueue(backlog=2)
    first = q.get()
    second = Outcome(q.get())
    first_out = Outcome(first)
    first.cancel()
    assert isinstance(first_out.error, CancelledError)
    assert q.pending == 1
    Outcome(q.get())  # room again in the backlog
    q.put("x")
    assert second.value == "x"
    assert first_out.value is None


def test_queue_getter_that_gets_again_goes_to_the_back_of_the_line() -> None:
    q: DeferredQueue[int] = DeferredQueue()
    got: list[tuple[str, int]] = []

    def again(item: int) -> None:
        got.append(("first", item))
        q.get().add_callback(lambda i: got.append(("again", i)))

    q.get().add_callback(again)
    q.get().add_callback(lambda i: got.append(("second", i)))
    for i in range(3):
        q.put(i)
    assert got == [("first", 0), ("second", 1), ("again", 2)]


def test_queue_a_getter_putting_again_does_not_recurse() -> None:
    q: DeferredQueue[int] = DeferredQueue()
    seen: list[int] = []

    def relay(item: int) -> None:
        # Waits again first, then feeds the line: every hand-over goes through put().
        seen.append(item)
        if item < 5000:
            q.get().add_callback(relay)
            q.put(item + 1)

    q.get().add_callback(relay)
    q.put(0)
    assert seen == list(range(5001))
    assert (len(q), q.pending) == (0, 0)


def test_queue_getter_in_a_coroutine() -> None:
    q: DeferredQueue[str] = DeferredQueue()

    async def consumer() -> list[str]:
        return [await q.get(), await q.get()]

    out = Outcome(ensure_deferred(consumer()))
    q.put("a")
    q.put("b")
    assert out.value == ["a", "b"]


def test_queue_repr() -> None:
    q: DeferredQueue[int] = DeferredQueue()
    q.put(1)
    assert "1 items, 0 getters" in repr(q)


@given(st.lists(st.one_of(st.integers(0, 99), st.just("get")), max_size=80))
def test_queue_is_fifo_for_items_and_getters(ops: list[int | str]) -> None:
    # Model: items and getters are two FIFO lines that meet at the front.
    q: DeferredQueue[int] = DeferredQueue()
    items: deque[int] = deque()
    getters: deque[Outcome] = deque()
    handed: list[tuple[Outcome, int]] = []
    for op in ops:
        if op == "get":
            out = Outcome(q.get())
            if items:
                handed.append((out, items.popleft()))
            else:
                getters.append(out)
        else:
            assert isinstance(op, int)
            q.put(op)
            if getters:
                handed.append((getters.popleft(), op))
            else:
                items.append(op)
        assert (len(q), q.pending) == (len(items), len(getters))
    for out, item in handed:
        assert out.value == item
    for out in getters:
        assert not out.called


@given(st.lists(st.sampled_from(["get", "put", "cancel-first", "cancel-last"]), max_size=60))
def test_queue_cancelled_getters_never_get_items(ops: list[str]) -> None:
    q: DeferredQueue[int] = DeferredQueue()
    waiting: deque[Deferred[int]] = deque()
    received: list[int] = []
    put = 0
    for op in ops:
        if op == "get":
            d = q.get()
            d.add_callbacks(received.append, lambda _: None)
            if not d.called:
                waiting.append(d)
        elif op == "put":
            q.put(put)
            put += 1
            if waiting:
                waiting.popleft()
        elif waiting:
            victim = waiting.popleft() if op == "cancel-first" else waiting.pop()
            victim.cancel()
        assert q.pending == len(waiting)
    assert received == list(range(len(received)))
    assert len(received) + len(q) == put

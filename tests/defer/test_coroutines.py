"""Coroutines on Deferreds: ensure_deferred, maybe_deferred and the asyncio bridge."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Generator
from typing import Any

import pytest
from _outcome import results_of

from torsion.defer import (
    CancelledError,
    Deferred,
    ensure_deferred,
    fail,
    maybe_deferred,
    succeed,
)


def test_coroutine_runs_synchronously_through_fired_deferreds() -> None:
    async def add() -> int:
        a = await succeed(1)
        b = await succeed(2)
        return a + b

    assert results_of(ensure_deferred(add())) == [3]


def test_coroutine_waits_for_a_pending_deferred() -> None:
    gate: Deferred[str] = Deferred()
    trace: list[str] = []

    async def work() -> str:
        trace.append("start")
        value = await gate
        trace.append(value)
        return value.upper()

    d = ensure_deferred(work())
    assert trace == ["start"]
    assert not d.called
    gate.callback("go")
    assert trace == ["start", "go"]
    assert results_of(d) == ["GO"]


def test_awaiting_a_failed_deferred_raises_inside_the_coroutine() -> None:
    async def work() -> str:
        try:
            await fail(KeyError("missing"))
        except KeyError as exc:
            return f"caught {exc}"
        return "not reached"

    assert results_of(ensure_deferred(work())) == ["caught 'missing'"]


def test_error_escaping_the_coroutine_fails_its_deferred() -> None:
    gate: Deferred[None] = Deferred()

    async def work() -> None:
        await gate
        raise ValueError("escaped")

    d = ensure_deferred(work())
    gate.callback(None)
    [exc] = results_of(d)
    assert isinstance(exc, ValueError)


def test_awaiting_takes_the_result() -> None:
    d = succeed("once")

    async def work() -> tuple[str, None]:
        first = await d
        second = await d
        return first, second  # type: ignore[return-value]

    assert results_of(ensure_deferred(work())) == [("once", None)]


def test_cancelling_the_coroutine_cancels_what_it_awaits() -> None:
    cancelled: list[bool] = []
    inner: Deferred[int] = Deferred(lambda _: cancelled.append(True))
    seen: list[str] = []

    async def work() -> str:
        try:
            await inner
        except CancelledError:
            seen.append("cancelled inside")
            raise
        return "not reached"

    d = ensure_deferred(work())
    d.cancel()
    assert cancelled == [True]
    assert seen == ["cancelled inside"]
    [exc] = results_of(d)
    assert isinstance(exc, CancelledError)


def test_a_coroutine_may_recover_from_cancellation() -> None:
    inner: Deferred[int] = Deferred()

    async def work() -> str:
        try:
            await inner
        except CancelledError:
            return "cleaned up"
        return "not reached"

    d = ensure_deferred(work())
    d.cancel()
    assert results_of(d) == ["cleaned up"]


def test_context_set_inside_a_coroutine_stays_inside_it() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="outside")
    gate: Deferred[None] = Deferred()

    async def work() -> str:
        var.set("inside")
        await gate
        return var.get()

    d = ensure_deferred(work())
    assert var.get() == "outside"
    gate.callback(None)
    assert results_of(d) == ["inside"]


def test_generator_yielding_deferreds_directly() -> None:
    def legacy() -> Generator[Deferred[int], int, int]:
        a = yield succeed(20)
        b = yield succeed(22)
        return a + b

    assert results_of(ensure_deferred(legacy())) == [42]


def test_ensure_deferred_passes_deferreds_through_and_rejects_others() -> None:
    d = succeed(1)
    assert ensure_deferred(d) is d
    with pytest.raises(TypeError):
        ensure_deferred(42)  # type: ignore[call-overload]


def test_a_bare_yield_without_a_loop_is_a_clear_error() -> None:
    async def work() -> None:
        await asyncio.sleep(0)

    [exc] = results_of(ensure_deferred(work()))
    assert isinstance(exc, RuntimeError)
    assert "running event loop" in str(exc)


def test_maybe_deferred_wraps_every_shape() -> None:
    async def coro() -> str:
        return "from coroutine"

    def raises() -> None:
        raise OSError("raised")

    d = succeed("passed through")
    assert maybe_deferred(lambda: d) is d
    assert results_of(maybe_deferred(lambda x: x * 2, 21)) == [42]
    assert results_of(maybe_deferred(coro)) == ["from coroutine"]
    [exc] = results_of(maybe_deferred(raises))
    assert isinstance(exc, OSError)


# -- the asyncio bridge ------------------------------------------------------


def test_pending_deferred_awaited_from_an_asyncio_task() -> None:
    async def main() -> int:
        d: Deferred[int] = Deferred()
        asyncio.get_running_loop().call_soon(d.callback, 7)
        return await d

    assert asyncio.run(main()) == 7


def test_failed_deferred_awaited_from_an_asyncio_task() -> None:
    async def main() -> None:
        d: Deferred[int] = Deferred()
        asyncio.get_running_loop().call_soon(d.errback, ValueError("async"))
        await d

    with pytest.raises(ValueError, match="async"):
        asyncio.run(main())


def test_cancelling_an_asyncio_task_cancels_the_deferred_it_awaits() -> None:
    cancelled: list[bool] = []

    async def main() -> None:
        d: Deferred[int] = Deferred(lambda _: cancelled.append(True))
        task = asyncio.ensure_future(wait_on(d))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def wait_on(d: Deferred[int]) -> int:
        return await d

    asyncio.run(main())
    assert cancelled == [True]


def test_torsion_coroutine_awaits_asyncio_futures_on_the_running_loop() -> None:
    async def inner() -> str:
        await asyncio.sleep(0)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, "from asyncio")
        return await fut

    async def main() -> str:
        return await ensure_deferred(inner())

    assert asyncio.run(main()) == "from asyncio"


def test_cancelling_a_coroutine_waiting_on_an_asyncio_future() -> None:
    async def main() -> tuple[bool, list[Any]]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def work() -> None:
            await fut

        d = ensure_deferred(work())
        d.cancel()
        return fut.cancelled(), results_of(d)

    fut_cancelled, outcome = asyncio.run(main())
    assert fut_cancelled
    assert isinstance(outcome[0], CancelledError)


def test_from_future_and_as_future_round_trip() -> None:
    async def main() -> tuple[list[Any], int]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        d = Deferred.from_future(fut)
        seen = results_of(d)
        fut.set_result(5)
        await asyncio.sleep(0)
        back = succeed(6).as_future(loop)
        return seen, await back

    seen, back = asyncio.run(main())
    assert seen == [5]
    assert back == 6


def test_from_future_cancel_and_failure() -> None:
    async def main() -> tuple[bool, Any, Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        d = Deferred.from_future(fut)
        d.cancel()
        failing: asyncio.Future[int] = loop.create_future()
        failing.set_exception(KeyError("k"))
        e = Deferred.from_future(failing)
        await asyncio.sleep(0)
        return fut.cancelled(), results_of(d)[0], results_of(e)[0]

    fut_cancelled, cancelled, failed = asyncio.run(main())
    assert fut_cancelled
    assert isinstance(cancelled, CancelledError)
    assert isinstance(failed, KeyError)


def test_as_future_carries_errors_and_cancellation_both_ways() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(OSError, match="down"):
            await fail(OSError("down")).as_future(loop)
        cancelled_d: Deferred[int] = Deferred()
        cancelled_d.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled_d.as_future(loop)
        cancelled: list[bool] = []
        pending: Deferred[int] = Deferred(lambda _: cancelled.append(True))
        fut = pending.as_future(loop)
        fut.cancel()
        await asyncio.sleep(0)
        assert cancelled == [True]
        assert pending.called

    asyncio.run(main())


def test_error_after_a_swallowed_cancellation_is_reported(
    unhandled_errors: list[BaseException],
) -> None:
    gate: Deferred[None] = Deferred()
    later: Deferred[None] = Deferred()

    async def stubborn() -> None:
        with contextlib.suppress(CancelledError):
            await gate
        await later
        raise ValueError("after cancel")

    d = ensure_deferred(stubborn())
    d.cancel()
    [exc] = results_of(d)
    assert isinstance(exc, CancelledError)
    later.callback(None)
    assert [str(e) for e in unhandled_errors] == ["after cancel"]


def test_errors_from_callbacks_are_not_chained_to_the_coroutine_exit() -> None:
    async def work() -> None:
        raise KeyError("first")

    def second(_: BaseException) -> None:
        raise ValueError("second")

    d = ensure_deferred(work()).add_errback(second)
    [exc] = results_of(d)
    assert isinstance(exc, ValueError)
    assert exc.__context__ is None


def test_a_coroutine_returning_a_deferred_passes_on_its_result() -> None:
    inner: Deferred[str] = Deferred()

    async def work() -> Deferred[str]:
        return inner

    d = ensure_deferred(work())
    assert not d.called
    inner.callback("passed on")
    assert results_of(d) == ["passed on"]

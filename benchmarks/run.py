"""Micro-benchmarks: torsion vs Twisted vs plain asyncio, side by side in one run.

Usage: .venv/bin/python benchmarks/run.py [--quick] [--rounds N]

Every benchmark runs its contenders interleaved across repeated rounds (the
order rotates each round, one untimed warm-up round first); each figure is the
median (and best) over the timed rounds of ns per operation. The garbage
collector is disabled during every timed section, for every contender alike.
See benchmarks/RESULTS.md for what each row measures and a recorded run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from time import perf_counter

import uvloop
from twisted.internet import defer as tdefer

from torsion.defer import Deferred, ensure_deferred, succeed
from torsion.internet import Reactor

# -- helpers --------------------------------------------------------------------


def _ident(x):
    return x


def _timed(fn: Callable[[int], float], n: int) -> float:
    """Run ``fn(n)`` with the GC off; return ns per operation."""
    gc.collect()
    gc.disable()
    try:
        seconds = fn(n)
    finally:
        gc.enable()
    return seconds / n * 1e9


def _run_rounds(contenders: dict[str, Callable[[int], float]], n: int, rounds: int):
    """Interleave contenders across rounds; return name -> list of ns/op."""
    names = list(contenders)
    for name in names:  # warm-up, untimed
        contenders[name](max(n // 10, 100))
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            results[name].append(_timed(contenders[name], n))
    return results


def _pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


# -- 1. Deferred created, three callbacks added, fired ----------------------------


def chain_torsion(n: int) -> float:
    new, f = Deferred, _ident
    t0 = perf_counter()
    for _ in range(n):
        d = new()
        d.add_callback(f)
        d.add_callback(f)
        d.add_callback(f)
        d.callback(1)
    return perf_counter() - t0


def chain_twisted(n: int) -> float:
    new, f = tdefer.Deferred, _ident
    t0 = perf_counter()
    for _ in range(n):
        d = new()
        d.addCallback(f)
        d.addCallback(f)
        d.addCallback(f)
        d.callback(1)
    return perf_counter() - t0


# -- 2a. one coroutine per operation, awaiting an already-fired result -------------


async def _await_once(d):
    return await d


def coro_torsion(n: int) -> float:
    ens, ok, c = ensure_deferred, succeed, _await_once
    t0 = perf_counter()
    for _ in range(n):
        ens(c(ok(1)))
    return perf_counter() - t0


def coro_twisted(n: int) -> float:
    ens, ok, c = tdefer.ensureDeferred, tdefer.succeed, _await_once
    t0 = perf_counter()
    for _ in range(n):
        ens(c(ok(1)))
    return perf_counter() - t0


def coro_asyncio_send(n: int) -> float:
    loop = asyncio.new_event_loop()
    try:
        new_future, c = loop.create_future, _await_once
        t0 = perf_counter()
        for _ in range(n):
            fut = new_future()
            fut.set_result(1)
            coro = c(fut)
            try:
                coro.send(None)
            except StopIteration:
                pass
            else:  # pragma: no cover - a done Future never suspends
                raise AssertionError("coroutine suspended on a done Future")
        return perf_counter() - t0
    finally:
        loop.close()


def coro_asyncio_eager(n: int) -> float:
    loop = asyncio.new_event_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # Python >= 3.12

    async def main() -> float:
        new_future, create_task, c = loop.create_future, loop.create_task, _await_once
        t0 = perf_counter()
        for _ in range(n):
            fut = new_future()
            fut.set_result(1)
            create_task(c(fut))  # an eager task runs to completion right here
        return perf_counter() - t0

    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def _coro_asyncio_task(new_loop):
    """asyncio's own way to run a coroutine: a Task, stepped by the loop."""

    def bench(n: int) -> float:
        loop = new_loop()
        batch = min(n, 1_000)  # tasks alive at once: bounded, like the other contenders

        async def main() -> float:
            new_future, create_task, c = loop.create_future, loop.create_task, _await_once
            t0 = perf_counter()
            for _ in range(n // batch):
                for _ in range(batch):
                    fut = new_future()
                    fut.set_result(1)
                    last = create_task(c(fut))
                await last  # tasks run in order: when the last is done, all are
            return perf_counter() - t0

        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()

    return bench


# -- 2b. one coroutine awaiting an already-fired result N times --------------------


async def _await_many(d, n):
    for _ in range(n):
        await d


def _drive(coro) -> None:
    try:
        coro.send(None)
    except StopIteration:
        return
    raise AssertionError("coroutine suspended on an already-fired awaitable")


def loop_torsion(n: int) -> float:
    d = succeed(1)
    t0 = perf_counter()
    _drive(_await_many(d, n))
    return perf_counter() - t0


def loop_twisted(n: int) -> float:
    d = tdefer.succeed(1)
    t0 = perf_counter()
    _drive(_await_many(d, n))
    return perf_counter() - t0


def loop_asyncio(n: int) -> float:
    loop = asyncio.new_event_loop()
    try:
        fut = loop.create_future()
        fut.set_result(1)
        t0 = perf_counter()
        _drive(_await_many(fut, n))
        return perf_counter() - t0
    finally:
        loop.close()


# -- 3. call_later(0) throughput ---------------------------------------------------


def _count_down(loop: asyncio.AbstractEventLoop, schedule, n: int) -> float:
    """Schedule n calls of a countdown with ``schedule(0, f)``; run until the last."""
    remaining = n

    def f() -> None:
        nonlocal remaining
        remaining -= 1
        if not remaining:
            loop.stop()

    t0 = perf_counter()
    for _ in range(n):
        schedule(0, f)
    loop.run_forever()
    elapsed = perf_counter() - t0
    if remaining:
        raise AssertionError(f"{remaining} calls did not run")
    return elapsed


def _raw(new_loop):
    def bench(n: int) -> float:
        loop = new_loop()
        try:
            return _count_down(loop, loop.call_later, n)
        finally:
            loop.close()

    return bench


def _facade(new_loop):
    def bench(n: int) -> float:
        loop = new_loop()
        reactor = Reactor(loop)
        try:
            return _count_down(loop, reactor.call_later, n)
        finally:
            reactor.close()
            loop.close()

    return bench


def later_twisted_subprocess(n: int) -> float:
    """Run Twisted's default reactor in a fresh process (it runs once per process)."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--twisted-call-later", str(n)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip()) * n / 1e9  # the child prints ns/op


def _twisted_child(n: int) -> None:
    from twisted.internet import reactor

    remaining = n
    t0 = elapsed = 0.0

    def f() -> None:
        nonlocal remaining, elapsed
        remaining -= 1
        if not remaining:
            elapsed = perf_counter() - t0
            reactor.stop()

    def go() -> None:
        nonlocal t0
        gc.collect()
        gc.disable()
        t0 = perf_counter()
        for _ in range(n):
            reactor.callLater(0, f)

    reactor.callWhenRunning(go)
    reactor.run(installSignalHandlers=False)
    gc.enable()
    if remaining:
        raise SystemExit(f"{remaining} calls did not run")
    print(elapsed / n * 1e9)


# -- report ------------------------------------------------------------------------


def _row(name: str, samples: list[float]) -> tuple[str, float, float]:
    return name, statistics.median(samples), min(samples)


def _print_table(title: str, results: dict[str, list[float]]) -> dict[str, tuple[float, float]]:
    print(f"\n## {title}")
    print(f"{'contender':<58} {'median ns/op':>13} {'best ns/op':>11}")
    summary = {}
    for name, samples in results.items():
        _, med, best = _row(name, samples)
        summary[name] = (med, best)
        print(f"{name:<58} {med:>13.1f} {best:>11.1f}")
    return summary


def _ratio(
    label: str,
    summary: dict[str, tuple[float, float]],
    num: str,
    den: str,
    goal: float | None = None,
) -> None:
    """Print num_ns / den_ns on medians and on bests (a goal is judged on medians)."""
    med = summary[num][0] / summary[den][0]
    best = summary[num][1] / summary[den][1]
    goal_txt = ""
    if goal is not None:
        goal_txt = f"  goal >= {goal:.2f}x: {'met' if med >= goal else 'NOT met'} (on median)"
    print(f"  {label:<64} {med:>6.2f}x (best-of-rounds {best:.2f}x){goal_txt}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke run (few thousand ops)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--twisted-call-later", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.twisted_call_later is not None:
        _twisted_child(args.twisted_call_later)
        return

    if args.quick:
        rounds = args.rounds or 3
        n_chain, n_coro, n_loop, n_later = 3_000, 3_000, 5_000, 3_000
    else:
        rounds = args.rounds or 9
        n_chain, n_coro, n_loop, n_later = 200_000, 100_000, 2_000_000, 200_000

    print("# torsion benchmarks" + (" (--quick)" if args.quick else ""))
    print(f"Python {platform.python_version()} ({platform.python_implementation()})")
    print(f"uvloop {_pkg_version('uvloop')}, twisted {_pkg_version('twisted')}")
    print(f"CPU count: {os.cpu_count()}  platform: {platform.platform()}")
    print(f"rounds: {rounds} timed (+1 warm-up), contenders interleaved, GC off while timed")

    # 1
    res = _run_rounds(
        {"torsion Deferred": chain_torsion, "twisted Deferred": chain_twisted}, n_chain, rounds
    )
    s = _print_table(f"1. Deferred(), 3 x add callback, callback(1)  [N={n_chain:,}]", res)
    _ratio("twisted / torsion", s, "twisted Deferred", "torsion Deferred", goal=1.5)

    # 2a
    contenders = {
        "torsion ensure_deferred(c(succeed(1)))": coro_torsion,
        "twisted ensureDeferred(c(succeed(1)))": coro_twisted,
        "asyncio Task(c(done Future)), uvloop": _coro_asyncio_task(uvloop.new_event_loop),
        "asyncio Task(c(done Future)), asyncio loop": _coro_asyncio_task(asyncio.new_event_loop),
        "asyncio c(done Future).send(None)": coro_asyncio_send,
    }
    eager = sys.version_info >= (3, 12)
    if eager:
        contenders["asyncio eager Task(c(done Future))"] = coro_asyncio_eager
    res = _run_rounds(contenders, n_coro, rounds)
    s = _print_table(f"2a. per coroutine: create + await a fired result  [N={n_coro:,}]", res)
    torsion = "torsion ensure_deferred(c(succeed(1)))"
    _ratio(
        "asyncio Task on uvloop / torsion",
        s,
        "asyncio Task(c(done Future)), uvloop",
        torsion,
        goal=1.0,
    )
    _ratio(
        "asyncio Task on asyncio loop / torsion",
        s,
        "asyncio Task(c(done Future)), asyncio loop",
        torsion,
    )
    _ratio(
        "twisted / asyncio Task on uvloop (the issue puts this at ~0.7x)",
        s,
        "asyncio Task(c(done Future)), uvloop",
        "twisted ensureDeferred(c(succeed(1)))",
    )
    _ratio(
        "asyncio bare send (no driver) / torsion", s, "asyncio c(done Future).send(None)", torsion
    )
    if eager:
        _ratio("asyncio eager task / torsion", s, "asyncio eager Task(c(done Future))", torsion)
    else:
        print("  asyncio eager task / torsion: n/a (needs Python >= 3.12)")
    _ratio("twisted / torsion", s, "twisted ensureDeferred(c(succeed(1)))", torsion)

    # 2b
    res = _run_rounds(
        {
            "torsion: await fired Deferred": loop_torsion,
            "twisted: await fired Deferred": loop_twisted,
            "asyncio: await done Future": loop_asyncio,
        },
        n_loop,
        rounds,
    )
    s = _print_table(f"2b. tight loop: one coroutine, N x `await d`  [N={n_loop:,}]", res)
    _ratio(
        "asyncio / torsion",
        s,
        "asyncio: await done Future",
        "torsion: await fired Deferred",
        goal=1.0,
    )
    _ratio(
        "twisted / torsion", s, "twisted: await fired Deferred", "torsion: await fired Deferred"
    )

    # 3
    res = _run_rounds(
        {
            "asyncio loop: raw loop.call_later(0, f)": _raw(asyncio.new_event_loop),
            "asyncio loop: Reactor(loop).call_later(0, f)": _facade(asyncio.new_event_loop),
            "uvloop: raw loop.call_later(0, f)": _raw(uvloop.new_event_loop),
            "uvloop: Reactor(loop).call_later(0, f)": _facade(uvloop.new_event_loop),
            "twisted default reactor: callLater(0, f) (subprocess)": later_twisted_subprocess,
        },
        n_later,
        rounds,
    )
    s = _print_table(
        f"3. call_later(0) throughput: schedule N, run until all fired  [N={n_later:,}]", res
    )
    print("  (throughput ratios: higher is better for the facade)")
    _ratio(
        "asyncio loop: facade / raw throughput",
        s,
        "asyncio loop: raw loop.call_later(0, f)",
        "asyncio loop: Reactor(loop).call_later(0, f)",
        goal=0.8,
    )
    _ratio(
        "uvloop: facade / raw throughput",
        s,
        "uvloop: raw loop.call_later(0, f)",
        "uvloop: Reactor(loop).call_later(0, f)",
        goal=0.8,
    )
    _ratio(
        "facade on uvloop vs twisted reactor (throughput)",
        s,
        "twisted default reactor: callLater(0, f) (subprocess)",
        "uvloop: Reactor(loop).call_later(0, f)",
    )


if __name__ == "__main__":
    main()

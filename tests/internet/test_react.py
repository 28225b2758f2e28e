"""react(): run a main function, exit with its status."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

import pytest

from torsion.defer import Deferred
from torsion.internet import Reactor, defer_later, react


def run_react(main: Any, argv: Any = (), *, loop_name: str = "asyncio") -> Any:
    reactor = Reactor(uvloop=loop_name == "uvloop")
    hung: list[bool] = []

    def watchdog() -> None:
        hung.append(True)
        reactor.loop.stop()

    handle = reactor.loop.call_later(10.0, watchdog)
    try:
        with pytest.raises(SystemExit) as info:
            react(main, argv, reactor=reactor)
    finally:
        handle.cancel()
        reactor.close()
    assert not hung, "react() did not finish within 10 s"
    return info.value.code


def test_async_main_success(loop_name: str) -> None:
    seen: list[Any] = []

    async def main(reactor: Reactor, a: str, b: str) -> None:
        await defer_later(reactor, 0)
        seen.extend([reactor.running, a, b])

    assert run_react(main, ["x", "y"], loop_name=loop_name) == 0
    assert seen == [True, "x", "y"]


def test_sync_main_and_deferred_main(loop_name: str) -> None:
    assert run_react(lambda reactor: None, loop_name=loop_name) == 0

    def main(reactor: Reactor) -> Deferred[None]:
        return defer_later(reactor, 0.001)

    assert run_react(main, loop_name=loop_name) == 0


def test_failure_exits_1_and_logs(loop_name: str, caplog: pytest.LogCaptureFixture) -> None:
    async def main(reactor: Reactor) -> None:
        await defer_later(reactor, 0)
        raise ValueError("main broke")

    with caplog.at_level(logging.ERROR, logger="torsion.internet"):
        assert run_react(main, loop_name=loop_name) == 1
    assert "main broke" in caplog.text
    assert any(record.exc_info for record in caplog.records)


def test_synchronous_failure_exits_1(caplog: pytest.LogCaptureFixture) -> None:
    def main(reactor: Reactor) -> None:
        raise RuntimeError("at once")

    with caplog.at_level(logging.ERROR, logger="torsion.internet"):
        assert run_react(main) == 1
    assert "at once" in caplog.text


@pytest.mark.parametrize("code", [0, 3, "message"])
def test_system_exit_code_is_kept(loop_name: str, code: Any) -> None:
    async def main(reactor: Reactor) -> None:
        await defer_later(reactor, 0)
        sys.exit(code)

    assert run_react(main, loop_name=loop_name) == code

    def sync_main(reactor: Reactor) -> None:
        sys.exit(code)

    assert run_react(sync_main, loop_name=loop_name) == code


def test_system_exit_raised_in_a_callback() -> None:
    def main(reactor: Reactor) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        reactor.call_later(0, sys.exit, 4)
        return d

    assert run_react(main) == 4


def test_ctrl_c_exits_1(loop_name: str, caplog: pytest.LogCaptureFixture) -> None:
    cleaned: list[str] = []

    async def main(reactor: Reactor) -> None:
        reactor.call_later(0, os.kill, os.getpid(), signal.SIGINT)
        try:
            await Deferred()
        finally:
            cleaned.append("cleaned up")

    with caplog.at_level(logging.ERROR, logger="torsion.internet"):
        assert run_react(main, loop_name=loop_name) == 1
    assert cleaned == ["cleaned up"]
    assert "SIGINT" in caplog.text


def test_stopped_by_main_before_it_finished_exits_0() -> None:
    def main(reactor: Reactor) -> Deferred[None]:
        reactor.call_later(0, reactor.stop)
        return Deferred()

    assert run_react(main) == 0


def test_react_makes_and_closes_its_own_reactor() -> None:
    reactors: list[Reactor] = []

    def main(reactor: Reactor) -> None:
        reactors.append(reactor)

    with pytest.raises(SystemExit) as info:
        react(main)
    assert info.value.code == 0
    assert reactors[0].loop.is_closed()

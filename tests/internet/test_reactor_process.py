"""The reactor's own doors to processes, descriptors and standard I/O, and closing them."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import pytest

from torsion.defer import Deferred
from torsion.internet import (
    ProcessExited,
    ProcessProtocol,
    ProcessStatus,
    ProcessTerminated,
    ProcessTransport,
    Reactor,
)

Wait = Callable[..., Any]


class Collect(ProcessProtocol):
    def __init__(self) -> None:
        self.out = bytearray()
        self.ended: Deferred[ProcessStatus] = Deferred()

    def out_received(self, data: bytes) -> None:
        self.out += data

    def process_ended(self, status: ProcessStatus) -> None:
        self.ended.callback(status)


def test_spawn_process_through_the_reactor(real_reactor: Reactor, wait: Wait) -> None:
    protocol = Collect()
    code = "import sys; sys.stdout.write(sys.stdin.read().upper()); sys.exit(3)"
    transport = wait(
        real_reactor,
        real_reactor.spawn_process(protocol, sys.executable, [sys.executable, "-c", code]),
    )
    transport.write(b"shout\n")
    transport.close_stdin()
    assert wait(real_reactor, protocol.ended) == ProcessExited(3)
    assert bytes(protocol.out) == b"SHOUT\n"


def test_add_reader_through_the_reactor(real_reactor: Reactor, wait: Wait) -> None:
    read_end, write_end = os.pipe()
    try:
        readable: Deferred[bytes] = Deferred()

        def on_readable() -> None:
            real_reactor.remove_reader(read_end)
            readable.callback(os.read(read_end, 100))

        real_reactor.add_reader(read_end, on_readable)
        os.write(write_end, b"ready")
        assert wait(real_reactor, readable) == b"ready"
        assert real_reactor.remove_reader(read_end) is False  # already removed
        os.write(write_end, b"unwatched")  # nothing is called now
    finally:
        os.close(read_end)
        os.close(write_end)


# -- close() ends the children the reactor started ------------------------------------------


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def gone(pid: int) -> bool:
    """Whether ``pid`` was reaped (a zombie still has its /proc entry)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return not os.path.exists(f"/proc/{pid}")
    return False


class Ends(ProcessProtocol):
    """Records the end, and whether the protocol heard everything in order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.status: ProcessStatus | None = None

    def connection_made(self, transport: ProcessTransport) -> None:
        super().connection_made(transport)
        self.events.append("made")

    def process_exited(self, status: ProcessStatus) -> None:
        self.events.append("exited")

    def process_ended(self, status: ProcessStatus) -> None:
        self.events.append("ended")
        self.status = status


def warm_up(reactor: Reactor, wait: Wait) -> None:
    """Start and finish one child: uvloop opens a descriptor of its own the first time."""
    transport = wait(reactor, reactor.spawn_process(ProcessProtocol(), "true"))
    wait(reactor, transport.ended())


@pytest.mark.parametrize(
    "options",
    [{}, {"use_pty": True}, {"child_fds": {3: "r", 4: "w"}}],
    ids=["pipes", "pty", "extra-fds"],
)
def test_close_kills_and_reaps_the_children_it_started(
    loop_name: str, wait: Wait, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    before = open_fds()
    reactor = Reactor(uvloop=loop_name == "uvloop")
    try:
        warm_up(reactor, wait)
        protocols = [Ends(), Ends()]
        transports = [
            wait(reactor, reactor.spawn_process(p, "sleep", ["sleep", "60"], **options))
            for p in protocols
        ]
        pids = [t.pid for t in transports]
        assert not any(gone(pid) for pid in pids)
    finally:
        reactor.close()
    # Killed, reaped, their protocols told, and every pipe closed.
    assert all(gone(pid) for pid in pids)
    for protocol, transport in zip(protocols, transports, strict=True):
        assert protocol.events == ["made", "exited", "ended"]
        assert protocol.status == ProcessTerminated(signal.SIGKILL)
        assert transport.status == ProcessTerminated(signal.SIGKILL)
    assert reactor.loop.is_closed()
    assert open_fds() == before
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_close_leaves_children_that_ended_alone(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    protocol = Ends()
    transport = wait(r, r.spawn_process(protocol, sys.executable, [sys.executable, "-c", ""]))
    assert wait(r, transport.ended()) == ProcessExited(0)
    assert protocol.events == ["made", "exited", "ended"]
    r.close()
    # Nothing more was called: the child was no longer tracked.
    assert protocol.events == ["made", "exited", "ended"]
    assert protocol.status == ProcessExited(0)


@pytest.mark.parametrize("options", [{}, {"use_pty": True}], ids=["pipes", "pty"])
def test_close_cancels_a_spawn_under_way(
    loop_name: str, wait: Wait, options: dict[str, Any]
) -> None:
    before = open_fds()
    reactor = Reactor(uvloop=loop_name == "uvloop")
    try:
        warm_up(reactor, wait)
        protocol = Ends()
        # The loop has not run since: the spawn has not started yet.
        spawning = reactor.spawn_process(protocol, "sleep", ["sleep", "60"], **options)
    finally:
        reactor.close()
    assert spawning.called
    failures: list[BaseException] = []
    spawning.add_errback(failures.append)
    assert len(failures) == 1
    assert isinstance(failures[0], asyncio.CancelledError)
    assert protocol.events == []
    assert open_fds() == before


async def test_close_on_a_running_loop_kills_and_the_loop_reaps() -> None:
    # A reactor attached to a loop that runs (inside asyncio.run, say):
    # close() cannot wait, so the child's end comes as the loop goes on.
    reactor = Reactor(asyncio.get_running_loop())
    protocol = Ends()
    transport = await reactor.spawn_process(protocol, "sleep", ["sleep", "60"])
    before_close = open_fds()
    reactor.close()
    assert transport.is_closing()
    assert await transport.ended() == ProcessTerminated(signal.SIGKILL)
    assert gone(transport.pid)
    assert protocol.events == ["made", "exited", "ended"]
    # The pipes to the child are closed: fewer descriptors than before.
    assert open_fds() < before_close

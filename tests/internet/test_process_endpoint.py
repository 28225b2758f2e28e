"""ProcessEndpoint: a stream protocol over a child process.

The unit tests play the child with ``MemoryReactor``; the others run real
programs (cat, sh, Python) on each event loop, and check that nothing is
left behind: every descriptor closed, every child reaped.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import pytest

from torsion.defer import CancelledError, Deferred
from torsion.errors import CannotSpawnError, ProcessFailedError
from torsion.internet import Protocol, Reactor
from torsion.internet._address import Address
from torsion.internet._process_endpoint import (
    MAX_STDERR_LINE,
    ProcessAddress,
    ProcessEndpoint,
    ProcessStreamTransport,
    _StderrLines,
)
from torsion.internet._process_status import ProcessExited, ProcessTerminated
from torsion.testing import MemoryReactor, failure_result_of, success_result_of

Wait = Callable[..., Any]

PYTHON = sys.executable


class Recorder(Protocol):
    """A stream protocol that records its events and what it received."""

    def __init__(self, *, keep_open: bool = False) -> None:
        self.events: list[Any] = []
        self.received = bytearray()
        self.keep_open = keep_open
        self.lost: Deferred[Exception | None] = Deferred()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.received += data

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        return self.keep_open

    def pause_writing(self) -> None:
        super().pause_writing()
        self.events.append("pause_writing")

    def resume_writing(self) -> None:
        super().resume_writing()
        self.events.append("resume_writing")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.events.append(("lost", exc))
        self.lost.callback(exc)


class Factory:
    """Makes one ``Recorder`` and remembers the address it was given."""

    def __init__(self, **kwargs: Any) -> None:
        self.addresses: list[Any] = []
        self.protocol = Recorder(**kwargs)

    def __call__(self, address: Address) -> Recorder:
        self.addresses.append(address)
        return self.protocol


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def gone(pid: int) -> bool:
    """Whether ``pid`` was reaped (a zombie still has its /proc entry)."""
    return not os.path.exists(f"/proc/{pid}")


@pytest.fixture
def warm_reactor(real_reactor: Reactor, wait: Wait) -> Reactor:
    """A reactor that has run one child (uvloop opens a descriptor of its own then)."""
    factory = Factory()
    wait(real_reactor, ProcessEndpoint(real_reactor, "true").connect(factory))
    wait(real_reactor, factory.protocol.lost)
    return real_reactor


# -- the bridge, on a child the test plays ------------------------------------------------


def test_events_over_a_played_child() -> None:
    reactor = MemoryReactor()
    factory = Factory()
    endpoint = ProcessEndpoint(reactor, "prog", ["prog", "-x"], env={"A": "b"}, path="/tmp")
    protocol = success_result_of(endpoint.connect(factory))
    assert protocol is factory.protocol
    call = reactor.processes[0]
    child = call.transport
    assert (call.executable, call.args, call.env, call.path) == (
        "prog",
        ["prog", "-x"],
        {"A": "b"},
        "/tmp",
    )
    # The factory was given the child's address, as is the transport's peer.
    address = ProcessAddress("prog", child.pid)
    assert factory.addresses == [address]
    transport = protocol.transport
    assert isinstance(transport, ProcessStreamTransport)
    assert transport.get_extra_info("peername") == address
    assert protocol.peer == address  # Protocol.peer reads it as it reads a socket's
    assert transport.get_extra_info("pid") == child.pid
    assert transport.get_extra_info("process") is child
    assert transport.process is child
    assert str(address) == f"prog[{child.pid}]"
    transport.write(b"to the child")
    transport.writelines([b" and", b" more"])
    assert child.value(0) == b"to the child and more"
    child.child_writes(1, b"from the child")
    assert bytes(protocol.received) == b"from the child"
    # Standard error is not the connection's.
    child.child_writes(2, b"complaint\n")
    assert bytes(protocol.received) == b"from the child"
    # The child's output ends: eof_received, and (returning None) the
    # transport closes the child's input.
    child.child_closes(1)
    assert protocol.events == ["made", "data", "eof"]
    assert transport.is_closing()
    assert 0 in child.closed_fds
    assert not protocol.lost.called
    child.child_exits(0)
    assert protocol.events[-1] == ("lost", None)
    assert "closed" in repr(transport)


def test_eof_received_returning_true_keeps_the_input_open() -> None:
    reactor = MemoryReactor()
    factory = Factory(keep_open=True)
    protocol = success_result_of(ProcessEndpoint(reactor, "prog").connect(factory))
    child = reactor.processes[0].transport
    child.child_closes(1)
    assert 0 not in child.closed_fds
    protocol.transport.write(b"still")
    assert child.value(0) == b"still"
    protocol.transport.write_eof()
    assert 0 in child.closed_fds


@pytest.mark.parametrize(
    ("end", "status"),
    [
        (lambda child: child.child_exits(3), ProcessExited(3)),
        (lambda child: child.child_killed("TERM"), ProcessTerminated(signal.SIGTERM)),
    ],
    ids=["exit-code", "signal"],
)
def test_an_unsuccessful_end_is_the_connections_error(
    end: Callable[[Any], None], status: Any
) -> None:
    reactor = MemoryReactor()
    factory = Factory()
    protocol = success_result_of(ProcessEndpoint(reactor, "prog").connect(factory))
    child = reactor.processes[0].transport
    end(child)
    error = protocol.events[-1][1]
    assert isinstance(error, ProcessFailedError)
    assert isinstance(error, ConnectionError)
    assert error.status == status
    assert error.pid == child.pid
    assert error.executable == "prog"
    assert str(error) == f"process {child.pid} (prog) {status}"


def test_abort_kills_and_reports_no_end_of_file() -> None:
    reactor = MemoryReactor()
    factory = Factory()
    protocol = success_result_of(ProcessEndpoint(reactor, "prog").connect(factory))
    child = reactor.processes[0].transport
    protocol.transport.abort()
    protocol.transport.abort()  # idempotent
    assert child.signals == [signal.SIGKILL]
    assert "eof" not in protocol.events
    error = protocol.events[-1][1]
    assert isinstance(error, ProcessFailedError)
    assert error.status == ProcessTerminated(signal.SIGKILL)


def test_a_failed_spawn_fails_the_connection() -> None:
    reactor = MemoryReactor(start_processes=False)
    factory = Factory()
    connecting = ProcessEndpoint(reactor, "nothing-here").connect(factory)
    reactor.processes[0].fail()
    error = failure_result_of(connecting, CannotSpawnError)
    assert error.errno == errno.ENOENT
    assert factory.addresses == []


def test_cancelling_before_the_start_cancels_the_spawn() -> None:
    reactor = MemoryReactor(start_processes=False)
    factory = Factory()
    connecting = ProcessEndpoint(reactor, "prog").connect(factory)
    connecting.cancel()
    failure_result_of(connecting, CancelledError)
    assert reactor.processes[0].deferred.called
    assert factory.addresses == []


def test_a_factory_that_fails_kills_the_child() -> None:
    reactor = MemoryReactor()

    def factory(address: Address) -> Recorder:
        raise RuntimeError("no protocol for you")

    connecting = ProcessEndpoint(reactor, "prog").connect(factory)
    failure_result_of(connecting, RuntimeError)
    assert reactor.processes[0].transport.signals == [signal.SIGKILL]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"args": []}, "at least argv"),
        ({"stderr": "keep"}, "stderr must be"),
        ({"use_pty": True, "stderr": "drop"}, "stderr must be 'log'"),
        ({"child_fds": {2: 5}}, "belongs to the connection"),
        ({"child_fds": {3: "r"}}, "must be a descriptor"),
        ({"child_fds": {3: True}}, "must be a descriptor"),
    ],
)
def test_bad_arguments_are_refused_at_once(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProcessEndpoint(MemoryReactor(), "prog", **kwargs)


def test_stderr_modes_choose_the_childs_descriptor_2() -> None:
    reactor = MemoryReactor()
    for stderr in ("log", "drop", "pass"):
        endpoint = ProcessEndpoint(reactor, "prog", child_fds={5: 1}, stderr=stderr)
        success_result_of(endpoint.connect(Factory()))
    log, drop, passed = (call.child_fds for call in reactor.processes)
    assert log == {5: 1}
    assert set(drop) == {2, 5}
    assert isinstance(drop[2], int)
    assert passed == {2: 2, 5: 1}
    # The /dev/null descriptor given for "drop" was closed after the spawn.
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(drop[2])  # type: ignore[arg-type]


def test_stderr_lines_are_logged_one_by_one_and_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "torsion.internet.process")
    lines = _StderrLines("prog")
    lines.feed(b"first li")
    lines.feed(b"ne\r\nsecond\nthi")
    long_line = b"x" * (MAX_STDERR_LINE * 3)
    # A line of exactly the limit is whole; a longer one is cut, once.
    lines.feed(b"rd\n" + b"y" * MAX_STDERR_LINE + b"\n")
    for start in range(0, len(long_line), 1000):
        lines.feed(long_line[start : start + 1000])
    lines.feed(b"\nlast, unfinished \xff")
    lines.flush()
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "prog stderr: first line",
        "prog stderr: second",
        "prog stderr: third",
        "prog stderr: " + "y" * MAX_STDERR_LINE,
        "prog stderr: " + "x" * MAX_STDERR_LINE + " [cut]",
        "prog stderr: last, unfinished \ufffd",
    ]
    assert all(record.levelno == logging.INFO for record in caplog.records)


# -- real children ----------------------------------------------------------------------------


def test_cat_echoes_and_ends_cleanly(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    before = open_fds()
    factory = Factory()
    protocol = wait(r, ProcessEndpoint(r, "cat").connect(factory))
    assert protocol is factory.protocol
    transport = protocol.transport
    pid = transport.get_extra_info("pid")
    assert factory.addresses == [ProcessAddress("cat", pid)]
    transport.write(b"hello ")
    transport.writelines([b"over ", b"a pipe"])
    transport.write_eof()
    assert wait(r, protocol.lost) is None
    assert bytes(protocol.received) == b"hello over a pipe"
    assert protocol.events == ["made", "data", "eof", ("lost", None)]
    assert gone(pid)
    assert open_fds() == before


def test_close_lets_the_child_finish(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    factory = Factory()
    code = "import sys; data = sys.stdin.read(); sys.stdout.write(data[::-1])"
    protocol = wait(r, ProcessEndpoint(r, PYTHON, [PYTHON, "-c", code]).connect(factory))
    protocol.transport.write(b"stressed")
    protocol.transport.close()
    assert protocol.transport.is_closing()
    assert wait(r, protocol.lost) is None
    assert bytes(protocol.received) == b"desserts"


@pytest.mark.parametrize(
    ("script", "status"),
    [("exit 3", ProcessExited(3)), ("kill -TERM $$", ProcessTerminated(signal.SIGTERM))],
    ids=["exit-code", "signal"],
)
def test_real_unsuccessful_ends(
    warm_reactor: Reactor, wait: Wait, script: str, status: Any
) -> None:
    r = warm_reactor
    before = open_fds()
    factory = Factory()
    protocol = wait(r, ProcessEndpoint(r, "sh", ["sh", "-c", script]).connect(factory))
    error = wait(r, protocol.lost)
    assert isinstance(error, ProcessFailedError)
    assert error.status == status
    assert gone(error.pid)
    assert open_fds() == before


def test_abort_kills_a_real_child(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    before = open_fds()
    factory = Factory()
    protocol = wait(r, ProcessEndpoint(r, "cat").connect(factory))
    protocol.transport.abort()
    error = wait(r, protocol.lost)
    assert isinstance(error, ProcessFailedError)
    assert error.status == ProcessTerminated(signal.SIGKILL)
    assert "eof" not in protocol.events
    assert gone(error.pid)
    assert open_fds() == before


@pytest.mark.parametrize("program", ["no-such-program-here", "/no/such/program"])
def test_a_missing_program(warm_reactor: Reactor, wait: Wait, program: str) -> None:
    r = warm_reactor
    before = open_fds()
    factory = Factory()
    for stderr in ("log", "drop"):
        with pytest.raises(CannotSpawnError) as caught:
            wait(r, ProcessEndpoint(r, program, stderr=stderr).connect(factory))
        assert caught.value.errno == errno.ENOENT
    assert factory.addresses == []
    assert open_fds() == before


def test_cancelling_the_connection_leaves_no_child(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    before = open_fds()
    factory = Factory()
    connecting = ProcessEndpoint(r, "sleep", ["sleep", "60"]).connect(factory)
    connecting.cancel()
    with pytest.raises(CancelledError):
        wait(r, connecting)
    # The reactor tracks every spawn and child until it is over.
    wait(r, r._processes.wait_idle())
    assert factory.addresses == []
    assert open_fds() == before


def test_a_failing_factory_kills_the_real_child(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    before = open_fds()
    pids: list[int] = []

    def factory(address: Address) -> Recorder:
        assert isinstance(address, ProcessAddress)
        pids.append(address.pid)
        raise RuntimeError("no protocol for you")

    with pytest.raises(RuntimeError, match="no protocol for you"):
        wait(r, ProcessEndpoint(r, "sleep", ["sleep", "60"]).connect(factory))
    wait(r, r._processes.wait_idle())
    assert gone(pids[0])
    assert open_fds() == before


def test_pause_reading_holds_back_a_huge_output(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    size = 8 * 1024 * 1024
    code = f"import sys\nfor _ in range({size // 65536}): sys.stdout.buffer.write(b'z' * 65536)"
    chunks: list[int] = []
    first: Deferred[None] = Deferred()

    class Pausing(Recorder):
        def data_received(self, data: bytes) -> None:
            chunks.append(len(data))
            if not first.called:
                self.transport.pause_reading()
                first.callback(None)

    protocol = Pausing()
    endpoint = ProcessEndpoint(r, PYTHON, [PYTHON, "-c", code])
    wait(r, endpoint.connect(lambda address: protocol))
    wait(r, first)
    transport = protocol.transport
    assert not transport.is_reading()

    async def turns() -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    wait(r, turns())
    # Nothing was read meanwhile, and the child, blocked on the full pipe,
    # has not finished.
    assert len(chunks) == 1
    assert transport.process.status is None
    transport.resume_reading()
    assert transport.is_reading()
    assert wait(r, protocol.lost) is None
    assert sum(chunks) == size
    # Delivered as read: no chunk bigger than one read of the pipe.
    assert max(chunks) <= 256 * 1024


def test_writes_past_the_high_water_mark_pause_the_protocol(
    warm_reactor: Reactor, wait: Wait
) -> None:
    r = warm_reactor
    factory = Factory()
    protocol = wait(r, ProcessEndpoint(r, "cat").connect(factory))
    transport = protocol.transport
    transport.set_write_buffer_limits(high=4096)
    assert transport.get_write_buffer_limits() == (1024, 4096)
    chunk = b"w" * 65536
    total = 0
    while "pause_writing" not in protocol.events:
        transport.write(chunk)
        total += len(chunk)
        assert total < 64 * 1024 * 1024, "never paused"
    assert transport.get_write_buffer_size() > 4096
    wait(r, protocol.drained())
    assert "resume_writing" in protocol.events
    transport.write_eof()
    assert wait(r, protocol.lost) is None
    assert len(protocol.received) == total


def test_stderr_is_logged_dropped_or_passed(
    warm_reactor: Reactor,
    wait: Wait,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    r = warm_reactor
    caplog.set_level(logging.INFO, "torsion.internet.process")
    before = open_fds()
    script = 'echo "out"; echo "err $1" >&2; printf "partial" >&2'
    for mode in ("log", "drop", "pass"):
        factory = Factory()
        endpoint = ProcessEndpoint(r, "sh", ["sh", "-c", script, "sh", mode], stderr=mode)
        protocol = wait(r, endpoint.connect(factory))
        assert wait(r, protocol.lost) is None
        assert bytes(protocol.received) == b"out\n"
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "torsion.internet.process"]
    assert logged == ["sh stderr: err log", "sh stderr: partial"]
    assert capfd.readouterr().err == "err pass\npartial"
    assert open_fds() == before


def test_on_a_pseudo_terminal(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    factory = Factory()
    code = "import os, sys; print(os.isatty(0), os.isatty(1)); print('oops', file=sys.stderr)"
    endpoint = ProcessEndpoint(r, PYTHON, [PYTHON, "-c", code], use_pty=True)
    protocol = wait(r, endpoint.connect(factory))
    assert wait(r, protocol.lost) is None
    # Errors arrive with the output: the terminal is both.
    assert bytes(protocol.received) == b"True True\r\noops\r\n"


def test_close_of_the_reactor_ends_a_connected_child(loop_name: str, wait: Wait) -> None:
    reactor = Reactor(uvloop=loop_name == "uvloop")
    try:
        factory = Factory()
        protocol = wait(reactor, ProcessEndpoint(reactor, "cat").connect(factory))
    finally:
        reactor.close()
    error = protocol.events[-1][1]
    assert isinstance(error, ProcessFailedError)
    assert error.status == ProcessTerminated(signal.SIGKILL)
    assert gone(error.pid)

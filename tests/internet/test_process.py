"""Child processes: output, input, exit status, signals, terminals, extra descriptors.

The unit tests drive ``ProcessProtocol`` and ``ProcessTransport`` with a fake
subprocess transport; the others start real children (Python itself,
coreutils) on each event loop and check that every descriptor is closed and
every child reaped afterwards.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import pwd
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from torsion.defer import Deferred
from torsion.errors import CannotSpawnError, ProcessExitedError
from torsion.internet import Reactor
from torsion.internet._child import ChildFD
from torsion.internet._process import (
    ProcessProtocol,
    ProcessTransport,
    _OwnPipe,
    _SubprocessEvents,
)
from torsion.internet._process_status import (
    ProcessExited,
    ProcessStatus,
    ProcessTerminated,
    signal_number,
    status_from_returncode,
)
from torsion.internet._spawn import spawn_process

Wait = Callable[..., Any]

PYTHON = sys.executable


class Recorder(ProcessProtocol):
    """Records every call, in order, and keeps what each descriptor sent."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.received: dict[int, bytearray] = {}
        self.largest_chunk = 0

    def connection_made(self, transport: ProcessTransport) -> None:
        super().connection_made(transport)
        self.events.append(("connection_made",))

    def child_data_received(self, fd: int, data: bytes) -> None:
        self.received.setdefault(fd, bytearray()).extend(data)
        self.largest_chunk = max(self.largest_chunk, len(data))
        super().child_data_received(fd, data)

    def out_received(self, data: bytes) -> None:
        self.events.append(("out_received",))

    def err_received(self, data: bytes) -> None:
        self.events.append(("err_received",))

    def child_connection_lost(self, fd: int) -> None:
        self.events.append(("child_connection_lost", fd))
        super().child_connection_lost(fd)

    def in_connection_lost(self) -> None:
        self.events.append(("in_connection_lost",))

    def out_connection_lost(self) -> None:
        self.events.append(("out_connection_lost",))

    def err_connection_lost(self) -> None:
        self.events.append(("err_connection_lost",))

    def process_exited(self, status: ProcessStatus) -> None:
        self.events.append(("process_exited", status))

    def process_ended(self, status: ProcessStatus) -> None:
        self.events.append(("process_ended", status))

    def pause_writing(self) -> None:
        self.events.append(("pause_writing",))

    def resume_writing(self) -> None:
        self.events.append(("resume_writing",))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [event for event in self.events if event[0] == name]

    def output(self, fd: int = 1) -> bytes:
        return bytes(self.received.get(fd, b""))

    def check_order(self) -> None:
        """connection_made first, process_ended last, each exactly once."""
        assert self.events[0] == ("connection_made",)
        assert self.events[-1][0] == "process_ended"
        for once in ("connection_made", "process_exited", "process_ended"):
            assert len(self.named(once)) == 1, self.events
        lost = [event[1] for event in self.named("child_connection_lost")]
        assert len(lost) == len(set(lost)), self.events


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def reaped(pid: int) -> bool:
    """Whether ``pid`` is gone for good (a zombie still has its /proc entry)."""
    return not os.path.exists(f"/proc/{pid}")


def run(
    reactor: Reactor, wait: Wait, protocol: ProcessProtocol, *args: Any, **kwargs: Any
) -> ProcessTransport:
    """Spawn on ``reactor``'s loop and wait until the child runs."""
    transport = wait(reactor, spawn_process(reactor.loop, protocol, *args, **kwargs))
    assert isinstance(transport, ProcessTransport)
    return transport


def finish(reactor: Reactor, wait: Wait, transport: ProcessTransport) -> ProcessStatus:
    """Wait for process_ended, and check that the child was reaped."""
    status = wait(reactor, transport.ended())
    assert transport.status == status
    assert reaped(transport.pid)
    return status  # type: ignore[no-any-return]


@pytest.fixture
def warm_reactor(real_reactor: Reactor, wait: Wait) -> Reactor:
    """A reactor that has started one child already.

    uvloop opens a /dev/null descriptor of its own, once per loop, the first
    time it starts a child; counting descriptors starts after that.
    """
    transport = run(real_reactor, wait, ProcessProtocol(), "true")
    finish(real_reactor, wait, transport)
    return real_reactor


# -- exit statuses -----------------------------------------------------------------------


def test_status_from_returncode() -> None:
    assert status_from_returncode(0) == ProcessExited(0)
    assert status_from_returncode(3) == ProcessExited(3)
    assert status_from_returncode(-signal.SIGTERM) == ProcessTerminated(signal.SIGTERM)


def test_exit_status_says_which_and_whether_it_succeeded() -> None:
    ok, failed, killed = ProcessExited(0), ProcessExited(3), ProcessTerminated(signal.SIGKILL)
    assert ok.success
    assert not failed.success
    assert not killed.success
    assert (ok.exit_code, ok.signal) == (0, None)
    assert (failed.exit_code, failed.signal) == (3, None)
    assert (killed.exit_code, killed.signal) == (None, signal.SIGKILL)
    assert killed.signal_name == "SIGKILL"
    assert ProcessTerminated(signal.SIGRTMIN + 1).signal_name.startswith(("SIGRT", "signal "))
    assert str(failed) == "exited with code 3"
    assert str(killed) == "terminated by SIGKILL"
    match killed:
        case ProcessTerminated(signal=number):
            assert number == signal.SIGKILL
        case _:  # pragma: no cover - the match above must hold
            pytest.fail("not matched")


@pytest.mark.parametrize(
    ("given", "expected"),
    [("TERM", signal.SIGTERM), ("SIGKILL", signal.SIGKILL), ("hup", signal.SIGHUP), (9, 9)],
)
def test_signal_names_and_numbers(given: str | int, expected: int) -> None:
    assert signal_number(given) == expected


@pytest.mark.parametrize("given", ["NOPE", "SIG", 0, -1, signal.NSIG])
def test_unknown_signals_are_refused(given: str | int) -> None:
    with pytest.raises(ValueError, match="no such signal"):
        signal_number(given)


# -- the protocol's dispatch, and the transport's bookkeeping, on fakes --------------------


def test_protocol_dispatches_standard_descriptors() -> None:
    protocol = Recorder()
    for fd in (1, 2, 3):
        protocol.child_data_received(fd, b"x")
    for fd in (0, 1, 2, 3):
        protocol.child_connection_lost(fd)
    assert protocol.events == [
        ("out_received",),
        ("err_received",),
        ("child_connection_lost", 0),
        ("in_connection_lost",),
        ("child_connection_lost", 1),
        ("out_connection_lost",),
        ("child_connection_lost", 2),
        ("err_connection_lost",),
        ("child_connection_lost", 3),
    ]
    assert protocol.output(3) == b"x"


class FakePipe(asyncio.WriteTransport, asyncio.ReadTransport):
    """Stands in for one of asyncio's pipe transports."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: Any) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0


class FakeSubprocess(asyncio.SubprocessTransport):
    """Stands in for asyncio's subprocess transport."""

    def __init__(self) -> None:
        super().__init__()
        self.pipes = {0: FakePipe(), 1: FakePipe(), 2: FakePipe()}
        self.returncode: int | None = None
        self.closed = False

    def get_pid(self) -> int:
        return 4242

    def get_returncode(self) -> int | None:
        return self.returncode

    def get_pipe_transport(self, fd: int) -> Any:
        return self.pipes.get(fd)

    def close(self) -> None:
        self.closed = True


async def test_process_ended_waits_for_the_exit_and_every_pipe() -> None:
    loop = asyncio.get_running_loop()
    protocol = Recorder()
    transport = ProcessTransport(loop, protocol, pty_master=False)
    events = _SubprocessEvents(transport)
    fake = FakeSubprocess()
    events.connection_made(fake)
    assert transport.pid == 4242
    events.pipe_data_received(1, b"out")
    events.pipe_connection_lost(1, None)
    fake.returncode = 3
    events.process_exited()
    assert transport.status == ProcessExited(3)
    events.pipe_connection_lost(2, None)
    events.pipe_connection_lost(2, None)  # twice: reported once
    events.pipe_connection_lost(0, None)
    ended = transport.ended()
    events.connection_lost(None)
    # asyncio's transport is closed (or it would warn), and the end comes on
    # the next turn of the loop, once the pipes have closed their descriptors.
    assert fake.closed
    assert not ended.called
    assert await ended == ProcessExited(3)
    protocol.check_order()
    assert protocol.events == [
        ("connection_made",),
        ("out_received",),
        ("child_connection_lost", 1),
        ("out_connection_lost",),
        ("process_exited", ProcessExited(3)),
        ("child_connection_lost", 2),
        ("err_connection_lost",),
        ("child_connection_lost", 0),
        ("in_connection_lost",),
        ("process_ended", ProcessExited(3)),
    ]
    assert await transport.ended() == ProcessExited(3)
    assert await transport.exited() == ProcessExited(3)
    with pytest.raises(ProcessExitedError, match="already exited with code 3") as caught:
        transport.signal_process("TERM")
    assert caught.value.errno == errno.ESRCH
    assert caught.value.status == ProcessExited(3)
    transport.kill()  # a no-op now


async def test_transport_writes_pauses_and_flow_control_on_fakes() -> None:
    loop = asyncio.get_running_loop()
    protocol = Recorder()
    transport = ProcessTransport(loop, protocol, pty_master=False)
    events = _SubprocessEvents(transport)
    fake = FakeSubprocess()
    events.connection_made(fake)
    transport.write(b"a")
    transport.writelines([b"b", b"c"])
    assert fake.pipes[0].written == b"abc"
    with pytest.raises(ValueError, match="descriptor 1 is not a pipe torsion writes to"):
        transport.write_to_child(1, b"nope")
    transport.pause_reading()
    assert not fake.pipes[1].reading
    assert not fake.pipes[2].reading
    transport.resume_reading()
    assert fake.pipes[1].reading
    assert fake.pipes[2].reading
    events.pause_writing()
    drained = transport.drained()
    assert not drained.called
    events.resume_writing()
    assert drained.called
    assert protocol.named("pause_writing") == [("pause_writing",)]
    assert protocol.named("resume_writing") == [("resume_writing",)]
    transport.close_stdin()
    assert fake.pipes[0].closed
    events.pipe_connection_lost(0, None)
    transport.write(b"dropped")  # after the input closed: dropped, no error
    assert fake.pipes[0].written == b"abc"
    assert "running" in repr(transport)


async def test_process_ended_waits_for_torsions_own_pipes() -> None:
    loop = asyncio.get_running_loop()
    protocol = Recorder()
    transport = ProcessTransport(loop, protocol, pty_master=False)
    reader, done = FakePipe(), loop.create_future()
    reader.pause_reading()  # as connected: paused until connection_made
    transport._add_reader(3, reader, done)
    pipe_events = _OwnPipe(transport, 3, done)
    events = _SubprocessEvents(transport)
    fake = FakeSubprocess()
    fake.pipes.clear()
    events.connection_made(fake)
    assert reader.reading
    fake.returncode = 0
    events.process_exited()
    events.connection_lost(None)
    ended = transport.ended()
    for _ in range(3):
        await asyncio.sleep(0)
    assert not ended.called  # descriptor 3 is still open
    pipe_events.data_received(b"late")
    pipe_events.connection_lost(None)
    assert done.done()
    assert await ended == ProcessExited(0)
    assert protocol.output(3) == b"late"
    protocol.check_order()


async def test_terminal_stays_open_until_the_child_exits() -> None:
    # A child may close its terminal before it exits (cat does); closing our
    # side then would hang the terminal up and SIGHUP the child.
    loop = asyncio.get_running_loop()
    protocol = Recorder()
    transport = ProcessTransport(loop, protocol, pty_master=True)
    reader, writer = FakePipe(), FakePipe()
    reader_done, writer_done = loop.create_future(), loop.create_future()
    transport._add_reader(1, reader, reader_done)
    transport._add_writer(0, writer, writer_done)
    events = _SubprocessEvents(transport)
    fake = FakeSubprocess()
    fake.pipes.clear()
    events.connection_made(fake)
    _OwnPipe(transport, 1, reader_done).connection_lost(OSError(errno.EIO, "EIO"))
    assert not writer.closed
    fake.returncode = 0
    events.process_exited()
    assert writer.closed


def test_bad_arguments_are_refused_at_once(real_reactor: Reactor) -> None:
    loop = real_reactor.loop
    before = open_fds()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"child_fds": {0: "r"}}, "descriptor 0 can only be 'w'"),
        ({"child_fds": {2: "w"}}, "descriptor 2 can only be 'r'"),
        ({"child_fds": {3: "x"}}, "must be 'r', 'w' or a descriptor"),
        ({"child_fds": {3: True}}, "must be 'r', 'w' or a descriptor"),
        ({"child_fds": {-1: "r"}}, "not a descriptor number"),
        ({"child_fds": {3: "r", 4: 1_000_000}}, "not an open descriptor"),
        ({"child_fds": {1: "r"}, "use_pty": True}, "the terminal with use_pty"),
        ({"uid": "no-such-user-here"}, "no such user"),
        ({"gid": "no-such-group-here"}, "no such group"),
        ({"args": []}, "at least argv"),
    ]
    for kwargs, message in cases:
        args = kwargs.pop("args", None)
        with pytest.raises(ValueError, match=message):
            spawn_process(loop, ProcessProtocol(), "true", args, **kwargs)
    assert open_fds() == before


# -- real children ----------------------------------------------------------------------


def test_output_and_errors_arrive_separately(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    before = open_fds()
    protocol = Recorder()
    code = "import sys; sys.stdout.write('to out'); sys.stderr.write('to err')"
    transport = run(r, wait, protocol, PYTHON, [PYTHON, "-c", code])
    assert protocol.transport is transport
    assert transport.pid > 0
    assert finish(r, wait, transport) == ProcessExited(0)
    assert protocol.output(1) == b"to out"
    assert protocol.output(2) == b"to err"
    protocol.check_order()
    for name in ("in_connection_lost", "out_connection_lost", "err_connection_lost"):
        assert len(protocol.named(name)) == 1
    assert open_fds() == before


def test_input_is_written_then_closed(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    before = open_fds()
    protocol = Recorder()
    transport = run(r, wait, protocol, "cat")
    transport.write(b"one\n")
    transport.writelines([b"two\n", b"three\n"])
    transport.close_stdin()
    transport.close_stdin()  # idempotent
    transport.write(b"too late\n")  # dropped
    assert finish(r, wait, transport) == ProcessExited(0)
    assert protocol.output() == b"one\ntwo\nthree\n"
    assert protocol.named("in_connection_lost") == [("in_connection_lost",)]
    protocol.check_order()
    assert open_fds() == before


def test_exit_code_is_reported(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    protocol = Recorder()
    transport = run(r, wait, protocol, PYTHON, [PYTHON, "-c", "raise SystemExit(3)"])
    exited = wait(r, transport.exited())
    assert exited == ProcessExited(3)
    assert not exited.success
    assert finish(r, wait, transport) == exited
    assert protocol.named("process_exited") == [("process_exited", ProcessExited(3))]
    protocol.check_order()


# A child that waits until its input closes (it never does, here).
WAITS = [PYTHON, "-c", "import sys; sys.stdin.read()"]


@pytest.mark.parametrize(
    ("sig", "expected"),
    [("TERM", signal.SIGTERM), ("SIGKILL", signal.SIGKILL), (signal.SIGHUP, signal.SIGHUP)],
)
def test_death_by_signal_is_reported_as_the_signal(
    warm_reactor: Reactor,
    wait: Wait,
    sig: str | int,
    expected: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = warm_reactor
    before = open_fds()
    protocol = Recorder()
    transport = run(r, wait, protocol, PYTHON, WAITS)
    assert transport.status is None
    transport.signal_process(sig)
    status = finish(r, wait, transport)
    assert status == ProcessTerminated(expected)
    assert status.exit_code is None
    protocol.check_order()
    with pytest.raises(ProcessExitedError):
        transport.signal_process(sig)
    assert open_fds() == before
    # A child that dies is not an error of ours: nothing logged.
    assert [rec for rec in caplog.records if rec.levelno >= logging.WARNING] == []


def test_signals_reach_a_child_torsion_set_up(warm_reactor: Reactor, wait: Wait) -> None:
    # The loop may block every signal around fork (libuv does): the child
    # torsion execs itself must start with none blocked.
    r = warm_reactor
    transport = run(r, wait, Recorder(), PYTHON, WAITS, child_fds={3: "r"})
    transport.signal_process("TERM")
    assert finish(r, wait, transport) == ProcessTerminated(signal.SIGTERM)


def test_signal_to_an_exited_process(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    transport = run(r, wait, ProcessProtocol(), "true")
    wait(r, transport.exited())
    with pytest.raises(ProcessExitedError, match=f"process {transport.pid} has already exited"):
        transport.signal_process("TERM")
    with pytest.raises(ValueError, match="no such signal"):
        transport.signal_process("NOT-A-SIGNAL")
    transport.kill()  # a no-op
    finish(r, wait, transport)


def test_close_kills_a_running_child(
    warm_reactor: Reactor, wait: Wait, caplog: pytest.LogCaptureFixture
) -> None:
    r = warm_reactor
    before = open_fds()
    protocol = Recorder()
    transport = run(r, wait, protocol, PYTHON, WAITS)
    transport.write(b"never read")
    transport.close()
    transport.close()  # idempotent
    assert transport.is_closing()
    assert finish(r, wait, transport) == ProcessTerminated(signal.SIGKILL)
    protocol.check_order()
    assert open_fds() == before
    assert [rec for rec in caplog.records if rec.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("own", [False, True], ids=["loop-pipes", "own-pipes"])
def test_a_missing_program_is_a_clean_error(warm_reactor: Reactor, wait: Wait, own: bool) -> None:
    r = warm_reactor
    before = open_fds()
    # child_fds makes torsion set the child up (and exec) itself.
    extra: dict[int, ChildFD] = {3: "r"} if own else {}
    for program in ("no-such-program-here", "/no/such/program"):
        protocol = Recorder()
        with pytest.raises(CannotSpawnError) as caught:
            wait(r, spawn_process(r.loop, protocol, program, child_fds=extra))
        error = caught.value
        assert isinstance(error, OSError)
        assert error.errno == errno.ENOENT
        assert error.executable == program
        assert program in str(error)
        assert protocol.events == []  # nothing was called on the protocol
    assert open_fds() == before


@pytest.mark.parametrize("own", [False, True], ids=["loop-pipes", "own-pipes"])
def test_a_program_that_cannot_run(
    warm_reactor: Reactor, wait: Wait, tmp_path: Path, own: bool
) -> None:
    r = warm_reactor
    before = open_fds()
    program = tmp_path / "not-executable"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o644)
    if os.geteuid() == 0:
        # root may execute anything with an x bit, but not a file without one.
        assert not os.access(program, os.X_OK)
    extra: dict[int, ChildFD] = {3: "r"} if own else {}
    with pytest.raises(CannotSpawnError) as caught:
        wait(r, spawn_process(r.loop, Recorder(), str(program), child_fds=extra))
    assert caught.value.errno == errno.EACCES
    # And a working directory that does not exist.
    with pytest.raises(CannotSpawnError) as caught:
        wait(r, spawn_process(r.loop, Recorder(), "true", path=tmp_path / "gone", child_fds=extra))
    assert caught.value.errno == errno.ENOENT
    assert open_fds() == before


def test_environment_and_working_directory(
    warm_reactor: Reactor, wait: Wait, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = warm_reactor
    # env: exactly what was given (env(1) prints it as it is).
    protocol = Recorder()
    transport = run(r, wait, protocol, "env", env={"ONLY": "this", "AND": "that"})
    finish(r, wait, transport)
    assert sorted(protocol.output().decode().splitlines()) == ["AND=that", "ONLY=this"]
    # env=None: this process's own environment, as subprocess does.
    monkeypatch.setenv("TORSION_SPAWN_TEST", "inherited")
    protocol = Recorder()
    transport = run(r, wait, protocol, "env")
    finish(r, wait, transport)
    assert "TORSION_SPAWN_TEST=inherited" in protocol.output().decode().splitlines()
    # env={}: an empty one.
    protocol = Recorder()
    transport = run(r, wait, protocol, "env", env={})
    finish(r, wait, transport)
    assert protocol.output() == b""
    # path: the working directory.
    protocol = Recorder()
    transport = run(r, wait, protocol, "pwd", ["pwd", "-P"], path=tmp_path)
    finish(r, wait, transport)
    assert protocol.output().decode().strip() == str(tmp_path.resolve())


def test_argv0_is_set_apart_from_the_program(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    protocol = Recorder()
    code = "import sys; sys.stdout.write(sys.argv[1])"
    # sh's $0 is argv[0]; it must be ours, not the program's path.
    transport = run(r, wait, protocol, "sh", ["my-name", "-c", 'printf %s "$0"'])
    finish(r, wait, transport)
    assert protocol.output() == b"my-name"
    protocol = Recorder()
    transport = run(r, wait, protocol, PYTHON, [PYTHON, "-c", code, "argument"])
    finish(r, wait, transport)
    assert protocol.output() == b"argument"


def test_pseudo_terminal(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    before = open_fds()
    protocol = Recorder()
    # The terminal is each standard descriptor and the controlling terminal.
    code = (
        "import os; print(os.isatty(0), os.isatty(1), os.isatty(2));"
        "open('/dev/tty').close(); print('line:', input())"
    )
    transport = run(r, wait, protocol, PYTHON, [PYTHON, "-c", code], use_pty=True)
    transport.write(b"typed\n")
    assert finish(r, wait, transport) == ProcessExited(0)
    output = protocol.output()
    assert b"True True True" in output
    assert b"line: typed" in output
    assert 2 not in protocol.received
    assert protocol.named("err_connection_lost") == []
    lost = sorted(event[1] for event in protocol.named("child_connection_lost"))
    assert lost == [0, 1]
    protocol.check_order()
    assert open_fds() == before


def test_pseudo_terminal_end_of_input(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    protocol = Recorder()
    transport = run(r, wait, protocol, "cat", use_pty=True)
    transport.write(b"hello\n")
    # A terminal cannot be half-closed: close_stdin types the EOF character.
    transport.close_stdin()
    assert finish(r, wait, transport) == ProcessExited(0)
    # The terminal echoes the line, and cat writes it back: twice.
    assert protocol.output().count(b"hello\r\n") == 2


CHILD_FDS = """
import os
def is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
data = b""
while chunk := os.read(4, 1024):
    data += chunk
os.write(3, data[::-1])
os.write(5, b"passed through")
os.write(7, repr([fd for fd in range(3, 1024) if is_open(fd)]).encode())
"""


def test_extra_child_descriptors(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    # The child's 3 is in use here (the loop's own descriptors start at 3):
    # the child still gets ours at that number.
    os.fstat(3)
    read_end, write_end = os.pipe()
    try:
        before = open_fds()
        protocol = Recorder()
        fds: dict[int, ChildFD] = {3: "r", 4: "w", 5: write_end, 7: "r"}
        transport = run(r, wait, protocol, PYTHON, [PYTHON, "-c", CHILD_FDS], child_fds=fds)
        transport.write_to_child(4, b"stressed")
        transport.close_child_fd(4)
        assert finish(r, wait, transport) == ProcessExited(0), protocol.output(2)
        assert protocol.output(3) == b"desserts"
        # Only what was asked for reached the child.
        assert protocol.output(7) == b"[3, 4, 5, 7]"
        lost = sorted(event[1] for event in protocol.named("child_connection_lost"))
        assert lost == [0, 1, 2, 3, 4, 7]
        protocol.check_order()
        assert open_fds() == before
        # The descriptor passed through is still ours, and open.
        os.close(write_end)
        write_end = -1
        assert os.read(read_end, 100) == b"passed through"
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_standard_descriptors_can_be_ours(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    read_end, write_end = os.pipe()
    try:
        protocol = Recorder()
        transport = run(r, wait, protocol, "echo", ["echo", "straight"], child_fds={1: write_end})
        finish(r, wait, transport)
        assert 1 not in protocol.received
        assert os.read(read_end, 100) == b"straight\n"
        with pytest.raises(ValueError, match="not a pipe torsion writes to"):
            transport.write_to_child(5, b"x")
    finally:
        os.close(read_end)
        os.close(write_end)


def test_standard_descriptors_named_as_they_are(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    protocol = Recorder()
    fds: dict[int, ChildFD] = {0: "w", 1: "r", 2: "r"}
    transport = run(r, wait, protocol, "cat", child_fds=fds)
    transport.write(b"same as ever")
    transport.close_stdin()
    assert finish(r, wait, transport) == ProcessExited(0)
    assert protocol.output() == b"same as ever"


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
@pytest.mark.parametrize("own", [False, True], ids=["loop-pipes", "own-pipes"])
def test_cancelling_the_spawn_leaves_nothing(
    warm_reactor: Reactor, wait: Wait, turns: int, own: bool, caplog: pytest.LogCaptureFixture
) -> None:
    r = warm_reactor
    before = open_fds()
    protocol = Recorder()
    extra: dict[int, ChildFD] = {3: "r"} if own else {}
    spawning = spawn_process(r.loop, protocol, PYTHON, WAITS, child_fds=extra, use_pty=own)

    async def cancel_later() -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
        spawning.cancel()

    wait(r, cancel_later())
    try:
        transport = wait(r, spawning)
    except asyncio.CancelledError:
        # Cancelled in time; if the child had started already, it is ended.
        if protocol.events:
            assert protocol.events[0] == ("connection_made",)
            wait(r, protocol.transport.ended())
    else:
        # The child started before the cancellation arrived: end it.
        transport.close()
        finish(r, wait, transport)
    assert open_fds() == before
    assert [rec for rec in caplog.records if rec.levelno >= logging.WARNING] == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can run a child as another user")
def test_user_and_group(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    nobody = pwd.getpwnam("nobody")
    protocol = Recorder()
    transport = run(r, wait, protocol, "id", uid="nobody")
    assert finish(r, wait, transport) == ProcessExited(0)
    protocol = Recorder()
    script = "id -u; id -g; id -G"
    transport = run(r, wait, protocol, "sh", ["sh", "-c", script], uid=nobody.pw_uid)
    finish(r, wait, transport)
    # The user's own group, and no supplementary group of root's.
    expected = [str(nobody.pw_uid), str(nobody.pw_gid), str(nobody.pw_gid)]
    assert protocol.output().decode().split() == expected
    # Supplementary groups of ours (root's) are not passed on.
    groups = os.getgroups()
    os.setgroups([0, 4])
    try:
        protocol = Recorder()
        transport = run(r, wait, protocol, "id", ["id", "-G"], uid="nobody")
        finish(r, wait, transport)
    finally:
        os.setgroups(groups)
    assert protocol.output().decode().split() == [str(nobody.pw_gid)]
    # A group alone.
    protocol = Recorder()
    transport = run(r, wait, protocol, "id", ["id", "-g"], gid=nobody.pw_gid)
    finish(r, wait, transport)
    assert protocol.output().decode().strip() == str(nobody.pw_gid)


def test_huge_output_arrives_whole_in_bounded_chunks(warm_reactor: Reactor, wait: Wait) -> None:
    r = warm_reactor
    size = 8 * 1024 * 1024
    code = (
        "import sys\n"
        "block = bytes(range(256)) * 4096\n"
        f"for _ in range({size} // len(block)): sys.stdout.buffer.write(block)\n"
    )
    expected = hashlib.sha256((bytes(range(256)) * 4096) * (size // (256 * 4096))).hexdigest()

    class Counting(ProcessProtocol):
        def __init__(self) -> None:
            self.digest = hashlib.sha256()
            self.count = 0
            self.largest = 0

        def out_received(self, data: bytes) -> None:
            self.digest.update(data)
            self.count += len(data)
            self.largest = max(self.largest, len(data))

    protocol = Counting()
    transport = run(r, wait, protocol, PYTHON, [PYTHON, "-c", code])
    assert finish(r, wait, transport) == ProcessExited(0)
    assert protocol.count == size
    assert protocol.digest.hexdigest() == expected
    # Delivered as it arrived: no chunk bigger than one read of the pipe.
    assert protocol.largest <= 256 * 1024


async def test_pause_reading_stops_the_output(reactor: Reactor) -> None:
    received: list[int] = []
    first = asyncio.get_running_loop().create_future()

    class Pausing(ProcessProtocol):
        def out_received(self, data: bytes) -> None:
            received.append(len(data))
            if not first.done():
                self.transport.pause_reading()
                first.set_result(None)

    code = "import sys\nfor _ in range(64): sys.stdout.buffer.write(b'x' * 65536)"
    transport = await spawn_process(reactor.loop, Pausing(), PYTHON, [PYTHON, "-c", code])
    await first
    # Let the loop turn a few times: a paused pipe delivers nothing meanwhile.
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(received) == 1
    transport.resume_reading()
    assert await transport.ended() == ProcessExited(0)
    assert sum(received) == 64 * 65536


async def test_writes_past_the_high_water_mark_pause_the_writer(reactor: Reactor) -> None:
    protocol = Recorder()
    transport = await spawn_process(reactor.loop, protocol, "cat")
    chunk = b"y" * 65536
    total = 0
    # Write until the pipes fill up and the transport says to pause.
    while not protocol.named("pause_writing"):
        transport.write(chunk)
        total += len(chunk)
        assert total < 64 * 1024 * 1024, "never paused"
    assert transport.get_write_buffer_size() > 0
    await transport.drained()
    assert protocol.named("resume_writing") == [("resume_writing",)]
    transport.close_stdin()
    assert await transport.ended() == ProcessExited(0)
    assert len(protocol.output()) == total


def test_descriptors_and_children_are_all_gone_after_many(
    warm_reactor: Reactor, wait: Wait
) -> None:
    r = warm_reactor
    before = open_fds()
    pids = []
    for kwargs in [{}, {"use_pty": True}, {"child_fds": {3: "r", 4: "w"}}]:
        transports = [run(r, wait, Recorder(), PYTHON, WAITS, **kwargs) for _ in range(3)]
        for transport in transports:
            transport.signal_process("KILL")
        for transport in transports:
            assert finish(r, wait, transport) == ProcessTerminated(signal.SIGKILL)
            pids.append(transport.pid)
    assert all(reaped(pid) for pid in pids)
    assert open_fds() == before


def test_exited_and_ended_can_be_awaited_before_and_after(
    warm_reactor: Reactor, wait: Wait
) -> None:
    r = warm_reactor
    transport = run(r, wait, ProcessProtocol(), PYTHON, WAITS)
    exited, ended = transport.exited(), transport.ended()
    assert isinstance(exited, Deferred)
    assert not exited.called
    transport.close_stdin()
    assert wait(r, ended) == ProcessExited(0)
    assert exited.called
    assert wait(r, exited) == ProcessExited(0)
    assert wait(r, transport.exited()) == ProcessExited(0)
    assert "ended" in repr(transport)

"""torsion.testing.MemoryReactor: child processes the test plays."""

from __future__ import annotations

import errno
import inspect
import signal

import pytest

from torsion.defer import CancelledError, Deferred
from torsion.errors import CannotSpawnError, ProcessExitedError
from torsion.internet import (
    ProcessExited,
    ProcessProtocol,
    ProcessTerminated,
    ProcessTransport,
    Reactor,
)
from torsion.testing import (
    MemoryProcessTransport,
    MemoryReactor,
    ProcessCall,
    assert_no_result,
    failure_result_of,
    success_result_of,
)


class WordCount(ProcessProtocol):
    """Code under test: has ``wc -w`` count the words of a text."""

    def __init__(self, text):
        self.text = text
        self.output = b""
        self.result = Deferred()

    def connection_made(self, transport):
        super().connection_made(transport)
        transport.write(self.text)
        transport.close_stdin()

    def out_received(self, data):
        self.output += data

    def process_ended(self, status):
        if status.success:
            self.result.callback(int(self.output))
        else:
            self.result.errback(RuntimeError(f"wc {status}"))


def count_words(reactor, text):
    protocol = WordCount(text)
    reactor.spawn_process(protocol, "wc", ["wc", "-w"], env={"LC_ALL": "C"})
    return protocol.result


class Recorder(ProcessProtocol):
    """Records every call, in order."""

    def __init__(self):
        self.events = []

    def connection_made(self, transport):
        super().connection_made(transport)
        self.events.append(("connection_made",))

    def child_data_received(self, fd, data):
        self.events.append(("data", fd, data))

    def child_connection_lost(self, fd):
        self.events.append(("lost", fd))

    def process_exited(self, status):
        self.events.append(("exited", status))

    def process_ended(self, status):
        self.events.append(("ended", status))

    def pause_writing(self):
        self.events.append(("pause_writing",))

    def resume_writing(self):
        self.events.append(("resume_writing",))


def spawn(reactor=None, **kwargs):
    reactor = reactor or MemoryReactor()
    protocol = Recorder()
    d = reactor.spawn_process(protocol, "/bin/prog", **kwargs)
    return protocol, success_result_of(d)


def test_a_user_tests_code_that_runs_a_program():
    reactor = MemoryReactor()
    d = count_words(reactor, b"three little words")
    [call] = reactor.processes
    assert isinstance(call, ProcessCall)
    assert (call.executable, call.args, call.env) == ("wc", ["wc", "-w"], {"LC_ALL": "C"})
    child = call.transport
    assert child.value(0) == b"three little words"
    assert child.closed_fds == [0]
    assert_no_result(d)
    child.child_writes(1, b"3\n")
    child.child_exits(0)
    assert success_result_of(d) == 3


def test_a_failing_program_reaches_the_code_under_test():
    reactor = MemoryReactor()
    d = count_words(reactor, b"")
    reactor.processes[0].transport.child_killed("SEGV")
    failure_result_of(d, RuntimeError)


def test_the_call_is_recorded_with_every_argument():
    reactor = MemoryReactor()
    protocol = ProcessProtocol()
    d = reactor.spawn_process(
        protocol,
        b"/usr/bin/env",
        path="/tmp",
        uid="nobody",
        gid=65534,
        child_fds={3: "r", 4: "w", 5: 9},
    )
    [call] = reactor.processes
    assert call.protocol is protocol
    assert call.args == [b"/usr/bin/env"]  # argv defaults to [executable]
    assert (call.env, call.path, call.uid, call.gid, call.use_pty) == (
        None,
        "/tmp",
        "nobody",
        65534,
        False,
    )
    assert call.child_fds == {3: "r", 4: "w", 5: 9}
    transport = success_result_of(d)
    assert transport is call.transport
    assert isinstance(transport, MemoryProcessTransport)
    assert protocol.transport is transport


def test_callbacks_come_in_the_real_order_with_the_real_status():
    protocol, child = spawn()
    child.child_writes(1, b"out")
    child.child_writes(2, b"err")
    child.child_exits(3)
    assert protocol.events == [
        ("connection_made",),
        ("data", 1, b"out"),
        ("data", 2, b"err"),
        ("lost", 0),
        ("lost", 1),
        ("lost", 2),
        ("exited", ProcessExited(3)),
        ("ended", ProcessExited(3)),
    ]
    assert child.status == ProcessExited(3)
    assert success_result_of(child.exited()) == ProcessExited(3)
    assert success_result_of(child.ended()) == ProcessExited(3)
    assert child.is_closing()


async def test_the_real_reactor_gives_the_same_callbacks(reactor: Reactor):
    # The same child, really run and played: the same events, the same
    # status, and both in an order the ProcessProtocol contract allows (the
    # real one may report the exit before its pipes close).
    script = "printf out; printf err >&2; exit 3"
    real = Recorder()
    transport = await reactor.spawn_process(real, "sh", ["sh", "-c", script])
    await transport.ended()
    played, child = spawn()
    child.child_writes(1, b"out")
    child.child_writes(2, b"err")
    child.child_exits(3)
    for events in (real.events, played.events):
        assert events[0] == ("connection_made",)
        assert events[-1] == ("ended", ProcessExited(3))
        lost = [e for e in events if e[0] == "lost"]
        assert events.index(lost[-1]) < len(events) - 1
    assert sorted(map(repr, real.events)) == sorted(map(repr, played.events))


def test_killed_by_a_signal():
    protocol, child = spawn()
    child.child_killed("TERM")
    status = ProcessTerminated(signal.SIGTERM)
    assert protocol.events[-2:] == [("exited", status), ("ended", status)]
    assert child.status.signal_name == "SIGTERM"
    assert not child.status.success


def test_signals_are_recorded_and_refused_once_the_child_exited():
    _, child = spawn()
    child.signal_process("HUP")
    child.signal_process(signal.SIGUSR1)
    child.kill()
    assert child.signals == [signal.SIGHUP, signal.SIGUSR1, signal.SIGKILL]
    assert child.status is None  # the test decides what a signal does
    with pytest.raises(ValueError, match="no such signal"):
        child.signal_process("NOPE")
    child.child_killed(signal.SIGKILL)
    with pytest.raises(ProcessExitedError) as exited:
        child.signal_process("TERM")
    assert exited.value.pid == child.pid
    assert exited.value.status == ProcessTerminated(signal.SIGKILL)
    assert exited.value.errno == errno.ESRCH
    child.kill()  # a no-op once it exited, as the real one
    assert len(child.signals) == 3


def test_close_kills_the_child_and_closes_every_pipe():
    protocol, child = spawn()
    child.write(b"dropped")
    child.close()
    killed = ProcessTerminated(signal.SIGKILL)
    assert protocol.events[1:] == [
        ("lost", 0),
        ("lost", 1),
        ("lost", 2),
        ("exited", killed),
        ("ended", killed),
    ]
    assert child.signals == [signal.SIGKILL]
    assert child.closed
    child.close()  # idempotent
    child.write(b"after")  # dropped
    assert child.value(0) == b"dropped"
    with pytest.raises(RuntimeError, match="ended"):
        child.child_writes(1, b"late")


def test_close_after_the_exit_only_closes_the_pipes():
    protocol, child = spawn()
    child.child_exits(0, close_fds=False)
    child.close()
    assert protocol.events[-1] == ("ended", ProcessExited(0))
    assert child.signals == []


def test_output_can_outlive_the_exit():
    # A grandchild holding the pipes: process_ended waits for them.
    protocol, child = spawn()
    child.child_exits(0, close_fds=False)
    assert protocol.events[-1] == ("exited", ProcessExited(0))
    child.child_writes(1, b"from the grandchild")
    child.child_closes(1)
    child.child_closes(2)
    assert_no_result(child.ended())
    child.child_closes(0)
    assert protocol.events[-4:] == [
        ("lost", 1),
        ("lost", 2),
        ("lost", 0),
        ("ended", ProcessExited(0)),
    ]
    assert ("data", 1, b"from the grandchild") in protocol.events


def test_playing_what_cannot_happen_raises():
    _, child = spawn()
    with pytest.raises(ValueError, match="not a pipe torsion reads"):
        child.child_writes(0, b"input is ours")
    with pytest.raises(ValueError, match="holds no pipe"):
        child.child_closes(7)
    child.child_closes(1)
    with pytest.raises(RuntimeError, match="descriptor 1 is closed"):
        child.child_writes(1, b"after close")
    with pytest.raises(RuntimeError, match="descriptor 1 is closed"):
        child.child_closes(1)
    with pytest.raises(ValueError, match="0 to 255"):
        child.child_exits(256)
    child.child_exits(1)
    with pytest.raises(RuntimeError, match="already exited with code 1"):
        child.child_exits(0)


def test_exiting_twice_raises_even_while_pipes_are_open():
    _, child = spawn()
    child.child_exits(0, close_fds=False)
    with pytest.raises(RuntimeError, match="already exited with code 0"):
        child.child_killed("KILL")


def test_writes_go_to_the_right_descriptor_and_stop_at_close():
    protocol, child = spawn(child_fds={3: "r", 4: "w"})
    child.writelines([b"a", b"b"])
    child.write_to_child(4, b"side channel")
    assert (child.value(0), child.value(4)) == (b"ab", b"side channel")
    with pytest.raises(ValueError, match="not a pipe torsion writes to"):
        child.write_to_child(1, b"x")
    with pytest.raises(ValueError, match="not a pipe torsion writes to"):
        child.value(3)
    with pytest.raises(TypeError, match="bytes-like"):
        child.write("text")
    child.close_child_fd(4)
    child.close_child_fd(4)  # idempotent
    child.close_child_fd(9)  # not ours: a no-op
    child.write_to_child(4, b"dropped")
    assert child.value(4) == b"side channel"
    assert child.closed_fds == [4]
    child.child_writes(3, b"status")
    child.child_exits(0)
    assert ("data", 3, b"status") in protocol.events
    lost = [e[1] for e in protocol.events if e[0] == "lost"]
    assert lost == [4, 0, 1, 2, 3]
    assert child.open_fds == set()


def test_a_descriptor_passed_through_is_not_a_pipe():
    protocol, child = spawn(child_fds={1: 9})
    with pytest.raises(ValueError, match="not a pipe torsion reads"):
        child.child_writes(1, b"x")
    child.child_exits(0)
    assert [e[1] for e in protocol.events if e[0] == "lost"] == [0, 2]


def test_a_pseudo_terminal_has_no_standard_error():
    protocol, child = spawn(use_pty=True)
    assert child.open_fds == {0, 1}
    child.write(b"ls\n")
    child.close_stdin()  # a terminal cannot be half-closed: VEOF is written
    assert child.value(0) == b"ls\n\x04"
    assert child.open_fds == {0, 1}
    with pytest.raises(ValueError, match="not a pipe torsion reads"):
        child.child_writes(2, b"x")
    child.child_writes(1, b"ls\r\nfile\r\n")
    child.child_exits(0)
    assert [e[1] for e in protocol.events if e[0] == "lost"] == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"args": []}, "argv\\[0\\]"),
        ({"child_fds": {1: "w"}}, "can only be 'r'"),
        ({"child_fds": {0: "r"}}, "can only be 'w'"),
        ({"child_fds": {3: "x"}}, "must be 'r', 'w' or a descriptor"),
        ({"child_fds": {3: True}}, "must be 'r', 'w' or a descriptor"),
        ({"child_fds": {-1: "r"}}, "not a descriptor number"),
        ({"child_fds": {0: 5}, "use_pty": True}, "are the terminal"),
    ],
)
def test_spawn_checks_its_arguments_as_the_real_one(kwargs, problem):
    reactor = MemoryReactor()
    with pytest.raises(ValueError, match=problem):
        reactor.spawn_process(ProcessProtocol(), "prog", **kwargs)
    assert reactor.processes == []


def test_reading_paused_holds_output_and_closing_in_order():
    protocol, child = spawn()
    child.pause_reading()
    assert child.reading_paused
    child.child_writes(1, b"one")
    child.child_closes(1)
    child.child_writes(2, b"two")
    child.child_exits(0)  # the exit is known at once; the pipes' ends are not
    assert protocol.events[1:] == [("lost", 0), ("exited", ProcessExited(0))]
    with pytest.raises(RuntimeError, match="descriptor 1 is closed"):
        child.child_writes(1, b"after its close")
    child.resume_reading()
    assert protocol.events[3:] == [
        ("data", 1, b"one"),
        ("lost", 1),
        ("data", 2, b"two"),
        ("lost", 2),
        ("ended", ProcessExited(0)),
    ]


def test_closing_a_paused_pipe_drops_its_held_output():
    protocol, child = spawn()
    child.pause_reading()
    child.child_writes(1, b"never read")
    child.child_writes(2, b"kept")
    child.close_child_fd(1)
    child.resume_reading()
    assert protocol.events[1:] == [("lost", 1), ("data", 2, b"kept")]


def test_blocked_input_pauses_the_writer_until_it_drains():
    protocol, child = spawn()
    assert success_result_of(child.drained()) is None
    child.block_writes()
    child.block_writes()  # once
    child.write(b"12345")
    assert child.get_write_buffer_size() == 5
    waiting = child.drained()
    assert_no_result(waiting)
    child.unblock_writes()
    assert success_result_of(waiting) is None
    assert child.get_write_buffer_size() == 0
    assert protocol.events[1:] == [("pause_writing",), ("resume_writing",)]


def test_the_test_can_start_or_fail_the_spawn_itself():
    reactor = MemoryReactor(start_processes=False)
    protocol = Recorder()
    d = reactor.spawn_process(protocol, "prog")
    assert_no_result(d)
    assert protocol.events == []
    call = reactor.processes[0]
    with pytest.raises(RuntimeError, match="not started"):
        call.transport.child_writes(1, b"too early")
    with pytest.raises(RuntimeError, match="not started"):
        call.transport.child_exits(0)
    transport = call.start()
    assert success_result_of(d) is transport
    assert protocol.events == [("connection_made",)]
    with pytest.raises(RuntimeError, match="already ended"):
        call.start()
    missing = reactor.spawn_process(Recorder(), "no-such-program")
    reactor.processes[1].fail()
    error = failure_result_of(missing, CannotSpawnError)
    assert error.errno == errno.ENOENT
    assert error.executable == "no-such-program"
    with pytest.raises(RuntimeError, match="already ended"):
        reactor.processes[1].fail()


def test_a_cancelled_spawn_cannot_be_started():
    reactor = MemoryReactor(start_processes=False)
    d = reactor.spawn_process(Recorder(), "prog")
    d.cancel()
    failure_result_of(d, CancelledError)
    with pytest.raises(RuntimeError, match="already ended"):
        reactor.processes[0].start()


def test_each_child_has_its_own_pid():
    reactor = MemoryReactor()
    _, first = spawn(reactor)
    _, second = spawn(reactor)
    assert first.pid != second.pid
    assert f"pid={first.pid} running" in repr(first)
    first.child_exits(0)
    assert "ended" in repr(first)


def test_the_memory_transport_offers_what_the_real_one_does_with_the_same_signatures():
    public = [name for name in dir(ProcessTransport) if not name.startswith("_")]
    assert {"write", "signal_process", "close", "ended", "pid"} <= set(public)
    for name in public:
        real = inspect.getattr_static(ProcessTransport, name)
        mine = inspect.getattr_static(MemoryProcessTransport, name)
        assert type(mine) is type(real), name
        if callable(real):
            assert inspect.signature(mine) == inspect.signature(real), name


def test_water_marks_are_recorded_per_descriptor():
    reactor = MemoryReactor()
    d = reactor.spawn_process(ProcessProtocol(), "prog", child_fds={0: "w", 3: "w"})
    transport = success_result_of(d)
    assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    transport.set_write_buffer_limits(high=1000, fd=3)
    assert transport.get_write_buffer_limits(3) == (250, 1000)
    assert transport.get_write_buffer_limits(0) == (16 * 1024, 64 * 1024)
    with pytest.raises(ValueError, match="must be >= low"):
        transport.set_write_buffer_limits(high=1, low=2)
    with pytest.raises(ValueError, match="not a pipe torsion writes to"):
        transport.get_write_buffer_limits(1)

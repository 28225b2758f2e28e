"""Raw descriptors: watching them, the transports for files and terminals, and stdio.

``stdio`` is tested in this process over pipes and files, and in child
processes (Python running a small echo program) over pipes, files, a
terminal, ``/dev/null`` and a pipe nobody reads, on each loop in the child
and in the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import socket
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from torsion.internet import Protocol, Reactor
from torsion.internet._fdesc import (
    FDWriteTransport,
    FileDescriptor,
    FileReadTransport,
    StandardIO,
    is_pollable,
    stdio,
    wait_readable,
    wait_writable,
)
from torsion.internet._process import (
    ProcessExited,
    ProcessProtocol,
    ProcessTransport,
    spawn_process,
)

Wait = Callable[..., Any]

PYTHON = sys.executable

try:
    import uvloop  # noqa: F401
except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
    CHILD_LOOPS = ["asyncio"]
else:
    CHILD_LOOPS = ["asyncio", "uvloop"]


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe, closed afterwards (whichever end the test did not close)."""
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        with contextlib.suppress(OSError):
            os.close(fd)


# -- watching descriptors ----------------------------------------------------------------


class FakeReactor:
    """Records what is watched, as ``ReactorFDs``."""

    def __init__(self) -> None:
        self.readers: dict[int, Callable[..., object]] = {}
        self.writers: dict[int, Callable[..., object]] = {}

    def add_reader(self, fd: Any, callback: Callable[..., object], *args: Any) -> None:
        self.readers[fd] = callback

    def remove_reader(self, fd: Any) -> bool:
        return self.readers.pop(fd, None) is not None

    def add_writer(self, fd: Any, callback: Callable[..., object], *args: Any) -> None:
        self.writers[fd] = callback

    def remove_writer(self, fd: Any) -> bool:
        return self.writers.pop(fd, None) is not None


def test_file_descriptor_registers_only_while_started(pipe: tuple[int, int]) -> None:
    reactor = FakeReactor()
    calls: list[str] = []
    watched = FileDescriptor(
        reactor,
        pipe[0],
        on_readable=lambda: calls.append("read"),
        on_writable=lambda: calls.append("write"),
    )
    assert watched.fileno() == pipe[0]
    assert reactor.readers == {}
    assert "idle" in repr(watched)
    watched.start_reading()
    watched.start_reading()  # a no-op
    watched.start_writing()
    assert watched.reading
    assert watched.writing
    assert "reading writing" in repr(watched)
    reactor.readers[pipe[0]]()
    reactor.writers[pipe[0]]()
    assert calls == ["read", "write"]
    watched.stop_reading()
    watched.stop_reading()  # a no-op
    assert reactor.readers == {}
    assert pipe[0] in reactor.writers
    with watched:
        pass
    assert watched.closed
    assert reactor.writers == {}
    assert "closed" in repr(watched)
    with pytest.raises(ValueError, match="closed"):
        watched.start_reading()
    watched.close()  # idempotent
    os.fstat(pipe[0])  # still open: close_fd was not asked for


def test_file_descriptor_needs_its_callback_and_can_close_the_descriptor(
    pipe: tuple[int, int],
) -> None:
    reactor = FakeReactor()
    watched = FileDescriptor(reactor, pipe[0], close_fd=True)
    with pytest.raises(ValueError, match="no on_readable"):
        watched.start_reading()
    with pytest.raises(ValueError, match="no on_writable"):
        watched.start_writing()
    watched.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(pipe[0])


def test_file_descriptor_on_a_real_loop(
    real_reactor: Reactor, wait: Wait, pipe: tuple[int, int]
) -> None:
    r = real_reactor
    read_end, write_end = pipe
    os.set_blocking(read_end, False)
    received: list[bytes] = []
    done = r.loop.create_future()

    def readable() -> None:
        received.append(os.read(read_end, 100))
        if b"".join(received) == b"ping":
            done.set_result(None)

    # The reactor is a ReactorFDs (add_reader and friends, on its loop).
    with FileDescriptor(r.loop, read_end, on_readable=readable) as watched:
        watched.start_reading()
        os.write(write_end, b"ping")
        wait(r, done)
    assert received == [b"ping"]


def test_wait_readable_and_writable(
    real_reactor: Reactor, wait: Wait, pipe: tuple[int, int]
) -> None:
    r = real_reactor
    read_end, write_end = pipe
    readable = wait_readable(r.loop, read_end)
    assert not readable.called
    assert wait(r, wait_writable(r.loop, write_end)) is None
    os.write(write_end, b"x")
    assert wait(r, readable) is None
    # Cancelling stops watching: the loop no longer knows the descriptor.
    os.read(read_end, 1)
    waiting = wait_readable(r.loop, read_end)
    waiting.cancel()
    assert not r.loop.remove_reader(read_end)
    with pytest.raises(asyncio.CancelledError):
        wait(r, waiting)


def test_what_can_be_polled(tmp_path: Path, pipe: tuple[int, int]) -> None:
    assert is_pollable(pipe[0])
    assert is_pollable(pipe[1])
    left, right = socket.socketpair()
    with left, right:
        assert is_pollable(left.fileno())
    with open(tmp_path / "file", "wb") as file:
        assert not is_pollable(file.fileno())
    null = os.open(os.devnull, os.O_RDWR)
    try:
        # epoll refuses /dev/null (EPERM): it is read and written directly.
        assert not is_pollable(null)
    finally:
        os.close(null)


# -- the transports for what asyncio's pipe transports cannot serve ---------------------------


class Recording(Protocol):
    """Records the calls of any transport, read or write."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.events: list[Any] = []
        self.data = bytearray()
        self.made: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[Exception | None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.events.append("made")
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.events.append("data")

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        return None

    def pause_writing(self) -> None:
        super().pause_writing()
        self.events.append("pause")

    def resume_writing(self) -> None:
        super().resume_writing()
        self.events.append("resume")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.events.append(("lost", exc))
        self.lost.set_result(exc)


def test_write_transport_on_a_pipe_with_flow_control(
    real_reactor: Reactor, wait: Wait, pipe: tuple[int, int]
) -> None:
    r = real_reactor
    read_end, write_end = pipe
    protocol = Recording(r.loop)
    transport = FDWriteTransport(r.loop, write_end, protocol, pollable=True)
    transport.set_write_buffer_limits(high=4096)
    assert transport.get_write_buffer_limits() == (1024, 4096)
    assert transport.can_write_eof()
    assert transport.fileno() == write_end
    assert transport.get_protocol() is protocol
    wait(r, protocol.made)
    block = b"z" * 65536
    # Write until the pipe is full and the buffer passes the high-water mark.
    written = 0
    while "pause" not in protocol.events:
        transport.write(block)
        written += len(block)
    assert transport.get_write_buffer_size() > 4096
    drained = protocol.drained()
    # Read everything: the buffer drains, the protocol resumes.
    received = bytearray()
    os.set_blocking(read_end, False)

    async def read_all() -> None:
        while len(received) < written:
            await wait_readable(r.loop, read_end)
            received.extend(os.read(read_end, 1 << 20))

    wait(r, read_all())
    assert wait(r, drained) is None
    assert "resume" in protocol.events
    assert bytes(received) == block * (written // len(block))
    transport.write(b"last")
    transport.write_eof()
    transport.write(b"dropped")
    assert transport.is_closing()
    assert wait(r, protocol.lost) is None
    assert os.read(read_end, 100) == b"last"
    assert os.read(read_end, 100) == b""  # end of file: our copy is closed
    assert protocol.events[0] == "made"
    assert "closed" in repr(transport)
    with pytest.raises(TypeError, match="bytes-like"):
        transport.write("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be >="):
        transport.set_write_buffer_limits(high=1, low=2)


def test_write_transport_reports_a_broken_pipe_quietly(
    real_reactor: Reactor, wait: Wait, pipe: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    r = real_reactor
    read_end, write_end = pipe
    os.close(read_end)
    protocol = Recording(r.loop)
    transport = FDWriteTransport(r.loop, write_end, protocol, pollable=True)
    transport.write(b"nobody reads this")
    assert isinstance(wait(r, protocol.lost), BrokenPipeError)
    assert caplog.records == []


def test_write_transport_abort_drops_the_buffer(
    real_reactor: Reactor, wait: Wait, pipe: tuple[int, int]
) -> None:
    r = real_reactor
    write_end = pipe[1]
    protocol = Recording(r.loop)
    transport = FDWriteTransport(r.loop, write_end, protocol, pollable=True)
    while transport.get_write_buffer_size() == 0:
        transport.write(b"a" * 65536)
    transport.abort()
    transport.abort()  # idempotent
    assert transport.get_write_buffer_size() == 0
    assert wait(r, protocol.lost) is None


def test_write_and_read_transports_on_regular_files(
    real_reactor: Reactor, wait: Wait, tmp_path: Path
) -> None:
    r = real_reactor
    path = tmp_path / "data"
    content = bytes(range(256)) * 2048
    protocol = Recording(r.loop)
    writer = FDWriteTransport(
        r.loop, os.open(path, os.O_WRONLY | os.O_CREAT), protocol, pollable=False
    )
    writer.write(content)
    writer.close()
    assert wait(r, protocol.lost) is None
    assert path.read_bytes() == content
    # Read back in chunks, one per turn of the loop, pausing after the first.
    reader_protocol = Recording(r.loop)
    reader = FileReadTransport(r.loop, os.open(path, os.O_RDONLY), reader_protocol, chunk=65536)
    assert reader.get_protocol() is reader_protocol
    assert reader.fileno() >= 0
    assert reader.is_reading()
    reader.pause_reading()
    assert not reader.is_reading()

    async def turns() -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    wait(r, turns())
    assert reader_protocol.events == ["made"]  # paused: nothing read
    reader.resume_reading()
    assert wait(r, reader_protocol.lost) is None
    assert bytes(reader_protocol.data) == content
    assert reader_protocol.events[-2:] == ["eof", ("lost", None)]
    assert reader_protocol.events.count("data") == len(content) // 65536
    assert reader.is_closing()
    assert "closed" in repr(reader)


def test_read_transport_closed_before_it_starts(
    real_reactor: Reactor, wait: Wait, tmp_path: Path
) -> None:
    r = real_reactor
    path = tmp_path / "data"
    path.write_bytes(b"unread")
    protocol = Recording(r.loop)
    reader = FileReadTransport(r.loop, os.open(path, os.O_RDONLY), protocol)
    reader.close()
    assert wait(r, protocol.lost) is None
    assert protocol.events == ["made", ("lost", None)]


# -- stdio in this process ----------------------------------------------------------------


class Upper(Protocol):
    """Writes back what it reads, in capitals; closes at end of input."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, keep_open: bool = False) -> None:
        self.keep_open = keep_open
        self.events: list[Any] = []
        self.lost: asyncio.Future[Exception | None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.events.append("data")
        self.transport.write(data.upper())

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        return self.keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.events.append(("lost", exc))
        self.lost.set_result(exc)


async def read_to_end(loop: asyncio.AbstractEventLoop, fd: int) -> bytes:
    """Read ``fd`` until end of file, waiting on the loop (not blocking it)."""
    os.set_blocking(fd, False)
    data = bytearray()
    while True:
        await wait_readable(loop, fd)
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return bytes(data)
        data += chunk


def echo_over_pipes(r: Reactor, wait: Wait) -> None:
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    try:
        # Data already waiting arrives after connection_made.
        os.write(in_write, b"hello ")
        protocol = Upper(r.loop)
        io = wait(r, stdio(r.loop, protocol, stdin=in_read, stdout=out_write))
        assert isinstance(io, StandardIO)
        assert protocol.events[0] == "made"
        assert io.get_extra_info("stdin") == in_read
        assert io.get_protocol() is protocol
        assert io.can_write_eof()
        os.write(in_write, b"world")
        os.close(in_write)
        in_write = -1
        assert wait(r, protocol.lost) is None
        assert protocol.events[-2:] == ["eof", ("lost", None)]
        # Our output closed, so its reader sees end of file, although the
        # number stays open: it now points at /dev/null, back in blocking mode.
        assert wait(r, read_to_end(r.loop, out_read)) == b"HELLO WORLD"
        for fd in (in_read, out_write):
            assert os.readlink(f"/proc/self/fd/{fd}") == os.devnull
            assert os.get_blocking(fd)
        io.write(b"after the end")  # dropped
        assert "closed" in repr(io)
    finally:
        for fd in (in_read, in_write, out_read, out_write):
            if fd >= 0:
                os.close(fd)


def test_stdio_over_pipes(real_reactor: Reactor, wait: Wait) -> None:
    # uvloop opens a /dev/null descriptor of its own, once per loop, with
    # its first write pipe: count descriptors from the second round on.
    echo_over_pipes(real_reactor, wait)
    before = open_fds()
    echo_over_pipes(real_reactor, wait)
    assert open_fds() == before


def test_stdio_write_eof_keeps_reading(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    try:
        protocol = Upper(r.loop, keep_open=True)
        io = wait(r, stdio(r.loop, protocol, stdin=in_read, stdout=out_write))
        io.write(b"bye")
        io.write_eof()
        assert io.is_closing()
        # End of file, while the input goes on.
        assert wait(r, read_to_end(r.loop, out_read)) == b"bye"
        assert not protocol.lost.done()
        assert io.is_reading()
        io.pause_reading()
        assert not io.is_reading()
        io.resume_reading()
        os.write(in_write, b"more")
        os.close(in_write)
        in_write = -1
        assert wait(r, protocol.lost) is None
        assert protocol.events.count("data") == 1
    finally:
        for fd in (in_read, in_write, out_read, out_write):
            if fd >= 0:
                os.close(fd)


def test_stdio_flow_control(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    try:
        protocol = Upper(r.loop)
        io = wait(r, stdio(r.loop, protocol, stdin=in_read, stdout=out_write))
        io.set_write_buffer_limits(high=1024)
        assert io.get_write_buffer_limits() == (256, 1024)
        paused = []
        protocol.pause_writing = lambda: paused.append(True)  # type: ignore[method-assign]
        while not paused:
            io.write(b"w" * 65536)
        assert io.get_write_buffer_size() > 1024
        io.abort()
        os.close(in_write)
        in_write = -1
        assert wait(r, protocol.lost) is None
    finally:
        for fd in (in_read, in_write, out_read, out_write):
            if fd >= 0:
                os.close(fd)


def test_stdio_over_regular_files(real_reactor: Reactor, wait: Wait, tmp_path: Path) -> None:
    r = real_reactor
    source, target = tmp_path / "in", tmp_path / "out"
    source.write_bytes(b"from a file\n" * 10000)
    in_fd = os.open(source, os.O_RDONLY)
    out_fd = os.open(target, os.O_WRONLY | os.O_CREAT)
    try:
        protocol = Upper(r.loop)
        wait(r, stdio(r.loop, protocol, stdin=in_fd, stdout=out_fd))
        assert wait(r, protocol.lost) is None
        assert target.read_bytes() == b"FROM A FILE\n" * 10000
    finally:
        os.close(in_fd)
        os.close(out_fd)


def test_stdio_on_a_closed_descriptor_fails_cleanly(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    echo_over_pipes(r, wait)  # uvloop's descriptor of its own, as above
    before = open_fds()
    # Not open (and far above the numbers the system hands out meanwhile).
    closed = max(before) + 100
    out_read, out_write = os.pipe()
    try:
        protocol = Upper(r.loop)
        # The output is connected first, then the input fails.
        connecting = stdio(r.loop, protocol, stdin=closed, stdout=out_write)
        with pytest.raises(OSError, match="Bad file descriptor") as caught:
            wait(r, connecting)
        assert caught.value.errno == errno.EBADF
        assert protocol.events == []
        # The output is left as it was: the pipe, blocking.
        assert os.readlink(f"/proc/self/fd/{out_write}").startswith("pipe:")
        assert os.get_blocking(out_write)
    finally:
        os.close(out_read)
        os.close(out_write)
    assert open_fds() == before


# -- stdio in a child process -------------------------------------------------------------------

# The child: echoes its input in capitals through torsion's stdio, then
# reports on standard error how the connection ended.
ECHO = textwrap.dedent(
    """
    import asyncio, sys
    from torsion.internet import Protocol
    from torsion.internet._fdesc import stdio

    class Upper(Protocol):
        def __init__(self, done, half_close):
            self.done = done
            self.half_close = half_close
            self.count = 0

        def data_received(self, data):
            self.count += len(data)
            self.transport.write(data.upper())
            if self.half_close:
                self.transport.write_eof()

        def eof_received(self):
            return self.half_close

        def connection_lost(self, exc):
            super().connection_lost(exc)
            self.done.set_result(exc)

    async def main():
        loop = asyncio.get_running_loop()
        protocol = Upper(loop.create_future(), "half-close" in sys.argv)
        await stdio(loop, protocol)
        exc = await protocol.done
        sys.stderr.write(f"read {protocol.count}, lost {type(exc).__name__}")

    if sys.argv[1] == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
    """
)


class Child(ProcessProtocol):
    """Collects the echo child's output, and when its output closed."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.out_closed: asyncio.Future[None] | None = None
        self.exited_before_out_closed: bool | None = None

    def out_received(self, data: bytes) -> None:
        self.out += data

    def err_received(self, data: bytes) -> None:
        self.err += data

    def out_connection_lost(self) -> None:
        self.exited_before_out_closed = self.transport.status is not None
        if self.out_closed is not None:
            self.out_closed.set_result(None)


Echo = Callable[..., tuple[Child, ProcessTransport]]


@pytest.fixture
def echo(real_reactor: Reactor, wait: Wait) -> Iterator[Echo]:
    """Start the echo child on ``real_reactor``; killed afterwards if still running."""
    started: list[ProcessTransport] = []

    def start(child_loop: str, *extra: str, **kwargs: Any) -> tuple[Child, ProcessTransport]:
        protocol = Child()
        protocol.out_closed = real_reactor.loop.create_future()
        argv = [PYTHON, "-c", ECHO, child_loop, *extra]
        spawning = spawn_process(real_reactor.loop, protocol, PYTHON, argv, **kwargs)
        transport = wait(real_reactor, spawning)
        started.append(transport)
        return protocol, transport

    yield start
    for transport in started:
        transport.close()
        wait(real_reactor, transport.ended())


@pytest.mark.parametrize("child_loop", CHILD_LOOPS)
def test_stdio_child_over_pipes(
    real_reactor: Reactor, wait: Wait, echo: Echo, child_loop: str
) -> None:
    r = real_reactor
    protocol, transport = echo(child_loop)
    lines = [b"first line\n", b"second line\n"] * 500
    transport.writelines(lines)
    transport.close_stdin()
    assert wait(r, transport.ended()) == ProcessExited(0), protocol.err
    assert bytes(protocol.out) == b"".join(lines).upper()
    size = len(b"".join(lines))
    assert bytes(protocol.err) == f"read {size}, lost NoneType".encode()


@pytest.mark.parametrize("child_loop", CHILD_LOOPS)
def test_stdio_child_half_close(
    real_reactor: Reactor, wait: Wait, echo: Echo, child_loop: str
) -> None:
    r = real_reactor
    protocol, transport = echo(child_loop, "half-close")
    transport.write(b"ping")
    # The child's write_eof reaches us while it still runs (and reads).
    assert protocol.out_closed is not None
    wait(r, protocol.out_closed)
    assert protocol.exited_before_out_closed is False
    assert bytes(protocol.out) == b"PING"
    transport.write(b" and more")
    transport.close_stdin()
    assert wait(r, transport.ended()) == ProcessExited(0), protocol.err
    assert bytes(protocol.err) == b"read 13, lost NoneType"


@pytest.mark.parametrize("child_loop", CHILD_LOOPS)
def test_stdio_child_on_a_terminal(
    real_reactor: Reactor, wait: Wait, echo: Echo, child_loop: str
) -> None:
    r = real_reactor
    protocol, transport = echo(child_loop, use_pty=True)
    transport.write(b"typed\n")
    transport.close_stdin()  # the terminal's end-of-file character
    assert wait(r, transport.ended()) == ProcessExited(0), protocol.out
    # The terminal echoes what was typed; the child's capitals follow, and
    # its report (standard error is the terminal too).
    assert b"typed\r\n" in protocol.out
    assert b"TYPED\r\n" in protocol.out
    assert protocol.out.endswith(b"read 6, lost NoneType")


@pytest.mark.parametrize("child_loop", CHILD_LOOPS)
def test_stdio_child_over_files(
    real_reactor: Reactor, wait: Wait, echo: Echo, child_loop: str, tmp_path: Path
) -> None:
    r = real_reactor
    source, target = tmp_path / "in", tmp_path / "out"
    source.write_bytes(b"redirected\n" * 1000)
    in_fd = os.open(source, os.O_RDONLY)
    out_fd = os.open(target, os.O_WRONLY | os.O_CREAT)
    try:
        protocol, transport = echo(child_loop, child_fds={0: in_fd, 1: out_fd})
        assert wait(r, transport.ended()) == ProcessExited(0), protocol.err
    finally:
        os.close(in_fd)
        os.close(out_fd)
    assert target.read_bytes() == b"REDIRECTED\n" * 1000
    assert bytes(protocol.err) == b"read 11000, lost NoneType"


@pytest.mark.parametrize("child_loop", CHILD_LOOPS)
def test_stdio_child_reading_dev_null(
    real_reactor: Reactor, wait: Wait, echo: Echo, child_loop: str
) -> None:
    r = real_reactor
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        protocol, transport = echo(child_loop, child_fds={0: null})
        assert wait(r, transport.ended()) == ProcessExited(0), protocol.err
    finally:
        os.close(null)
    assert bytes(protocol.out) == b""
    assert bytes(protocol.err) == b"read 0, lost NoneType"


@pytest.mark.parametrize("child_loop", CHILD_LOOPS)
def test_stdio_child_whose_output_nobody_reads(
    real_reactor: Reactor, wait: Wait, echo: Echo, child_loop: str
) -> None:
    r = real_reactor
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        protocol, transport = echo(child_loop, child_fds={1: write_end})
        transport.write(b"into the void")
        assert wait(r, transport.ended()) == ProcessExited(0), protocol.err
    finally:
        os.close(write_end)
    # A broken pipe ends the connection with its error, and no traceback.
    # (It may have read what was written before it noticed, or not.)
    assert re.fullmatch(rb"read (0|13), lost BrokenPipeError", protocol.err), protocol.err

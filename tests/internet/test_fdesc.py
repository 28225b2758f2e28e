"""Raw descriptors: watching them, and the transports for files and terminals."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from torsion.internet import Protocol, Reactor
from torsion.internet._fdesc import (
    FDWriteTransport,
    FileDescriptor,
    FileReadTransport,
    is_pollable,
    wait_readable,
    wait_writable,
)

Wait = Callable[..., Any]


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

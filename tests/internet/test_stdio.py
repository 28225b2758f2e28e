"""Standard I/O as a transport (``stdio``, ``StandardIO``) and as a server endpoint.

``stdio`` is tested in this process over pipes and files, and in child
processes (Python running a small echo program) over pipes, files, a
terminal, ``/dev/null`` and a pipe nobody reads, on each loop in the child
and in the parent. ``StandardIOEndpoint`` is tested over pipes given in
place of 0 and 1, and end to end: a child serving ``stdio:``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from torsion.internet import Factory, Protocol, Reactor
from torsion.internet._fdesc import wait_readable
from torsion.internet._process import ProcessProtocol, ProcessTransport
from torsion.internet._process_endpoint import ProcessEndpoint
from torsion.internet._process_status import ProcessExited
from torsion.internet._spawn import spawn_process
from torsion.internet._stdio import (
    StandardIO,
    StandardIOAddress,
    StandardIOEndpoint,
    StandardIOPort,
    stdio,
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
        assert protocol.peer == StandardIOAddress(in_read, out_write)
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
    from torsion.internet import stdio

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


# -- standard I/O as a server endpoint ------------------------------------------------------


class Pipes:
    """Two pipes standing in for standard input and output."""

    def __init__(self) -> None:
        self.in_read, self.in_write = os.pipe()
        self.out_read, self.out_write = os.pipe()

    def close_input(self) -> None:
        os.close(self.in_write)
        self.in_write = -1

    def close(self) -> None:
        for fd in (self.in_read, self.in_write, self.out_read, self.out_write):
            if fd >= 0:
                os.close(fd)


@pytest.fixture
def pipes() -> Iterator[Pipes]:
    made = Pipes()
    yield made
    made.close()


def test_stdio_endpoint_serves_one_connection(
    real_reactor: Reactor, wait: Wait, pipes: Pipes
) -> None:
    r = real_reactor
    factory = Factory(lambda: Upper(r.loop, keep_open=True))
    addresses: list[Any] = []

    def build(address: Any) -> Upper | None:
        addresses.append(address)
        return factory(address)

    factory.start_factory = lambda: addresses.append("start")  # type: ignore[method-assign]
    factory.stop_factory = lambda: addresses.append("stop")  # type: ignore[method-assign]
    endpoint = StandardIOEndpoint(r, stdin=pipes.in_read, stdout=pipes.out_write)
    assert repr(endpoint) == f"<StandardIOEndpoint stdio:{pipes.in_read},{pipes.out_write}>"
    # A Factory is started once, when listening starts.
    factory.start()
    port = wait(r, endpoint.listen(factory))
    factory.stop()
    assert isinstance(port, StandardIOPort)
    address = StandardIOAddress(pipes.in_read, pipes.out_write)
    assert port.address == address
    assert addresses == ["start"]
    protocol = port.transport.get_protocol()
    assert isinstance(protocol, Upper)
    assert protocol.events == ["made"]
    os.write(pipes.in_write, b"shout")
    assert wait(r, _read_some(r.loop, pipes.out_read)) == b"SHOUT"
    # Stopping closes the connection: connection_lost, then the factory stops.
    assert wait(r, port.stop_listening()) is None
    assert protocol.events[-1] == ("lost", None)
    assert addresses == ["start", "stop"]
    assert wait(r, read_to_end(r.loop, pipes.out_read)) == b""
    assert wait(r, port.stop_listening()) is None  # again: at once
    assert "closed" in repr(port)


def test_stdio_endpoint_by_address(real_reactor: Reactor, wait: Wait, pipes: Pipes) -> None:
    r = real_reactor
    addresses: list[Any] = []

    def factory(address: Any) -> Upper:
        addresses.append(address)
        return Upper(r.loop)

    endpoint = StandardIOEndpoint(r, stdin=pipes.in_read, stdout=pipes.out_write)
    port = wait(r, endpoint.listen(factory))
    assert addresses == [StandardIOAddress(pipes.in_read, pipes.out_write)]
    assert str(StandardIOAddress()) == "stdio"
    assert str(addresses[0]) == f"stdio:{pipes.in_read},{pipes.out_write}"
    # The connection ends by itself at the end of the input.
    pipes.close_input()
    assert wait(r, port.transport.wait_closed()) is None
    assert wait(r, port.stop_listening()) is None


@pytest.mark.parametrize("outcome", ["raises", "refuses"])
def test_stdio_endpoint_whose_factory_fails(
    real_reactor: Reactor, wait: Wait, pipes: Pipes, outcome: str
) -> None:
    r = real_reactor
    stopped: list[bool] = []

    class Failing(Factory[Upper]):
        def build_protocol(self, address: Any) -> Upper | None:
            if outcome == "raises":
                raise RuntimeError("no protocol for you")
            return None

        def stop_factory(self) -> None:
            stopped.append(True)

    endpoint = StandardIOEndpoint(r, stdin=pipes.in_read, stdout=pipes.out_write)
    expected = RuntimeError if outcome == "raises" else ConnectionRefusedError
    with pytest.raises(expected):
        wait(r, endpoint.listen(Failing()))
    assert stopped == [True]
    # Standard I/O was not touched: still the pipes.
    for fd in (pipes.in_read, pipes.out_write):
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")


def test_stdio_endpoint_on_a_closed_descriptor(
    real_reactor: Reactor, wait: Wait, pipes: Pipes
) -> None:
    r = real_reactor
    stopped: list[bool] = []

    class Stopping(Factory[Upper]):
        def stop_factory(self) -> None:
            stopped.append(True)

    closed = max(open_fds()) + 100
    endpoint = StandardIOEndpoint(r, stdin=closed, stdout=pipes.out_write)
    with pytest.raises(OSError, match="Bad file descriptor"):
        wait(r, endpoint.listen(Stopping(lambda: Upper(r.loop))))
    assert stopped == [True]


async def _read_some(loop: asyncio.AbstractEventLoop, fd: int) -> bytes:
    os.set_blocking(fd, False)
    await wait_readable(loop, fd)
    return os.read(fd, 1 << 16)


# A server program: echoes on standard I/O, found by its endpoint string, and
# reports on standard error what the factory was given and how it ended.
STDIO_SERVER = textwrap.dedent(
    """
    import sys
    from torsion.internet import Protocol, Reactor, server_from_string

    class Echo(Protocol):
        def data_received(self, data):
            self.transport.write(data)

        def connection_lost(self, exc):
            super().connection_lost(exc)
            sys.stderr.write(f"lost {type(exc).__name__}")
            reactor.stop()

    def factory(address):
        sys.stderr.write(f"address {address}; ")
        return Echo()

    def failed(exc):
        sys.stderr.write(f"failed {exc!r}")
        reactor.stop()

    def start():
        server_from_string(reactor, "stdio:").listen(factory).add_errback(failed)

    reactor = Reactor(uvloop=sys.argv[1] == "uvloop")
    reactor.call_when_running(start)
    reactor.run(install_signal_handlers=False)
    reactor.close()
    """
)


@pytest.mark.parametrize("child_loop", CHILD_LOOPS)
def test_stdio_endpoint_string_in_a_child(
    real_reactor: Reactor, wait: Wait, child_loop: str
) -> None:
    r = real_reactor
    protocol = Child()
    argv = [PYTHON, "-c", STDIO_SERVER, child_loop]
    transport = wait(r, spawn_process(r.loop, protocol, PYTHON, argv))
    lines = [b"echo %d\n" % n for n in range(1000)]
    transport.writelines(lines)
    transport.close_stdin()
    assert wait(r, transport.ended()) == ProcessExited(0), protocol.err
    assert bytes(protocol.out) == b"".join(lines)
    assert bytes(protocol.err) == b"address stdio; lost NoneType"


def test_stdio_endpoint_served_to_a_process_endpoint(real_reactor: Reactor, wait: Wait) -> None:
    # Two torsion programs: one serves on standard I/O, the other connects
    # to it as a client, through ProcessEndpoint.
    r = real_reactor

    class Collect(Protocol):
        def __init__(self) -> None:
            self.received = bytearray()
            self.lost = r.loop.create_future()

        def data_received(self, data: bytes) -> None:
            self.received += data

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            self.lost.set_result(exc)

    argv = [PYTHON, "-c", STDIO_SERVER, "asyncio"]
    endpoint = ProcessEndpoint(r, PYTHON, argv, stderr="drop")
    protocol = wait(r, endpoint.connect(lambda address: Collect()))
    protocol.transport.write(b"ping")
    protocol.transport.write_eof()
    assert wait(r, protocol.lost) is None
    assert bytes(protocol.received) == b"ping"

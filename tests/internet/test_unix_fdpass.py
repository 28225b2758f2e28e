"""Passing file descriptors (SCM_RIGHTS) with UNIXFDTransport, and its transport contract."""

from __future__ import annotations

import array
import asyncio
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from torsion.defer import Deferred, succeed
from torsion.errors import TooManyFDsError
from torsion.internet import Address, Factory, Protocol, Reactor, UNIXAddress
from torsion.internet._fdpass import (
    MAX_FDS,
    UNIXFDListener,
    UNIXFDTransport,
    fds_from_ancillary,
    open_fd_transport,
)
from torsion.internet._unix import UnixCredentials, connect_unix, listen_unix, peer_credentials

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="counts descriptors in /proc/self/fd"
)

Wait = Callable[..., Any]


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for socket files (a path may only be about 107 bytes long)."""
    path = Path(tempfile.mkdtemp(prefix="torsion-", dir="/tmp"))
    yield path
    shutil.rmtree(path)


def open_fds() -> set[int]:
    """The process's open descriptors (not counting the one that lists them)."""
    return {
        int(name)
        for name in os.listdir("/proc/self/fd")
        if os.path.lexists(f"/proc/self/fd/{name}")  # the listing's own is closed by now
    }


class Peer(Protocol):
    """Records everything a connection does, in order."""

    def __init__(self, *_: object) -> None:
        self.events: list[tuple[str, Any]] = []
        self.data = b""
        self.fds: list[int] = []
        self.made: Deferred[None] = Deferred()
        self.lost: Deferred[Exception | None] = Deferred()
        self.eof: Deferred[None] = Deferred()
        self.waiting_for: tuple[int, Deferred[bytes]] | None = None
        self.keep_open_on_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.fd_number = transport.get_extra_info("socket").fileno()
        self.events.append(("made", None))
        self.made.callback(None)

    def fds_received(self, fds: list[int]) -> None:
        self.events.append(("fds", len(fds)))
        self.fds.extend(fds)

    def data_received(self, data: bytes) -> None:
        self.events.append(("data", data))
        self.data += data
        if self.waiting_for is not None and len(self.data) >= self.waiting_for[0]:
            _, d = self.waiting_for
            self.waiting_for = None
            d.callback(self.data)

    def received(self, size: int) -> Deferred[bytes]:
        """Fire once ``size`` bytes in all have arrived."""
        d: Deferred[bytes] = Deferred()
        if len(self.data) >= size:
            d.callback(self.data)
        else:
            self.waiting_for = (size, d)
        return d

    def eof_received(self) -> bool:
        self.events.append(("eof", None))
        self.eof.callback(None)
        return self.keep_open_on_eof

    def pause_writing(self) -> None:
        super().pause_writing()
        self.events.append(("pause_writing", None))

    def resume_writing(self) -> None:
        super().resume_writing()
        self.events.append(("resume_writing", None))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.events.append(("lost", exc))
        self.lost.callback(exc)

    def close_fds(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


class NoFDs(Protocol):
    """A protocol that does not take descriptors."""

    def __init__(self, *_: object) -> None:
        self.data = b""
        self.got: Deferred[bytes] = Deferred()
        self.lost: Deferred[Exception | None] = Deferred()

    def data_received(self, data: bytes) -> None:
        self.data += data
        if not self.got.called:
            self.got.callback(data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(exc)


class Made:
    """A factory that keeps the protocols it makes; ``nth(n)`` fires once n were made."""

    def __init__(self, make: Callable[[], Any] = Peer) -> None:
        self.make = make
        self.made: list[Any] = []
        self._waiting: dict[int, Deferred[Any]] = {}

    def __call__(self, peer: Address) -> Any:
        self.made.append(self.make())
        waiting = self._waiting.pop(len(self.made), None)
        if waiting is not None:
            waiting.callback(self.made[-1])
        return self.made[-1]

    def nth(self, n: int) -> Deferred[Any]:
        if len(self.made) >= n:
            return succeed(self.made[n - 1])
        self._waiting[n] = Deferred()
        return self._waiting[n]


def fd(protocol: Protocol) -> UNIXFDTransport:
    """The protocol's transport, which must be a UNIXFDTransport."""
    assert isinstance(protocol.transport, UNIXFDTransport)
    return protocol.transport


def pair(reactor: Reactor) -> tuple[Peer, Peer]:
    """Two protocols joined by a socketpair, each end on a UNIXFDTransport."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left, right = Peer(), Peer()
    open_fd_transport(reactor.loop, a, left)
    open_fd_transport(reactor.loop, b, right)
    return left, right


def hang_up(reactor: Reactor, wait: Wait, *peers: Peer) -> None:
    for peer in peers:
        peer.transport.close()
    for peer in peers:
        wait(reactor, peer.lost)


# -- passing descriptors over a listening socket -------------------------------------


class Writer(Peer):
    """Server side: writes through the descriptors it is given, then answers."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if b"\n" not in self.data:
            return
        pipe_end, file = self.fds
        os.write(pipe_end, b"through the pipe")
        os.write(file, b"into the file")
        self.close_fds()
        self.transport.write(b"done\n")


def test_pass_a_pipe_and_a_file(real_reactor: Reactor, wait: Wait, sock_dir: Path) -> None:
    r = real_reactor
    path = sock_dir / "fds.sock"
    servers = Made(Writer)
    listener = listen_unix(r.loop, path, servers, pass_fds=True)
    assert isinstance(listener, UNIXFDListener)
    assert listener.address == UNIXAddress(str(path))
    client: Peer = wait(r, connect_unix(r.loop, path, Peer, pass_fds=True))
    read_end, write_end = os.pipe()
    with tempfile.TemporaryFile(dir=sock_dir) as file:
        fd(client).send_fds(b"here you are\n", [write_end, file.fileno()])
        os.close(write_end)  # The transport sent duplicates: ours may go at once.
        assert wait(r, client.received(5)) == b"done\n"
        # The server closed what it received: the pipe has no writer left.
        assert os.read(read_end, 100) == b"through the pipe"
        assert os.read(read_end, 100) == b""
        file.seek(0)
        assert file.read() == b"into the file"
    os.close(read_end)
    (server,) = servers.made
    assert server.events[:2] == [("made", None), ("fds", 2)]
    assert server.fds == []
    hang_up(r, wait, client)
    wait(r, server.lost)
    wait(r, listener.stop_listening())
    assert not path.exists()


def test_descriptors_arrive_before_their_data(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    left, right = pair(r)
    big = b"x" * (1024 * 1024)  # fills the socket: the rest waits in the buffer
    read_end, write_end = os.pipe()
    before = open_fds()
    left.transport.write(big)
    fd(left).send_fds(b"MARK", [write_end, write_end])
    assert left.transport.get_write_buffer_size() > 0  # the descriptors wait their turn
    left.transport.write(b"tail")
    assert wait(r, right.received(len(big) + 8)) == big + b"MARKtail"
    kinds = [kind for kind, _ in right.events]
    assert kinds.count("fds") == 1
    fds_at = kinds.index("fds")
    # The descriptors came just before the chunk holding the byte they went with.
    assert right.events[fds_at] == ("fds", 2)
    next_kind, chunk = right.events[fds_at + 1]
    assert next_kind == "data"
    # That read ended with their message: what was written after comes later.
    assert chunk.endswith(b"MARK")
    assert all(b"M" not in data for kind, data in right.events[:fds_at] if kind == "data")
    right.close_fds()
    assert open_fds() == before  # our duplicates were closed once sent
    os.close(write_end)
    os.set_blocking(read_end, False)
    assert os.read(read_end, 1) == b""  # no copy of the write end is left anywhere
    os.close(read_end)
    hang_up(r, wait, left, right)


def test_unclaimed_descriptors_are_closed(
    real_reactor: Reactor, wait: Wait, sock_dir: Path
) -> None:
    r = real_reactor
    path = sock_dir / "noclaim.sock"
    servers = Made(NoFDs)
    listener = listen_unix(r.loop, path, servers, pass_fds=True)
    client: Peer = wait(r, connect_unix(r.loop, path, Peer, pass_fds=True))
    server: NoFDs = wait(r, servers.nth(1))
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    before = open_fds()
    fd(client).send_fds(b"take these", [write_end] * 3)
    assert wait(r, server.got) == b"take these"
    # Nothing new is open: not our duplicates, not the three received.
    assert open_fds() == before
    os.close(write_end)
    assert os.read(read_end, 1) == b""  # no copy of the write end is left anywhere
    os.close(read_end)
    hang_up(r, wait, client)
    wait(r, server.lost)
    wait(r, listener.stop_listening())


def test_too_many_descriptors_close_the_connection(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = real_reactor
    path = sock_dir / "many.sock"
    servers = Made()
    listener = listen_unix(r.loop, path, servers, pass_fds=True)
    read_end, write_end = os.pipe()
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(path))
        server: Peer = wait(r, servers.nth(1))
        before = open_fds()
        rights = array.array("i", [write_end] * (MAX_FDS + 4))
        raw.sendmsg([b"too many"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
        error = wait(r, server.lost)
        assert isinstance(error, TooManyFDsError)
        assert error.limit == MAX_FDS
        assert raw.recv(10) == b""  # closed on us
        assert server.fds == []
        assert server.data == b""
        # The descriptors that did arrive were closed, and the connection.
        assert open_fds() == before - {server.fd_number}
    os.close(write_end)
    os.set_blocking(read_end, False)
    assert os.read(read_end, 1) == b""
    os.close(read_end)
    # The peer's bad input is no traceback in the log.
    assert not [rec for rec in caplog.records if rec.levelname in ("ERROR", "CRITICAL")]
    wait(r, listener.stop_listening())


def test_send_fds_checks_its_arguments(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    left, right = pair(r)
    read_end, write_end = os.pipe()
    before = open_fds()
    with pytest.raises(ValueError, match="at least one byte"):
        fd(left).send_fds(b"", [write_end])
    with pytest.raises(ValueError, match=f"at most {MAX_FDS}"):
        fd(left).send_fds(b"x", [write_end] * (MAX_FDS + 1))
    not_open = max(before) + 1000
    with pytest.raises(OSError, match="Bad file descriptor"):
        fd(left).send_fds(b"x", [write_end, not_open])
    assert open_fds() == before  # the duplicate made before the bad one was closed
    os.close(read_end)
    os.close(write_end)
    hang_up(r, wait, left, right)


def test_descriptors_queued_when_aborted_are_closed(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    left, right = pair(r)
    right.transport.pause_reading()
    read_end, write_end = os.pipe()
    before = open_fds()
    left.transport.write(b"x" * (4 * 1024 * 1024))  # more than the socket holds
    assert left.transport.get_write_buffer_size() > 0
    fd(left).send_fds(b"queued", [write_end])
    assert len(open_fds()) == len(before) + 1  # our duplicate, waiting its turn
    left.transport.abort()
    assert wait(r, left.lost) is None
    right.transport.resume_reading()
    wait(r, right.lost)
    # The duplicate is closed, as are both ends of the connection.
    assert open_fds() == before - {left.fd_number, right.fd_number}
    os.close(read_end)
    os.close(write_end)


# -- the transport contract -------------------------------------------------------


def test_extra_info_protocol_and_credentials(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    left, right = pair(r)
    transport = left.transport
    assert isinstance(transport, UNIXFDTransport)
    assert transport.get_protocol() is left
    assert isinstance(transport.get_extra_info("socket"), socket.socket)
    assert transport.get_extra_info("peername") == ""  # unnamed
    assert transport.get_extra_info("nothing", 42) == 42
    assert left.peer == UNIXAddress(None)
    assert peer_credentials(transport) == UnixCredentials(os.getpid(), os.getuid(), os.getgid())
    other = Peer()
    transport.set_protocol(other)
    assert transport.get_protocol() is other
    transport.set_protocol(left)
    assert transport.can_write_eof()
    assert not transport.is_closing()
    assert "open" in repr(transport)
    hang_up(r, wait, left, right)
    assert transport.is_closing()
    assert "closed" in repr(transport)


def test_close_flushes_then_loses_the_connection_once(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    left, right = pair(r)
    big = bytes(range(256)) * 8192  # 2 MiB
    left.transport.write(big)
    left.transport.writelines([b"and ", bytearray(b"a "), memoryview(b"tail")])
    left.transport.close()
    left.transport.close()  # again: nothing more
    assert left.transport.is_closing()
    assert wait(r, right.received(len(big) + 10)) == big + b"and a tail"
    assert wait(r, left.lost) is None
    wait(r, right.eof)
    assert wait(r, right.lost) is None
    left.transport.write(b"dropped")  # after the connection is lost: ignored
    left.transport.abort()  # and nothing more happens
    wait(r, asyncio.sleep(0))
    assert [kind for kind, _ in left.events].count("lost") == 1
    assert [kind for kind, _ in right.events][-2:] == ["eof", "lost"]


def test_abort_drops_the_buffer(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    left, right = pair(r)
    right.transport.pause_reading()
    left.transport.write(b"x" * (4 * 1024 * 1024))
    assert left.transport.get_write_buffer_size() > 0
    left.transport.abort()
    assert left.transport.get_write_buffer_size() == 0
    assert wait(r, left.lost) is None
    right.transport.resume_reading()
    wait(r, right.lost)
    assert len(right.data) < 4 * 1024 * 1024


def test_flow_control(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    left, right = pair(r)
    transport = left.transport
    transport.set_write_buffer_limits(high=1024, low=256)
    assert transport.get_write_buffer_limits() == (256, 1024)
    with pytest.raises(ValueError, match="high"):
        transport.set_write_buffer_limits(high=10, low=20)
    right.transport.pause_reading()
    assert not right.transport.is_reading()
    sent = 0
    for _ in range(100):  # the socket's buffer fills long before this
        transport.write(b"y" * 65536)
        sent += 65536
        if ("pause_writing", None) in left.events:
            break
    assert ("pause_writing", None) in left.events
    assert transport.get_write_buffer_size() > 1024
    right.transport.resume_reading()
    assert right.transport.is_reading()
    wait(r, left.drained())  # resume_writing came
    assert left.events[-1] == ("resume_writing", None)
    assert transport.get_write_buffer_size() <= 256
    assert wait(r, right.received(sent)) == b"y" * sent
    hang_up(r, wait, left, right)


def test_pause_reading_holds_data_back(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    left, right = pair(r)
    right.transport.pause_reading()
    right.transport.pause_reading()  # again: no change
    left.transport.write(b"held")
    for _ in range(5):
        wait(r, asyncio.sleep(0))  # turns of the loop in which nothing must arrive
    assert right.data == b""
    right.transport.resume_reading()
    right.transport.resume_reading()
    assert wait(r, right.received(4)) == b"held"
    hang_up(r, wait, left, right)


def test_write_eof_half_closes(real_reactor: Reactor, wait: Wait) -> None:
    r = real_reactor
    left, right = pair(r)
    right.keep_open_on_eof = True
    left.transport.write(b"question")
    left.transport.write_eof()
    left.transport.write_eof()  # again: nothing more
    with pytest.raises(RuntimeError, match="write_eof"):
        left.transport.write(b"more")
    wait(r, right.eof)
    assert right.data == b"question"
    # The other direction still works.
    right.transport.write(b"answer")
    assert wait(r, left.received(6)) == b"answer"
    right.transport.close()
    wait(r, left.eof)
    assert wait(r, right.lost) is None
    assert wait(r, left.lost) is None


def test_peer_going_away_is_reported_without_a_traceback(
    real_reactor: Reactor, wait: Wait, caplog: pytest.LogCaptureFixture
) -> None:
    r = real_reactor
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left = Peer()
    open_fd_transport(r.loop, a, left)
    left.transport.write(b"never read")
    b.close()  # with unread data: the connection is reset (unix(7))
    error = wait(r, left.lost)
    assert isinstance(error, ConnectionResetError)
    assert not [rec for rec in caplog.records if rec.levelname in ("ERROR", "CRITICAL")]


def test_protocol_errors_close_the_connection_and_are_logged(
    real_reactor: Reactor, wait: Wait, caplog: pytest.LogCaptureFixture
) -> None:
    r = real_reactor

    class Broken(Peer):
        def data_received(self, data: bytes) -> None:
            raise ZeroDivisionError("protocol bug")

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    broken = Broken()
    open_fd_transport(r.loop, a, broken)
    b.send(b"boom")
    error = wait(r, broken.lost)
    assert isinstance(error, ZeroDivisionError)
    assert "protocol bug" in caplog.text
    assert b.recv(10) == b""
    b.close()


def test_connection_made_failing_fails_the_connect(
    real_reactor: Reactor, wait: Wait, sock_dir: Path
) -> None:
    r = real_reactor
    path = sock_dir / "made.sock"
    servers = Made()

    class Refuses(Peer):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            raise LookupError("will not")

    listener = listen_unix(r.loop, path, servers, pass_fds=True)
    first: Peer = wait(r, connect_unix(r.loop, path, Peer, pass_fds=True))
    hang_up(r, wait, first)
    wait(r, wait(r, servers.nth(1)).lost)
    before = open_fds()
    with pytest.raises(LookupError):
        wait(r, connect_unix(r.loop, path, Refuses, pass_fds=True))
    wait(r, wait(r, servers.nth(2)).lost)
    assert open_fds() == before
    wait(r, listener.stop_listening())


def test_listener_refusals_and_factory_hooks(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = real_reactor

    class Counting(Factory[Peer]):
        def __init__(self) -> None:
            super().__init__(Peer)
            self.started = self.stopped = 0

        def start_factory(self) -> None:
            self.started += 1

        def stop_factory(self) -> None:
            self.stopped += 1

    counting = Counting()
    stopped: list[object] = []
    served = listen_unix(
        r.loop, sock_dir / "f.sock", counting, pass_fds=True, on_stopped=stopped.append
    )
    assert counting.started == 1
    client: Peer = wait(r, connect_unix(r.loop, sock_dir / "f.sock", Peer, pass_fds=True))
    hang_up(r, wait, client)
    refusing = listen_unix(r.loop, sock_dir / "n.sock", lambda peer: None, pass_fds=True)
    client = wait(r, connect_unix(r.loop, sock_dir / "n.sock", Peer, pass_fds=True))
    assert wait(r, client.lost) is None
    assert client.data == b""

    def broken(peer: Address) -> Peer:
        raise RuntimeError("factory broke")

    failing = listen_unix(r.loop, sock_dir / "b.sock", broken, pass_fds=True)
    client = wait(r, connect_unix(r.loop, sock_dir / "b.sock", Peer, pass_fds=True))
    wait(r, client.lost)
    assert "factory broke" in caplog.text
    assert "listening" in repr(served)
    for listener in (served, refusing, failing):
        assert wait(r, listener.stop_listening()) is None
        assert not listener.listening
    assert "stopped" in repr(served)
    assert counting.stopped == 1
    assert stopped == [served]
    served.close_now()  # already stopped: nothing more
    assert os.listdir(sock_dir) == []


@pytest.mark.parametrize("pass_fds", [False, True], ids=["asyncio-transport", "fd-transport"])
def test_no_descriptor_leaks_over_a_full_cycle(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, pass_fds: bool
) -> None:
    r = real_reactor
    path = sock_dir / "cycle.sock"

    def cycle() -> None:
        servers = Made()
        listener = listen_unix(r.loop, path, servers, pass_fds=pass_fds)
        client: Peer = wait(r, connect_unix(r.loop, path, Peer, pass_fds=pass_fds))
        client.transport.write(b"ping")
        server: Peer = wait(r, servers.nth(1))
        assert wait(r, server.received(4)) == b"ping"
        hang_up(r, wait, client)
        wait(r, server.lost)
        wait(r, listener.stop_listening())

    cycle()  # The loop may set up lasting things of its own the first time.
    before = open_fds()
    cycle()
    assert open_fds() == before
    assert os.listdir(sock_dir) == []


# -- pure parts ---------------------------------------------------------------------


def test_fds_from_ancillary() -> None:
    rights = array.array("i", [7, 8, 9]).tobytes()
    other = (socket.SOL_SOCKET, socket.SCM_RIGHTS + 1, b"\0" * 12)
    assert fds_from_ancillary([]) == []
    assert fds_from_ancillary([(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)]) == [7, 8, 9]
    assert fds_from_ancillary([other]) == []
    # A truncated message may end inside a descriptor: that part is dropped.
    truncated = (socket.SOL_SOCKET, socket.SCM_RIGHTS, rights[:-2])
    assert fds_from_ancillary([truncated]) == [7, 8]

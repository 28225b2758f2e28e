"""Unix datagram sockets: round trips, socket files, abstract names, connect errors."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import socket
import stat
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from torsion.defer import Deferred
from torsion.errors import CannotListenError
from torsion.internet import DatagramProtocol, Reactor, UNIXAddress
from torsion.internet._unix_datagram import (
    UNIXDatagramPort,
    connect_unix_datagram,
    listen_unix_datagram,
)

Wait = Callable[..., Any]

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="Linux's abstract namespace and /proc"
)


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for socket files (a path may only be about 107 bytes long)."""
    path = Path(tempfile.mkdtemp(prefix="torsion-", dir="/tmp"))
    yield path
    shutil.rmtree(path)


class Ports:
    """Opens ports on the test's reactor; what is left open is closed afterwards."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.made: list[UNIXDatagramPort[Any]] = []

    def listen(self, path: Any, protocol: Datagrams, **options: Any) -> UNIXDatagramPort[Any]:
        self.made.append(listen_unix_datagram(self.loop, path, protocol, **options))
        return self.made[-1]

    def connect(self, path: Any, protocol: Datagrams, **options: Any) -> UNIXDatagramPort[Any]:
        self.made.append(connect_unix_datagram(self.loop, path, protocol, **options))
        return self.made[-1]


@pytest.fixture
def ports(real_reactor: Reactor) -> Iterator[Ports]:
    opened = Ports(real_reactor.loop)
    yield opened
    for port in opened.made:
        port.close_now()


def open_fds() -> set[int]:
    """The process's open descriptors (not counting the one that lists them)."""
    return {
        int(name)
        for name in os.listdir("/proc/self/fd")
        if os.path.lexists(f"/proc/self/fd/{name}")  # the listing's own is closed by now
    }


class Datagrams(asyncio.DatagramProtocol):
    """Records datagrams; answers each in upper case if asked to."""

    def __init__(self, *, answer: bool = False, greeting: bytes | None = None) -> None:
        self.answer = answer
        self.greeting = greeting
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[tuple[bytes, Any]] = []
        self.errors: list[Exception] = []
        self.made: Deferred[None] = Deferred()
        self.got: Deferred[tuple[bytes, Any]] = Deferred()
        self.failed: Deferred[Exception] = Deferred()
        self.lost: Deferred[Exception | None] = Deferred()
        self.lost_count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (asyncio's datagram transport does not subclass DatagramTransport.)
        self.transport = cast(asyncio.DatagramTransport, transport)
        transport = self.transport
        if self.greeting is not None:
            transport.sendto(self.greeting)
        self.made.callback(None)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((data, addr))
        if self.answer:
            assert self.transport is not None
            self.transport.sendto(data.upper(), addr)
        if not self.got.called:
            self.got.callback((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)
        if not self.failed.called:
            self.failed.callback(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_count += 1
        self.lost.callback(exc)


def test_round_trip(real_reactor: Reactor, wait: Wait, sock_dir: Path, ports: Ports) -> None:
    r = real_reactor
    server_path = str(sock_dir / "server.sock")
    client_path = str(sock_dir / "client.sock")
    stopped: list[object] = []
    server = Datagrams(answer=True)
    port = ports.listen(server_path, server, on_stopped=stopped.append)
    assert port.address == UNIXAddress(server_path)
    assert port.peer is None
    assert port.listening
    client = Datagrams(greeting=b"hello, datagrams")
    connected = ports.connect(server_path, client, bind_path=client_path)
    assert connected.address == UNIXAddress(client_path)
    assert connected.peer == UNIXAddress(server_path)
    assert "connected to" in repr(connected)
    # The server sees the client's path, and its answer goes back there.
    assert wait(r, server.got) == (b"hello, datagrams", client_path)
    assert wait(r, client.got) == (b"HELLO, DATAGRAMS", server_path)
    assert port.transport is server.transport
    assert wait(r, connected.stop_listening()) is None
    assert wait(r, port.stop_listening()) is None
    assert wait(r, port.stop_listening()) is None  # again: fine
    assert not port.listening
    assert "stopped" in repr(port)
    assert stopped == [port]
    assert (server.lost_count, client.lost_count) == (1, 1)
    assert wait(r, server.lost) is None
    # Both socket files are gone.
    assert os.listdir(sock_dir) == []


def test_unnamed_sender_can_send_but_not_be_answered(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, ports: Ports
) -> None:
    r = real_reactor
    path = str(sock_dir / "server.sock")
    server = Datagrams()
    port = ports.listen(path, server)
    client = Datagrams(greeting=b"anonymous")
    connected = ports.connect(path, client)
    assert connected.address == UNIXAddress(None)
    data, sender = wait(r, server.got)
    assert data == b"anonymous"
    assert not sender  # no address to answer to
    wait(r, connected.stop_listening())
    wait(r, port.stop_listening())


def test_mode_and_stale_socket_file(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, ports: Ports
) -> None:
    r = real_reactor
    path = sock_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
        dead.bind(str(path))
    server = Datagrams()
    port = ports.listen(path, server, mode=0o620)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o620
    client = Datagrams(greeting=b"to the new socket")
    connected = ports.connect(path, client)
    assert wait(r, server.got)[0] == b"to the new socket"
    wait(r, connected.stop_listening())
    wait(r, port.stop_listening())
    assert not path.exists()


def test_live_socket_and_other_files_are_refused(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, ports: Ports
) -> None:
    r = real_reactor
    path = sock_dir / "live.sock"
    port = ports.listen(path, Datagrams())
    with pytest.raises(CannotListenError) as info:
        ports.listen(path, Datagrams())
    assert info.value.errno == errno.EADDRINUSE
    assert info.value.path == str(path)
    (sock_dir / "file").write_bytes(b"keep")
    with pytest.raises(CannotListenError) as info:
        ports.listen(sock_dir / "file", Datagrams())
    assert info.value.errno == errno.EEXIST
    assert (sock_dir / "file").read_bytes() == b"keep"
    wait(r, port.stop_listening())


def test_connect_errors(real_reactor: Reactor, wait: Wait, sock_dir: Path, ports: Ports) -> None:
    before = open_fds()
    with pytest.raises(FileNotFoundError):
        ports.connect(sock_dir / "nobody.sock", Datagrams())
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
        dead.bind(str(sock_dir / "dead.sock"))
    # A failed connect leaves neither a descriptor nor its own socket file behind.
    with pytest.raises(ConnectionRefusedError):
        ports.connect(sock_dir / "dead.sock", Datagrams(), bind_path=sock_dir / "mine.sock")
    assert open_fds() == before
    assert sorted(os.listdir(sock_dir)) == ["dead.sock"]


def test_one_protocol_serves_one_port(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, ports: Ports
) -> None:
    r = real_reactor
    protocol = Datagrams()
    port = ports.listen(sock_dir / "one.sock", protocol)
    before = open_fds()
    with pytest.raises(ValueError, match="already serves"):
        ports.listen(sock_dir / "two.sock", protocol)
    assert open_fds() == before
    assert not (sock_dir / "two.sock").exists()
    wait(r, port.stop_listening())


def test_transport_closed_by_the_protocol_stops_the_port(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, ports: Ports
) -> None:
    r = real_reactor
    path = sock_dir / "self.sock"
    protocol = Datagrams()
    port: UNIXDatagramPort[Datagrams] = ports.listen(path, protocol)
    wait(r, protocol.made)
    assert protocol.transport is not None
    protocol.transport.close()
    assert wait(r, protocol.lost) is None
    assert wait(r, port.stop_listening()) is None
    assert not port.listening
    assert not path.exists()
    assert protocol.lost_count == 1


def test_stop_before_the_transport_is_made(loop_name: str, sock_dir: Path) -> None:
    reactor = Reactor(uvloop=loop_name == "uvloop")
    path = sock_dir / "early.sock"
    port = listen_unix_datagram(reactor.loop, path, Datagrams())
    port.close_now()  # the loop never ran: it is run until the socket is closed
    assert not port.listening
    assert not path.exists()
    reactor.close()


@linux_only
def test_abstract_names_and_autobind(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, ports: Ports, loop_name: str
) -> None:
    r = real_reactor
    name = f"\0torsion-test-{uuid.uuid4().hex}"
    server = Datagrams(answer=loop_name != "uvloop")
    port = ports.listen(name, server)
    assert port.address == UNIXAddress(os.fsencode(name))
    # "" has Linux choose the client's abstract name, so the server can answer.
    client = Datagrams(greeting=b"abstract")
    connected = ports.connect(name, client, bind_path="")
    assert isinstance(connected.address.path, bytes)
    assert connected.address.path.startswith(b"\0")
    data, sender = wait(r, server.got)
    assert data == b"abstract"
    if loop_name == "uvloop":
        # uvloop reports an abstract sender padded with NULs to sun_path's
        # full size, and sends to such a name so padded: another name, so the
        # answer goes nowhere (the limitation the module documents).
        assert sender == connected.address.path.ljust(108, b"\0")
        assert server.transport is not None
        with pytest.raises(ValueError, match="longer than 107"):
            server.transport.sendto(b"answer", sender)
        server.transport.sendto(b"answer", connected.address.path)
        assert isinstance(wait(r, server.failed), ConnectionRefusedError)
    else:
        assert sender == connected.address.path
        assert wait(r, client.got)[0] == b"ABSTRACT"
    wait(r, connected.stop_listening())
    wait(r, port.stop_listening())
    assert os.listdir(sock_dir) == []


@linux_only
def test_no_descriptor_leaks_over_a_full_cycle(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, ports: Ports
) -> None:
    r = real_reactor

    def cycle() -> None:
        server = Datagrams(answer=True)
        port = ports.listen(sock_dir / "s.sock", server)
        client = Datagrams(greeting=b"ping")
        connected = ports.connect(sock_dir / "s.sock", client, bind_path=sock_dir / "c.sock")
        assert wait(r, client.got)[0] == b"PING"
        wait(r, connected.stop_listening())
        wait(r, port.stop_listening())

    cycle()  # The loop may set up lasting things of its own the first time.
    before = open_fds()
    cycle()
    assert open_fds() == before
    assert os.listdir(sock_dir) == []


def test_torsion_datagram_protocol_and_slotted_protocols(
    real_reactor: Reactor, wait: Wait, sock_dir: Path, ports: Ports
) -> None:
    r = real_reactor

    class Receiver(DatagramProtocol):
        def __init__(self) -> None:
            self.got: Deferred[bytes] = Deferred()

        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.got.callback(data)

    class Slotted(asyncio.DatagramProtocol):
        # No __dict__: the port cannot wrap connection_lost, so it relays.
        __slots__ = ("made", "transport")

        def __init__(self) -> None:
            self.made: Deferred[None] = Deferred()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.DatagramTransport, transport)
            self.made.callback(None)

    path = str(sock_dir / "typed.sock")
    receiver = Receiver()
    port = ports.listen(path, receiver)
    slotted = Slotted()
    sender = ports.connect(path, slotted, bind_path=sock_dir / "slotted.sock")
    wait(r, slotted.made)
    slotted.transport.sendto(b"typed")
    assert wait(r, receiver.got) == b"typed"
    assert receiver.host == UNIXAddress(path)
    wait(r, sender.stop_listening())
    wait(r, port.stop_listening())
    assert os.listdir(sock_dir) == []

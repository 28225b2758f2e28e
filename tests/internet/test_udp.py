"""UDP: the DatagramProtocol base on a fake transport, then real ports on 127.0.0.1 and ::1.

The other side of the real-socket tests is the stdlib ``socket`` module (and
``nc -u`` from netcat-openbsd), never a port of ours talking to itself only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest

from torsion.defer import Deferred, DeferredQueue
from torsion.errors import CannotListenError
from torsion.internet import IPv4Address, IPv6Address, Reactor, to_address
from torsion.internet._udp import (
    DatagramProtocol,
    UDPListeningPort,
    UDPPort,
    connect_udp,
    listen_udp,
)
from torsion.testing import require_peer

Wait = Callable[..., Any]

GROUP = "239.255.77.31"  # administratively scoped (RFC 2365): never leaves the site
GROUP6 = "ff15::7731"  # site-local scope, transient (RFC 4291 section 2.7)


# -- the protocol base on a fake transport -------------------------------------------------


class FakeDatagramTransport(asyncio.DatagramTransport):
    """Records what is sent; reports the addresses it was made with."""

    def __init__(self, sockname: Any = ("192.0.2.1", 53), peername: Any = None) -> None:
        super().__init__()
        self.sent: list[tuple[bytes, Any]] = []
        self._extra_info = {"sockname": sockname, "peername": peername}
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra_info.get(name, default)

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.sent.append((bytes(data), addr))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


def made(protocol: DatagramProtocol, **addresses: Any) -> FakeDatagramTransport:
    transport = FakeDatagramTransport(**addresses)
    protocol.connection_made(transport)
    return transport


def test_connection_made_keeps_the_transport() -> None:
    protocol = DatagramProtocol()
    transport = made(protocol)
    assert protocol.transport is transport


def test_host_is_a_typed_udp_address() -> None:
    protocol = DatagramProtocol()
    made(protocol, sockname=("192.0.2.1", 53))
    assert protocol.host == IPv4Address("192.0.2.1", 53, "udp")
    six = DatagramProtocol()
    made(six, sockname=("2001:db8::1", 53, 0, 0))
    assert six.host == IPv6Address("2001:db8::1", 53, kind="udp")


def test_peer_is_none_unless_connected() -> None:
    unconnected = DatagramProtocol()
    made(unconnected)
    assert unconnected.peer is None
    connected = DatagramProtocol()
    made(connected, peername=("2001:db8::9", 5353, 0, 3))
    assert connected.peer == IPv6Address("2001:db8::9", 5353, 0, 3, "udp")


def test_send_takes_typed_addresses() -> None:
    protocol = DatagramProtocol()
    transport = made(protocol)
    assert protocol.send(b"four", IPv4Address("192.0.2.9", 9, "udp"))
    assert protocol.send(b"six", IPv6Address("2001:db8::9", 9, 0, 2, "udp"))
    assert protocol.send(b"connected")
    assert transport.sent == [
        (b"four", ("192.0.2.9", 9)),
        (b"six", ("2001:db8::9", 9, 0, 2)),
        (b"connected", None),
    ]


def test_send_drops_while_writing_is_paused() -> None:
    protocol = DatagramProtocol()
    transport = made(protocol)
    to = IPv4Address("192.0.2.9", 9, "udp")
    protocol.pause_writing()
    assert protocol.writing_paused
    assert protocol.send(b"dropped", to) is False
    protocol.resume_writing()
    assert not protocol.writing_paused
    assert protocol.send(b"sent", to) is True
    assert transport.sent == [(b"sent", ("192.0.2.9", 9))]


def test_send_drops_once_closed() -> None:
    protocol = DatagramProtocol()
    transport = made(protocol)
    to = IPv4Address("192.0.2.9", 9, "udp")
    transport.close()
    assert protocol.send(b"closing", to) is False
    other = DatagramProtocol()
    other_transport = made(other)
    other.connection_lost(None)
    assert other.send(b"lost", to) is False
    assert transport.sent == other_transport.sent == []


def test_error_received_logs_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    protocol = DatagramProtocol()
    made(protocol)
    with caplog.at_level(logging.DEBUG, logger="torsion.internet"):
        protocol.error_received(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    (record,) = caplog.records
    assert record.levelno == logging.DEBUG
    assert record.exc_info is None
    assert "refused" in record.getMessage()


def test_a_subclass_gets_asyncio_s_raw_address_and_replies_with_it() -> None:
    class Upper(DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.transport.sendto(data.upper(), addr)

    protocol = Upper()
    transport = made(protocol)
    protocol.datagram_received(b"hi", ("192.0.2.9", 4000))
    assert transport.sent == [(b"HI", ("192.0.2.9", 4000))]


# -- real ports ------------------------------------------------------------------------------


class Recorder(DatagramProtocol):
    """Queues what it receives; fires Deferreds on the other events."""

    def __init__(self) -> None:
        self.received: DeferredQueue[tuple[bytes, Any]] = DeferredQueue()
        self.errors: DeferredQueue[Exception] = DeferredQueue()
        self.made: Deferred[None] = Deferred()
        self.lost: Deferred[Exception | None] = Deferred()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.made.callback(None)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.put(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(exc)


class Echo(Recorder):
    """Sends each datagram back where it came from."""

    def datagram_received(self, data: bytes, addr: Any) -> None:
        super().datagram_received(data, addr)
        self.transport.sendto(data, addr)


@pytest.fixture
def reactor(real_reactor: Reactor) -> Iterator[Reactor]:
    """A real reactor on each loop (in place of the plugin's ``reactor``) that must stay quiet.

    Any exception the loop reports during the test (a traceback a peer's
    datagram or a socket error caused) fails it.
    """
    reported: list[dict[str, Any]] = []
    real_reactor.loop.set_exception_handler(lambda loop, context: reported.append(context))
    yield real_reactor
    assert reported == [], "the loop reported exceptions"


class Ports:
    """Opens ports on the test's reactor, as ``Reactor.listen_udp`` will, and closes them after."""

    def __init__(self, reactor: Reactor) -> None:
        self.reactor = reactor
        self.opened: list[UDPPort] = []

    def listen(self, port: int, protocol: asyncio.DatagramProtocol, **options: Any) -> UDPPort:
        self.opened.append(listen_udp(self.reactor.loop, port, protocol, **options))
        return self.opened[-1]

    def connect(
        self, host: str, port: int, protocol: asyncio.DatagramProtocol, **options: Any
    ) -> UDPPort:
        self.opened.append(connect_udp(self.reactor.loop, host, port, protocol, **options))
        return self.opened[-1]


@pytest.fixture
def udp(reactor: Reactor) -> Iterator[Ports]:
    """Opens UDP ports; a test that failed half-way has its ports closed all the same."""
    ports = Ports(reactor)
    yield ports
    # Not close_now(): should a port never close, this fails instead of hanging.
    loop = reactor.loop
    for port in ports.opened:
        loop.run_until_complete(asyncio.wait_for(port.stop_listening().as_future(loop), 10))


@contextlib.contextmanager
def peer_socket(host: str = "127.0.0.1") -> Iterator[socket.socket]:
    """A stdlib UDP socket bound to ``host`` on a port of the system's choosing."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.setblocking(False)
        yield sock


def receive(reactor: Reactor, sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, Any]:
    """Run the loop until the stdlib socket has a datagram; return it and its sender."""
    loop = reactor.loop
    got: asyncio.Future[tuple[bytes, Any]] = loop.create_future()

    def readable() -> None:
        loop.remove_reader(sock.fileno())
        got.set_result(sock.recvfrom(65536))

    loop.add_reader(sock.fileno(), readable)
    try:
        return loop.run_until_complete(asyncio.wait_for(got, timeout))
    finally:
        loop.remove_reader(sock.fileno())


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="::1 cannot be bound here (no IPv6)")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def stop(reactor: Reactor, wait: Wait, *ports: UDPPort) -> None:
    for port in ports:
        assert wait(reactor, port.stop_listening()) is None


def test_echo_over_ipv4(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    protocol = Echo()
    port = udp.listen(0, protocol, interface="127.0.0.1")
    # Bound at once: the real port is known before the loop ran.
    assert port.port > 0
    assert port.host == "127.0.0.1"
    assert port.address == IPv4Address("127.0.0.1", port.port, "udp")
    assert port.peer is None
    assert port.listening
    wait(reactor, protocol.made)
    assert port.transport is protocol.transport
    assert protocol.host == port.address
    assert protocol.peer is None
    with peer_socket() as other:
        other.sendto(b"hello, torsion", ("127.0.0.1", port.port))
        data, sender = wait(reactor, protocol.received.get())
        assert data == b"hello, torsion"
        assert to_address(sender, "udp") == IPv4Address("127.0.0.1", other.getsockname()[1], "udp")
        assert receive(reactor, other) == (b"hello, torsion", ("127.0.0.1", port.port))
    stop(reactor, wait, port)
    assert wait(reactor, protocol.lost) is None
    assert not port.listening
    assert "stopped" in repr(port)


@needs_ipv6
def test_echo_over_ipv6(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    protocol = Echo()
    port = udp.listen(0, protocol, interface="::1")
    assert port.port > 0
    assert port.address == IPv6Address("::1", port.port, kind="udp")
    assert port.host == "::1"
    with peer_socket("::1") as other:
        other.sendto(b"over six", ("::1", port.port))
        data, sender = wait(reactor, protocol.received.get())
        assert data == b"over six"
        assert to_address(sender, "udp") == IPv6Address("::1", other.getsockname()[1], kind="udp")
        reply, replier = receive(reactor, other)
        assert reply == b"over six"
        assert replier[:2] == ("::1", port.port)
    assert protocol.host == port.address
    stop(reactor, wait, port)


def test_every_interface_by_default(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    protocol = Echo()
    port = udp.listen(0, protocol)
    assert port.host == "0.0.0.0"
    with peer_socket() as other:
        other.sendto(b"via loopback", ("127.0.0.1", port.port))
        assert receive(reactor, other)[0] == b"via loopback"
    stop(reactor, wait, port)


def test_stop_listening_frees_the_port(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    protocol = Recorder()
    port = udp.listen(0, protocol, interface="127.0.0.1")
    wait(reactor, protocol.made)
    first, second = port.stop_listening(), port.stop_listening()
    assert not port.listening

    def rebind(result: None) -> int:
        # Run as the Deferred fires: the socket must be closed by then.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind(("127.0.0.1", port.port))
            return int(again.getsockname()[1])

    assert wait(reactor, first.add_callback(rebind)) == port.port
    assert wait(reactor, second) is None
    assert wait(reactor, port.stop_listening()) is None  # after the fact: at once
    assert wait(reactor, protocol.lost) is None
    # The protocol is left as it was: it may serve a port again.
    assert "connection_lost" not in vars(protocol)
    with pytest.raises(OSError, match="closed") as info:
        port.join_group(GROUP)
    assert info.value.errno == errno.EBADF


def test_stop_before_the_loop_ran(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    stopped: list[UDPPort] = []
    protocol = Recorder()
    port = udp.listen(0, protocol, interface="127.0.0.1", on_stopped=stopped.append)
    assert port.transport is None
    d = port.stop_listening()
    assert wait(reactor, d) is None
    assert stopped == [port]
    # The transport was still made, so the protocol saw both ends of its life.
    assert protocol.made.called
    assert wait(reactor, protocol.lost) is None


def test_close_now_runs_the_loop_until_closed(udp: Ports, reactor: Reactor) -> None:
    before = open_fds()
    protocol = Recorder()
    port = udp.listen(0, protocol, interface="127.0.0.1")
    assert open_fds() == before + 1
    port.close_now()
    assert not port.listening
    assert protocol.lost.called
    assert open_fds() == before
    port.close_now()  # again: nothing to do


def test_closing_the_transport_stops_the_port(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    stopped: list[UDPPort] = []
    protocol = Recorder()
    port = udp.listen(0, protocol, interface="127.0.0.1", on_stopped=stopped.append)
    wait(reactor, protocol.made)
    protocol.transport.close()
    assert wait(reactor, protocol.lost) is None
    assert wait(reactor, port.stop_listening()) is None
    assert stopped == [port]
    assert not port.listening


class BrokenLoop(asyncio.SelectorEventLoop):
    """An event loop that cannot make datagram transports."""

    async def create_datagram_endpoint(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOMEM, "no transport today")


def test_a_loop_that_cannot_serve_closes_the_port(caplog: pytest.LogCaptureFixture) -> None:
    loop = BrokenLoop()
    try:
        before = open_fds()
        protocol = Recorder()
        stopped: asyncio.Future[UDPPort] = loop.create_future()
        port = listen_udp(loop, 0, protocol, interface="127.0.0.1", on_stopped=stopped.set_result)
        assert open_fds() == before + 1
        with caplog.at_level(logging.ERROR, logger="torsion.internet"):
            assert loop.run_until_complete(asyncio.wait_for(stopped, 10)) is port
        (record,) = caplog.records
        assert record.getMessage() == f"Cannot serve UDP on {port.address}"
        assert open_fds() == before
        assert not port.listening
        assert loop.run_until_complete(asyncio.wait_for(port.stop_listening(), 10)) is None
        # The protocol never started, so it never stops; and it is left unwrapped.
        assert not protocol.made.called
        assert not protocol.lost.called
        assert "connection_lost" not in vars(protocol)
    finally:
        loop.close()


def test_a_closed_loop_is_refused_at_once() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    before = open_fds()
    protocol = Recorder()
    with pytest.raises(RuntimeError, match="closed"):
        listen_udp(loop, 0, protocol, interface="127.0.0.1")
    assert open_fds() == before
    assert "connection_lost" not in vars(protocol)


def test_port_taken_raises_cannot_listen(udp: Ports, reactor: Reactor) -> None:
    with peer_socket() as taken:
        number = taken.getsockname()[1]
        before = open_fds()
        with pytest.raises(CannotListenError) as info:
            udp.listen(number, Recorder(), interface="127.0.0.1")
        assert open_fds() == before  # the socket that failed to bind is closed
    assert isinstance(info.value, OSError)
    assert info.value.port == number
    assert info.value.interface == "127.0.0.1"
    assert info.value.reason.errno == errno.EADDRINUSE


def test_address_not_ours_raises_cannot_listen(udp: Ports, reactor: Reactor) -> None:
    with pytest.raises(CannotListenError) as info:
        udp.listen(0, Recorder(), interface="192.0.2.123")
    assert info.value.reason.errno == errno.EADDRNOTAVAIL


def test_reuse_port_lets_two_ports_share_a_number(
    udp: Ports, reactor: Reactor, wait: Wait
) -> None:
    first = udp.listen(0, Recorder(), interface="127.0.0.1", reuse_port=True)
    second = udp.listen(first.port, Recorder(), interface="127.0.0.1", reuse_port=True)
    assert second.port == first.port
    with pytest.raises(CannotListenError):
        udp.listen(first.port, Recorder(), interface="127.0.0.1")
    stop(reactor, wait, first, second)


def test_one_protocol_serves_one_port(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    protocol = Recorder()
    port = udp.listen(0, protocol, interface="127.0.0.1")
    before = open_fds()
    with pytest.raises(ValueError, match="already serves"):
        udp.listen(0, protocol, interface="127.0.0.1")
    assert open_fds() == before
    stop(reactor, wait, port)
    # Once that port is closed, the protocol may serve another.
    again = Recorder()
    port = udp.listen(0, again, interface="127.0.0.1")
    wait(reactor, again.made)
    stop(reactor, wait, port)


def test_a_protocol_without_instance_dict_is_served_too(
    udp: Ports, reactor: Reactor, wait: Wait
) -> None:
    events: list[str] = []

    class Slotted(asyncio.DatagramProtocol):
        __slots__ = ("transport",)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.DatagramTransport, transport)
            events.append("made")

        def datagram_received(self, data: bytes, addr: Any) -> None:
            events.append("datagram")
            self.transport.sendto(data, addr)

        def connection_lost(self, exc: Exception | None) -> None:
            events.append("lost")

    port = udp.listen(0, Slotted(), interface="127.0.0.1")
    with peer_socket() as other:
        other.sendto(b"slotted", ("127.0.0.1", port.port))
        assert receive(reactor, other)[0] == b"slotted"
    stop(reactor, wait, port)
    assert events == ["made", "datagram", "lost"]


# -- connected UDP --------------------------------------------------------------------------


def test_connected_port_hears_only_its_peer(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    protocol = Recorder()
    with peer_socket() as peer, peer_socket() as stranger:
        peer_address = peer.getsockname()
        port = udp.connect("127.0.0.1", peer_address[1], protocol)
        assert port.peer == IPv4Address("127.0.0.1", peer_address[1], "udp")
        assert "connected to" in repr(port)
        wait(reactor, protocol.made)
        assert protocol.peer == port.peer
        # The kernel drops the stranger's datagram; loopback delivers in order,
        # so had it been let through it would be queued before the peer's.
        stranger.sendto(b"from a stranger", ("127.0.0.1", port.port))
        peer.sendto(b"from the peer", ("127.0.0.1", port.port))
        assert wait(reactor, protocol.received.get()) == (b"from the peer", peer_address)
        stranger.sendto(b"from a stranger again", ("127.0.0.1", port.port))
        peer.sendto(b"from the peer again", ("127.0.0.1", port.port))
        assert wait(reactor, protocol.received.get()) == (b"from the peer again", peer_address)
        assert len(protocol.received) == 0
        # No address needed to answer.
        protocol.transport.sendto(b"reply")
        assert receive(reactor, peer) == (b"reply", ("127.0.0.1", port.port))
        assert protocol.send(b"typed reply")
        assert receive(reactor, peer) == (b"typed reply", ("127.0.0.1", port.port))
        stop(reactor, wait, port)


@needs_ipv6
def test_connected_port_over_ipv6(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    protocol = Recorder()
    with peer_socket("::1") as peer:
        number = peer.getsockname()[1]
        port = udp.connect("::1", number, protocol)
        assert port.peer == IPv6Address("::1", number, kind="udp")
        assert isinstance(port.address, IPv6Address)
        wait(reactor, protocol.made)
        protocol.transport.sendto(b"six")
        data, sender = receive(reactor, peer)
        assert data == b"six"
        assert sender[1] == port.port
        stop(reactor, wait, port)


def test_refused_datagram_is_one_error_and_the_port_lives_on(
    udp: Ports, reactor: Reactor, wait: Wait, caplog: pytest.LogCaptureFixture
) -> None:
    with peer_socket() as closed:
        number = closed.getsockname()[1]
    protocol = Recorder()
    port = udp.connect("127.0.0.1", number, protocol)
    wait(reactor, protocol.made)
    with caplog.at_level(logging.DEBUG):
        protocol.transport.sendto(b"anyone there?")
        error = wait(reactor, protocol.errors.get())
        assert isinstance(error, ConnectionRefusedError)
        # One error per refused datagram, and the port stays open.
        protocol.transport.sendto(b"still nobody?")
        assert isinstance(wait(reactor, protocol.errors.get()), ConnectionRefusedError)
    assert port.listening
    assert not protocol.transport.is_closing()
    assert not protocol.lost.called
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []
    # Someone listens there now: the same port reaches them, and hears back.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as late:
        late.bind(("127.0.0.1", number))
        late.setblocking(False)
        protocol.transport.sendto(b"hello at last")
        assert receive(reactor, late) == (b"hello at last", ("127.0.0.1", port.port))
        late.sendto(b"hello back", ("127.0.0.1", port.port))
        assert wait(reactor, protocol.received.get()) == (b"hello back", ("127.0.0.1", number))
    # Both refusals were reported once each: none came late.
    assert len(protocol.errors) == 0
    stop(reactor, wait, port)


def test_connect_udp_needs_an_ip_address(udp: Ports, reactor: Reactor) -> None:
    before = open_fds()
    with pytest.raises(ValueError, match="IP address"):
        udp.connect("localhost", 53, Recorder())
    assert open_fds() == before


# -- faults ---------------------------------------------------------------------------------


def test_oversized_datagram_is_one_error(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    protocol = Echo()
    port = udp.listen(0, protocol, interface="127.0.0.1")
    wait(reactor, protocol.made)
    with peer_socket() as other:
        destination = other.getsockname()
        protocol.transport.sendto(b"x" * 70_000, destination)  # over UDP's 65,507 bytes
        error = wait(reactor, protocol.errors.get())
        assert isinstance(error, OSError)
        assert error.errno == errno.EMSGSIZE
        # The largest datagram IPv4 carries goes through, both ways.
        largest = b"y" * 65_507
        other.sendto(largest, ("127.0.0.1", port.port))
        assert receive(reactor, other)[0] == largest
    assert len(protocol.errors) == 0
    assert port.listening
    assert not protocol.transport.is_closing()
    assert not protocol.lost.called
    stop(reactor, wait, port)


def test_send_to_port_zero_is_one_error(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    protocol = Echo()
    port = udp.listen(0, protocol, interface="127.0.0.1")
    wait(reactor, protocol.made)
    protocol.send(b"nowhere", IPv4Address("127.0.0.1", 0, "udp"))
    error = wait(reactor, protocol.errors.get())
    assert isinstance(error, OSError)
    assert error.errno == errno.EINVAL
    # The port still serves (uvloop once closed a transport on this error).
    with peer_socket() as other:
        other.sendto(b"still here?", ("127.0.0.1", port.port))
        assert receive(reactor, other)[0] == b"still here?"
    assert len(protocol.errors) == 0
    assert port.listening
    assert not protocol.transport.is_closing()
    assert not protocol.lost.called
    stop(reactor, wait, port)


def test_no_descriptor_is_left_open(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    # One port first, so that whatever the loop opens on first use is counted out.
    warm_up = Recorder()
    port = udp.listen(0, warm_up, interface="127.0.0.1")
    wait(reactor, warm_up.made)
    stop(reactor, wait, port)
    before = open_fds()
    with peer_socket() as peer:
        protocols = [Echo(), Recorder(), Recorder()]
        ports = [
            udp.listen(0, protocols[0], interface="127.0.0.1"),
            udp.connect("127.0.0.1", peer.getsockname()[1], protocols[1]),
            udp.listen(0, protocols[2]),
        ]
        for protocol in protocols:
            wait(reactor, protocol.made)
        ports[2].join_group(GROUP, "127.0.0.1")
        peer.sendto(b"ping", ("127.0.0.1", ports[0].port))
        assert receive(reactor, peer)[0] == b"ping"
        assert open_fds() == before + 1 + len(ports)
        with pytest.raises(CannotListenError):
            udp.listen(ports[0].port, Recorder(), interface="127.0.0.1")
        stop(reactor, wait, *ports)
    assert open_fds() == before


# -- multicast ------------------------------------------------------------------------------


def multicast_on_loopback(group: str, interface: str) -> str | None:
    """Return why this machine cannot deliver ``group`` on loopback, or None if it can.

    Tried with stdlib sockets alone, so that a skip says something about the
    machine, never about torsion.
    """
    ipv6 = ":" in group
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    with (
        socket.socket(family, socket.SOCK_DGRAM) as rx,
        socket.socket(family, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("::" if ipv6 else "0.0.0.0", 0))
        try:
            if ipv6:
                index = socket.if_nametoindex(interface)
                request = socket.inet_pton(family, group) + struct.pack("@I", index)
                rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, request)
                tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
                tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
            else:
                request = socket.inet_aton(group) + socket.inet_aton(interface)
                rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, request)
                tx.setsockopt(
                    socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface)
                )
                tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            tx.sendto(b"probe", (group, rx.getsockname()[1]))
        except OSError as exc:
            return f"multicast to {group} on {interface} fails here: {exc}"
        # Loopback delivery happens within sendto: this waits only when it failed.
        rx.settimeout(2.0)
        try:
            rx.recvfrom(64)
        except TimeoutError:
            return f"multicast to {group} is not delivered on {interface} here"
    return None


def test_multicast_over_loopback(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    reason = multicast_on_loopback(GROUP, "127.0.0.1")
    if reason is not None:
        pytest.skip(reason)
    member = Recorder()
    receiver = udp.listen(0, member)
    receiver.join_group(GROUP, "127.0.0.1")
    wait(reactor, member.made)
    # A stdlib sender, out of the loopback interface.
    with peer_socket() as sender:
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sender.sendto(b"to the group", (GROUP, receiver.port))
        assert wait(reactor, member.received.get()) == (b"to the group", sender.getsockname())
    # A port of ours as the sender.
    speaker = Recorder()
    sending = udp.listen(0, speaker, interface="127.0.0.1")
    sending.set_outgoing_interface("127.0.0.1")
    sending.set_ttl(1)
    sending.set_loopback(True)
    wait(reactor, speaker.made)
    assert speaker.send(b"from torsion", IPv4Address(GROUP, receiver.port, "udp"))
    assert wait(reactor, member.received.get()) == (b"from torsion", ("127.0.0.1", sending.port))
    # Having left, the member hears unicast still, the group no more.
    receiver.leave_group(GROUP, "127.0.0.1")
    speaker.send(b"after leaving", IPv4Address(GROUP, receiver.port, "udp"))
    speaker.send(b"unicast", IPv4Address("127.0.0.1", receiver.port, "udp"))
    assert wait(reactor, member.received.get())[0] == b"unicast"
    assert len(member.received) == 0
    stop(reactor, wait, receiver, sending)


def test_multicast_options(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    port: UDPListeningPort = udp.listen(0, Recorder())
    assert port.ttl == 1  # ip(7): multicast stays on the local network by default
    assert port.loopback is True
    port.set_ttl(32)
    assert port.ttl == 32
    port.set_loopback(False)
    assert port.loopback is False
    with pytest.raises(ValueError, match="0 to 255"):
        port.set_ttl(256)
    with pytest.raises(ValueError, match="multicast"):
        port.join_group("127.0.0.1")
    with pytest.raises(ValueError, match="IPv4 multicast"):
        port.join_group(GROUP6)
    with pytest.raises(ValueError, match="multicast"):
        port.join_group("not an address")
    with pytest.raises(ValueError, match="interface"):
        port.join_group(GROUP, "lo")
    with pytest.raises(ValueError, match="interface"):
        port.set_outgoing_interface("::1")
    with pytest.raises(OSError, match="cannot leave") as info:
        port.leave_group(GROUP, "127.0.0.1")  # never joined
    assert info.value.errno == errno.EADDRNOTAVAIL
    port.join_group(GROUP, "127.0.0.1")
    with pytest.raises(OSError, match="cannot join") as again:
        port.join_group(GROUP, "127.0.0.1")
    assert again.value.errno == errno.EADDRINUSE
    port.leave_group(GROUP, "127.0.0.1")
    wait(reactor, port.stop_listening())
    with pytest.raises(OSError, match="closed") as closed:
        port.set_ttl(2)
    assert closed.value.errno == errno.EBADF


@needs_ipv6
def test_ipv6_multicast_options(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    port = udp.listen(0, Recorder(), interface="::")
    assert port.ttl == 1
    port.set_ttl(5)
    assert port.ttl == 5
    assert port.loopback is True
    port.set_loopback(False)
    assert port.loopback is False
    port.set_outgoing_interface("lo")
    port.set_outgoing_interface(str(socket.if_nametoindex("lo")))
    with pytest.raises(ValueError, match="IPv6 multicast"):
        port.join_group(GROUP)
    with pytest.raises(ValueError, match="no network interface"):
        port.join_group(GROUP6, "no-such-interface0")
    port.join_group(GROUP6, "lo")
    port.leave_group(GROUP6, "lo")
    with pytest.raises(OSError, match="cannot leave"):
        port.leave_group(GROUP6, "lo")
    wait(reactor, port.stop_listening())


@needs_ipv6
def test_ipv6_multicast_over_loopback(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    reason = multicast_on_loopback(GROUP6, "lo")
    if reason is not None:
        pytest.skip(reason)
    member = Recorder()
    receiver = udp.listen(0, member, interface="::")
    receiver.join_group(GROUP6, "lo")
    speaker = Recorder()
    sending = udp.listen(0, speaker, interface="::")
    sending.set_outgoing_interface("lo")
    sending.set_loopback(True)
    wait(reactor, member.made)
    wait(reactor, speaker.made)
    assert speaker.send(b"to the group", IPv6Address(GROUP6, receiver.port, kind="udp"))
    data, sender = wait(reactor, member.received.get())
    assert data == b"to the group"
    assert sender[1] == sending.port
    stop(reactor, wait, receiver, sending)


# -- a real third-party peer ----------------------------------------------------------------


def test_nc_gets_its_datagram_echoed(udp: Ports, reactor: Reactor, wait: Wait) -> None:
    nc = require_peer("nc", package="netcat-openbsd")
    protocol = Echo()
    port = udp.listen(0, protocol, interface="127.0.0.1")
    message = b"hello from nc\n"

    async def talk() -> bytes:
        process = await asyncio.create_subprocess_exec(
            nc,
            "-u",
            "-w1",
            "127.0.0.1",
            str(port.port),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            process.stdin.write(message)
            await process.stdin.drain()
            # nc prints what comes back; once it has, there is nothing left to wait for.
            return await process.stdout.readexactly(len(message))
        finally:
            process.stdin.close()
            if process.returncode is None:
                process.kill()
            await process.wait()

    assert wait(reactor, talk()) == message
    data, sender = wait(reactor, protocol.received.get())
    assert data == message
    assert sender[0] == "127.0.0.1"
    stop(reactor, wait, port)


def test_reactor_close_closes_its_udp_ports(real_reactor: Reactor) -> None:
    protocol = Recorder()
    port = real_reactor.listen_udp(0, protocol, interface="127.0.0.1")
    connected = Recorder()
    real_reactor.connect_udp("127.0.0.1", port.port, connected)
    real_reactor.close()
    assert protocol.lost.called
    assert connected.lost.called
    assert not port.listening

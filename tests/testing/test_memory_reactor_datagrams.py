"""torsion.testing.MemoryReactor: UDP and Unix datagram ports in memory."""

from __future__ import annotations

import errno

import pytest

from torsion.internet import (
    DatagramProtocol,
    IPv4Address,
    IPv6Address,
    UNIXAddress,
)
from torsion.testing import MemoryReactor, MemoryUDPPort, MemoryUNIXDatagramPort


class TimeClient(DatagramProtocol):
    """Code under test: asks a time server once and keeps the answers."""

    def __init__(self):
        self.answers = []
        self.errors = []
        self.lost = []

    def connection_made(self, transport):
        super().connection_made(transport)
        self.send(b"what time is it?")

    def datagram_received(self, data, addr):
        self.answers.append((data, addr))

    def error_received(self, exc):
        self.errors.append(exc)

    def connection_lost(self, exc):
        super().connection_lost(exc)
        self.lost.append(exc)


def ask_time(reactor, server):
    client = TimeClient()
    reactor.connect_udp(server, 123, client)
    return client


class Echo(DatagramProtocol):
    """Code under test: a UDP echo server."""

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


def test_a_udp_client_is_answered_by_the_test():
    reactor = MemoryReactor()
    client = ask_time(reactor, "192.0.2.7")
    [port] = reactor.udp_ports
    assert isinstance(port, MemoryUDPPort)
    assert port.protocol is client
    assert port.written == [(b"what time is it?", ("192.0.2.7", 123))]
    assert port.peer == IPv4Address("192.0.2.7", 123, "udp")
    assert client.peer == port.peer
    assert client.host == port.address
    assert port.host == "0.0.0.0"
    assert port.port >= 49152  # local_port 0: made up
    port.deliver(b"noon")  # from the peer, by default
    assert client.answers == [(b"noon", ("192.0.2.7", 123))]


def test_an_echo_server_answers_each_sender():
    reactor = MemoryReactor()
    port = reactor.listen_udp(7, Echo(), interface="127.0.0.1", reuse_port=True)
    assert reactor.udp_ports == [port]
    assert (port.host, port.port, port.interface, port.reuse_port) == (
        "127.0.0.1",
        7,
        "127.0.0.1",
        True,
    )
    assert port.peer is None
    port.deliver(b"one")  # from a made-up sender
    port.deliver(b"two", IPv4Address("192.0.2.50", 9999, "udp"))
    port.deliver(b"three", ("192.0.2.51", 1000))
    assert port.written == [
        (b"one", ("192.0.2.2", 54321)),
        (b"two", ("192.0.2.50", 9999)),
        (b"three", ("192.0.2.51", 1000)),
    ]
    assert port.transport.get_extra_info("sockname") == ("127.0.0.1", 7)
    assert port.transport.get_extra_info("peername") is None


def test_ipv6_ports_use_ipv6_addresses():
    reactor = MemoryReactor()
    client = ask_time(reactor, "2001:db8::7")
    port = reactor.udp_ports[0]
    assert port.address.host == "::"
    assert port.peer == IPv6Address("2001:db8::7", 123, kind="udp")
    assert port.written == [(b"what time is it?", ("2001:db8::7", 123, 0, 0))]
    server = reactor.listen_udp(53, Echo(), interface="::")
    server.deliver(b"q")
    assert server.written == [(b"q", ("2001:db8::2", 54321, 0, 0))]
    assert client.answers == []


def test_closing_calls_connection_lost_once_and_then_refuses_to_deliver():
    reactor = MemoryReactor()
    client = ask_time(reactor, "192.0.2.7")
    port = reactor.udp_ports[0]
    client.transport.close()  # the protocol closes its own port
    assert client.lost == [None]
    assert not port.listening
    assert client.transport.is_closing()
    stopped = []
    port.stop_listening().add_callback(stopped.append)
    assert stopped == [None]
    assert client.lost == [None]
    client.transport.sendto(b"late")  # dropped, as asyncio drops it
    assert len(port.written) == 1
    assert not client.send(b"later")
    with pytest.raises(RuntimeError, match="closed"):
        port.deliver(b"noon")
    with pytest.raises(RuntimeError, match="closed"):
        port.deliver_error(ConnectionRefusedError())
    assert client.answers == []
    assert "stopped" in repr(port)


def test_a_connected_port_only_hears_and_talks_to_its_peer():
    reactor = MemoryReactor()
    client = ask_time(reactor, "192.0.2.7")
    port = reactor.udp_ports[0]
    with pytest.raises(ValueError, match="only receives from its peer"):
        port.deliver(b"spoofed", ("192.0.2.66", 123))
    with pytest.raises(ValueError, match="must be None or"):
        client.transport.sendto(b"elsewhere", ("192.0.2.66", 123))
    client.transport.sendto(b"again", ("192.0.2.7", 123))
    assert port.written[-1] == (b"again", ("192.0.2.7", 123))
    port.deliver_error(ConnectionRefusedError("port unreachable"))
    assert isinstance(client.errors[0], ConnectionRefusedError)
    assert port.listening  # an ICMP error does not close a UDP port


def test_an_unconnected_port_needs_an_address_to_send():
    reactor = MemoryReactor()
    protocol = TimeClient()  # sends without an address in connection_made
    port = reactor.listen_udp(0, protocol)
    assert port.written == []
    [error] = protocol.errors
    assert error.errno == errno.EDESTADDRREQ
    with pytest.raises(TypeError, match="bytes-like"):
        port.transport.sendto("text", ("192.0.2.1", 1))


def test_connect_udp_needs_an_ip_address():
    with pytest.raises(ValueError, match="IP address"):
        MemoryReactor().connect_udp("time.example.org", 123, TimeClient())


def test_one_protocol_serves_one_open_port():
    reactor = MemoryReactor()
    echo = Echo()
    first = reactor.listen_udp(7, echo)
    with pytest.raises(ValueError, match="already serves"):
        reactor.listen_udp(8, echo)
    with pytest.raises(ValueError, match="already serves"):
        reactor.listen_unix_datagram("/run/echo.sock", echo)
    first.stop_listening()
    assert reactor.listen_udp(8, echo).port == 8


def test_multicast_settings_are_kept_and_checked():
    port = MemoryReactor().listen_udp(5353, DatagramProtocol())
    assert (port.ttl, port.loopback, port.groups) == (1, True, set())
    port.join_group("224.0.0.251")
    port.join_group("224.0.0.251", "127.0.0.1")
    assert port.groups == {("224.0.0.251", ""), ("224.0.0.251", "127.0.0.1")}
    with pytest.raises(OSError, match="already joined") as joined:
        port.join_group("224.0.0.251")
    assert joined.value.errno == errno.EADDRINUSE
    port.leave_group("224.0.0.251")
    assert port.groups == {("224.0.0.251", "127.0.0.1")}
    with pytest.raises(OSError, match="not joined") as left:
        port.leave_group("224.0.0.251")
    assert left.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(ValueError, match="not an IPv4 multicast address"):
        port.join_group("192.0.2.1")
    with pytest.raises(ValueError, match="not an IPv4 multicast address"):
        port.join_group("ff02::fb")
    with pytest.raises(ValueError, match="not a multicast address"):
        port.join_group("mdns.local")
    port.set_ttl(8)
    port.set_loopback(False)
    port.set_outgoing_interface("127.0.0.1")
    assert (port.ttl, port.loopback, port.outgoing_interface) == (8, False, "127.0.0.1")
    with pytest.raises(ValueError, match="0 to 255"):
        port.set_ttl(256)
    port.stop_listening()
    with pytest.raises(OSError, match="closed") as closed:
        port.join_group("224.0.0.251")
    assert closed.value.errno == errno.EBADF
    with pytest.raises(OSError, match="closed"):
        port.set_ttl(1)


def test_ipv6_multicast_groups():
    port = MemoryReactor().listen_udp(5353, DatagramProtocol(), interface="::")
    port.join_group("ff02::fb", "lo")
    assert port.groups == {("ff02::fb", "lo")}
    with pytest.raises(ValueError, match="not an IPv6 multicast address"):
        port.join_group("224.0.0.251")


# -- Unix datagrams --------------------------------------------------------------------


class Logger(DatagramProtocol):
    """Code under test: a syslog-like server that acknowledges named senders."""

    def __init__(self):
        self.lines = []

    def datagram_received(self, data, addr):
        self.lines.append(data)
        if addr:
            self.transport.sendto(b"ok", addr)


def test_a_unix_datagram_server_in_memory(tmp_path):
    reactor = MemoryReactor()
    path = tmp_path / "log.sock"
    logger = Logger()
    port = reactor.listen_unix_datagram(path, logger, mode=0o620)
    assert reactor.unix_datagram_ports == [port]
    assert isinstance(port, MemoryUNIXDatagramPort)
    assert (port.address, port.peer, port.mode) == (UNIXAddress(str(path)), None, 0o620)
    assert not path.exists()
    port.deliver(b"anonymous")  # an unnamed sender: no reply possible
    port.deliver(b"named", UNIXAddress("/run/client.sock"))
    assert logger.lines == [b"anonymous", b"named"]
    assert port.written == [(b"ok", "/run/client.sock")]
    assert port.transport.get_extra_info("sockname") == str(path)
    port.stop_listening()
    with pytest.raises(RuntimeError, match="closed"):
        port.deliver(b"late")


def test_a_unix_datagram_client_sends_to_its_peer():
    reactor = MemoryReactor()
    client = TimeClient()
    port = reactor.connect_unix_datagram("/run/time.sock", client, bind_path="/run/me.sock")
    assert port.peer == UNIXAddress("/run/time.sock")
    assert port.address == UNIXAddress("/run/me.sock")
    assert port.written == [(b"what time is it?", "/run/time.sock")]
    port.deliver(b"noon")
    assert client.answers == [(b"noon", "/run/time.sock")]
    unnamed = reactor.connect_unix_datagram("\0time", TimeClient())
    assert unnamed.address == UNIXAddress(None)
    assert unnamed.peer == UNIXAddress(b"\0time")
    assert unnamed.written == [(b"what time is it?", b"\0time")]
    assert "connected to" in repr(unnamed)

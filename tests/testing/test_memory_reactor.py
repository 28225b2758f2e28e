"""torsion.testing.MemoryReactor: records listen/connect calls, fake time."""

from __future__ import annotations

import asyncio

import pytest

from torsion.defer import CancelledError
from torsion.internet import IPv4Address, Protocol
from torsion.testing import Clock, MemoryReactor, StringTransport, failure_result_of


class Hello(Protocol):
    def __init__(self, address=None):
        self.address = address
        self.received = b""

    def connection_made(self, transport):
        super().connection_made(transport)
        transport.write(b"hello\r\n")

    def data_received(self, data):
        self.received += data


def start_server(reactor, port=25):
    """Code under test: it only knows it was given something with listen_tcp."""
    return reactor.listen_tcp(port, Hello, interface="127.0.0.1", backlog=5)


def test_listen_tcp_is_recorded():
    reactor = MemoryReactor()
    listener = start_server(reactor)
    [server] = reactor.tcp_servers
    assert server.port == 25
    assert server.factory is Hello
    assert server.interface == "127.0.0.1"
    assert server.backlog == 5
    assert server.listener is listener
    assert (listener.host, listener.port) == ("127.0.0.1", 25)
    assert listener.listening


def test_port_zero_gets_a_made_up_port_each_time():
    reactor = MemoryReactor()
    first = reactor.listen_tcp(0, Hello)
    second = reactor.listen_tcp(0, Hello)
    assert first.port != second.port
    assert first.port > 0
    assert first.host == "0.0.0.0"
    assert reactor.tcp_servers[0].port == 0


def test_stop_listening_fires_at_once():
    listener = MemoryReactor().listen_tcp(80, Hello)
    done = []
    listener.stop_listening().add_callback(done.append)
    assert done == [None]
    assert not listener.listening
    assert "stopped" in repr(listener)


def test_the_test_drives_the_recorded_factory_by_hand():
    reactor = MemoryReactor()
    start_server(reactor)
    protocol = reactor.tcp_servers[0].factory(("192.0.2.9", 4000))
    transport = StringTransport()
    protocol.connection_made(transport)
    assert transport.value() == b"hello\r\n"


def test_accept_plays_an_incoming_connection():
    reactor = MemoryReactor()
    start_server(reactor)
    protocol = reactor.tcp_servers[0].accept(peer=IPv4Address("192.0.2.9", 4000))
    assert isinstance(protocol, Hello)
    assert protocol.address == IPv4Address("192.0.2.9", 4000)
    assert protocol.transport.value() == b"hello\r\n"
    assert protocol.transport.get_extra_info("peername") == ("192.0.2.9", 4000)
    assert protocol.transport.get_extra_info("sockname") == ("127.0.0.1", 25)


def test_accept_with_a_refusing_factory_closes_the_transport():
    reactor = MemoryReactor()
    reactor.listen_tcp(25, lambda address: None)
    transport = StringTransport()
    assert reactor.tcp_servers[0].accept(transport) is None
    assert transport.closed


def test_connect_tcp_is_recorded_and_fired_by_the_test():
    reactor = MemoryReactor()
    connector = reactor.connect_tcp("example.org", 25, Hello, timeout=5)
    d = connector.deferred
    [client] = reactor.tcp_clients
    assert (client.host, client.port, client.factory, client.timeout) == (
        "example.org",
        25,
        Hello,
        5,
    )
    assert client.connector is connector
    assert connector.state == "connecting"
    assert not d.called
    results = []
    d.add_callback(results.append)
    protocol = client.connect()
    assert results == [protocol]
    assert protocol.address == IPv4Address("example.org", 25)
    assert protocol.transport.value() == b"hello\r\n"
    assert connector.state == "connected"
    assert connector.transport is protocol.transport
    connector.disconnect()
    assert protocol.transport.closed
    assert connector.state == "disconnected"


def test_a_cancelled_connect_cannot_be_played():
    reactor = MemoryReactor()
    connector = reactor.connect_tcp("example.org", 25, Hello)
    connector.cancel()
    failure_result_of(connector.deferred, CancelledError)
    assert connector.state == "failed"
    with pytest.raises(RuntimeError, match="already ended"):
        reactor.tcp_clients[0].connect()
    reactor.tcp_clients[0].fail()  # nothing left to fail: ignored


def test_connect_tcp_failure_is_played_by_the_test():
    reactor = MemoryReactor()
    d = reactor.connect_tcp("example.org", 25, Hello).deferred
    errors = []
    d.add_errback(errors.append)
    reactor.tcp_clients[0].fail()
    assert isinstance(errors[0], ConnectionRefusedError)
    d2 = reactor.connect_tcp("example.org", 26, Hello).deferred
    d2.add_errback(errors.append)
    reactor.tcp_clients[1].fail(TimeoutError("slow"))
    assert isinstance(errors[1], TimeoutError)


def test_time_is_a_fake_clock():
    reactor = MemoryReactor()
    assert isinstance(reactor.clock, Clock)
    fired = []
    call = reactor.call_later(3, fired.append, "x")
    assert reactor.get_delayed_calls() == [call]
    reactor.advance(2)
    assert fired == []
    reactor.pump([0.5, 0.5])
    assert fired == ["x"]
    assert reactor.seconds() == 3
    assert reactor.clock.seconds() == 3


def test_a_clock_can_be_shared():
    clock = Clock(10)
    reactor = MemoryReactor(clock=clock)
    assert reactor.seconds() == 10


@pytest.mark.parametrize("transport_type", [StringTransport])
def test_accept_uses_a_given_transport(transport_type):
    reactor = MemoryReactor()
    start_server(reactor)
    transport = transport_type()
    protocol = reactor.tcp_servers[0].accept(transport)
    assert protocol.transport is transport
    assert transport.get_protocol() is protocol
    assert isinstance(transport, asyncio.Transport)

"""torsion.testing.MemoryReactor: time, names, TCP, TLS, Unix streams and descriptors."""

from __future__ import annotations

import asyncio
import inspect
import ssl

import pytest

from torsion.defer import CancelledError
from torsion.errors import TLSConfigError
from torsion.internet import (
    DatagramProtocol,
    FileDescriptor,
    IPv4Address,
    Protocol,
    Reactor,
    UNIXAddress,
    wait_readable,
)
from torsion.testing import (
    Clock,
    MemoryReactor,
    StringTransport,
    TLSClientCall,
    TLSServerCall,
    UNIXClientCall,
    UNIXServerCall,
    assert_no_result,
    failure_result_of,
    success_result_of,
)


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


# -- the same methods as the real reactor ----------------------------------------------

REACTOR_METHODS = [
    "seconds",
    "call_later",
    "get_delayed_calls",
    "resolve",
    "resolve_all",
    "listen_tcp",
    "connect_tcp",
    "listen_tls",
    "connect_tls",
    "listen_udp",
    "connect_udp",
    "listen_unix",
    "connect_unix",
    "listen_unix_datagram",
    "connect_unix_datagram",
    "spawn_process",
    "add_reader",
    "remove_reader",
    "add_writer",
    "remove_writer",
]


@pytest.mark.parametrize("name", REACTOR_METHODS)
def test_signatures_match_the_real_reactor(name):
    # Names, kinds and defaults: code under test calls both the same way.
    # (Not self's kind: compiled methods report it as positional-only.)
    def shape(function):
        _, *parameters = inspect.signature(function).parameters.values()
        return [(p.name, p.kind, p.default) for p in parameters]

    assert shape(getattr(MemoryReactor, name)) == shape(getattr(Reactor, name))


# -- TLS -------------------------------------------------------------------------------


def fetch_mail(reactor, context=None):
    """Code under test: an IMAP client that connects over TLS."""
    return reactor.connect_tls(
        "mail.example.org", 993, Hello, context=context, server_hostname="imap.example.org"
    )


def serve_tls(reactor, context):
    """Code under test: a server that listens for TLS on any port."""
    return reactor.listen_tls(0, Hello, context, interface="127.0.0.1", handshake_timeout=5)


def test_connect_tls_is_recorded_and_played_like_tcp():
    reactor = MemoryReactor()
    context = ssl.create_default_context()
    connector = fetch_mail(reactor, context)
    [call] = reactor.tls_clients
    assert isinstance(call, TLSClientCall)
    assert reactor.tcp_clients == []
    assert (call.host, call.port, call.factory) == ("mail.example.org", 993, Hello)
    assert call.context is context
    assert call.server_hostname == "imap.example.org"
    assert (call.timeout, call.bind_address, call.keepalive) == (30.0, None, False)
    assert call.connector is connector
    protocol = call.connect()
    assert success_result_of(connector.deferred) is protocol
    assert protocol.address == IPv4Address("mail.example.org", 993)
    assert protocol.transport.value() == b"hello\r\n"
    assert connector.state == "connected"


def test_a_failed_handshake_is_played_with_fail():
    reactor = MemoryReactor()
    connector = fetch_mail(reactor)
    assert reactor.tls_clients[0].context is None
    reactor.tls_clients[0].fail(ssl.SSLCertVerificationError("unknown CA"))
    failure_result_of(connector.deferred, ssl.SSLCertVerificationError)
    assert connector.state == "failed"
    with pytest.raises(RuntimeError, match="already ended"):
        reactor.tls_clients[0].connect()


def test_listen_tls_is_recorded_and_accepts_like_tcp():
    reactor = MemoryReactor()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    listener = serve_tls(reactor, context)
    [call] = reactor.tls_servers
    assert isinstance(call, TLSServerCall)
    assert reactor.tcp_servers == []
    assert call.context is context
    assert call.handshake_timeout == 5
    assert (call.port, call.interface, call.backlog) == (0, "127.0.0.1", 100)
    assert call.listener is listener
    assert listener.port >= 49152
    protocol = call.accept(peer=IPv4Address("192.0.2.9", 4000))
    assert protocol.address == IPv4Address("192.0.2.9", 4000)
    assert protocol.transport.get_extra_info("sockname") == ("127.0.0.1", listener.port)
    assert protocol.transport.value() == b"hello\r\n"


def test_listen_tls_refuses_a_client_context_as_the_real_one_does():
    reactor = MemoryReactor()
    with pytest.raises(TLSConfigError, match="client context"):
        serve_tls(reactor, ssl.create_default_context())
    assert reactor.tls_servers == []


def test_made_up_ports_differ_across_kinds():
    reactor = MemoryReactor()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ports = [
        reactor.listen_tcp(0, Hello).port,
        reactor.listen_tls(0, Hello, context).port,
        reactor.listen_udp(0, DatagramProtocol()).port,
    ]
    assert len(set(ports)) == 3
    assert reactor.listen_tcp(8080, Hello).port == 8080


# -- Unix streams ----------------------------------------------------------------------


def test_listen_unix_is_recorded_and_accepts_unnamed_peers(tmp_path):
    reactor = MemoryReactor()
    path = tmp_path / "server.sock"
    listener = reactor.listen_unix(path, Hello, mode=0o600, backlog=3)
    [call] = reactor.unix_servers
    assert isinstance(call, UNIXServerCall)
    assert (call.path, call.mode, call.backlog, call.pass_fds) == (str(path), 0o600, 3, False)
    assert call.listener is listener
    assert listener.address == UNIXAddress(str(path))
    assert not path.exists()  # nothing touches the file system
    protocol = call.accept()
    assert protocol.address == UNIXAddress(None)
    assert protocol.transport.get_extra_info("peername") == ""
    assert protocol.transport.get_extra_info("sockname") == str(path)
    assert listener.listening
    success_result_of(listener.stop_listening())
    assert not listener.listening
    assert "stopped" in repr(listener)


def test_connect_unix_gives_the_factory_the_servers_address():
    reactor = MemoryReactor()
    connector = reactor.connect_unix("/run/agent.sock", Hello, timeout=2, pass_fds=True)
    [call] = reactor.unix_clients
    assert isinstance(call, UNIXClientCall)
    assert (call.path, call.timeout, call.pass_fds) == ("/run/agent.sock", 2, True)
    assert connector.destination == UNIXAddress("/run/agent.sock")
    protocol = call.connect()
    assert success_result_of(connector.deferred) is protocol
    assert protocol.address == UNIXAddress("/run/agent.sock")
    assert protocol.transport.get_extra_info("peername") == "/run/agent.sock"
    assert protocol.transport.get_extra_info("sockname") == ""


def test_an_abstract_unix_name_is_reported_as_bytes():
    reactor = MemoryReactor()
    reactor.connect_unix("\0agent", Hello)
    assert reactor.unix_clients[0].connect().address == UNIXAddress(b"\0agent")
    listener = reactor.listen_unix("\0server", Hello)
    assert listener.address == UNIXAddress(b"\0server")


def test_connect_unix_failure_and_fail_after_connect():
    reactor = MemoryReactor()
    refused = reactor.connect_unix("/run/gone.sock", Hello)
    reactor.unix_clients[0].fail()
    failure_result_of(refused.deferred, ConnectionRefusedError)
    made = reactor.connect_unix("/run/agent.sock", Hello)
    protocol = reactor.unix_clients[1].connect()
    reactor.unix_clients[1].fail(FileNotFoundError())  # already connected: ignored
    assert success_result_of(made.deferred) is protocol


# -- descriptors -----------------------------------------------------------------------


class FakeSocket:
    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd


def test_wait_readable_on_the_memory_reactor():
    reactor = MemoryReactor()
    sock = FakeSocket(7)
    d = wait_readable(reactor, sock)  # code under test: waits for data, once
    assert 7 in reactor.readers
    assert_no_result(d)
    reactor.fire_reader(sock)
    assert success_result_of(d) is None
    assert reactor.readers == {}


def test_file_descriptor_registers_and_removes_its_callbacks():
    reactor = MemoryReactor()
    seen = []
    watched = FileDescriptor(
        reactor, 5, on_readable=lambda: seen.append("r"), on_writable=lambda: seen.append("w")
    )
    watched.start_reading()
    watched.start_writing()
    reactor.fire_reader(5)
    reactor.fire_writer(5)
    assert seen == ["r", "w"]
    watched.close()
    assert reactor.readers == {}
    assert reactor.writers == {}


def test_add_and_remove_descriptors_as_the_loop_does():
    reactor = MemoryReactor()
    calls = []

    def callback(*args):
        calls.append(args)

    reactor.add_reader(3, callback)
    assert reactor.readers[3] is callback
    reactor.add_reader(FakeSocket(3), callback, "a", 1)  # replaces the first
    reactor.fire_reader(3)
    assert calls == [("a", 1)]
    assert reactor.remove_reader(3) is True
    assert reactor.remove_reader(3) is False
    reactor.add_writer(4, callback, "w")
    reactor.fire_writer(FakeSocket(4))
    assert calls[-1] == ("w",)
    assert reactor.remove_writer(4) is True
    assert reactor.remove_writer(4) is False
    with pytest.raises(KeyError, match="descriptor 3 for reading"):
        reactor.fire_reader(3)
    with pytest.raises(KeyError, match="descriptor 4 for writing"):
        reactor.fire_writer(4)
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        reactor.add_reader(FakeSocket(-1), callback)  # a closed socket's fileno()

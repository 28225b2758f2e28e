"""The Protocol base class: addresses, drained(), start_tls(); the Factory helper."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import pytest
import trustme

from torsion.defer import Deferred
from torsion.internet import Address, Factory, IPv4Address, Protocol, Reactor
from torsion.internet._wrapping import HeldWrites
from torsion.testing import StringTransport, assert_no_result, failure_result_of, success_result_of

Wait = Callable[..., Any]


def connected(protocol: Protocol) -> StringTransport:
    transport = StringTransport(peer=("192.0.2.7", 4321), host=("192.0.2.1", 25))
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    return transport


def test_peer_and_host_are_typed() -> None:
    protocol = Protocol()
    connected(protocol)
    assert protocol.peer == IPv4Address("192.0.2.7", 4321)
    assert protocol.host == IPv4Address("192.0.2.1", 25)


def test_drained_fires_at_once_when_not_paused() -> None:
    protocol = Protocol()
    connected(protocol)
    assert success_result_of(protocol.drained()) is None


def test_drained_waits_for_resume_writing() -> None:
    protocol = Protocol()
    connected(protocol)
    protocol.pause_writing()
    first, second = protocol.drained(), protocol.drained()
    assert_no_result(first)
    protocol.resume_writing()
    assert success_result_of(first) is None
    assert success_result_of(second) is None


def test_drained_fails_when_the_connection_is_lost() -> None:
    protocol = Protocol()
    connected(protocol)
    protocol.pause_writing()
    waiting = protocol.drained()
    error = BrokenPipeError("peer went away")
    protocol.connection_lost(error)
    assert failure_result_of(waiting, BrokenPipeError) is error
    # And afterwards at once, even for a clean close.
    failure_result_of(protocol.drained(), ConnectionResetError)


class Counted(Protocol):
    def __init__(self) -> None:
        self.lost_with: list[Exception | None] = []

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_with.append(exc)


def test_factory_counts_live_connections() -> None:
    factory = Factory(Counted)
    peer = IPv4Address("192.0.2.7", 1)
    a, b = factory(peer), factory(peer)
    assert isinstance(a, Counted)
    assert isinstance(b, Counted)
    assert factory.connections == 2
    a.connection_lost(None)
    assert factory.connections == 1
    assert a.lost_with == [None]  # the protocol's own method still runs


class Hooks(Factory[Counted]):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def build_protocol(self, address: Address) -> Counted | None:
        if isinstance(address, IPv4Address) and address.host == "192.0.2.66":
            return None
        return Counted()

    def start_factory(self) -> None:
        self.events.append("start")

    def stop_factory(self) -> None:
        self.events.append("stop")


def test_factory_start_and_stop_bracket_all_users() -> None:
    factory = Hooks()
    factory.start()
    factory.start()
    factory.stop()
    assert factory.events == ["start"]
    factory.stop()
    assert factory.events == ["start", "stop"]
    with pytest.raises(RuntimeError, match="stopped more often than started"):
        factory.stop()


def test_factory_refusal_is_not_counted() -> None:
    factory = Hooks()
    assert factory(IPv4Address("192.0.2.66", 1)) is None
    assert factory.connections == 0


def test_factory_without_protocol_says_so() -> None:
    with pytest.raises(TypeError, match="needs a protocol"):
        Factory()(IPv4Address("192.0.2.7", 1))


def test_listening_starts_and_stops_the_factory(real_reactor: Reactor, wait: Wait) -> None:
    factory = Hooks()
    listener = real_reactor.listen_tcp(0, factory, interface="127.0.0.1")
    assert factory.events == ["start"]
    wait(real_reactor, listener.stop_listening())
    assert factory.events == ["start", "stop"]


# -- STARTTLS over real TCP -----------------------------------------------------


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


class StartTLSServer(Protocol):
    """Says "GO" to a STARTTLS line, upgrades, then echoes in upper case."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.upgraded: Deferred[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self.upgraded is None:
            assert data == b"STARTTLS\n"
            self.transport.write(b"GO\n")
            self.upgraded = self.start_tls(self.context, server_side=True)
        else:
            self.transport.write(data.upper())


def recording(
    made: list[StartTLSServer], make: Callable[[], StartTLSServer]
) -> Callable[[Address], StartTLSServer]:
    """A factory that keeps each protocol it makes in ``made``."""

    def factory(_: Address) -> StartTLSServer:
        made.append(make())
        return made[-1]

    return factory


class StartTLSClient(Protocol):
    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.secure: Deferred[None] = Deferred()
        self.reply: Deferred[bytes] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(b"STARTTLS\n")

    def data_received(self, data: bytes) -> None:
        if data == b"GO\n":
            upgrade = self.start_tls(self.context, server_hostname="localhost")
            upgrade.add_callbacks(self.secure.callback, self.secure.errback)
        else:
            self.reply.callback(data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(None)


def test_start_tls_upgrades_in_place(
    real_reactor: Reactor, wait: Wait, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = tls
    servers: list[StartTLSServer] = []
    serve = recording(servers, lambda: StartTLSServer(server_context))
    r = real_reactor
    listener = r.listen_tcp(0, serve, interface="127.0.0.1")
    client = wait(
        r, r.connect_tcp("127.0.0.1", listener.port, lambda _: StartTLSClient(client_context))
    )
    wait(r, client.secure)
    assert client.transport.get_extra_info("ssl_object") is not None
    assert client.transport.get_extra_info("peercert")["subjectAltName"] == (("DNS", "localhost"),)
    client.transport.write(b"secret\n")
    assert wait(r, client.reply) == b"SECRET\n"
    (server,) = servers
    assert server.upgraded is not None
    assert success_result_of(server.upgraded) is None
    # Addresses still read through the TLS transport.
    assert client.peer == IPv4Address("127.0.0.1", listener.port)
    client.transport.close()
    wait(r, client.lost)
    wait(r, listener.stop_listening())


def test_start_tls_replies_over_tls_to_data_sent_right_after_the_handshake(
    real_reactor: Reactor, wait: Wait, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """The client's first encrypted bytes can arrive with its Finished message.

    The server protocol then gets them before the code awaiting the
    handshake resumes; its reply must still go out over TLS.
    """
    server_context, client_context = tls
    r = real_reactor
    listener = r.listen_tcp(0, lambda _: StartTLSServer(server_context), interface="127.0.0.1")

    async def client() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(client_context, server_hostname="localhost")
        writer.write(b"secret\n")
        reply = await reader.readexactly(7)
        writer.close()
        await writer.wait_closed()
        return reply

    for _ in range(5):
        assert wait(r, client()) == b"SECRET\n"
    wait(r, listener.stop_listening())


def test_writes_during_the_handshake_wait_and_close_waits_for_them() -> None:
    plain = StringTransport()
    held = HeldWrites(plain)
    held.write(b"one ")
    held.writelines([b"two ", b"three"])
    held.close()
    held.write(b"dropped: written after close")
    assert plain.value() == b""
    assert held.is_closing()
    assert held.get_write_buffer_size() == len(b"one two three")
    assert held.get_extra_info("peername") == plain.get_extra_info("peername")
    tls = StringTransport()
    held.release(tls)
    assert tls.value() == b"one two three"
    assert tls.closed
    failed = HeldWrites(plain)
    failed.write(b"never sent")
    failed.drop()
    failed.release(tls)
    assert tls.value() == b"one two three"


def test_start_tls_fails_on_an_untrusted_certificate(
    real_reactor: Reactor, wait: Wait, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, _ = tls
    stranger = ssl.create_default_context()
    stranger.load_verify_locations(cadata=trustme.CA().cert_pem.bytes().decode())
    servers: list[StartTLSServer] = []
    serve = recording(servers, lambda: StartTLSServer(server_context))
    r = real_reactor
    listener = r.listen_tcp(0, serve, interface="127.0.0.1")
    client = wait(r, r.connect_tcp("127.0.0.1", listener.port, lambda _: StartTLSClient(stranger)))
    with pytest.raises(ssl.SSLCertVerificationError):
        wait(r, client.secure)
    wait(r, client.lost)
    # The server's side of the handshake fails too: the client hung up on it.
    (server,) = servers
    assert server.upgraded is not None
    with pytest.raises((ConnectionError, ssl.SSLError)):
        wait(r, server.upgraded)
    wait(r, listener.stop_listening())

"""The PROXY protocol wrappers: in memory on fakes, then over real TCP, TLS and Unix sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from torsion.defer import Deferred, succeed
from torsion.internet import (
    Address,
    Factory,
    IPv4Address,
    IPv6Address,
    Protocol,
    ProtocolWrapper,
    Reactor,
    ServerTLS,
    TCPClientEndpoint,
    TCPServerEndpoint,
    TLSClientEndpoint,
    TransportWrapper,
    UNIXAddress,
    UNIXServerEndpoint,
    client_context,
    server_tls,
    to_address,
)
from torsion.protocols.haproxy._header import (
    Command,
    HeaderAddress,
    ProxyHeader,
    TLVType,
    build_v1,
    build_v2,
)
from torsion.protocols.haproxy._protocol import (
    ProxiedTransport,
    ProxyProtocolClientEndpoint,
    ProxyProtocolFactory,
    ProxyProtocolServerEndpoint,
    _HeaderReceiver,
)
from torsion.testing import (
    Clock,
    MemoryReactor,
    PairMaker,
    RecordingProtocol,
    StringTransport,
    loopback,
    success_result_of,
    transport_checks,
)

LOGGER = "torsion.protocols.proxy"
ON_BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    ["asyncio", pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop"))],
)
CLIENT = IPv4Address("203.0.113.7", 4242)
SERVER = IPv4Address("198.51.100.1", 443)
PROXY_PEER = ("10.1.1.1", 50000)
PROXY_HOST = ("10.1.1.2", 8080)


class Recorder(Protocol):
    """Records what the wrapped protocol sees."""

    def __init__(self, address: Address | None = None) -> None:
        self.address = address
        self.events: list[Any] = []
        self.received = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.events.append(("data", data))
        self.received += data

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        return None

    def pause_writing(self) -> None:
        super().pause_writing()
        self.events.append("pause")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.events.append("lost")


class Made:
    """A factory of Recorders that keeps each one."""

    def __init__(self) -> None:
        self.protocols: list[Recorder] = []

    def __call__(self, address: Address) -> Recorder:
        protocol = Recorder(address)
        self.protocols.append(protocol)
        return protocol

    @property
    def one(self) -> Recorder:
        assert len(self.protocols) == 1, self.protocols
        return self.protocols[0]


def accept(
    wrapper: ProxyProtocolFactory, peer: Any = PROXY_PEER, host: Any = PROXY_HOST
) -> tuple[asyncio.Protocol, StringTransport]:
    """Accept one connection as a listener would: factory, set_protocol, connection_made."""
    reader = wrapper(to_address(peer))
    assert reader is not None
    transport = StringTransport(reader, peer=peer, host=host, extra={"cipher": "none"})
    reader.connection_made(transport)
    return reader, transport


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


# -- in memory -------------------------------------------------------------------------------


def test_the_protocol_sees_the_client_and_the_bytes_after_the_header() -> None:
    made, clock = Made(), Clock()
    wrapper = ProxyProtocolFactory(made, clock=clock)
    reader, transport = accept(wrapper)
    assert made.protocols == []
    assert wrapper.connections == 1
    reader.data_received(build_v1(CLIENT, SERVER) + b"GET / HTTP/1.1\r\n")
    protocol = made.one
    assert protocol.address == CLIENT
    assert protocol.peer == CLIENT
    assert protocol.host == SERVER
    assert protocol.events == ["made", ("data", b"GET / HTTP/1.1\r\n")]
    # From now on the connection talks to the protocol, with no reader between.
    assert transport.get_protocol() is protocol
    proxied = protocol.transport
    assert isinstance(proxied, ProxiedTransport)
    assert isinstance(proxied, TransportWrapper)  # Protocol.start_tls goes through it
    assert proxied.wrapped_transport is transport
    assert proxied.get_extra_info("proxy_header") == ProxyHeader(
        version=1, source=CLIENT, destination=SERVER
    )
    assert proxied.get_extra_info("cipher") == "none"
    assert proxied.get_extra_info("missing", 7) == 7
    assert wrapper.connections == 0
    assert clock.get_delayed_calls() == []


def test_a_header_split_anywhere_then_data_in_order() -> None:
    made, clock = Made(), Clock()
    reader, _ = accept(ProxyProtocolFactory(made, clock=clock))
    header = build_v2(CLIENT, SERVER, tlvs=[(TLVType.AUTHORITY, b"example.com")])
    for byte in header[:-1]:
        reader.data_received(bytes([byte]))
        assert made.protocols == []
    reader.data_received(header[-1:] + b"one")
    protocol = made.one
    protocol.data_received(b"two")  # what the transport delivers next
    assert protocol.received == b"onetwo"
    assert protocol.transport.get_extra_info("proxy_header").authority == "example.com"


def test_nothing_after_the_header_delivers_no_empty_data() -> None:
    made = Made()
    reader, _ = accept(ProxyProtocolFactory(made, clock=Clock()))
    reader.data_received(build_v1(CLIENT, SERVER))
    assert made.one.events == ["made"]


@pytest.mark.parametrize(
    ("source", "destination"),
    [
        (IPv6Address("2001:db8::7", 1), IPv6Address("2001:db8::1", 2)),
        (UNIXAddress("/run/client.sock"), UNIXAddress("/run/app.sock")),
        (IPv4Address("192.0.2.1", 53, "udp"), IPv4Address("192.0.2.2", 53, "udp")),
    ],
)
def test_every_family_reaches_peer_and_host(
    source: HeaderAddress, destination: HeaderAddress
) -> None:
    made = Made()
    reader, _ = accept(ProxyProtocolFactory(made, clock=Clock()))
    reader.data_received(build_v2(source, destination))
    protocol = made.one
    assert protocol.address == source  # the factory gets it exactly
    assert isinstance(protocol.transport, ProxiedTransport)
    assert (protocol.transport.peer, protocol.transport.host) == (source, destination)
    # Protocol.peer goes through the socket module's form, which has no "udp".
    assert str(protocol.peer) == str(source)
    assert str(protocol.host) == str(destination)


@pytest.mark.parametrize(
    "header",
    [
        build_v2(None, None, command=Command.LOCAL),
        build_v1(None, None),
        build_v2(None, None),
    ],
    ids=["v2-local", "v1-unknown", "v2-unspec"],
)
def test_headers_without_addresses_keep_the_real_ones(header: bytes) -> None:
    made = Made()
    reader, _ = accept(ProxyProtocolFactory(made, clock=Clock()))
    reader.data_received(header)
    protocol = made.one
    assert protocol.address == IPv4Address(*PROXY_PEER)
    assert protocol.peer == IPv4Address(*PROXY_PEER)
    assert protocol.host == IPv4Address(*PROXY_HOST)


def test_local_can_be_refused(caplog: pytest.LogCaptureFixture) -> None:
    made = Made()
    wrapper = ProxyProtocolFactory(made, clock=Clock(), allow_local=False)
    reader, transport = accept(wrapper)
    with caplog.at_level(logging.DEBUG, LOGGER):
        reader.data_received(build_v2(None, None, command=Command.LOCAL))
        reader.connection_lost(None)
    assert made.protocols == []
    assert transport.aborted
    assert wrapper.connections == 0
    [record] = records(caplog)
    assert record.levelno == logging.INFO
    assert "LOCAL" in record.getMessage()


def test_a_bad_header_is_logged_once_and_the_connection_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    made, clock = Made(), Clock()
    wrapper = ProxyProtocolFactory(made, clock=clock)
    reader, transport = accept(wrapper)
    with caplog.at_level(logging.DEBUG, LOGGER):
        reader.data_received(b"GET / HTTP/1.1\r\n")
        reader.data_received(b"Host: x\r\n")  # already closing: ignored
        assert reader.eof_received() is False
        reader.connection_lost(None)
    assert made.protocols == []
    assert transport.aborted
    [record] = records(caplog)
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert "10.1.1.1:50000 sent a bad PROXY header: not a PROXY protocol header" in (
        record.getMessage()
    )
    assert clock.get_delayed_calls() == []
    assert wrapper.connections == 0


def test_a_silent_connection_is_closed_at_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    made, clock = Made(), Clock()
    wrapper = ProxyProtocolFactory(made, clock=clock, timeout=5)
    reader, transport = accept(wrapper)
    reader.data_received(b"PROXY TCP4 ")
    clock.advance(4.9)
    assert not transport.is_closing()
    with caplog.at_level(logging.DEBUG, LOGGER):
        clock.advance(0.1)
        reader.connection_lost(None)
    assert transport.is_closing()
    assert not transport.aborted
    assert made.protocols == []
    [record] = records(caplog)
    assert record.levelno == logging.INFO
    assert "no complete PROXY header within 5s" in record.getMessage()
    assert clock.get_delayed_calls() == []
    # Late bytes change nothing.
    reader.data_received(b"1.2.3.4 5.6.7.8 1 2\r\n")
    assert made.protocols == []


def test_the_timer_stops_with_the_header_or_the_connection() -> None:
    clock = Clock()
    wrapper = ProxyProtocolFactory(Made(), clock=clock, timeout=5)
    reader, _ = accept(wrapper)
    assert len(clock.get_delayed_calls()) == 1
    reader.data_received(build_v1(CLIENT, SERVER))
    assert clock.get_delayed_calls() == []
    lost, _ = accept(wrapper)
    lost.connection_lost(ConnectionResetError("reset"))
    assert clock.get_delayed_calls() == []
    assert wrapper.connections == 0


@pytest.mark.parametrize(
    ("sent", "level"),
    [(b"", logging.DEBUG), (b"PROXY TCP4 1.2", logging.INFO)],
    ids=["nothing", "partial"],
)
def test_eof_before_the_header(caplog: pytest.LogCaptureFixture, sent: bytes, level: int) -> None:
    made = Made()
    reader, _ = accept(ProxyProtocolFactory(made, clock=Clock()))
    with caplog.at_level(logging.DEBUG, LOGGER):
        reader.data_received(sent)
        assert reader.eof_received() is False
        reader.connection_lost(None)
    assert made.protocols == []
    [record] = records(caplog)
    assert record.levelno == level


def test_the_block_limit_is_configurable(caplog: pytest.LogCaptureFixture) -> None:
    made = Made()
    wrapper = ProxyProtocolFactory(made, clock=Clock(), max_length=64)
    reader, transport = accept(wrapper)
    with caplog.at_level(logging.INFO, LOGGER):
        reader.data_received(build_v2(CLIENT, SERVER, tlvs=[(0xE0, bytes(100))]))
    assert transport.aborted
    assert made.protocols == []
    assert "at most 64" in caplog.text


def test_only_trusted_peers_may_send_headers(caplog: pytest.LogCaptureFixture) -> None:
    wrapper = ProxyProtocolFactory(
        Made(), clock=Clock(), trusted=["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"]
    )
    with caplog.at_level(logging.DEBUG, LOGGER):
        assert wrapper(IPv4Address("192.0.2.2", 1)) is None
    [record] = records(caplog)
    assert record.levelno == logging.WARNING
    assert "192.0.2.2:1" in record.getMessage()
    assert wrapper.connections == 0
    assert isinstance(wrapper(IPv4Address("10.9.8.7", 1)), _HeaderReceiver)
    assert isinstance(wrapper(IPv4Address("192.0.2.1", 1)), _HeaderReceiver)
    assert isinstance(wrapper(IPv6Address("2001:db8::5", 1)), _HeaderReceiver)
    # A dual-stack socket's view of an IPv4 peer.
    assert isinstance(wrapper(IPv6Address("::ffff:10.0.0.1", 1)), _HeaderReceiver)
    assert wrapper(IPv6Address("::ffff:192.0.2.2", 1)) is None
    assert wrapper(IPv6Address("2001:db9::1", 1)) is None
    # The socket file's permissions guard a Unix socket.
    assert isinstance(wrapper(UNIXAddress(None)), _HeaderReceiver)


class FakeSocket:
    def __init__(self, family: socket.AddressFamily) -> None:
        self.family = family


@pytest.mark.parametrize(
    ("family", "refused"), [(socket.AF_INET, True), (socket.AF_UNIX, False), (None, False)]
)
def test_an_unknown_peer_is_trusted_only_on_a_unix_socket(
    caplog: pytest.LogCaptureFixture, family: socket.AddressFamily | None, refused: bool
) -> None:
    # A TCP client that reset before it was accepted has no readable peer;
    # the listener reports an unnamed Unix peer, which must not pass as one.
    clock = Clock()
    wrapper = ProxyProtocolFactory(Made(), clock=clock, trusted=["10.0.0.0/8"])
    reader = wrapper(UNIXAddress(None))
    assert reader is not None
    extra = {} if family is None else {"socket": FakeSocket(family)}
    transport = StringTransport(reader, peer=None, extra=extra)
    with caplog.at_level(logging.WARNING, LOGGER):
        reader.connection_made(transport)
    assert transport.aborted is refused
    assert bool(records(caplog)) is refused
    assert wrapper.connections == (0 if refused else 1)
    assert len(clock.get_delayed_calls()) == (0 if refused else 1)
    reader.connection_lost(None)
    assert clock.get_delayed_calls() == []
    assert wrapper.connections == 0


def test_options_are_checked_at_once() -> None:
    with pytest.raises(ValueError, match="timeout"):
        ProxyProtocolFactory(Made(), clock=Clock(), timeout=0)
    with pytest.raises(ValueError, match="max_length"):
        ProxyProtocolFactory(Made(), clock=Clock(), max_length=70000)
    with pytest.raises(ValueError, match="does not appear to be"):
        ProxyProtocolFactory(Made(), clock=Clock(), trusted=["not a network"])
    with pytest.raises(ValueError, match="timeout"):
        ProxyProtocolServerEndpoint(
            TCPServerEndpoint(MemoryReactor(), 0), clock=Clock(), timeout=-1
        )


def test_a_factory_that_refuses_or_fails(caplog: pytest.LogCaptureFixture) -> None:
    refused, transport = accept(ProxyProtocolFactory(lambda _: None, clock=Clock()))
    refused.data_received(build_v1(CLIENT, SERVER))
    assert transport.closed
    assert not transport.aborted

    def broken(_: Address) -> asyncio.Protocol:
        raise RuntimeError("bug in the application")

    failed, transport = accept(ProxyProtocolFactory(broken, clock=Clock()))
    with caplog.at_level(logging.ERROR, LOGGER):
        failed.data_received(build_v1(CLIENT, SERVER))
    assert transport.aborted
    # The application's own bug keeps its traceback.
    [record] = records(caplog)
    assert record.exc_info is not None


def test_a_wrapped_factory_is_started_stopped_and_counts_its_connections() -> None:
    class Counted(Factory[Recorder]):
        started = stopped = 0

        def start_factory(self) -> None:
            self.started += 1

        def stop_factory(self) -> None:
            self.stopped += 1

    inner = Counted(Recorder)
    wrapper = ProxyProtocolFactory(inner, clock=Clock())
    wrapper.start()
    assert (inner.started, inner.stopped) == (1, 0)
    reader, _ = accept(wrapper)
    reader.data_received(build_v1(CLIENT, SERVER))
    assert inner.connections == 1
    protocol = reader_protocol(reader)
    protocol.connection_lost(None)
    assert inner.connections == 0
    wrapper.stop()
    assert (inner.started, inner.stopped) == (1, 1)


def reader_protocol(reader: asyncio.Protocol) -> Recorder:
    transport = reader._transport  # type: ignore[attr-defined]
    protocol = transport.get_protocol()
    assert isinstance(protocol, Recorder)
    return protocol


def test_the_proxied_transport_passes_everything_else_through() -> None:
    made = Made()
    reader, transport = accept(ProxyProtocolFactory(made, clock=Clock()))
    reader.data_received(build_v1(CLIENT, SERVER))
    protocol = made.one
    proxied = protocol.transport
    proxied.write(b"a")
    proxied.writelines([b"b", bytearray(b"c"), memoryview(b"d")])
    assert transport.value() == b"abcd"
    assert proxied.get_write_buffer_size() == 4
    proxied.set_write_buffer_limits(high=2, low=1)
    assert proxied.get_write_buffer_limits() == (1, 2)
    assert protocol.events[-1] == "pause"  # the wrapped transport told the protocol
    proxied.pause_reading()
    assert not proxied.is_reading()
    proxied.resume_reading()
    assert proxied.is_reading()
    assert proxied.can_write_eof()
    proxied.write_eof()
    assert transport.eof_written
    other = Recorder()
    proxied.set_protocol(other)
    assert proxied.get_protocol() is other is transport.get_protocol()
    assert not proxied.is_closing()
    proxied.close()
    assert proxied.is_closing()
    assert transport.closed
    proxied.abort()
    assert transport.aborted
    assert "203.0.113.7:4242 -> 198.51.100.1:443" in repr(proxied)


def test_client_endpoint_to_server_wrapper_in_memory() -> None:
    made, clock = Made(), Clock()
    wrapper = ProxyProtocolFactory(made, clock=clock)

    class Endpoint:
        """Connects in memory to a server made by ``wrapper``."""

        def connect(self, factory: Callable[[Address], Any]) -> Deferred[Any]:
            client = factory(IPv4Address(*PROXY_HOST))
            server = wrapper(IPv4Address(*PROXY_PEER))
            assert server is not None
            loopback(client, server, client_address=PROXY_PEER, server_address=PROXY_HOST)
            return succeed(client)

    endpoint = ProxyProtocolClientEndpoint(
        Endpoint(), CLIENT, SERVER, version=2, tlvs=[(TLVType.UNIQUE_ID, b"abc")]
    )
    assert endpoint.header.unique_id == b"abc"

    class Greeter(Recorder):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self.transport.write(b"hello")

    client = success_result_of(endpoint.connect(lambda _: Greeter()))
    assert isinstance(client, Greeter)
    server = made.one
    assert server.peer == CLIENT
    assert server.host == SERVER
    assert server.received == b"hello"
    server.transport.write(b"hi")
    assert client.received == b"hi"
    # The client side's transport is the plain one: it knows its real peer.
    assert client.peer == IPv4Address(*PROXY_HOST)
    client.transport.close()
    assert server.events[-2:] == ["eof", "lost"]
    assert client.events[-1] == "lost"


def test_client_endpoint_checks_its_header() -> None:
    with pytest.raises(ValueError, match="version 1"):
        ProxyProtocolClientEndpoint(
            TCPClientEndpoint(MemoryReactor(), "127.0.0.1", 1),
            UNIXAddress("/a"),
            UNIXAddress("/b"),
            version=1,
        )


def test_the_header_sender_passes_replayed_events_on() -> None:
    from torsion.protocols.haproxy._protocol import _HeaderSender

    protocol = Recorder()
    sender = _HeaderSender(b"HEADER", protocol)
    transport = StringTransport()
    sender.connection_made(transport)
    assert transport.value() == b"HEADER"
    assert transport.get_protocol() is protocol
    # What a stand-in that held the connection first would replay to it:
    sender.pause_writing()
    sender.data_received(b"held")
    assert sender.eof_received() is None
    sender.resume_writing()
    sender.connection_lost(None)
    assert protocol.events == ["made", "pause", ("data", b"held"), "eof", "lost"]


# -- over real sockets --------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates() -> Iterator[tuple[ServerTLS, ssl.SSLContext]]:
    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as where:
        both = Path(where) / "localhost.pem"
        ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(both))
        yield server_tls(both), client_context(ca_data=ca.cert_pem.bytes().decode())


class LogWaiter(logging.Handler):
    """Fires when the wrapper logs, so a test waits for the log line itself."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.logged: asyncio.Future[logging.LogRecord] = asyncio.get_running_loop().create_future()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if not self.logged.done():
            self.logged.set_result(record)


@pytest.fixture
def log_waiter() -> Iterator[Callable[[], LogWaiter]]:
    logger = logging.getLogger(LOGGER)
    handlers: list[LogWaiter] = []
    level = logger.level

    def make() -> LogWaiter:
        handler = LogWaiter()
        handlers.append(handler)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        return handler

    yield make
    for handler in handlers:
        logger.removeHandler(handler)
    logger.setLevel(level)


def proxied_pairs(
    reactor: Reactor,
    *,
    version: int,
    tls: tuple[ServerTLS, ssl.SSLContext] | None = None,
    seen: list[Address] | None = None,
) -> PairMaker:
    """Pairs through our client endpoint and server wrapper over real TCP."""

    async def make_pair(
        server_factory: Callable[[], RecordingProtocol],
        client_factory: Callable[[], RecordingProtocol],
    ) -> tuple[RecordingProtocol, RecordingProtocol]:
        accepted: Deferred[RecordingProtocol] = Deferred()

        def on_accept(address: Address) -> RecordingProtocol:
            if seen is not None:
                seen.append(address)
            server = server_factory()
            accepted.callback(server)
            return server

        wrapper = ProxyProtocolFactory(
            on_accept, clock=reactor, tls=None if tls is None else tls[0]
        )
        listener = reactor.listen_tcp(0, wrapper, interface="127.0.0.1")
        try:
            endpoint: Any = ProxyProtocolClientEndpoint(
                TCPClientEndpoint(reactor, "127.0.0.1", listener.port),
                CLIENT,
                SERVER,
                version=version,  # type: ignore[arg-type]
            )
            if tls is not None:
                endpoint = TLSClientEndpoint(endpoint, tls[1], server_hostname="localhost")
            client = await endpoint.connect(lambda _: client_factory())
            server = await accepted
        finally:
            await listener.stop_listening()
        return client, server

    return make_pair


CHECKS = pytest.mark.parametrize("check", transport_checks.values(), ids=transport_checks.keys())


@ON_BOTH_LOOPS
@CHECKS
@pytest.mark.parametrize("version", [1, 2])
async def test_conformance_over_tcp(
    check: Callable[[PairMaker], Any], loop: str, version: int, reactor: Reactor
) -> None:
    seen: list[Address] = []
    await check(proxied_pairs(reactor, version=version, seen=seen))
    assert seen
    assert all(address == CLIENT for address in seen)


@ON_BOTH_LOOPS
@CHECKS
async def test_conformance_over_tls_after_the_header(
    check: Callable[[PairMaker], Any],
    loop: str,
    reactor: Reactor,
    certificates: tuple[ServerTLS, ssl.SSLContext],
) -> None:
    seen: list[Address] = []
    await check(proxied_pairs(reactor, version=2, tls=certificates, seen=seen))
    assert seen
    assert all(address == CLIENT for address in seen)


class Reporter(Protocol):
    """Answers each line with what it knows of the connection; upgrades on STARTTLS."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.context = context
        self.buffer = b""
        self.upgraded: Deferred[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.line_received(line)

    def line_received(self, line: bytes) -> None:
        if line == b"STARTTLS" and self.context is not None:
            self.transport.write(b"GO\n")
            self.upgraded = self.start_tls(self.context, server_side=True)
            return
        tls = self.transport.get_extra_info("ssl_object") is not None
        self.transport.write(f"{self.peer} {self.host} tls={tls}\n".encode())


def wrapped_under(factory: ProxyProtocolFactory) -> Callable[[Address], asyncio.Protocol | None]:
    """Another wrapper (a policy, say) around the PROXY factory's protocols."""

    def wrap(address: Address) -> asyncio.Protocol | None:
        reader = factory(address)
        return None if reader is None else ProtocolWrapper(reader)

    return wrap


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> bytes:
    writer.write(line)
    return await reader.readline()


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    # The server may have reset the connection already.
    with contextlib.suppress(ConnectionResetError):
        await writer.wait_closed()


@ON_BOTH_LOOPS
@pytest.mark.parametrize("under", [False, True], ids=["direct", "under-a-wrapper"])
async def test_tls_after_the_header_in_the_same_segment(
    loop: str,
    under: bool,
    reactor: Reactor,
    certificates: tuple[ServerTLS, ssl.SSLContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A balancer may send its header and the client's ClientHello in one
    # write: the bytes after the header must reach the TLS layer first.
    fed: list[bytes] = []
    feed = _HeaderReceiver._feed_tls

    def spy(
        self: _HeaderReceiver,
        real: asyncio.Transport,
        before: asyncio.BaseProtocol,
        data: bytes,
    ) -> None:
        fed.append(data)
        feed(self, real, before, data)

    monkeypatch.setattr(_HeaderReceiver, "_feed_tls", spy)
    server_side, client_side = certificates
    wrapper = ProxyProtocolFactory(lambda _: Reporter(), clock=reactor, tls=server_side)
    listener = reactor.listen_tcp(
        0, wrapped_under(wrapper) if under else wrapper, interface="127.0.0.1"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_side.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    writer.write(build_v1(CLIENT, SERVER) + hello)  # one write, one segment

    async def pump() -> None:
        writer.write(outgoing.read())
        data = await reader.read(65536)
        assert data, "the server closed the connection"
        incoming.write(data)

    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            await pump()
    tls.write(b"who\n")
    answer = b""
    while not answer.endswith(b"\n"):
        try:
            answer += tls.read(4096)
        except ssl.SSLWantReadError:
            await pump()
    assert answer == b"203.0.113.7:4242 198.51.100.1:443 tls=True\n"
    assert fed == [hello]
    await close(writer)
    await listener.stop_listening()


@ON_BOTH_LOOPS
async def test_tls_after_the_header_with_asyncio_streams(
    loop: str, reactor: Reactor, certificates: tuple[ServerTLS, ssl.SSLContext]
) -> None:
    server_side, client_side = certificates
    wrapper = ProxyProtocolFactory(lambda _: Reporter(), clock=reactor, tls=server_side.context)
    listener = reactor.listen_tcp(0, wrapper, interface="127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(build_v2(IPv6Address("2001:db8::7", 7), IPv6Address("2001:db8::1", 443)))
    await writer.drain()
    await writer.start_tls(client_side, server_hostname="localhost")
    assert await ask(reader, writer, b"who\n") == b"[2001:db8::7]:7 [2001:db8::1]:443 tls=True\n"
    await close(writer)
    await listener.stop_listening()


@ON_BOTH_LOOPS
async def test_a_failed_handshake_after_the_header_is_logged_and_closed(
    loop: str,
    reactor: Reactor,
    certificates: tuple[ServerTLS, ssl.SSLContext],
    log_waiter: Callable[[], LogWaiter],
) -> None:
    made = Made()
    waiter = log_waiter()
    wrapper = ProxyProtocolFactory(made, clock=reactor, tls=certificates[0])
    listener = reactor.listen_tcp(0, wrapper, interface="127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(build_v1(CLIENT, SERVER) + b"this is not TLS\r\n\r\n")
    record = await waiter.logged
    assert record.levelno == logging.INFO
    assert "failed the TLS handshake" in record.getMessage()
    assert record.exc_info is None
    with contextlib.suppress(ConnectionResetError):
        await reader.read()  # up to the end, whatever alert came first
    await close(writer)
    await listener.stop_listening()
    assert made.protocols == []
    assert wrapper.connections == 0
    assert len(waiter.records) == 1


@ON_BOTH_LOOPS
@pytest.mark.parametrize("under", [False, True], ids=["direct", "under-a-wrapper"])
async def test_starttls_keeps_the_clients_address(
    loop: str, under: bool, reactor: Reactor, certificates: tuple[ServerTLS, ssl.SSLContext]
) -> None:
    server_side, client_side = certificates
    reporters: list[Reporter] = []

    def factory(_: Address) -> Reporter:
        reporters.append(Reporter(server_side.context))
        return reporters[-1]

    proxy = ProxyProtocolFactory(factory, clock=reactor)
    listener = reactor.listen_tcp(
        0, wrapped_under(proxy) if under else proxy, interface="127.0.0.1"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    upgrading: asyncio.Future[None] | None = None
    try:
        writer.write(build_v1(CLIENT, SERVER))
        who = b"203.0.113.7:4242 198.51.100.1:443"
        assert await ask(reader, writer, b"who\n") == who + b" tls=False\n"
        assert await ask(reader, writer, b"STARTTLS\n") == b"GO\n"
        [reporter] = reporters
        assert reporter.upgraded is not None
        upgrading = asyncio.ensure_future(
            writer.start_tls(client_side, server_hostname="localhost")
        )
        await reporter.upgraded
        await upgrading
        assert isinstance(reporter.transport, ProxiedTransport)
        assert await ask(reader, writer, b"who\n") == who + b" tls=True\n"
    finally:
        if upgrading is not None and not upgrading.done():
            upgrading.cancel()
            await asyncio.wait([upgrading])
        await close(writer)
        await listener.stop_listening()


@ON_BOTH_LOOPS
async def test_a_silent_client_is_closed_at_the_timeout(
    loop: str, reactor: Reactor, log_waiter: Callable[[], LogWaiter]
) -> None:
    waiter = log_waiter()
    made = Made()
    wrapper = ProxyProtocolFactory(made, clock=reactor, timeout=0.05)
    listener = reactor.listen_tcp(0, wrapper, interface="127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(b"PROXY TCP4 ")
    assert await reader.read() == b""  # closed by the server
    record = await waiter.logged
    assert "no complete PROXY header within 0.05s" in record.getMessage()
    await close(writer)
    await listener.stop_listening()
    assert made.protocols == []


@ON_BOTH_LOOPS
async def test_an_untrusted_peer_is_refused(
    loop: str, reactor: Reactor, log_waiter: Callable[[], LogWaiter]
) -> None:
    waiter = log_waiter()
    made = Made()
    wrapper = ProxyProtocolFactory(made, clock=reactor, trusted=["10.0.0.0/8"])
    listener = reactor.listen_tcp(0, wrapper, interface="127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(build_v1(CLIENT, SERVER) + b"data")
    with contextlib.suppress(ConnectionResetError):
        assert await reader.read() == b""
    record = await waiter.logged
    assert record.levelno == logging.WARNING
    assert "127.0.0.1" in record.getMessage()
    await close(writer)
    await listener.stop_listening()
    assert made.protocols == []


@ON_BOTH_LOOPS
async def test_server_endpoint_over_a_unix_socket(loop: str, reactor: Reactor) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as where:
        path = str(Path(where) / "proxied.sock")
        endpoint = ProxyProtocolServerEndpoint(
            UNIXServerEndpoint(reactor, path), clock=reactor, trusted=["10.0.0.0/8"]
        )
        port = await endpoint.listen(lambda _: Reporter())
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(build_v2(CLIENT, SERVER))
        assert (
            await ask(reader, writer, b"who\n") == b"203.0.113.7:4242 198.51.100.1:443 tls=False\n"
        )
        await close(writer)
        await port.stop_listening()

"""DNS over TLS (RFC 7858): kdig against DNSServer.listen_stream, and pipelining out of order."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import struct
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
import trustme
from _dns_peers import kdig, records

from torsion.defer import Deferred
from torsion.errors import EndpointStringError
from torsion.internet import Reactor
from torsion.names._answer import Answer, NotMineError, Question
from torsion.names._limits import QueryLimits
from torsion.names._server import DNSServer
from torsion.names._zone import Authority

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

HOSTNAME = "dns.example.test"
ZONE = """\
$ORIGIN example.test.
$TTL 3600
@       IN SOA ns1 hostmaster 5 7200 900 1209600 300
        IN NS  ns1
ns1     IN A   192.0.2.53
host    IN A   192.0.2.80
www     IN CNAME host
mail    IN AAAA 2001:db8::25
"""


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The CA's certificate, and the server's certificate and key, as PEM files."""
    directory = tmp_path_factory.mktemp("dot")
    ca = trustme.CA()
    leaf = ca.issue_cert(HOSTNAME)
    ca_pem = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert = directory / "cert.pem"
    key = directory / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return ca_pem, cert, key


def endpoint(certificates: tuple[Path, Path, Path]) -> str:
    _, cert, key = certificates
    return f"tls:0:interface=127.0.0.1:certKey={cert}:privateKey={key}"


async def dot(port: int, ca: Path, *args: str) -> str:
    return await kdig(port, "+tls", f"+tls-ca={ca}", f"+tls-hostname={HOSTNAME}", *args)


@BOTH_LOOPS
async def test_kdig_over_tls(
    reactor: Reactor, loop: str, certificates: tuple[Path, Path, Path]
) -> None:
    server = DNSServer([Authority.from_text(ZONE)], allow_axfr=["127.0.0.1"])
    port = await server.listen_stream(reactor, endpoint(certificates))
    ca = certificates[0]
    try:
        answer = await dot(port.port, ca, "host.example.test.", "A")
        assert "TLS session" in answer  # kdig says it spoke TLS, and checked the name
        assert re.search(r"Flags: qr aa;", answer)
        assert records(answer) == ["host.example.test. 3600 IN A 192.0.2.80"]
        # kdig pads its queries over TLS; the answer is padded too (RFC 8467).
        assert re.search(r"PADDING: \d+ B", answer)
        # Several queries on one connection (kdig keeps it open between them).
        several = await dot(
            port.port,
            ca,
            "+keepopen",
            "www.example.test.",
            "A",
            "mail.example.test.",
            "AAAA",
            "nothing.example.test.",
            "A",
        )
        assert "host.example.test. 3600 IN A 192.0.2.80" in records(several)
        assert "mail.example.test. 3600 IN AAAA 2001:db8::25" in records(several)
        assert "status: NXDOMAIN" in several
        # A zone transfer goes over TLS as over TCP.
        axfr = records(await dot(port.port, ca, "example.test.", "AXFR"))
        assert axfr[0] == axfr[-1]
        assert len(axfr) == 7
    finally:
        await port.stop_listening()


class Held:
    """Answers questions about slow.test. when the test says so."""

    def __init__(self) -> None:
        self.pending: list[Deferred[Answer]] = []
        self.arrived = asyncio.Event()

    def query(self, question: Question) -> Deferred[Answer]:
        if not question.name.is_subdomain(dns.name.from_text("slow.test.")):
            raise NotMineError(str(question))
        d: Deferred[Answer] = Deferred()
        self.pending.append(d)
        self.arrived.set()
        return d


async def read_message(reader: asyncio.StreamReader) -> dns.message.Message:
    (length,) = struct.unpack("!H", await reader.readexactly(2))
    return dns.message.from_wire(await reader.readexactly(length))


def framed(message: dns.message.Message) -> bytes:
    wire = message.to_wire()
    return struct.pack("!H", len(wire)) + wire


@BOTH_LOOPS
async def test_pipelined_queries_are_answered_as_ready_and_idle_connections_closed(
    reactor: Reactor, loop: str, certificates: tuple[Path, Path, Path]
) -> None:
    held = Held()
    server = DNSServer([Authority.from_text(ZONE), held], limits=QueryLimits(idle_timeout=0.5))
    port = await server.listen_stream(reactor, endpoint(certificates))
    context = ssl.create_default_context(cafile=str(certificates[0]))
    writer: Any = None
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port.port, ssl=context, server_hostname=HOSTNAME
        )
        slow = dns.message.make_query("a.slow.test.", "A")
        fast = dns.message.make_query("host.example.test.", "A")
        writer.write(framed(slow) + framed(fast))
        first = await asyncio.wait_for(read_message(reader), 10)
        assert first.id == fast.id  # RFC 7858 section 3.3: out of order
        await asyncio.wait_for(held.arrived.wait(), 10)
        held.pending[0].callback(Answer(dns.rcode.NXDOMAIN))
        second = await asyncio.wait_for(read_message(reader), 10)
        assert second.id == slow.id
        assert second.rcode() == dns.rcode.NXDOMAIN
        # Nothing more in flight: the server closes the connection when idle.
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
        await port.stop_listening()


async def test_a_bad_endpoint_string_fails_at_once(reactor: Reactor) -> None:
    with pytest.raises(EndpointStringError):
        DNSServer([]).listen_stream(reactor, "tls:853")  # no certificate


@BOTH_LOOPS
async def test_a_tls_port_can_share_the_tcp_ports_connection_limits(
    reactor: Reactor, loop: str, certificates: tuple[Path, Path, Path]
) -> None:
    server = DNSServer([Authority.from_text(ZONE)], limits=QueryLimits(max_connections=1))
    ports = server.listen(reactor, 0)
    tls = await server.listen_stream(reactor, endpoint(certificates), factory=ports.stream_factory)
    context = ssl.create_default_context(cafile=str(certificates[0]))
    writers: list[asyncio.StreamWriter] = []
    try:
        plain_reader, plain = await asyncio.open_connection("127.0.0.1", ports.port)
        writers.append(plain)
        plain.write(framed(dns.message.make_query("host.example.test.", "A")))
        # Answered: the server holds this connection.
        assert (await asyncio.wait_for(read_message(plain_reader), 10)).answer
        # The TCP connection holds the one place: the TLS one is closed
        # once its handshake is done, before any query is read.
        reader, secure = await asyncio.open_connection(
            "127.0.0.1", tls.port, ssl=context, server_hostname=HOSTNAME
        )
        writers.append(secure)
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert len(ports.stream_factory.live) == 1
    finally:
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
        await tls.stop_listening()
        await ports.stop_listening()

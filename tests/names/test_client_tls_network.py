"""The DNS over TLS client against real DNS over TLS servers on 127.0.0.1, on both loops.

unbound answers a local zone itself, over TLS only, with a certificate a
test authority (trustme) issued for dns.example.test and 127.0.0.1; so does
torsion's own DNSServer, serving an authoritative zone.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import dns.name
import dns.rcode
import dns.rdatatype
import pytest
import trustme
from _dns_peers import running_unbound_tls

from torsion.defer import gather
from torsion.internet import Reactor
from torsion.names._answer import Question
from torsion.names._client import AddressResolver, DNSClient
from torsion.names._dot import DoTServer
from torsion.names._server import DNSServer
from torsion.names._zone import Authority

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

ZONE = "example.test."
RECORDS = [
    "example.test. 300 IN SOA ns.example.test. admin.example.test. 1 7200 900 1209600 60",
    "example.test. 300 IN MX 10 mail.example.test.",
    "www.example.test. 300 IN A 192.0.2.80",
    "www.example.test. 300 IN AAAA 2001:db8::80",
    *(f"host{i}.example.test. 300 IN A 192.0.2.{i}" for i in range(1, 41)),
]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """The test certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="module")
def certificate(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The server's key and certificate chain files, for dns.example.test and 127.0.0.1."""
    directory = tmp_path_factory.mktemp("tls")
    issued = ca.issue_cert("dns.example.test", "127.0.0.1")
    key, pem = directory / "key.pem", directory / "chain.pem"
    issued.private_key_pem.write_to_path(str(key))
    pem.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    return key, pem


@pytest.fixture(scope="module")
def unbound(
    tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]
) -> Iterator[int]:
    """unbound serving example.test over TLS; yields its port."""
    key, pem = certificate
    directory = tmp_path_factory.mktemp("unbound")
    with running_unbound_tls(directory, ZONE, RECORDS, key=key, pem=pem) as port:
        yield port


@pytest.fixture(scope="module")
def impatient_unbound(
    tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]
) -> Iterator[int]:
    """unbound closing connections idle for 200 ms; yields its port."""
    key, pem = certificate
    directory = tmp_path_factory.mktemp("unbound-impatient")
    with running_unbound_tls(directory, ZONE, RECORDS, key=key, pem=pem, idle_ms=200) as port:
        yield port


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A client context trusting the test authority (host names checked)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def question(name: str, rdtype: str) -> Question:
    return Question(dns.name.from_text(name), dns.rdatatype.from_text(rdtype))


@BOTH_LOOPS
async def test_pipelined_queries_share_one_verified_connection(
    reactor: Reactor, loop: str, unbound: int, ca: trustme.CA
) -> None:
    server = DoTServer("127.0.0.1", unbound, "dns.example.test", trusting(ca))
    client = DNSClient(reactor, tls=[server], timeout=10.0, attempts=1)
    try:
        answers = await gather(
            [client.query(question(f"host{i}.example.test.", "A")) for i in range(1, 41)]
        )
        assert [str(answer.answer[0][0]) for answer in answers] == [
            f"192.0.2.{i}" for i in range(1, 41)
        ]
        mx = await client.lookup_mail_exchange("example.test")
        assert [str(rdata) for rdata in mx.answer[0]] == ["10 mail.example.test."]
        missing = await client.query(question("nowhere.example.test.", "A"))
        assert missing.rcode == dns.rcode.NXDOMAIN
        assert client.channels[0].connections == 1
        assert client.channels[0].connected
    finally:
        await client.close()
    assert not client.channels[0].connected


@BOTH_LOOPS
async def test_without_a_name_the_certificate_must_carry_the_address(
    reactor: Reactor, loop: str, unbound: int, ca: trustme.CA
) -> None:
    client = DNSClient(
        reactor, tls=[DoTServer("127.0.0.1", unbound, context=trusting(ca))], attempts=1
    )
    reactor.install_resolver(AddressResolver(client))
    try:
        assert await reactor.resolve_all("www.example.test") == ["192.0.2.80", "2001:db8::80"]
    finally:
        await client.close()


@BOTH_LOOPS
@pytest.mark.parametrize("name", ["other.example.test", None])
async def test_a_certificate_not_trusted_or_not_naming_the_server_is_refused(
    reactor: Reactor, loop: str, unbound: int, ca: trustme.CA, name: str | None
) -> None:
    # A wrong name with the right authority; or the right name with the
    # system's trust store, which does not know the test authority.
    context = trusting(ca) if name else None
    server = DoTServer("127.0.0.1", unbound, name or "dns.example.test", context)
    client = DNSClient(reactor, tls=[server], timeout=10.0, attempts=1)
    try:
        with pytest.raises(TimeoutError) as caught:
            await client.query(question("www.example.test.", "A"))
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
        assert not client.channels[0].connected
    finally:
        await client.close()


@BOTH_LOOPS
async def test_a_connection_the_server_closed_is_opened_again(
    reactor: Reactor, loop: str, impatient_unbound: int, ca: trustme.CA
) -> None:
    server = DoTServer("127.0.0.1", impatient_unbound, "dns.example.test", trusting(ca))
    client = DNSClient(reactor, tls=[server], timeout=10.0, attempts=1, tls_idle_timeout=60.0)
    channel = client.channels[0]
    closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    lost = channel.lost

    def watched(protocol: object) -> None:
        lost(protocol)  # type: ignore[arg-type]
        if not closed.done():
            closed.set_result(None)

    channel.lost = watched  # type: ignore[method-assign]
    try:
        first = await client.query(question("www.example.test.", "A"))
        assert str(first.answer[0][0]) == "192.0.2.80"
        # unbound closes the idle connection after 200 ms (ours would wait 60 s).
        await asyncio.wait_for(closed, 10)
        assert not channel.connected
        second = await client.query(question("www.example.test.", "AAAA"))
        assert str(second.answer[0][0]) == "2001:db8::80"
        assert channel.connections == 2
    finally:
        await client.close()


OWN_ZONE = """\
$ORIGIN example.test.
$TTL 300
@       IN SOA ns.example.test. admin.example.test. 1 7200 900 1209600 60
        IN NS ns
ns      IN A 192.0.2.53
www     IN A 192.0.2.80
alias   IN CNAME www
""" + "".join(f"host{i} IN A 192.0.2.{i}\n" for i in range(1, 21))


@BOTH_LOOPS
async def test_torsions_own_dns_over_tls_server(
    reactor: Reactor, loop: str, certificate: tuple[Path, Path], ca: trustme.CA
) -> None:
    key, pem = certificate
    server = DNSServer([Authority.from_text(OWN_ZONE)])
    port = await server.listen_stream(
        reactor, f"tls:0:interface=127.0.0.1:certKey={pem}:privateKey={key}"
    )
    dot_server = DoTServer("127.0.0.1", port.port, "dns.example.test", trusting(ca))
    client = DNSClient(reactor, tls=[dot_server], timeout=10.0, attempts=1)
    try:
        answers = await gather(
            [client.query(question(f"host{i}.example.test.", "A")) for i in range(1, 21)]
        )
        assert [str(answer.answer[0][0]) for answer in answers] == [
            f"192.0.2.{i}" for i in range(1, 21)
        ]
        assert all(answer.authoritative for answer in answers)
        alias = await client.query(question("alias.example.test.", "A"))
        assert [rrset.rdtype for rrset in alias.answer] == [
            dns.rdatatype.CNAME,
            dns.rdatatype.A,
        ]
        missing = await client.query(question("nowhere.example.test.", "A"))
        assert missing.rcode == dns.rcode.NXDOMAIN
        assert missing.authority[0].rdtype == dns.rdatatype.SOA
        assert client.channels[0].connections == 1
    finally:
        await client.close()
        await port.stop_listening()

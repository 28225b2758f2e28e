"""The DNS client against real servers on 127.0.0.1, on both loops.

nsd, the authoritative server, serves a small zone from a temporary
directory; the client asks it over UDP, and over TCP when the answer is too
large. Silent and closed ports show the timeouts and the move to the next
server on real sockets.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from _dns_peers import free_port, running_nsd

from torsion.defer import Deferred
from torsion.errors import DNSLookupError
from torsion.internet import IPv4Address, Protocol, Reactor
from torsion.names._answer import Question
from torsion.names._client import AddressResolver, DNSClient
from torsion.names._server import DNSServer
from torsion.names._srv import SRVClientEndpoint
from torsion.names._zone import Authority

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

# More TXT than fits in 1232 bytes, so that the UDP answer is truncated.
BIG_TXT = " ".join(f'"{i:03d}{"x" * 96}"' for i in range(20))

ZONE = """\
$ORIGIN example.test.
$TTL 300
@       IN SOA ns.example.test. admin.example.test. 1 7200 900 1209600 60
        IN NS ns
        IN MX 10 mail
ns      IN A 127.0.0.1
mail    IN A 192.0.2.25
www     IN A 192.0.2.80
        IN AAAA 2001:db8::80
alias   IN CNAME www
big     IN TXT {big_txt}
_sip._udp IN SRV 10 60 5060 sip.example.test.
_echo._tcp IN SRV 10 0 {dead_port} dead.example.test.
           IN SRV 20 0 {echo_port} echo.example.test.
dead    IN A 127.0.0.1
echo    IN A 127.0.0.1
"""


@pytest.fixture(scope="module")
def echo_port() -> int:
    """The port the zone's _echo._tcp SRV record points to (a test listens there)."""
    return free_port()


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory, echo_port: int) -> Iterator[int]:
    """An nsd serving example.test on 127.0.0.1; yields its port."""
    directory = tmp_path_factory.mktemp("nsd")
    zone = ZONE.format(big_txt=BIG_TXT, echo_port=echo_port, dead_port=free_port())
    with running_nsd(directory, "example.test", zone) as port:
        yield port


def _question(name: str, rdtype: str) -> Question:
    return Question(dns.name.from_text(name), dns.rdatatype.from_text(rdtype))


@BOTH_LOOPS
async def test_an_authoritative_answer_over_udp(reactor: Reactor, loop: str, nsd: int) -> None:
    client = DNSClient(reactor, [("127.0.0.1", nsd)], timeout=5.0, attempts=1)
    answer = await client.query(_question("www.example.test.", "A"))
    assert answer.rcode == dns.rcode.NOERROR
    assert answer.authoritative
    assert [str(rdata) for rdata in answer.answer[0]] == ["192.0.2.80"]
    mx = await client.lookup_mail_exchange("example.test")
    assert [str(rdata) for rdata in mx.answer[0]] == ["10 mail.example.test."]
    assert any(rrset.rdtype == dns.rdatatype.A for rrset in mx.additional)
    srv = await client.lookup_service("_sip._udp.example.test")
    assert [str(rdata) for rdata in srv.answer[0]] == ["10 60 5060 sip.example.test."]
    assert client.outstanding == 0


@BOTH_LOOPS
async def test_nxdomain_and_nodata_come_with_the_soa(
    reactor: Reactor, loop: str, nsd: int
) -> None:
    client = DNSClient(reactor, [("127.0.0.1", nsd)], timeout=5.0, attempts=1)
    missing = await client.query(_question("nowhere.example.test.", "A"))
    assert missing.rcode == dns.rcode.NXDOMAIN
    assert missing.authority[0].rdtype == dns.rdatatype.SOA
    nodata = await client.query(_question("mail.example.test.", "AAAA"))
    assert nodata.rcode == dns.rcode.NOERROR
    assert nodata.answer == []
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA


@BOTH_LOOPS
async def test_a_truncated_answer_is_fetched_over_tcp(
    reactor: Reactor, loop: str, nsd: int
) -> None:
    # Check first that the answer does not fit in UDP, so TCP is really used.
    probe = dns.message.make_query("big.example.test.", "TXT", use_edns=0, payload=1232)
    udp_response = dns.query.udp(probe, "127.0.0.1", port=nsd, timeout=5)
    assert udp_response.flags & dns.flags.TC
    client = DNSClient(reactor, [("127.0.0.1", nsd)], timeout=5.0, attempts=1)
    answer = await client.lookup_text("big.example.test")
    assert answer.rcode == dns.rcode.NOERROR
    [txt] = answer.answer
    [record] = txt
    assert len(record.strings) == 20
    assert record.strings[19] == b"019" + b"x" * 96


@BOTH_LOOPS
async def test_the_reactor_resolves_names_through_the_client(
    reactor: Reactor, loop: str, nsd: int
) -> None:
    client = DNSClient(reactor, [("127.0.0.1", nsd)], timeout=5.0, attempts=1)
    reactor.install_resolver(AddressResolver(client))
    assert await reactor.resolve_all("www.example.test") == ["192.0.2.80", "2001:db8::80"]
    assert await reactor.resolve("alias.example.test") == "192.0.2.80"
    with pytest.raises(DNSLookupError):
        await reactor.resolve("nowhere.example.test")


@BOTH_LOOPS
async def test_host_names_go_through_the_search_list(
    reactor: Reactor, loop: str, nsd: int
) -> None:
    # nsd refuses names outside its zone: a failure for that domain, not the end.
    client = DNSClient(
        reactor,
        [("127.0.0.1", nsd)],
        timeout=5.0,
        attempts=1,
        search=["nope.test", "example.test"],
    )
    reactor.install_resolver(AddressResolver(client))
    assert await reactor.resolve_all("www") == ["192.0.2.80", "2001:db8::80"]
    mx = await client.lookup_mail_exchange("example.test")
    assert [str(rdata) for rdata in mx.answer[0]] == ["10 mail.example.test."]
    txt = await client.lookup_text("big")
    assert txt.answer[0].name == dns.name.from_text("big.example.test.")
    # Absolute, it is asked alone: nsd refuses it.
    refused = await client.lookup_text("big.")
    assert refused.rcode == dns.rcode.REFUSED
    with pytest.raises(DNSLookupError):
        await reactor.resolve("nowhere")


@BOTH_LOOPS
async def test_a_closed_port_and_a_silent_server_are_passed_over(
    reactor: Reactor, loop: str, nsd: int
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spare:
            spare.bind(("127.0.0.1", 0))
            closed = spare.getsockname()[1]
        servers = [("127.0.0.1", closed), silent.getsockname(), ("127.0.0.1", nsd)]
        client = DNSClient(reactor, servers, timeout=0.3, attempts=1)
        started = time.monotonic()
        answer = await client.query(_question("www.example.test.", "A"))
        elapsed = time.monotonic() - started
        assert [str(rdata) for rdata in answer.answer[0]] == ["192.0.2.80"]
        # The closed port answered with ICMP at once; only the silent one took its timeout.
        assert 0.3 <= elapsed < 2.0
        assert silent.recv(512)  # it was asked


def _link_local() -> str | None:
    """A link-local IPv6 address of this host, with its scope ("fe80::1%eth0"), if any."""
    try:
        with open("/proc/net/if_inet6") as table:
            lines = table.read().splitlines()
    except OSError:
        return None
    for line in lines:
        hexa, _, _, scope, _, name = line.split()
        if scope == "20":  # IPV6_ADDR_LINKLOCAL
            groups = ":".join(hexa[i : i + 4] for i in range(0, 32, 4))
            return f"{ipaddress.IPv6Address(groups)}%{name}"
    return None


@BOTH_LOOPS
async def test_a_link_local_server_is_asked_through_its_scope(
    reactor: Reactor, loop: str, tmp_path: Path
) -> None:
    address = _link_local()
    if address is None:
        pytest.skip("this host has no link-local IPv6 address")
    # resolv.conf names it with its scope, as for a router's resolver.
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {address}\noptions edns0\n")
    server = DNSServer([Authority.from_text(ZONE.format(big_txt="x", echo_port=1, dead_port=2))])
    ports = server.listen(reactor, 0, interface=address)
    try:
        assert DNSClient(reactor, resolv_conf=str(conf)).servers == ((address, 53),)
        client = DNSClient(reactor, [(address, ports.port)], timeout=5.0, attempts=1)
        answer = await client.query(_question("www.example.test.", "A"))
        assert [str(rdata) for rdata in answer.answer[0]] == ["192.0.2.80"]
    finally:
        await ports.stop_listening()


@BOTH_LOOPS
async def test_no_answer_at_all_is_a_timeout(reactor: Reactor, loop: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        client = DNSClient(reactor, [silent.getsockname()], timeout=0.1, attempts=2)
        with pytest.raises(TimeoutError):
            await client.query(_question("www.example.test.", "A"))
        assert client.outstanding == 0


class _Echo(Protocol):
    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class _Client(Protocol):
    def __init__(self) -> None:
        super().__init__()
        self.received: Deferred[bytes] = Deferred()

    def data_received(self, data: bytes) -> None:
        if not self.received.called:
            self.received.callback(data)


@BOTH_LOOPS
async def test_the_srv_endpoint_finds_the_service_past_a_dead_target(
    reactor: Reactor, loop: str, nsd: int, echo_port: int
) -> None:
    client = DNSClient(reactor, [("127.0.0.1", nsd)], timeout=5.0, attempts=1)
    # The targets' names resolve through DNS too.
    reactor.install_resolver(AddressResolver(client))
    server = reactor.listen_tcp(echo_port, lambda _: _Echo(), interface="127.0.0.1")
    try:
        endpoint = SRVClientEndpoint(reactor, client, "echo", "example.test", timeout=5.0)
        protocol = await endpoint.connect(lambda _: _Client())
        assert protocol.peer == IPv4Address("127.0.0.1", echo_port)
        protocol.transport.write(b"ping")
        assert await protocol.received == b"ping"
        protocol.transport.close()
    finally:
        await server.stop_listening()

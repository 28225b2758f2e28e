"""ForwardingResolver: a server that asks upstream, on fakes and on 127.0.0.1 with dig."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from _dns_peers import dig, records

from torsion.defer import Deferred, fail, succeed
from torsion.internet import DatagramProtocol, Reactor
from torsion.names._answer import Answer, NotMineError, Question
from torsion.names._cache import CacheResolver
from torsion.names._chain import ResolverChain
from torsion.names._client import DNSClient
from torsion.names._forward import ForwardingResolver
from torsion.names._hosts import HostsResolver
from torsion.names._server import DNSServer
from torsion.names._zone import Authority
from torsion.testing import Clock, failure_result_of, success_result_of

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

UPSTREAM = """\
$ORIGIN upstream.test.
$TTL 600
@       IN SOA ns hostmaster 1 7200 900 1209600 120
        IN NS  ns
ns      IN A   192.0.2.53
www     IN A   192.0.2.80
alias   IN CNAME www
"""

LOCAL = """\
$ORIGIN local.test.
$TTL 3600
@       IN SOA ns hostmaster 1 7200 900 1209600 300
        IN NS  ns
ns      IN A   192.0.2.1
"""


def question(name: str, rdtype: str = "A") -> Question:
    return Question(dns.name.from_text(name), dns.rdatatype.from_text(rdtype))


class Counting:
    """Passes questions to ``resolver`` and remembers them."""

    def __init__(self, resolver: Authority) -> None:
        self.resolver = resolver
        self.asked: list[Question] = []

    def query(self, q: Question) -> Deferred[Answer]:
        self.asked.append(q)
        return self.resolver.query(q)


def test_upstream_answers_lose_their_aa_flag() -> None:
    upstream = Authority.from_text(UPSTREAM)
    answer = success_result_of(ForwardingResolver(upstream).query(question("www.upstream.test.")))
    assert not answer.authoritative
    assert [str(rdata) for rdata in answer.answer[0]] == ["192.0.2.80"]
    nx = success_result_of(ForwardingResolver(upstream).query(question("no.upstream.test.")))
    assert nx.rcode == dns.rcode.NXDOMAIN
    assert not nx.authoritative
    assert nx.authority[0].rdtype == dns.rdatatype.SOA


def test_upstream_failures_and_cancellation_pass_through() -> None:
    class Failing:
        def query(self, q: Question) -> Deferred[Answer]:
            return fail(TimeoutError("nobody answered"))

    failure = failure_result_of(ForwardingResolver(Failing()).query(question("a.test.")))
    assert isinstance(failure, TimeoutError)

    cancelled: list[bool] = []

    class Slow:
        def query(self, q: Question) -> Deferred[Answer]:
            return Deferred(lambda _: cancelled.append(True))

    d = ForwardingResolver(Slow()).query(question("a.test."))
    d.cancel()
    assert cancelled == [True]
    failure_result_of(d)


def test_hosts_then_cache_then_upstream(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.7 printer.lan\n")
    upstream = Counting(Authority.from_text(UPSTREAM))
    clock = Clock()
    chain = ResolverChain(
        [HostsResolver(str(hosts)), CacheResolver(clock), ForwardingResolver(upstream)]
    )
    server = DNSServer([Authority.from_text(LOCAL), chain], recursive=True)
    printer = success_result_of(chain.query(question("printer.lan.")))
    assert [str(rdata) for rdata in printer.answer[0]] == ["192.0.2.7"]
    assert upstream.asked == []
    for _ in range(3):
        www = success_result_of(chain.query(question("www.upstream.test.")))
        assert [str(rdata) for rdata in www.answer[0]] == ["192.0.2.80"]
    assert upstream.asked == [question("www.upstream.test.")]
    clock.advance(601)
    success_result_of(chain.query(question("www.upstream.test.")))
    assert len(upstream.asked) == 2
    assert server.recursive


@BOTH_LOOPS
async def test_dig_through_a_forwarding_server_with_a_cache(reactor: Reactor, loop: str) -> None:
    counting = Counting(Authority.from_text(UPSTREAM))
    upstream = DNSServer([counting])
    upstream_ports = upstream.listen(reactor, 0)
    client = DNSClient(reactor, [("127.0.0.1", upstream_ports.port)], timeout=5.0, attempts=1)
    front = DNSServer(
        [
            Authority.from_text(LOCAL),
            ResolverChain([CacheResolver(reactor), ForwardingResolver(client)]),
        ],
        recursive=True,
    )
    front_ports = front.listen(reactor, 0)
    try:
        for transport in ("+notcp", "+tcp"):
            output = await dig(front_ports.port, transport, "alias.upstream.test.", "A")
            assert "status: NOERROR" in output
            # Recursion offered and used; not authoritative for upstream's names.
            assert re.search(r"flags: qr rd ra;", output)
            assert records(output) == [
                "alias.upstream.test. 600 IN CNAME www.upstream.test.",
                "www.upstream.test. 600 IN A 192.0.2.80",
            ]
        # The second dig was answered from the cache: upstream was asked once.
        assert counting.asked == [question("alias.upstream.test.")]
        nx = await dig(front_ports.port, "nothing.upstream.test.", "A")
        assert "status: NXDOMAIN" in nx
        assert records(nx)[0].startswith("upstream.test. 120 IN SOA ")
        await dig(front_ports.port, "nothing.upstream.test.", "A")
        assert len(counting.asked) == 2  # negative answers are cached too
        # The front's own zone stays authoritative, and is not forwarded.
        local = await dig(front_ports.port, "ns.local.test.", "A")
        assert re.search(r"flags: qr aa rd ra;", local)
        assert len(counting.asked) == 2
    finally:
        await front_ports.stop_listening()
        await upstream_ports.stop_listening()
    assert client.outstanding == 0


@BOTH_LOOPS
async def test_a_silent_upstream_is_servfail(reactor: Reactor, loop: str) -> None:
    class Never:
        def query(self, q: Question) -> Deferred[Answer]:
            if q.name.is_subdomain(dns.name.from_text("refused.test.")):
                return fail(NotMineError(str(q)))
            return Deferred()

    upstream = DNSServer([Never()])
    upstream_ports = upstream.listen(reactor, 0)
    client = DNSClient(reactor, [("127.0.0.1", upstream_ports.port)], timeout=0.2, attempts=1)
    front = DNSServer([ForwardingResolver(client)], recursive=True)
    front_ports = front.listen(reactor, 0)
    try:
        silent = await dig(front_ports.port, "silent.test.", "A")
        assert "status: SERVFAIL" in silent
        refused = await dig(front_ports.port, "x.refused.test.", "A")
        # The upstream's own refusal is passed on as it came.
        assert "status: REFUSED" in refused
    finally:
        await front_ports.stop_listening()
        await upstream_ports.stop_listening()
    assert client.outstanding == 0


def test_answers_keep_their_records() -> None:
    rrset = dns.rrset.from_text("a.test.", 60, "IN", "A", "192.0.2.1")

    class Upstream:
        def query(self, q: Question) -> Deferred[Answer]:
            return succeed(Answer(answer=[rrset], authoritative=True))

    answer = success_result_of(ForwardingResolver(Upstream()).query(question("a.test.")))
    assert answer.answer == [rrset]
    assert answer.rcode == dns.rcode.NOERROR
    assert not answer.authoritative


@BOTH_LOOPS
async def test_upstream_is_asked_with_rd_set(reactor: Reactor, loop: str) -> None:
    flags: list[int] = []

    class Upstream(DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            query = dns.message.from_wire(data)
            flags.append(query.flags)
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA | dns.flags.RA
            response.answer = [
                dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "192.0.2.9")
            ]
            self.transport.sendto(response.to_wire(), addr)

    port = reactor.listen_udp(0, Upstream(), interface="127.0.0.1")
    client = DNSClient(reactor, [("127.0.0.1", port.port)], timeout=5.0, attempts=1)
    front = DNSServer([ForwardingResolver(client)], recursive=True)
    front_ports = front.listen(reactor, 0)
    try:
        output = await dig(front_ports.port, "+norec", "a.example.", "A")
        assert re.search(r"flags: qr ra;", output)  # no AA from a forwarder
        assert records(output) == ["a.example. 60 IN A 192.0.2.9"]
        assert len(flags) == 1
        assert flags[0] & dns.flags.RD
    finally:
        await front_ports.stop_listening()
        await port.stop_listening()

"""DNSServer's fast path: the full path's answers byte for byte, forgotten when zones change."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.defer import Deferred
from torsion.internet import Reactor
from torsion.names._answer import Answer, NotMineError, Question
from torsion.names._server import DNSDatagramProtocol, DNSServer, DNSStreamProtocol
from torsion.names._zone import Authority
from torsion.testing import Clock, StringTransport, require_peer, success_result_of

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

ZONE = """\
$ORIGIN example.test.
$TTL 3600
@         IN SOA   ns1 hostmaster 7 7200 900 1209600 300
          IN NS    ns1
          IN NS    ns2
          IN MX    10 mail
          IN TXT   "v=spf1 -all"
          IN CAA   0 issue "ca.example.net"
ns1       IN A     192.0.2.53
ns2       IN AAAA  2001:db8::53
mail      IN A     192.0.2.25
          IN AAAA  2001:db8::25
www       IN CNAME web
web       IN CNAME host
host      IN A     192.0.2.80
          IN AAAA  2001:db8::80
          IN HINFO "PC" "Linux"
          IN SSHFP 1 1 0123456789abcdef0123456789abcdef01234567
txt       IN TXT   "hello world" "and more"
_sip._tcp IN SRV   0 5 5060 host
1.2.0.192 IN PTR   host
*.wild    IN A     192.0.2.99
          IN MX    5 mail
sub       IN NS    ns.sub
ns.sub    IN A     192.0.2.200
out       IN CNAME elsewhere.example.net.
"""
ZONE += "".join(f"many IN A 198.51.100.{n}\n" for n in range(1, 80))
ZONE += "".join(f'txts IN TXT "{n:03d} {"y" * 120}"\n' for n in range(30))

NAMES = [
    "example.test.",
    "ns1.example.test.",
    "mail.example.test.",
    "www.example.test.",
    "host.example.test.",
    "txt.example.test.",
    "_sip._tcp.example.test.",
    "1.2.0.192.example.test.",
    "anything.wild.example.test.",
    "deep.below.sub.example.test.",
    "out.example.test.",
    "many.example.test.",
    "txts.example.test.",
    "nonexistent.example.test.",
]
TYPES = ["A", "AAAA", "MX", "TXT", "NS", "SOA", "CNAME", "SRV", "PTR", "CAA", "SSHFP", "ANY"]
# (use_edns, payload): none, and sizes below, at and above the server's 1232.
EDNS = [(False, 0), (0, 512), (0, 1000), (0, 1232), (0, 4096)]


def mixed_case(name: str, seed: int) -> str:
    return "".join(c.upper() if (i * 7 + seed) % 3 == 0 else c.lower() for i, c in enumerate(name))


def query_wire(
    name: str,
    rdtype: str,
    edns: tuple[bool | int, int],
    *,
    rd: bool = True,
    message_id: int = 0x1234,
    want_dnssec: bool = False,
) -> bytes:
    use_edns, payload = edns
    message = dns.message.make_query(
        name, rdtype, use_edns=use_edns, payload=payload, want_dnssec=want_dnssec
    )
    message.id = message_id
    if not rd:
        message.flags &= ~dns.flags.RD
    return message.to_wire()


def assert_same_response(fast: bytes, expected: bytes) -> bool:
    """Byte for byte, but for the order of the records within each RRset.

    dnspython shuffles the records of an RRset each time it renders one, so
    two renderings of the same answer differ in that order alone; the fast
    path keeps the order of its one rendering. Returns whether the bytes
    were compared whole (every RRset of one record).
    """
    assert len(fast) == len(expected)
    ours, theirs = dns.message.from_wire(fast), dns.message.from_wire(expected)
    assert ours == theirs
    assert (ours.edns, ours.payload, ours.ednsflags) == (
        theirs.edns,
        theirs.payload,
        theirs.ednsflags,
    )
    if all(len(rrset) == 1 for section in ours.sections[1:] for rrset in section):
        assert fast == expected
        return True
    assert fast[:12] == expected[:12]  # the header, ID and counts included
    return False


def full(server: DNSServer, wire: bytes, *, tcp: bool = False) -> bytes:
    (response,) = success_result_of(server.respond(wire, "192.0.2.9", tcp=tcp))
    return response


@pytest.fixture(scope="module")
def full_server() -> DNSServer:
    return DNSServer([Authority.from_text(ZONE)], answer_cache=0)


@pytest.fixture(scope="module")
def fast_server() -> DNSServer:
    server = DNSServer([Authority.from_text(ZONE)])
    # Every question asked once, lower case, another ID and RD: the cache fills.
    for name, rdtype, edns, tcp in itertools.product(NAMES, TYPES, EDNS, (False, True)):
        full(server, query_wire(name, rdtype, edns, rd=False, message_id=1), tcp=tcp)
    return server


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("edns", EDNS, ids=["no-edns", "512", "1000", "1232", "4096"])
def test_fast_answers_equal_the_full_paths_byte_for_byte(
    full_server: DNSServer, fast_server: DNSServer, edns: tuple[bool | int, int], tcp: bool
) -> None:
    seen_rcodes = set()
    truncated = exact = 0
    for seed, (name, rdtype) in enumerate(itertools.product(NAMES, TYPES)):
        wire = query_wire(mixed_case(name, seed), rdtype, edns, message_id=seed)
        fast = fast_server.cached_response(wire, tcp=tcp)
        assert fast is not None, (name, rdtype)
        expected = full(full_server, wire, tcp=tcp)
        exact += assert_same_response(fast, expected)
        response = dns.message.from_wire(fast)
        seen_rcodes.add(response.rcode())
        truncated += bool(response.flags & dns.flags.TC)
    # The zone's answers, NXDOMAIN and NODATA, referrals, and (over UDP)
    # truncation: all of them were compared.
    assert seen_rcodes == {dns.rcode.NOERROR, dns.rcode.NXDOMAIN}
    assert (truncated > 0) == (not tcp)
    assert exact > len(NAMES) * len(TYPES) // 2


def test_the_case_of_the_question_is_echoed_in_the_answer_names(fast_server: DNSServer) -> None:
    wire = query_wire("WwW.ExAmPlE.TeSt.", "A", (False, 0))
    fast = fast_server.cached_response(wire, tcp=False)
    assert fast is not None
    response = dns.message.from_wire(fast)
    assert response.question[0].name.to_text() == "WwW.ExAmPlE.TeSt."
    assert response.answer[0].name.to_text() == "WwW.ExAmPlE.TeSt."
    assert [str(r[0]) for r in response.answer][-1] == "192.0.2.80"


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    rdtype=st.sampled_from(TYPES),
    edns=st.sampled_from(EDNS),
    tcp=st.booleans(),
    rd=st.booleans(),
    do=st.booleans(),
    message_id=st.integers(0, 0xFFFF),
    cases=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_any_query_gets_the_same_answer_both_ways(
    full_server: DNSServer,
    fast_server: DNSServer,
    name: str,
    rdtype: str,
    edns: tuple[bool | int, int],
    tcp: bool,
    rd: bool,
    do: bool,
    message_id: int,
    cases: list[bool],
) -> None:
    cased = "".join(c.upper() if up else c for c, up in zip(name, cases, strict=False))
    cased += name[len(cases) :]
    wire = query_wire(
        cased, rdtype, edns, rd=rd, message_id=message_id, want_dnssec=do and edns[0] is not False
    )
    expected = full(full_server, wire, tcp=tcp)
    fast = fast_server.cached_response(wire, tcp=tcp)
    if fast is None:
        # Not seen yet (the DO flag is part of the key): the full path
        # answers, and the next time the fast one does, alike.
        assert_same_response(full(fast_server, wire, tcp=tcp), expected)
        fast = fast_server.cached_response(wire, tcp=tcp)
        assert fast is not None
    assert_same_response(fast, expected)


@settings(max_examples=500, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    rdtype=st.sampled_from(TYPES),
    edns=st.sampled_from(EDNS),
    tcp=st.booleans(),
    position=st.integers(0, 200),
    value=st.integers(0, 255),
    damage=st.sampled_from(["byte", "cut", "extend"]),
)
def test_damaged_queries_never_raise_and_any_fast_answer_is_the_full_ones(
    full_server: DNSServer,
    fast_server: DNSServer,
    name: str,
    rdtype: str,
    edns: tuple[bool | int, int],
    tcp: bool,
    position: int,
    value: int,
    damage: str,
) -> None:
    wire = query_wire(name, rdtype, edns)
    position %= len(wire)
    if damage == "byte":
        wire = wire[:position] + bytes((value,)) + wire[position + 1 :]
    elif damage == "cut":
        wire = wire[:position]
    else:
        wire += bytes((value,))
    fast = fast_server.cached_response(wire, tcp=tcp)
    responses = success_result_of(full_server.respond(wire, "192.0.2.9", tcp=tcp))
    if fast is not None:
        # Still a query of the plain shape (a changed ID, case, RD, type...):
        # the full path answers it alike.
        assert len(responses) == 1
        assert_same_response(fast, responses[0])


def test_respond_takes_the_fast_path_too() -> None:
    server = DNSServer([Authority.from_text(ZONE)])
    wire = query_wire("host.example.test.", "A", (0, 1232))
    d = server.respond(wire, "192.0.2.9", tcp=False)
    assert isinstance(d, Deferred)
    first = success_result_of(d)
    assert server.cached_response(wire, tcp=False) == first[0]
    assert success_result_of(server.respond(wire, "192.0.2.9", tcp=False)) == first


def test_errors_and_others_answers_are_not_cached() -> None:
    class Fixed:
        def query(self, question: Question) -> Deferred[Answer]:
            d: Deferred[Answer] = Deferred()
            d.callback(Answer(authoritative=False))
            return d

    server = DNSServer([Authority.from_text(ZONE), Fixed()])
    forwarded = query_wire("www.example.net.", "A", (0, 1232))
    full(server, forwarded)
    assert server.cached_response(forwarded, tcp=False) is None  # not a zone's answer
    refused = DNSServer([Authority.from_text(ZONE)])
    outside = query_wire("www.example.net.", "A", (False, 0))
    assert dns.message.from_wire(full(refused, outside)).rcode() == dns.rcode.REFUSED
    assert refused.cached_response(outside, tcp=False) is None
    badvers = dns.message.make_query("host.example.test.", "A", use_edns=1)
    full(refused, badvers.to_wire())
    assert refused.cached_response(badvers.to_wire(), tcp=False) is None
    transfer = query_wire("example.test.", "AXFR", (False, 0))
    full(refused, transfer, tcp=True)
    assert refused.cached_response(transfer, tcp=True) is None


ZONE_FILE = """\
$ORIGIN example.test.
$TTL 60
@    IN SOA ns1 hostmaster {serial} 7200 900 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.53
host IN A   {address}
"""


def address_in(wire: bytes) -> str:
    return str(dns.message.from_wire(wire).answer[0][0])


def test_a_reloaded_zone_is_answered_anew(tmp_path: Path) -> None:
    path = tmp_path / "example.test.zone"
    path.write_text(ZONE_FILE.format(serial=1, address="192.0.2.1"))
    authority = Authority.from_file(path)
    server = DNSServer([authority])
    wire = query_wire("host.example.test.", "A", (False, 0))
    full(server, wire)
    cached = server.cached_response(wire, tcp=False)
    assert cached is not None
    assert address_in(cached) == "192.0.2.1"
    path.write_text(ZONE_FILE.format(serial=2, address="192.0.2.2"))
    authority.reload()
    assert server.cached_response(wire, tcp=False) is None
    assert address_in(full(server, wire)) == "192.0.2.2"
    cached = server.cached_response(wire, tcp=False)
    assert cached is not None
    assert address_in(cached) == "192.0.2.2"


def test_zones_changed_and_a_changed_chain_forget_the_answers() -> None:
    server = DNSServer([Authority.from_text(ZONE)])
    wire = query_wire("host.example.test.", "A", (False, 0))
    full(server, wire)
    server.zones_changed()
    assert server.cached_response(wire, tcp=False) is None
    full(server, wire)
    server.resolvers.insert(0, Authority.from_text(ZONE.replace("192.0.2.80", "192.0.2.81")))
    assert server.cached_response(wire, tcp=False) is None
    assert address_in(full(server, wire)) == "192.0.2.81"
    assert server.cached_response(wire, tcp=False) is not None
    server.recursive = True
    assert server.cached_response(wire, tcp=False) is None
    assert dns.message.from_wire(full(server, wire)).flags & dns.flags.RA


class Slow:
    """A resolver ahead of the zone that says "not mine" when told to."""

    def __init__(self) -> None:
        self.pending: list[Deferred[Answer]] = []

    def query(self, question: Question) -> Deferred[Answer]:
        d: Deferred[Answer] = Deferred()
        self.pending.append(d)
        return d


def test_an_answer_made_across_a_change_is_not_kept() -> None:
    slow = Slow()
    server = DNSServer([slow, Authority.from_text(ZONE)])
    wire = query_wire("host.example.test.", "A", (False, 0))
    for change in (True, False):
        d = server.respond(wire, "192.0.2.9", tcp=False)
        if change:
            server.zones_changed()  # while the answer is being made
        slow.pending[-1].errback(NotMineError("no"))  # the zone answers
        assert success_result_of(d)
        # Kept only when nothing changed while it was made.
        assert (server.cached_response(wire, tcp=False) is None) == change


class FakeUDPTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def test_udp_fast_answers_take_no_slot_and_respect_a_full_buffer() -> None:
    server = DNSServer([Authority.from_text(ZONE)])
    protocol = DNSDatagramProtocol(server, max_in_flight=1)
    transport = FakeUDPTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    wire = query_wire("host.example.test.", "A", (0, 1232))
    protocol.datagram_received(wire, ("192.0.2.9", 1000))
    assert server.cached_response(wire, tcp=False) is not None
    for port in range(1001, 1011):
        protocol.datagram_received(wire, ("192.0.2.9", port))
    assert len(transport.sent) == 11
    assert {data for data, _ in transport.sent} == {transport.sent[0][0]}
    protocol.datagram_received(wire, ("192.0.2.9", 0))
    protocol.pause_writing()
    protocol.datagram_received(wire, ("192.0.2.9", 1011))
    assert len(transport.sent) == 11
    protocol.resume_writing()
    protocol.datagram_received(wire, ("192.0.2.9", 1012))
    assert transport.sent[-1][1] == ("192.0.2.9", 1012)


def test_tcp_fast_answers_and_the_idle_timer() -> None:
    server = DNSServer([Authority.from_text(ZONE)])
    clock = Clock()
    protocol = DNSStreamProtocol(server, clock, idle_timeout=5.0)
    transport = StringTransport(protocol)
    protocol.connection_made(transport)
    wire = query_wire("mail.example.test.", "MX", (False, 0))
    framed = len(wire).to_bytes(2, "big") + wire
    protocol.data_received(framed)
    assert server.cached_response(wire, tcp=True) is not None
    clock.advance(4.0)
    protocol.data_received(framed)  # the fast path: the timer starts again
    clock.advance(4.0)
    assert not transport.closed
    data = transport.value()
    first_length = int.from_bytes(data[:2], "big")
    assert data[2 : 2 + first_length] == data[4 + first_length :]
    clock.advance(1.5)
    assert transport.closed


@BOTH_LOOPS
async def test_dig_gets_the_same_answer_from_either_path(reactor: Reactor, loop: str) -> None:
    program = require_peer("dig", package="bind9-dnsutils")
    server = DNSServer([Authority.from_text(ZONE)])
    ports = server.listen(reactor, 0)
    try:
        outputs = []
        for name in ("example.test.", "Example.TEST."):
            for options in (["+noedns"], ["+edns=0", "+nocookie"], ["+tcp"]):
                process = await asyncio.create_subprocess_exec(
                    program,
                    "@127.0.0.1",
                    "-p",
                    str(ports.port),
                    "+norec",
                    "+tries=1",
                    "+time=5",
                    "+short",
                    *options,
                    name,
                    "MX",
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
                assert process.returncode == 0, stderr
                outputs.append(stdout.decode().split())
        # Names compress against the question, so the target takes its case
        # from it, on the full path as on the fast one.
        assert outputs == [["10", "mail.example.test."]] * 3 + [["10", "mail.Example.TEST."]] * 3
        assert len(server._cache) == 3  # the second name came from the cache
    finally:
        await ports.stop_listening()

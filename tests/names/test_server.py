"""DNSServer on fakes: response semantics, truncation, hostile input, TCP framing and limits."""

from __future__ import annotations

import asyncio
import os
import random
import struct
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from torsion.defer import Deferred
from torsion.internet import IPv4Address
from torsion.names._answer import Answer, NotMineError, Question
from torsion.names._server import DNSDatagramProtocol, DNSServer, DNSStreamProtocol
from torsion.names._zone import Authority
from torsion.testing import Clock, StringTransport, success_result_of

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
@       IN SOA ns1 hostmaster 1 7200 900 1209600 300
        IN NS  ns1
ns1     IN A   192.0.2.53
host    IN A   192.0.2.80
www     IN CNAME host
big     IN TXT "{big}"
many    IN A 192.0.2.1
many    IN A 192.0.2.2
""".format(big="x" * 200)

ZONE += "".join(f"many IN A 198.51.100.{n}\n" for n in range(1, 60))
ZONE += "".join(f'txts IN TXT "{n:03d} {"y" * 120}"\n' for n in range(30))


def make_server(**kwargs: Any) -> DNSServer:
    return DNSServer([Authority.from_text(ZONE)], **kwargs)


def query(
    name: str, rdtype: str = "A", *, use_edns: int | bool = False, payload: int = 1232
) -> dns.message.QueryMessage:
    message = dns.message.make_query(name, rdtype, use_edns=use_edns, payload=payload)
    return message


def respond(
    server: DNSServer, wire: bytes, *, tcp: bool = False, client: str = "192.0.2.9"
) -> list[bytes]:
    return success_result_of(server.respond(wire, client, tcp=tcp))


def ask(server: DNSServer, message: dns.message.Message, **kwargs: Any) -> dns.message.Message:
    (wire,) = respond(server, message.to_wire(), **kwargs)
    return dns.message.from_wire(wire)


def test_answer_echoes_id_question_and_rd() -> None:
    server = make_server()
    message = query("host.example.test.")
    message.flags &= ~dns.flags.RD
    response = ask(server, message)
    assert response.id == message.id
    assert response.question == message.question
    assert response.flags & dns.flags.QR
    assert not response.flags & dns.flags.RD
    assert response.flags & dns.flags.AA
    assert not response.flags & dns.flags.RA
    assert response.answer[0].to_text() == "host.example.test. 3600 IN A 192.0.2.80"
    with_rd = ask(server, query("host.example.test."))
    assert with_rd.flags & dns.flags.RD


def test_negative_answers_have_aa_and_soa() -> None:
    server = make_server()
    nxdomain = ask(server, query("nothing.example.test."))
    assert nxdomain.rcode() == dns.rcode.NXDOMAIN
    assert nxdomain.flags & dns.flags.AA
    assert nxdomain.authority[0].rdtype == dns.rdatatype.SOA
    nodata = ask(server, query("host.example.test.", "AAAA"))
    assert nodata.rcode() == dns.rcode.NOERROR
    assert nodata.flags & dns.flags.AA
    assert nodata.answer == []
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA


def test_names_no_resolver_claims_are_refused() -> None:
    response = ask(make_server(), query("example.org."))
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA


def test_recursive_server_sets_ra_and_servfails_unclaimed() -> None:
    response = ask(make_server(recursive=True), query("example.org."))
    assert response.flags & dns.flags.RA
    assert response.rcode() == dns.rcode.SERVFAIL


class Failing:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def query(self, question: Question) -> Deferred[Answer]:
        d: Deferred[Answer] = Deferred()
        d.errback(self.error)
        return d


class Fixed:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.asked: list[Question] = []

    def query(self, question: Question) -> Deferred[Answer]:
        self.asked.append(question)
        d: Deferred[Answer] = Deferred()
        d.callback(self.answer)
        return d


def test_chain_asks_the_next_resolver_when_not_mine() -> None:
    fixed = Fixed(
        Answer(dns.rcode.NOERROR, [dns.rrset.from_text("a.test.", 5, "IN", "A", "192.0.2.5")])
    )
    server = DNSServer([Failing(NotMineError("no")), fixed])
    response = ask(server, query("a.test."))
    assert response.answer[0].to_text() == "a.test. 5 IN A 192.0.2.5"
    assert fixed.asked == [Question(dns.name.from_text("a.test."), dns.rdatatype.A)]


def test_resolver_failure_is_servfail(caplog: pytest.LogCaptureFixture) -> None:
    assert (
        ask(DNSServer([Failing(TimeoutError())]), query("a.test.")).rcode() == dns.rcode.SERVFAIL
    )
    # A resolver's own bug is logged with its traceback, and still answered.
    response = ask(DNSServer([Failing(RuntimeError("bug"))]), query("a.test."))
    assert response.rcode() == dns.rcode.SERVFAIL
    assert "RuntimeError: bug" in caplog.text


def test_udp_without_edns_is_cut_to_512_with_tc() -> None:
    response_wire = respond(make_server(), query("many.example.test.").to_wire())[0]
    assert len(response_wire) <= 512
    response = dns.message.from_wire(response_wire)
    assert response.flags & dns.flags.TC
    # Whole RRsets only: the one big RRset did not fit, so none is sent.
    assert response.answer == []


def test_udp_cut_keeps_the_rrsets_that_fit() -> None:
    response_wire = respond(make_server(), query("txts.example.test.", "TXT").to_wire())[0]
    response = dns.message.from_wire(response_wire)
    assert response.flags & dns.flags.TC
    assert len(response_wire) <= 512


def test_udp_with_edns_uses_the_client_payload_size() -> None:
    server = make_server()
    wire = respond(server, query("many.example.test.", use_edns=0, payload=4096).to_wire())[0]
    response = dns.message.from_wire(wire)
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == 61
    assert response.edns == 0
    assert response.payload == 1232
    small = respond(server, query("many.example.test.", use_edns=0, payload=600).to_wire())[0]
    assert len(small) <= 600
    assert dns.message.from_wire(small).flags & dns.flags.TC
    # Below 512 counts as 512 (RFC 6891 section 6.2.5).
    tiny = respond(server, query("host.example.test.", use_edns=0, payload=100).to_wire())[0]
    assert dns.message.from_wire(tiny).answer


def test_additional_is_dropped_first_without_tc() -> None:
    zone = ZONE + "".join(f"mx IN MX {n} m{n}\nm{n} IN AAAA 2001:db8::{n}\n" for n in range(12))
    server = DNSServer([Authority.from_text(zone)])
    full = ask(server, query("mx.example.test.", "MX"), tcp=True)
    assert len(full.additional) == 12
    response = ask(server, query("mx.example.test.", "MX"))
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == 12
    assert response.additional == []


def test_tcp_is_not_cut() -> None:
    response = ask(make_server(), query("txts.example.test.", "TXT"), tcp=True)
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == 30


def test_garbage_is_dropped_or_formerr() -> None:
    server = make_server()
    assert respond(server, b"") == []
    assert respond(server, b"\x12\x34\x01") == []
    (wire,) = respond(server, b"\x12\x34\x01\x00" + b"\xff" * 20)
    assert wire[:2] == b"\x12\x34"
    assert wire[3] & 0x0F == dns.rcode.FORMERR
    assert wire[2] & 0x80  # QR
    assert wire[2] & 0x01  # RD echoed


def test_responses_are_never_answered() -> None:
    server = make_server()
    response = ask(server, query("host.example.test."))
    assert respond(server, response.to_wire()) == []


def test_other_opcodes_are_notimp() -> None:
    message = query("host.example.test.")
    message.set_opcode(dns.opcode.UPDATE)
    (wire,) = respond(make_server(), message.to_wire())
    assert wire[3] & 0x0F == dns.rcode.NOTIMP
    assert (wire[2] >> 3) & 0x0F == dns.opcode.UPDATE
    assert wire[:2] == message.id.to_bytes(2, "big")


def header(qdcount: int = 1) -> bytes:
    return struct.pack("!HHHHHH", 0xBEEF, 0x0100, qdcount, 0, 0, 0)


@pytest.mark.parametrize(
    "wire",
    [
        # A compression pointer to itself.
        header() + b"\xc0\x0c\x00\x01\x00\x01",
        # A pointer forward, past the end.
        header() + b"\xc0\xff\x00\x01\x00\x01",
        # A 64-octet label (labels are at most 63).
        header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",
        # A name over 255 octets.
        header() + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01",
        # A label type that does not exist.
        header() + b"\x80abc\x00\x00\x01\x00\x01",
        # The question cut short.
        header() + b"\x04host",
        # Two questions announced, one sent.
        header(2) + b"\x00\x00\x01\x00\x01",
        # No question.
        header(0),
        # Records announced that are not there.
        struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 5, 5, 5) + b"\x00\x00\x01\x00\x01",
        # Trailing junk.
        header() + b"\x00\x00\x01\x00\x01" + b"junk",
    ],
)
def test_malformed_queries_get_formerr(wire: bytes) -> None:
    (response,) = respond(make_server(), wire)
    assert response[:2] == b"\xbe\xef"
    assert response[3] & 0x0F == dns.rcode.FORMERR


def test_two_questions_are_formerr() -> None:
    message = query("host.example.test.")
    message.question.append(query("www.example.test.").question[0])
    (response,) = respond(make_server(), message.to_wire())
    assert response[3] & 0x0F == dns.rcode.FORMERR


def test_random_garbage_never_raises() -> None:
    server = make_server()
    rng = random.Random(8)
    valid = query("host.example.test.", use_edns=0).to_wire()
    for _ in range(3000):
        if rng.random() < 0.5:
            wire = bytes(rng.getrandbits(8) for _ in range(rng.randrange(64)))
        else:
            mutated = bytearray(valid)
            for _ in range(rng.randrange(1, 6)):
                mutated[rng.randrange(len(mutated))] = rng.getrandbits(8)
            wire = bytes(mutated[: rng.randrange(len(mutated) + 1)])
        d = server.respond(wire, "192.0.2.9", tcp=bool(rng.getrandbits(1)))
        for message in success_result_of(d):
            assert len(message) <= 65535


def test_edns_version_other_than_0_is_badvers() -> None:
    response = ask(make_server(), query("host.example.test.", use_edns=1))
    assert response.rcode() == dns.rcode.BADVERS


def test_axfr_over_udp_is_formerr() -> None:
    server = make_server(allow_axfr=["0.0.0.0/0"])
    assert ask(server, query("example.test.", "AXFR")).rcode() == dns.rcode.FORMERR


def axfr(
    server: DNSServer, client: str, origin: str = "example.test."
) -> list[dns.message.Message]:
    wires = respond(server, query(origin, "AXFR").to_wire(), tcp=True, client=client)
    # One RR per RRset: else the closing SOA merges into the opening one.
    return [dns.message.from_wire(wire, one_rr_per_rrset=True) for wire in wires]


def test_axfr_to_allowed_networks_only() -> None:
    server = make_server(allow_axfr=["192.0.2.0/24", "::1"])
    (refused,) = axfr(server, "198.51.100.1")
    assert refused.rcode() == dns.rcode.REFUSED
    assert refused.answer == []
    (allowed,) = axfr(server, "192.0.2.9")
    assert allowed.rcode() == dns.rcode.NOERROR
    assert allowed.flags & dns.flags.AA
    assert allowed.answer[0].rdtype == dns.rdatatype.SOA
    assert allowed.answer[-1].rdtype == dns.rdatatype.SOA
    assert axfr(server, "::1")[0].rcode() == dns.rcode.NOERROR
    assert axfr(server, "::ffff:192.0.2.10")[0].rcode() == dns.rcode.NOERROR
    # Only the zones served, by their apex.
    assert axfr(server, "192.0.2.9", "host.example.test.")[0].rcode() == dns.rcode.REFUSED
    assert axfr(make_server(), "127.0.0.1")[0].rcode() == dns.rcode.REFUSED


def test_large_axfr_is_split_into_messages() -> None:
    zone = ZONE + "".join(f'h{n} IN TXT "{"z" * 200}"\n' for n in range(1000))
    server = DNSServer([Authority.from_text(zone)], allow_axfr=["0.0.0.0/0"])
    messages = axfr(server, "192.0.2.9")
    assert len(messages) > 1
    rrsets = [rrset for message in messages for rrset in message.answer]
    assert rrsets[0].rdtype == rrsets[-1].rdtype == dns.rdatatype.SOA
    assert sum(1 for rrset in rrsets if rrset.name.labels[0][1:].isdigit()) == 1000


def test_server_rejects_a_bad_payload_size() -> None:
    with pytest.raises(ValueError, match="udp_payload"):
        DNSServer([], udp_payload=100)


class FakeUDPTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []
        self.closing = False

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class Slow:
    """A resolver whose answers the test gives."""

    def __init__(self) -> None:
        self.pending: list[Deferred[Answer]] = []
        self.arrived = asyncio.Event()

    def query(self, question: Question) -> Deferred[Answer]:
        d: Deferred[Answer] = Deferred()
        self.pending.append(d)
        self.arrived.set()
        return d


def test_udp_protocol_answers_each_datagram_and_bounds_work() -> None:
    slow = Slow()
    protocol = DNSDatagramProtocol(DNSServer([slow]), max_in_flight=2)
    transport = FakeUDPTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    wire = query("a.test.").to_wire()
    for port in (1000, 1001, 1002):
        protocol.datagram_received(wire, ("192.0.2.9", port))
    protocol.datagram_received(wire, ("192.0.2.9", 0))
    assert len(slow.pending) == 2  # the third is dropped: two in flight at most
    slow.pending[1].callback(Answer())
    slow.pending[0].callback(Answer())
    assert [addr for _, addr in transport.sent] == [("192.0.2.9", 1001), ("192.0.2.9", 1000)]
    protocol.datagram_received(wire, ("192.0.2.9", 1003))
    assert len(slow.pending) == 3
    protocol.connection_lost(None)
    assert slow.pending[2].called  # cancelled with the port
    assert len(transport.sent) == 2


def connect_stream(
    server: DNSServer, clock: Clock, **kwargs: Any
) -> tuple[DNSStreamProtocol, StringTransport]:
    protocol = DNSStreamProtocol(server, clock, **kwargs)
    transport = StringTransport(protocol)
    protocol.connection_made(transport)
    return protocol, transport


def framed(message: dns.message.Message) -> bytes:
    wire = message.to_wire()
    return len(wire).to_bytes(2, "big") + wire


def unframe(data: bytes) -> list[dns.message.Message]:
    messages = []
    while data:
        length = int.from_bytes(data[:2], "big")
        messages.append(dns.message.from_wire(data[2 : 2 + length]))
        data = data[2 + length :]
    return messages


def test_tcp_several_queries_per_connection_and_split_prefixes() -> None:
    clock = Clock()
    protocol, transport = connect_stream(make_server(), clock)
    first, second = query("host.example.test."), query("www.example.test.")
    data = framed(first) + framed(second)
    for byte in data:  # one byte at a time: prefixes cut in two
        protocol.data_received(bytes([byte]))
    responses = unframe(transport.value())
    assert [r.id for r in responses] == [first.id, second.id]
    assert responses[1].answer[-1].to_text() == "host.example.test. 3600 IN A 192.0.2.80"
    assert not transport.closed
    protocol.connection_lost(None)
    assert clock.get_delayed_calls() == []


def test_tcp_idle_timeout_closes_only_when_nothing_in_flight() -> None:
    clock = Clock()
    slow = Slow()
    protocol, transport = connect_stream(DNSServer([slow]), clock, idle_timeout=5.0)
    clock.advance(4)
    protocol.data_received(framed(query("a.test.")))
    clock.advance(60)
    assert not transport.is_closing()  # a query is being answered
    slow.pending[0].callback(Answer())
    assert len(unframe(transport.value())) == 1
    clock.advance(4.9)
    assert not transport.is_closing()
    clock.advance(0.1)
    assert transport.is_closing()
    protocol.connection_lost(None)
    assert clock.get_delayed_calls() == []


def test_tcp_stops_reading_with_too_many_in_flight() -> None:
    clock = Clock()
    slow = Slow()
    protocol, transport = connect_stream(DNSServer([slow]), clock, max_in_flight=2)
    protocol.data_received(framed(query("a.test.")) * 3)
    assert len(slow.pending) == 2
    assert not transport.is_reading()
    slow.pending[0].callback(Answer())
    assert len(slow.pending) == 3
    protocol.connection_lost(None)
    assert all(d.called for d in slow.pending)


def test_tcp_truncated_prefix_then_close_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    protocol, transport = connect_stream(make_server(), clock)
    protocol.data_received(b"\x00")
    protocol.connection_lost(None)
    protocol2, transport2 = connect_stream(make_server(), clock)
    protocol2.data_received(b"\x00\x40" + os.urandom(20))
    protocol2.connection_lost(None)
    assert transport.value() == transport2.value() == b""
    assert "Traceback" not in caplog.text
    assert clock.get_delayed_calls() == []


def test_tcp_garbage_message_gets_formerr_and_the_connection_stays() -> None:
    clock = Clock()
    protocol, transport = connect_stream(make_server(), clock)
    bad = header() + b"\xc0\x0c\x00\x01\x00\x01"
    protocol.data_received(len(bad).to_bytes(2, "big") + bad)
    protocol.data_received(framed(query("host.example.test.")))
    data = transport.value()
    assert data[2 + 3] & 0x0F == dns.rcode.FORMERR
    assert unframe(data[2 + 12 :])[0].answer
    protocol.connection_lost(None)


@BOTH_LOOPS
async def test_in_flight_udp_queries_are_cancelled_without_error(reactor: Any, loop: str) -> None:
    # The pytest plugin fails the test if a task or delayed call is left over.
    slow = Slow()
    server = DNSServer([slow])
    ports = server.listen(reactor, 0)
    event_loop = asyncio.get_running_loop()
    received: asyncio.Future[bytes] = event_loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            received.set_result(data)

    transport, _ = await event_loop.create_datagram_endpoint(
        Client, remote_addr=("127.0.0.1", ports.port)
    )
    transport.sendto(query("a.test.").to_wire())
    await asyncio.wait_for(slow.arrived.wait(), 10)
    slow.arrived.clear()
    slow.pending[0].callback(Answer(dns.rcode.NXDOMAIN))
    response = dns.message.from_wire(await asyncio.wait_for(received, 10))
    assert response.rcode() == dns.rcode.NXDOMAIN
    transport.sendto(query("b.test.").to_wire())
    await asyncio.wait_for(slow.arrived.wait(), 10)
    transport.close()
    await ports.stop_listening()
    assert slow.pending[1].called


def test_tcp_stop_gracefully_answers_what_is_in_flight_then_closes() -> None:
    clock = Clock()
    slow = Slow()
    protocol, transport = connect_stream(DNSServer([slow]), clock)
    protocol.data_received(framed(query("a.test.")))
    protocol.stop_gracefully()
    assert not transport.is_closing()
    assert not transport.is_reading()
    slow.pending[0].callback(Answer())
    assert len(unframe(transport.value())) == 1
    assert transport.is_closing()
    protocol.connection_lost(None)
    idle, idle_transport = connect_stream(make_server(), clock)
    idle.stop_gracefully()
    assert idle_transport.is_closing()
    idle.connection_lost(None)
    assert clock.get_delayed_calls() == []


def test_udp_drops_responses_while_the_socket_buffer_is_full() -> None:
    protocol = DNSDatagramProtocol(make_server())
    transport = FakeUDPTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.pause_writing()
    protocol.datagram_received(query("host.example.test.").to_wire(), ("192.0.2.9", 1000))
    assert transport.sent == []
    protocol.resume_writing()
    protocol.datagram_received(query("host.example.test.").to_wire(), ("192.0.2.9", 1000))
    assert len(transport.sent) == 1


def test_tcp_connections_beyond_the_bound_are_refused() -> None:
    clock = Clock()
    factory = make_server().stream_factory(clock, max_connections=2)
    address = IPv4Address("192.0.2.9", 5000)
    protocols = [factory(address), factory(address)]
    transports = []
    for protocol in protocols:
        assert protocol is not None
        transport = StringTransport(protocol)
        protocol.connection_made(transport)
        transports.append(transport)
    assert factory(address) is None
    assert protocols[0] is not None
    protocols[0].connection_lost(None)
    assert factory(address) is not None
    factory.close_all()
    assert transports[1].aborted
    assert protocols[1] is not None
    protocols[1].connection_lost(None)

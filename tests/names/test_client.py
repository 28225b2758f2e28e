"""Tests for the DNS client on fakes: MemoryReactor's UDP ports and TCP calls, fake time."""

from __future__ import annotations

import struct
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from torsion.defer import CancelledError, Deferred, QueueOverflowError
from torsion.errors import DNSLookupError
from torsion.names._answer import Answer, Question
from torsion.names._client import AddressResolver, DNSClient, to_name
from torsion.testing import MemoryReactor, StringTransport
from torsion.testing._memory_datagrams import MemoryUDPPort

SERVERS = [("192.0.2.53", 53), ("192.0.2.54", 5353)]
QUESTION = Question(dns.name.from_text("www.example.org."), dns.rdatatype.A)


def result_of(d: Deferred[Any]) -> Any:
    """The result of a Deferred that succeeded."""
    results: list[Any] = []
    errors: list[BaseException] = []
    d.add_callbacks(results.append, errors.append)
    assert not errors, f"the Deferred failed: {errors[0]!r}"
    assert results, "the Deferred has not fired"
    return results[0]


def failure_of(d: Deferred[Any]) -> BaseException:
    """The error of a Deferred that failed (consumed)."""
    results: list[Any] = []
    errors: list[BaseException] = []
    d.add_callbacks(results.append, errors.append)
    assert not results, f"the Deferred succeeded: {results[0]!r}"
    assert errors, "the Deferred has not fired"
    return errors[0]


def request_of(port: MemoryUDPPort, index: int = -1) -> dns.message.Message:
    data, _ = port.written[index]
    return dns.message.from_wire(data)


def response_to(
    request: dns.message.Message,
    *,
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
    address: str | None = "192.0.2.80",
    ttl: int = 300,
) -> dns.message.Message:
    response = dns.message.make_response(request)
    response.set_rcode(rcode)
    if address is not None and rcode == dns.rcode.NOERROR:
        [question] = request.question
        response.answer.append(
            dns.rrset.from_text(question.name, ttl, "IN", question.rdtype, address)
        )
    return response


def wire(message: dns.message.Message) -> bytes:
    data: bytes = message.to_wire()
    return data


def make_client(reactor: MemoryReactor, **kwargs: Any) -> DNSClient:
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("attempts", 2)
    return DNSClient(reactor, SERVERS, **kwargs)


def test_iterative_queries_leave_rd_clear() -> None:
    reactor = MemoryReactor()
    d = make_client(reactor, recursion_desired=False).query(QUESTION)
    [port] = reactor.udp_ports
    request = request_of(port)
    assert not request.flags & dns.flags.RD
    port.deliver(wire(response_to(request)))
    assert isinstance(result_of(d), Answer)


def test_an_answer_from_the_server_asked_is_accepted_and_the_port_closed() -> None:
    reactor = MemoryReactor()
    d = make_client(reactor).query(QUESTION)
    [port] = reactor.udp_ports
    assert port.peer is not None
    assert (port.peer.host, port.peer.port) == SERVERS[0]
    request = request_of(port)
    assert request.question[0].name == QUESTION.name
    assert request.flags & dns.flags.RD
    assert request.edns == 0
    assert request.payload == 1232
    port.deliver(wire(response_to(request)))
    answer = result_of(d)
    assert isinstance(answer, Answer)
    assert answer.rcode == dns.rcode.NOERROR
    assert [str(rdata) for rdata in answer.answer[0]] == ["192.0.2.80"]
    assert not port.listening
    assert reactor.get_delayed_calls() == []


def test_each_query_has_its_own_port_and_a_random_id() -> None:
    reactor = MemoryReactor()
    client = make_client(reactor)
    for _ in range(16):
        client.query(QUESTION)
    ports = {port.address.port for port in reactor.udp_ports}
    ids = {request_of(port).id for port in reactor.udp_ports}
    assert len(ports) == 16
    # 16 draws from 65536 values: all equal only if the ID is not random.
    assert len(ids) > 1
    assert client.outstanding == 16


def test_spoofed_and_mismatched_responses_are_dropped_and_the_query_waits() -> None:
    reactor = MemoryReactor()
    d = make_client(reactor).query(QUESTION)
    [port] = reactor.udp_ports
    request = request_of(port)
    wrong_id = response_to(request, address="203.0.113.66")
    wrong_id.id = (request.id + 1) % 65536
    port.deliver(wire(wrong_id))
    other = dns.message.make_query("evil.example.", "A")
    other.id = request.id
    port.deliver(wire(response_to(other, address="203.0.113.66")))
    other_type = dns.message.make_query(QUESTION.name, "AAAA")
    other_type.id = request.id
    port.deliver(wire(response_to(other_type, address="2001:db8::66")))
    not_a_response = response_to(request, address="203.0.113.66")
    not_a_response.flags &= ~dns.flags.QR
    port.deliver(wire(not_a_response))
    port.deliver(b"\x00" * 5)
    port.deliver(wire(request)[:2] + b"\x80\x00" + b"\xff" * 20)
    # From elsewhere than the server (a connected port's kernel drops these too).
    port.protocol.datagram_received(
        wire(response_to(request, address="203.0.113.66")), ("198.51.100.1", 53)
    )
    assert not d.called
    assert port.listening
    port.deliver(wire(response_to(request)))
    assert [str(rdata) for rdata in result_of(d).answer[0]] == ["192.0.2.80"]


def test_names_are_matched_without_regard_to_case() -> None:
    reactor = MemoryReactor()
    d = make_client(reactor).query(QUESTION)
    [port] = reactor.udp_ports
    request = request_of(port)
    response = response_to(request)
    response.question[0].name = dns.name.from_text("WWW.Example.ORG.")
    port.deliver(wire(response))
    assert result_of(d).rcode == dns.rcode.NOERROR


def test_nxdomain_is_an_answer() -> None:
    reactor = MemoryReactor()
    d = make_client(reactor).query(QUESTION)
    [port] = reactor.udp_ports
    response = response_to(request_of(port), rcode=dns.rcode.NXDOMAIN)
    response.flags |= dns.flags.AA
    port.deliver(wire(response))
    answer = result_of(d)
    assert answer.rcode == dns.rcode.NXDOMAIN
    assert answer.authoritative
    assert len(reactor.udp_ports) == 1


def test_a_silent_server_times_out_then_the_next_is_asked_for_each_round() -> None:
    reactor = MemoryReactor()
    d = make_client(reactor, timeout=2.0, attempts=2).query(QUESTION)
    peers = []
    for _ in range(4):
        port = reactor.udp_ports[-1]
        assert port.peer is not None
        peers.append((port.peer.host, port.peer.port))
        assert not d.called
        reactor.advance(1.9)
        assert port.listening
        reactor.advance(0.1)
        assert not port.listening
    assert peers == SERVERS * 2
    error = failure_of(d)
    assert isinstance(error, TimeoutError)
    assert len(reactor.udp_ports) == 4
    assert reactor.get_delayed_calls() == []


def test_a_late_answer_to_an_earlier_try_is_ignored() -> None:
    reactor = MemoryReactor()
    d = make_client(reactor).query(QUESTION)
    first = reactor.udp_ports[0]
    request = request_of(first)
    reactor.advance(2.0)
    # The first port is closed; its protocol hears nothing more, even if handed it.
    first.protocol.datagram_received(wire(response_to(request)), ("192.0.2.53", 53))
    assert not d.called
    second = reactor.udp_ports[1]
    second.deliver(wire(response_to(request_of(second), address="192.0.2.81")))
    assert [str(rdata) for rdata in result_of(d).answer[0]] == ["192.0.2.81"]


def test_port_unreachable_moves_on_at_once() -> None:
    reactor = MemoryReactor()
    d = make_client(reactor).query(QUESTION)
    reactor.udp_ports[0].deliver_error(ConnectionRefusedError())
    assert len(reactor.udp_ports) == 2
    assert not reactor.udp_ports[0].listening
    port = reactor.udp_ports[1]
    port.deliver(wire(response_to(request_of(port))))
    assert result_of(d).rcode == dns.rcode.NOERROR


@pytest.mark.parametrize("rcode", [dns.rcode.SERVFAIL, dns.rcode.REFUSED])
def test_servfail_and_refused_ask_the_next_server(rcode: dns.rcode.Rcode) -> None:
    reactor = MemoryReactor()
    d = make_client(reactor).query(QUESTION)
    first = reactor.udp_ports[0]
    first.deliver(wire(response_to(request_of(first), rcode=rcode)))
    assert not d.called
    second = reactor.udp_ports[1]
    assert second.peer is not None
    assert second.peer.host == "192.0.2.54"
    second.deliver(wire(response_to(request_of(second))))
    assert result_of(d).rcode == dns.rcode.NOERROR


def test_when_every_server_fails_the_last_failure_is_the_answer() -> None:
    reactor = MemoryReactor()
    d = make_client(reactor, attempts=1).query(QUESTION)
    for port in list(reactor.udp_ports):
        port.deliver(wire(response_to(request_of(port), rcode=dns.rcode.SERVFAIL)))
    assert len(reactor.udp_ports) == 2
    second = reactor.udp_ports[1]
    second.deliver(wire(response_to(request_of(second), rcode=dns.rcode.SERVFAIL)))
    assert result_of(d).rcode == dns.rcode.SERVFAIL


def test_formerr_to_edns_is_asked_again_without_it() -> None:
    reactor = MemoryReactor()
    d = make_client(reactor).query(QUESTION)
    first = reactor.udp_ports[0]
    request = request_of(first)
    assert request.edns == 0
    formerr = dns.message.Message(id=request.id)
    formerr.flags = dns.flags.QR
    formerr.set_rcode(dns.rcode.FORMERR)
    first.deliver(wire(formerr))
    second = reactor.udp_ports[1]
    assert second.peer == first.peer
    plain = request_of(second)
    assert plain.edns == -1
    second.deliver(wire(response_to(plain)))
    assert result_of(d).rcode == dns.rcode.NOERROR


def test_a_truncated_answer_is_asked_again_over_tcp() -> None:
    reactor = MemoryReactor()
    d = make_client(reactor).query(QUESTION)
    [port] = reactor.udp_ports
    truncated = response_to(request_of(port), address=None)
    truncated.flags |= dns.flags.TC
    port.deliver(wire(truncated))
    assert not port.listening
    [call] = reactor.tcp_clients
    assert (call.host, call.port) == SERVERS[0]
    transport = StringTransport()
    protocol = call.connect(transport)
    sent = transport.value()
    (length,) = struct.unpack("!H", sent[:2])
    assert length == len(sent) - 2
    request = dns.message.from_wire(sent[2:])
    response = wire(response_to(request))
    framed = struct.pack("!H", len(response)) + response
    for i in range(len(framed)):  # one byte at a time
        protocol.data_received(framed[i : i + 1])
    assert [str(rdata) for rdata in result_of(d).answer[0]] == ["192.0.2.80"]
    assert transport.closed
    assert reactor.get_delayed_calls() == []


def test_a_tcp_connection_closed_before_answering_moves_on() -> None:
    reactor = MemoryReactor()
    d = make_client(reactor).query(QUESTION)
    [port] = reactor.udp_ports
    truncated = response_to(request_of(port), address=None)
    truncated.flags |= dns.flags.TC
    port.deliver(wire(truncated))
    protocol = reactor.tcp_clients[0].connect(StringTransport())
    protocol.data_received(b"\x01")
    protocol.connection_lost(None)
    assert len(reactor.udp_ports) == 2
    second = reactor.udp_ports[1]
    second.deliver(wire(response_to(request_of(second))))
    assert result_of(d).rcode == dns.rcode.NOERROR


def test_a_refused_tcp_connection_moves_on() -> None:
    reactor = MemoryReactor()
    d = make_client(reactor, attempts=1).query(QUESTION)
    port = reactor.udp_ports[0]
    truncated = response_to(request_of(port), address=None)
    truncated.flags |= dns.flags.TC
    port.deliver(wire(truncated))
    reactor.tcp_clients[0].fail(ConnectionRefusedError())
    second = reactor.udp_ports[1]
    reactor.advance(2.0)
    assert not second.listening
    assert isinstance(failure_of(d), TimeoutError)
    assert reactor.get_delayed_calls() == []


def test_cancelling_closes_the_port_and_the_timer() -> None:
    reactor = MemoryReactor()
    client = make_client(reactor)
    d = client.query(QUESTION)
    [port] = reactor.udp_ports
    d.cancel()
    assert isinstance(failure_of(d), CancelledError)
    assert not port.listening
    assert reactor.get_delayed_calls() == []
    assert client.outstanding == 0


def test_cancelling_during_tcp_cancels_the_connection() -> None:
    reactor = MemoryReactor()
    d = make_client(reactor).query(QUESTION)
    [port] = reactor.udp_ports
    truncated = response_to(request_of(port), address=None)
    truncated.flags |= dns.flags.TC
    port.deliver(wire(truncated))
    [call] = reactor.tcp_clients
    d.cancel()
    assert isinstance(failure_of(d), CancelledError)
    assert call.connector.state == "failed"
    assert reactor.get_delayed_calls() == []
    assert len(reactor.udp_ports) == 1


def test_too_many_outstanding_queries_fail_at_once() -> None:
    reactor = MemoryReactor()
    client = make_client(reactor, max_outstanding=2)
    client.query(QUESTION)
    client.query(QUESTION)
    assert isinstance(failure_of(client.query(QUESTION)), QueueOverflowError)
    assert len(reactor.udp_ports) == 2


def test_edns_can_be_turned_off() -> None:
    reactor = MemoryReactor()
    make_client(reactor, edns_payload=0).query(QUESTION)
    assert request_of(reactor.udp_ports[0]).edns == -1


def test_bad_settings_are_refused() -> None:
    reactor = MemoryReactor()
    with pytest.raises(ValueError, match="IP address"):
        DNSClient(reactor, [("ns.example.", 53)])
    with pytest.raises(ValueError, match="attempts"):
        DNSClient(reactor, SERVERS, attempts=0)
    with pytest.raises(ValueError, match="payload"):
        DNSClient(reactor, SERVERS, edns_payload=100)


def test_servers_default_to_resolv_conf(tmp_path: Any) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 192.0.2.1\nnameserver 2001:db8::1\noptions timeout:3 attempts:4\n")
    client = DNSClient(MemoryReactor(), resolv_conf=str(conf))
    assert client.servers == (("192.0.2.1", 53), ("2001:db8::1", 53))
    assert client.timeout == 3.0
    assert client.attempts == 4
    missing = DNSClient(MemoryReactor(), resolv_conf=str(tmp_path / "none"))
    assert missing.servers == (("127.0.0.1", 53),)


def answer_port(
    port: MemoryUDPPort, *addresses: str, rcode: dns.rcode.Rcode = dns.rcode.NOERROR
) -> None:
    request = request_of(port)
    response = dns.message.make_response(request)
    response.set_rcode(rcode)
    [question] = request.question
    if addresses:
        response.answer.append(
            dns.rrset.from_text(question.name, 60, "IN", question.rdtype, *addresses)
        )
    port.deliver(wire(response))


def test_lookup_address_asks_a_and_aaaa_at_once() -> None:
    reactor = MemoryReactor()
    d = make_client(reactor).lookup_address("www.example.org")
    a_port, aaaa_port = reactor.udp_ports
    assert request_of(a_port).question[0].rdtype == dns.rdatatype.A
    assert request_of(aaaa_port).question[0].rdtype == dns.rdatatype.AAAA
    answer_port(aaaa_port, "2001:db8::80")
    assert not d.called
    answer_port(a_port, "192.0.2.80", "192.0.2.81")
    addresses = result_of(d)
    # IPv4 first; within a record set, the order is the set's own.
    assert sorted(addresses[:2]) == ["192.0.2.80", "192.0.2.81"]
    assert addresses[2:] == ["2001:db8::80"]


def test_lookup_helpers_ask_their_types() -> None:
    reactor = MemoryReactor()
    client = make_client(reactor)
    client.lookup_mail_exchange("example.org")
    client.lookup_service("_sip._udp.example.org")
    client.lookup_text("example.org")
    client.lookup_name_server("example.org")
    client.lookup_pointer("192.0.2.80")
    client.lookup("example.org", "SOA")
    asked = [request_of(port).question[0] for port in reactor.udp_ports]
    assert [(str(q.name), dns.rdatatype.to_text(q.rdtype)) for q in asked] == [
        ("example.org.", "MX"),
        ("_sip._udp.example.org.", "SRV"),
        ("example.org.", "TXT"),
        ("example.org.", "NS"),
        ("80.2.0.192.in-addr.arpa.", "PTR"),
        ("example.org.", "SOA"),
    ]


def test_address_resolver_resolves_through_dns() -> None:
    reactor = MemoryReactor()
    resolver = AddressResolver(make_client(reactor))
    d = resolver.resolve("www.example.org")
    a_port, aaaa_port = reactor.udp_ports
    answer_port(a_port, "192.0.2.80")
    answer_port(aaaa_port)
    assert result_of(d) == "192.0.2.80"
    assert result_of(resolver.resolve_all("2001:db8::1")) == ["2001:db8::1"]
    assert len(reactor.udp_ports) == 2


def test_address_resolver_fails_with_dns_lookup_error() -> None:
    reactor = MemoryReactor()
    resolver = AddressResolver(make_client(reactor, attempts=1))
    d = resolver.resolve_all("nowhere.example")
    for port in list(reactor.udp_ports):
        answer_port(port, rcode=dns.rcode.NXDOMAIN)
    error = failure_of(d)
    assert isinstance(error, DNSLookupError)
    assert error.host == "nowhere.example"
    timed_out = resolver.resolve_all("slow.example")
    reactor.pump([2.0, 2.0])
    assert isinstance(failure_of(timed_out), DNSLookupError)
    assert isinstance(failure_of(resolver.resolve_all("a" * 64 + ".example")), DNSLookupError)


def test_to_name_makes_absolute_names() -> None:
    assert to_name("example.org") == dns.name.from_text("example.org.")
    assert to_name(dns.name.from_text("x", None)) == dns.name.from_text("x.")
    with pytest.raises(ValueError, match="not a domain name"):
        to_name("a" * 64)

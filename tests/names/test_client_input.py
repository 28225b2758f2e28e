"""What the DNS client makes of bad input: resolv.conf lines, hostile responses."""

from __future__ import annotations

from typing import Any

import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.defer import Deferred
from torsion.names._answer import Answer, Question
from torsion.names._client import DNSClient
from torsion.names._dot import DoTServer
from torsion.names._resolvconf import parse_resolv_conf
from torsion.names._search import SearchList
from torsion.testing import MemoryReactor, StringTransport

QUESTION = Question(dns.name.from_text("www.example.org."), dns.rdatatype.A)


def test_resolv_conf_takes_nameservers_and_options() -> None:
    conf = parse_resolv_conf(
        "# comment\n"
        "search example.org\n"
        "nameserver 192.0.2.1   # the first\n"
        "nameserver not-an-address\n"
        "nameserver\n"
        "; another comment\n"
        "nameserver 2001:db8::1\n"
        "nameserver 192.0.2.3\n"
        "nameserver 192.0.2.4\n"
        "options ndots:2 timeout:1 attempts:9 rotate timeout:x\n"
    )
    # At most three servers are used (MAXNS in resolv.conf(5)).
    assert conf.servers == (("192.0.2.1", 53), ("2001:db8::1", 53), ("192.0.2.3", 53))
    assert conf.timeout == 1.0
    assert conf.attempts == 5  # capped, as the resolver library caps it


def test_resolv_conf_without_servers_means_the_local_one() -> None:
    conf = parse_resolv_conf("options timeout:0\n")
    assert conf.servers == (("127.0.0.1", 53),)
    assert conf.timeout == 1.0
    assert conf.attempts == 2


def _asked(reactor: MemoryReactor) -> tuple[DNSClient, Deferred[Any], dns.message.Message]:
    client = DNSClient(reactor, [("192.0.2.53", 53)], timeout=1.0, attempts=1)
    d = client.query(QUESTION)
    request = dns.message.from_wire(reactor.udp_ports[0].written[0][0])
    return client, d, request


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_with_the_right_id_is_dropped_quietly(tail: bytes) -> None:
    reactor = MemoryReactor()
    _, d, request = _asked(reactor)
    port = reactor.udp_ports[0]
    # The right ID and the QR bit, so that it gets past the cheap checks.
    header = request.id.to_bytes(2, "big") + bytes([0x80 | (tail[:1] or b"\0")[0] & 0x7F])
    port.deliver(header + tail[1:])
    results: list[Any] = []
    if not d.called:
        # Dropped (or, an error answer without a question, asked again
        # without EDNS): the port asking now still takes the real answer.
        latest = reactor.udp_ports[-1]
        assert latest.listening
        request = dns.message.from_wire(latest.written[-1][0])
        response = dns.message.make_response(request)
        response.answer.append(dns.rrset.from_text(QUESTION.name, 60, "IN", "A", "192.0.2.80"))
        latest.deliver(response.to_wire())
    d.add_callbacks(results.append, results.append)
    # Whatever it took is an answer, never an exception.
    assert isinstance(results[0], Answer)
    assert not any(port.listening for port in reactor.udp_ports)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=65535))
def test_bad_tcp_responses_end_that_try_quietly(body: bytes, length: int) -> None:
    reactor = MemoryReactor()
    _, d, request = _asked(reactor)
    truncated = dns.message.make_response(request)
    truncated.flags |= dns.flags.TC
    reactor.udp_ports[0].deliver(truncated.to_wire())
    transport = StringTransport()
    protocol = reactor.tcp_clients[0].connect(transport)
    protocol.data_received(length.to_bytes(2, "big") + body)
    if len(body) >= length:
        # A whole message that was not an answer: that try is over.
        assert transport.closed
    protocol.connection_lost(None)
    reactor.advance(1.0)
    assert d.called
    d.add_both(lambda _: None)
    assert reactor.get_delayed_calls() == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_a_dot_server_sending_garbage_never_raises_and_the_real_answer_still_counts(
    chunks: list[bytes],
) -> None:
    reactor = MemoryReactor()
    client = DNSClient(reactor, tls=[DoTServer("192.0.2.53")], timeout=1.0, attempts=1)
    d = client.query(QUESTION)
    transport = StringTransport()
    protocol = reactor.tls_clients[0].connect(transport)
    data = transport.value()
    request = dns.message.from_wire(data[2:])
    for chunk in chunks:
        # Whole frames of garbage, with a random ID (or the right one).
        protocol.data_received(len(chunk).to_bytes(2, "big") + chunk)
    assert len(protocol.buffer) <= 2 + 65535
    if not d.called:
        response = dns.message.make_response(request)
        response.answer.append(dns.rrset.from_text(QUESTION.name, 60, "IN", "A", "192.0.2.80"))
        wire = response.to_wire()
        protocol.data_received(len(wire).to_bytes(2, "big") + wire)
    if not d.called:
        # The garbage failed the try (the right ID, a bad message): it timed out.
        reactor.advance(1.0)
    results: list[Any] = []
    d.add_callbacks(results.append, results.append)
    assert isinstance(results[0], Answer | TimeoutError)
    client.close()
    assert reactor.get_delayed_calls() == []


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="abc.-\\", max_size=40),
    st.lists(st.text(alphabet="xyz.", min_size=1, max_size=20), max_size=4),
    st.integers(min_value=0, max_value=15),
)
def test_search_names_are_absolute_valid_and_unique(
    name: str, domains: list[str], ndots: int
) -> None:
    try:
        search = SearchList.of(domains, ndots=ndots)
    except ValueError:
        return
    try:
        names = search.names(name)
    except ValueError:
        return
    assert names
    assert all(candidate.is_absolute() for candidate in names)
    assert len(set(names)) == len(names)
    assert len(names) <= len(domains) + 1

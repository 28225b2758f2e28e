"""Tests for the SRV-aware client endpoint and the RFC 2782 ordering."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from torsion.defer import CancelledError, Deferred, succeed
from torsion.errors import DNSLookupError
from torsion.internet import IPv4Address, Protocol
from torsion.names._answer import Answer, Question
from torsion.names._srv import SRVClientEndpoint, order_srv
from torsion.testing import MemoryReactor, StringTransport

SRV_NAME = "_xmpp-client._tcp.example.org."


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


class Records:
    """A resolver answering the SRV question with fixed records."""

    def __init__(self, *records: str, rcode: dns.rcode.Rcode = dns.rcode.NOERROR) -> None:
        self.answer = Answer(rcode=rcode)
        if records:
            self.answer.answer.append(dns.rrset.from_text(SRV_NAME, 60, "IN", "SRV", *records))
        self.asked: list[Question] = []

    def query(self, question: Question) -> Deferred[Answer]:
        self.asked.append(question)
        return succeed(self.answer)


def srv(*texts: str) -> list[Any]:
    return list(dns.rrset.from_text(SRV_NAME, 60, "IN", "SRV", *texts))


def test_order_srv_puts_lower_priorities_first_and_follows_weights() -> None:
    random.seed(1)
    records = srv("20 0 1 c.example.", "10 90 1 a.example.", "10 10 1 b.example.")
    firsts: Counter[str] = Counter()
    for _ in range(1000):
        ordered = order_srv(records)
        assert str(ordered[2].target) == "c.example."
        firsts[str(ordered[0].target)] += 1
    # a has 90 of the 100 weight: first about 9 times in 10.
    assert 800 < firsts["a.example."] < 980
    assert firsts["b.example."] > 20


def test_connects_to_the_targets_in_turn() -> None:
    reactor = MemoryReactor()
    resolver = Records("10 0 5222 one.example.org.", "20 0 5223 two.example.org.")
    endpoint = SRVClientEndpoint(reactor, resolver, "xmpp-client", "example.org")
    d = endpoint.connect(lambda _: Protocol())
    assert [str(q.name) for q in resolver.asked] == [SRV_NAME]
    [first] = reactor.tcp_clients
    assert (first.host, first.port) == ("one.example.org", 5222)
    first.fail(ConnectionRefusedError())
    second = reactor.tcp_clients[1]
    assert (second.host, second.port) == ("two.example.org", 5223)
    protocol = second.connect(StringTransport(peer=IPv4Address("192.0.2.2", 5223)))
    assert result_of(d) is protocol


def test_every_target_failing_fails_with_the_last_error() -> None:
    reactor = MemoryReactor()
    endpoint = SRVClientEndpoint(
        reactor, Records("10 0 5222 one.example.org."), "xmpp-client", "example.org"
    )
    d = endpoint.connect(lambda _: Protocol())
    reactor.tcp_clients[0].fail(TimeoutError("slow"))
    assert isinstance(failure_of(d), TimeoutError)


def test_a_dot_target_means_no_service() -> None:
    reactor = MemoryReactor()
    endpoint = SRVClientEndpoint(
        reactor, Records("0 0 0 ."), "xmpp-client", "example.org", fallback_port=5222
    )
    assert isinstance(failure_of(endpoint.connect(lambda _: Protocol())), DNSLookupError)
    assert reactor.tcp_clients == []


@pytest.mark.parametrize("rcode", [dns.rcode.NXDOMAIN, dns.rcode.NOERROR])
def test_without_records_the_fallback_port_is_used(rcode: dns.rcode.Rcode) -> None:
    reactor = MemoryReactor()
    resolver = Records(rcode=rcode)
    endpoint = SRVClientEndpoint(
        reactor, resolver, "xmpp-client", "example.org", fallback_port=5222
    )
    endpoint.connect(lambda _: Protocol())
    [call] = reactor.tcp_clients
    assert (call.host, call.port) == ("example.org", 5222)
    no_fallback = SRVClientEndpoint(reactor, resolver, "xmpp-client", "example.org")
    assert isinstance(failure_of(no_fallback.connect(lambda _: Protocol())), DNSLookupError)


def test_cancelling_stops_the_attempt() -> None:
    reactor = MemoryReactor()
    endpoint = SRVClientEndpoint(
        reactor, Records("10 0 5222 one.example.org."), "xmpp-client", "example.org"
    )
    d = endpoint.connect(lambda _: Protocol())
    [call] = reactor.tcp_clients
    d.cancel()
    assert isinstance(failure_of(d), CancelledError)
    assert call.connector.state == "failed"

"""Tests for the resolver chain: hosts, cache, network, in turn."""

from __future__ import annotations

from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from torsion.defer import CancelledError, Deferred, fail, succeed
from torsion.names._answer import Answer, NotMineError, Question
from torsion.names._cache import CacheResolver
from torsion.names._chain import ResolverChain
from torsion.names._client import AddressResolver, DNSClient
from torsion.names._hosts import HostsResolver
from torsion.testing import Clock, MemoryReactor

WWW = Question(dns.name.from_text("www.example.org."), dns.rdatatype.A)


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


def an_answer(address: str = "192.0.2.80") -> Answer:
    return Answer(answer=[dns.rrset.from_text(WWW.name, 300, "IN", "A", address)])


class Fixed:
    """A resolver that gives one outcome and counts the questions."""

    def __init__(self, result: Answer | BaseException | None) -> None:
        self.result = result
        self.asked: list[Question] = []
        self.pending: Deferred[Answer] | None = None
        self.cancelled = False

    def query(self, question: Question) -> Deferred[Answer]:
        self.asked.append(question)
        if isinstance(self.result, Answer):
            return succeed(self.result)
        if self.result is None:
            self.pending = Deferred(self._cancel)
            return self.pending
        return fail(self.result)

    def _cancel(self, _: Deferred[Answer]) -> None:
        self.cancelled = True


def test_the_first_resolver_that_knows_answers() -> None:
    first = Fixed(NotMineError("no"))
    second = Fixed(an_answer("192.0.2.2"))
    third = Fixed(an_answer("192.0.2.3"))
    answer = result_of(ResolverChain([first, second, third]).query(WWW))
    assert [str(rdata) for rdata in answer.answer[0]] == ["192.0.2.2"]
    assert len(first.asked) == len(second.asked) == 1
    assert third.asked == []


def test_when_none_knows_the_chain_does_not_either() -> None:
    chain = ResolverChain([Fixed(NotMineError("a")), Fixed(NotMineError("b"))])
    assert isinstance(failure_of(chain.query(WWW)), NotMineError)
    with pytest.raises(ValueError, match="at least one"):
        ResolverChain([])


def test_other_errors_stop_the_chain() -> None:
    last = Fixed(an_answer())
    chain = ResolverChain([Fixed(TimeoutError("slow")), last])
    assert isinstance(failure_of(chain.query(WWW)), TimeoutError)
    assert last.asked == []


def test_later_answers_feed_the_cache_which_then_answers() -> None:
    clock = Clock()
    cache = CacheResolver(clock)
    network = Fixed(an_answer())
    chain = ResolverChain([cache, network])
    assert isinstance(result_of(chain.query(WWW)), Answer)
    clock.advance(100)
    answer = result_of(chain.query(WWW))
    assert answer.answer[0].ttl == 200
    assert len(network.asked) == 1
    clock.advance(200)
    result_of(chain.query(WWW))
    assert len(network.asked) == 2


def test_answers_from_before_the_cache_are_not_cached() -> None:
    cache = CacheResolver(Clock())
    chain = ResolverChain([Fixed(an_answer()), cache])
    result_of(chain.query(WWW))
    assert len(cache) == 0


def test_cancelling_cancels_the_resolver_asked() -> None:
    slow = Fixed(None)
    d = ResolverChain([Fixed(NotMineError("no")), slow]).query(WWW)
    assert slow.pending is not None
    d.cancel()
    assert isinstance(failure_of(d), CancelledError)
    assert slow.cancelled


def test_hosts_then_cache_then_network(tmp_path: Any) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.1 local.example\n")
    reactor = MemoryReactor()
    client = DNSClient(reactor, [("192.0.2.53", 53)], timeout=1.0, attempts=1)
    chain = ResolverChain([HostsResolver(str(hosts)), CacheResolver(reactor), client])
    resolver = AddressResolver(chain)
    local = resolver.resolve_all("local.example")
    # The hosts file knows it; its AAAA is NODATA from the file, not the network.
    assert result_of(local) == ["192.0.2.1"]
    assert reactor.udp_ports == []
    remote = resolver.resolve("www.example.org")
    for port in list(reactor.udp_ports):
        request = dns.message.from_wire(port.written[0][0])
        response = dns.message.make_response(request)
        if request.question[0].rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(WWW.name, 60, "IN", "A", "192.0.2.80"))
        else:
            soa = "ns.example.org. admin.example.org. 1 7200 900 1209600 30"
            response.authority.append(dns.rrset.from_text("example.org.", 60, "IN", "SOA", soa))
        port.deliver(response.to_wire())
    assert result_of(remote) == "192.0.2.80"
    assert len(reactor.udp_ports) == 2
    # Both answers are cached now (the AAAA one as NODATA): no new query.
    assert result_of(resolver.resolve_all("www.example.org")) == ["192.0.2.80"]
    assert len(reactor.udp_ports) == 2

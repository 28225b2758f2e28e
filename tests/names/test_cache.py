"""Tests for the answer cache: TTLs, negative caching (RFC 2308), its bound."""

from __future__ import annotations

from typing import Any

import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from torsion.defer import Deferred
from torsion.names._answer import Answer, NotMineError, Question
from torsion.names._cache import CacheResolver
from torsion.testing import Clock

WWW = Question(dns.name.from_text("www.example.org."), dns.rdatatype.A)
SOA = "ns.example.org. admin.example.org. 1 7200 900 1209600 {minimum}"


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


def positive(ttl: int = 300, glue_ttl: int | None = None) -> Answer:
    answer = Answer(
        answer=[dns.rrset.from_text("www.example.org.", ttl, "IN", "A", "192.0.2.80")],
        authoritative=True,
    )
    if glue_ttl is not None:
        answer.additional.append(
            dns.rrset.from_text("ns.example.org.", glue_ttl, "IN", "A", "192.0.2.53")
        )
    return answer


def negative(rcode: dns.rcode.Rcode, soa_ttl: int, minimum: int) -> Answer:
    soa = dns.rrset.from_text("example.org.", soa_ttl, "IN", "SOA", SOA.format(minimum=minimum))
    return Answer(rcode=rcode, authority=[soa])


def test_a_miss_is_not_mine() -> None:
    cache = CacheResolver(Clock())
    assert isinstance(failure_of(cache.query(WWW)), NotMineError)


def test_answers_live_for_their_smallest_ttl_and_age() -> None:
    clock = Clock()
    cache = CacheResolver(clock)
    assert cache.add(WWW, positive(ttl=300, glue_ttl=100))
    clock.advance(40.5)
    answer = result_of(cache.query(WWW))
    assert answer.answer[0].ttl == 260
    assert answer.additional[0].ttl == 60
    assert [str(rdata) for rdata in answer.answer[0]] == ["192.0.2.80"]
    assert not answer.authoritative
    clock.advance(59)
    assert result_of(cache.query(WWW)).additional[0].ttl == 1
    clock.advance(0.5)
    assert isinstance(failure_of(cache.query(WWW)), NotMineError)
    assert len(cache) == 0


def test_served_copies_leave_the_cached_answer_alone() -> None:
    clock = Clock()
    cache = CacheResolver(clock)
    cache.add(WWW, positive(ttl=300))
    clock.advance(100)
    result_of(cache.query(WWW)).answer[0].ttl = 1
    assert result_of(cache.query(WWW)).answer[0].ttl == 200


@pytest.mark.parametrize("rcode", [dns.rcode.NXDOMAIN, dns.rcode.NOERROR])
def test_negative_answers_live_for_the_soa_ttl_or_minimum(rcode: dns.rcode.Rcode) -> None:
    clock = Clock()
    cache = CacheResolver(clock)
    assert cache.add(WWW, negative(rcode, soa_ttl=3600, minimum=60))
    clock.advance(30)
    answer = result_of(cache.query(WWW))
    assert answer.rcode == rcode
    assert answer.answer == []
    assert answer.authority[0].rdtype == dns.rdatatype.SOA
    clock.advance(30)
    assert isinstance(failure_of(cache.query(WWW)), NotMineError)
    cache.add(WWW, negative(rcode, soa_ttl=20, minimum=600))
    clock.advance(20)
    assert isinstance(failure_of(cache.query(WWW)), NotMineError)


def test_what_may_not_be_cached_is_not() -> None:
    cache = CacheResolver(Clock())
    assert not cache.add(WWW, Answer(rcode=dns.rcode.NXDOMAIN))  # no SOA
    assert not cache.add(WWW, Answer(rcode=dns.rcode.SERVFAIL))
    assert not cache.add(WWW, positive(ttl=0))
    assert len(cache) == 0


def test_ttls_are_capped() -> None:
    clock = Clock()
    cache = CacheResolver(clock, max_ttl=100, max_negative_ttl=10)
    cache.add(WWW, positive(ttl=10**6))
    clock.advance(100)
    assert isinstance(failure_of(cache.query(WWW)), NotMineError)
    cache.add(WWW, negative(dns.rcode.NXDOMAIN, soa_ttl=10**5, minimum=10**5))
    clock.advance(10)
    assert isinstance(failure_of(cache.query(WWW)), NotMineError)


def test_the_least_recently_used_answer_goes_first() -> None:
    cache = CacheResolver(Clock(), max_entries=2)
    questions = [
        Question(dns.name.from_text(f"h{i}.example.org."), dns.rdatatype.A) for i in range(3)
    ]
    cache.add(questions[0], positive())
    cache.add(questions[1], positive())
    result_of(cache.query(questions[0]))  # used: h1 is now the oldest
    cache.add(questions[2], positive())
    assert len(cache) == 2
    assert isinstance(failure_of(cache.query(questions[1])), NotMineError)
    assert isinstance(result_of(cache.query(questions[0])), Answer)
    assert isinstance(result_of(cache.query(questions[2])), Answer)
    with pytest.raises(ValueError, match="max_entries"):
        CacheResolver(Clock(), max_entries=0)


def test_questions_match_without_regard_to_case() -> None:
    cache = CacheResolver(Clock())
    cache.add(WWW, positive())
    upper = Question(dns.name.from_text("WWW.EXAMPLE.ORG."), dns.rdatatype.A)
    assert isinstance(result_of(cache.query(upper)), Answer)
    other_type = Question(WWW.name, dns.rdatatype.AAAA)
    assert isinstance(failure_of(cache.query(other_type)), NotMineError)

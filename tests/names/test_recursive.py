"""RecursiveResolver: iterative resolution from root hints.

On fakes first (a "network" mapping server addresses to Authorities and
hostile servers, no sockets, a fake clock); then a hierarchy of real servers
on 127.0.0.x sharing one port (torsion's DNSServer and nsd), asked by the
resolver directly and through a recursive DNSServer with dig; then unbound
as the recursive peer on the same hierarchy on port 53, answer for answer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from _dns_peers import dig, free_port, records, running_nsd_at
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.defer import Deferred, QueueOverflowError, fail, succeed
from torsion.internet import Reactor
from torsion.names._answer import Answer, DNSResolver, NotMineError, Question
from torsion.names._cache import CacheResolver
from torsion.names._chain import ResolverChain
from torsion.names._client import DNSClient
from torsion.names._recursive import RecursiveResolver, load_root_hints, parse_root_hints
from torsion.names._server import DNSServer
from torsion.names._zone import Authority, ZoneError
from torsion.testing import (
    MemoryReactor,
    assert_no_result,
    failure_result_of,
    require_peer,
    success_result_of,
)

# The hierarchy, with its servers' addresses filled in: "." delegates
# "test." (with glue), which delegates "example.test." (with glue),
# "other.test." (its server's name in example.test., no glue), "lame.test."
# (to a server that does not serve it) and "half.test." (to that lame server
# and to a good one).

ROOT = """\
$ORIGIN .
$TTL 86400
.           IN SOA ns.nic. hostmaster.nic. 1 1800 900 604800 86400
.           IN NS  ns.nic.
ns.nic.     IN A   {root}
test.       IN NS  ns1.test.
ns1.test.   IN A   {test}
"""

TEST = """\
$ORIGIN test.
$TTL 3600
@           IN SOA ns1 hostmaster 1 7200 900 1209600 300
            IN NS  ns1
ns1         IN A   {test}
example     IN NS  ns.example
ns.example  IN A   {example}
other       IN NS  ns2.example
lame        IN NS  ns.lame
ns.lame     IN A   {lame}
half        IN NS  ns.half
half        IN NS  ns.example
ns.half     IN A   {lame}
"""

EXAMPLE = """\
$ORIGIN example.test.
$TTL 3600
@           IN SOA ns hostmaster 1 7200 900 1209600 300
            IN NS  ns
ns          IN A   {example}
ns2         IN A   {other}
www         IN A   192.0.2.1
www         IN AAAA 2001:db8::1
mail        IN MX  10 www
txt         IN TXT "hello world"
alias       IN CNAME www.other.test.
deep        IN CNAME back.other.test.
loop        IN CNAME loop.other.test.
dangling    IN CNAME nothing.other.test.
host.ent    IN A   192.0.2.9
a.b.c.d.e.f.g.h.i.j.k.l IN A 192.0.2.10
""" + "".join(f'big IN TXT "{n:02} {"x" * 120}"\n' for n in range(20))

OTHER = """\
$ORIGIN other.test.
$TTL 3600
@           IN SOA ns2.example.test. hostmaster.example.test. 1 7200 900 1209600 300
            IN NS  ns2.example.test.
www         IN A   192.0.2.2
back        IN CNAME www.example.test.
loop        IN CNAME loop.example.test.
"""

HALF = """\
$ORIGIN half.test.
$TTL 3600
@           IN SOA ns.example.test. hostmaster.example.test. 1 7200 900 1209600 300
            IN NS  ns.half.test.
            IN NS  ns.example.test.
ns          IN A   {lame}
www         IN A   192.0.2.3
"""

UNRELATED = """\
$ORIGIN unrelated.
$TTL 3600
@           IN SOA ns hostmaster 1 7200 900 1209600 300
            IN NS  ns
ns          IN A   192.0.2.53
"""

FAKE = {
    "root": "10.0.0.1",
    "test": "10.0.0.2",
    "example": "10.0.0.3",
    "other": "10.0.0.4",
    "lame": "10.0.0.5",
}


def zones(addresses: dict[str, str]) -> dict[str, list[Authority]]:
    """Each server's zones, by the server's role."""

    def make(text: str) -> Authority:
        return Authority.from_text(text.format(**addresses))

    return {
        "root": [make(ROOT)],
        "test": [make(TEST)],
        "example": [make(EXAMPLE), make(HALF)],
        "other": [make(OTHER)],
        "lame": [make(UNRELATED)],
    }


def question(name: str, rdtype: str = "A") -> Question:
    return Question(dns.name.from_text(name), dns.rdatatype.from_text(rdtype))


class FakeServer:
    """A name server on the fake network: its zones, or REFUSED (NotMineError)."""

    def __init__(self, authorities: list[Authority]) -> None:
        self.authorities = authorities

    def query(self, q: Question) -> Deferred[Answer]:
        for authority in self.authorities:
            try:
                return succeed(authority.lookup(q))
            except NotMineError:
                continue
        return succeed(Answer(dns.rcode.REFUSED))


class Network:
    """Server addresses to resolvers; every question asked is logged; the rest time out."""

    def __init__(self, servers: dict[str, DNSResolver]) -> None:
        self.servers = servers
        self.asked: list[tuple[str, int, Question]] = []

    def __call__(self, address: str, port: int) -> DNSResolver:
        network = self

        class Asker:
            def query(self, q: Question) -> Deferred[Answer]:
                network.asked.append((address, port, q))
                server = network.servers.get(address)
                if server is None:
                    return fail(TimeoutError(f"no DNS server answered {q}"))
                return server.query(q)

        return Asker()

    def addresses_asked(self) -> list[str]:
        return [address for address, _, _ in self.asked]


def fake_network(**replace: DNSResolver) -> Network:
    servers: dict[str, DNSResolver] = {
        FAKE[role]: FakeServer(authorities) for role, authorities in zones(FAKE).items()
    }
    for role, server in replace.items():
        servers[FAKE[role]] = server
    return Network(servers)


def resolver_on(network: Network, **options: object) -> tuple[RecursiveResolver, MemoryReactor]:
    reactor = MemoryReactor()
    resolver = RecursiveResolver(
        reactor,
        hints={"ns.nic.": [FAKE["root"]]},
        port=5353,
        network=network,
        **options,  # type: ignore[arg-type]
    )
    return resolver, reactor


def texts(answer: Answer) -> list[str]:
    """The answer section as zone-file lines (TTLs left out)."""
    return [
        f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}"
        for rrset in answer.answer
        for rdata in sorted(rrset, key=str)
    ]


def resolve(resolver: RecursiveResolver, name: str, rdtype: str = "A") -> Answer:
    return success_result_of(resolver.query(question(name, rdtype)))


# Referrals, glue, NS names without glue.


def test_referrals_with_glue_lead_to_the_answer() -> None:
    network = fake_network()
    resolver, _ = resolver_on(network)
    answer = resolve(resolver, "www.example.test.")
    assert answer.rcode == dns.rcode.NOERROR
    assert texts(answer) == ["www.example.test. A 192.0.2.1"]
    assert not answer.authoritative
    assert answer.additional == []
    assert network.addresses_asked() == [FAKE["root"], FAKE["test"], FAKE["example"]]
    # Every server is asked on the port given, and the full question.
    assert {port for _, port, _ in network.asked} == {5353}
    assert {q for _, _, q in network.asked} == {question("www.example.test.")}


def test_delegations_are_remembered_and_answers_cached() -> None:
    network = fake_network()
    resolver, reactor = resolver_on(network)
    resolve(resolver, "www.example.test.")
    network.asked.clear()
    # The same question: from the answer cache, nobody asked.
    assert texts(resolve(resolver, "www.example.test.")) == ["www.example.test. A 192.0.2.1"]
    assert network.asked == []
    # Another name in the zone: straight to example.test.'s server.
    assert texts(resolve(resolver, "www.example.test.", "AAAA")) == [
        "www.example.test. AAAA 2001:db8::1"
    ]
    assert network.addresses_asked() == [FAKE["example"]]
    # Once the delegations' TTLs (3600 s for example.test., 86400 for
    # test.) are over, the root is asked again only for what expired.
    network.asked.clear()
    reactor.advance(3601)
    resolve(resolver, "mail.example.test.", "MX")
    assert network.addresses_asked() == [FAKE["test"], FAKE["example"]]


def test_a_name_server_without_glue_is_resolved_first() -> None:
    network = fake_network()
    resolver, _ = resolver_on(network)
    answer = resolve(resolver, "www.other.test.")
    assert texts(answer) == ["www.other.test. A 192.0.2.2"]
    # other.test. names ns2.example.test. without glue: its address is
    # resolved (through example.test.), then other.test.'s server asked.
    # (test.'s delegation is known by then: the root is not asked again.)
    assert network.addresses_asked() == [
        FAKE["root"],
        FAKE["test"],
        FAKE["test"],
        FAKE["example"],
        FAKE["other"],
    ]
    assert network.asked[2][2] == question("ns2.example.test.")


def test_name_servers_inside_their_own_zone_without_glue_are_skipped() -> None:
    broken = Authority.from_text(TEST.format(**FAKE).replace("ns.example  IN A", "; no glue:"))
    network = fake_network(test=FakeServer([broken]))
    resolver, _ = resolver_on(network)
    answer = resolve(resolver, "www.example.test.")
    assert answer.rcode == dns.rcode.SERVFAIL
    # example.test.'s server, ns.example.test., can only be found through
    # example.test. itself: nobody is asked about it.
    assert FAKE["example"] not in network.addresses_asked()
    assert network.addresses_asked() == [FAKE["root"], FAKE["test"]]


# CNAMEs.


def test_cnames_are_followed_across_zones() -> None:
    resolver, _ = resolver_on(fake_network())
    assert texts(resolve(resolver, "alias.example.test.")) == [
        "alias.example.test. CNAME www.other.test.",
        "www.other.test. A 192.0.2.2",
    ]
    assert texts(resolve(resolver, "deep.example.test.")) == [
        "deep.example.test. CNAME back.other.test.",
        "back.other.test. CNAME www.example.test.",
        "www.example.test. A 192.0.2.1",
    ]
    # Asking for the CNAME itself gets the CNAME only.
    assert texts(resolve(resolver, "alias.example.test.", "CNAME")) == [
        "alias.example.test. CNAME www.other.test."
    ]


def test_a_cname_loop_across_zones_is_servfail() -> None:
    network = fake_network()
    resolver, _ = resolver_on(network)
    answer = resolve(resolver, "loop.example.test.")
    assert answer.rcode == dns.rcode.SERVFAIL
    assert answer.answer == []
    # Found the second time loop.example.test. came up, not by running out.
    assert len(network.asked) < 12


def test_cname_chains_are_bounded() -> None:
    chain = "".join(f"c{n} IN CNAME c{n + 1}\n" for n in range(12)) + "c12 IN A 192.0.2.12\n"

    class OneAtATime:
        """Answers one CNAME at a time, as if each target were in another zone."""

        def __init__(self) -> None:
            self.authority = Authority.from_text(EXAMPLE.format(**FAKE) + chain)

        def query(self, q: Question) -> Deferred[Answer]:
            answer = self.authority.lookup(q)
            answer.answer = answer.answer[:1]
            return succeed(answer)

    resolver, _ = resolver_on(fake_network(example=OneAtATime()), max_cname_chain=8)
    assert resolve(resolver, "c4.example.test.").answer[-1].rdtype == dns.rdatatype.A
    long = resolve(resolver, "c0.example.test.")
    assert long.rcode == dns.rcode.SERVFAIL


def test_a_cname_to_a_missing_name_in_another_zone_is_nxdomain() -> None:
    resolver, _ = resolver_on(fake_network())
    answer = resolve(resolver, "dangling.example.test.")
    assert answer.rcode == dns.rcode.NXDOMAIN
    assert texts(answer) == ["dangling.example.test. CNAME nothing.other.test."]
    # The SOA is the zone's of the name that does not exist (RFC 6604).
    assert [rrset.name for rrset in answer.authority] == [dns.name.from_text("other.test.")]


# Negative answers.


def test_nxdomain_and_nodata_carry_the_soa_and_are_cached() -> None:
    network = fake_network()
    resolver, _ = resolver_on(network)
    nx = resolve(resolver, "nothing.example.test.")
    assert nx.rcode == dns.rcode.NXDOMAIN
    assert nx.answer == []
    [soa] = nx.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.name == dns.name.from_text("example.test.")
    nodata = resolve(resolver, "www.example.test.", "MX")
    assert nodata.rcode == dns.rcode.NOERROR
    assert nodata.answer == []
    assert [rrset.rdtype for rrset in nodata.authority] == [dns.rdatatype.SOA]
    network.asked.clear()
    assert resolve(resolver, "nothing.example.test.").rcode == dns.rcode.NXDOMAIN
    assert resolve(resolver, "www.example.test.", "MX").answer == []
    assert network.asked == []
    # A name the test. zone itself says does not exist.
    assert resolve(resolver, "nothing.test.").rcode == dns.rcode.NXDOMAIN


# Servers that fail.


def test_a_lame_delegation_is_servfail() -> None:
    network = fake_network()
    resolver, _ = resolver_on(network)
    assert resolve(resolver, "www.lame.test.").rcode == dns.rcode.SERVFAIL
    assert network.addresses_asked().count(FAKE["lame"]) == 1


def test_another_server_of_the_zone_is_asked_after_a_lame_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The highest address first, among servers that have not failed: the lame one.
    monkeypatch.setattr(random, "choice", max)
    network = fake_network()
    resolver, _ = resolver_on(network)
    assert texts(resolve(resolver, "www.half.test.")) == ["www.half.test. A 192.0.2.3"]
    assert network.addresses_asked() == [FAKE["root"], FAKE["test"], FAKE["lame"], FAKE["example"]]
    # It answered; the lame one did not: from now on the good one is asked first.
    for n in range(5):
        assert resolve(resolver, f"n{n}.half.test.").rcode == dns.rcode.NXDOMAIN
    assert network.addresses_asked().count(FAKE["lame"]) == 1


@pytest.mark.parametrize("failure", ["timeout", "servfail", "upward referral", "not aa"])
def test_a_failing_server_is_passed_over(failure: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The highest address first, among servers that have not failed: the bad one.
    monkeypatch.setattr(random, "choice", max)
    good = FakeServer(zones(FAKE)["example"])

    class Bad:
        def query(self, q: Question) -> Deferred[Answer]:
            if failure == "timeout":
                return fail(TimeoutError("no answer"))
            if failure == "servfail":
                return succeed(Answer(dns.rcode.SERVFAIL))
            if failure == "upward referral":
                root = zones(FAKE)["root"][0].lookup(question("ns.nic.", "NS"))
                return succeed(Answer(authority=root.answer))
            answer = success_result_of(good.query(q))
            answer.authoritative = False
            return succeed(answer)

    network = fake_network()
    network.servers["10.0.0.9"] = Bad()
    test_zone = Authority.from_text(
        TEST.format(**FAKE) + "example IN NS ns.bad.example\nns.bad.example IN A 10.0.0.9\n"
    )
    network.servers[FAKE["test"]] = FakeServer([test_zone])
    resolver, _ = resolver_on(network)
    for n in range(4):
        answer = resolve(resolver, f"n{n}.example.test.")
        assert answer.rcode == dns.rcode.NXDOMAIN
    assert texts(resolve(resolver, "www.example.test.")) == ["www.example.test. A 192.0.2.1"]
    # Asked first, and only then: it failed, the other answered.
    assert network.addresses_asked()[:4] == [
        FAKE["root"],
        FAKE["test"],
        "10.0.0.9",
        FAKE["example"],
    ]
    assert network.addresses_asked().count("10.0.0.9") == 1


def test_no_server_answering_is_servfail() -> None:
    network = Network({})
    resolver, _ = resolver_on(network)
    answer = resolve(resolver, "www.example.test.")
    assert answer.rcode == dns.rcode.SERVFAIL
    assert network.addresses_asked() == [FAKE["root"]]


# Bailiwick: what a server says about names outside its zone is dropped.


class Adding:
    """A server that answers its zones, plus records it has no authority over."""

    def __init__(
        self,
        authorities: list[Authority],
        *,
        answer: list[dns.rrset.RRset] = (),  # type: ignore[assignment]
        additional: list[dns.rrset.RRset] = (),  # type: ignore[assignment]
        authority: list[dns.rrset.RRset] = (),  # type: ignore[assignment]
    ) -> None:
        self.server = FakeServer(authorities)
        self.extra = (list(answer), list(authority), list(additional))

    def query(self, q: Question) -> Deferred[Answer]:
        answer = success_result_of(self.server.query(q))
        answer.answer += self.extra[0]
        answer.authority += self.extra[1]
        answer.additional += self.extra[2]
        return succeed(answer)


def make_rrset(text: str) -> dns.rrset.RRset:
    name, ttl, rdtype, *rdata = text.split()
    return dns.rrset.from_text(name, int(ttl), "IN", rdtype, " ".join(rdata))


def test_out_of_bailiwick_answers_are_dropped() -> None:
    poison = make_rrset("www.other.test. 86400 A 6.6.6.6")
    network = fake_network(example=Adding(zones(FAKE)["example"], answer=[poison]))
    resolver, _ = resolver_on(network)
    # example.test.'s server says what www.other.test. is, unasked and in a
    # CNAME's answer: neither is believed, other.test.'s server is asked.
    assert texts(resolve(resolver, "www.example.test.")) == ["www.example.test. A 192.0.2.1"]
    assert texts(resolve(resolver, "alias.example.test.")) == [
        "alias.example.test. CNAME www.other.test.",
        "www.other.test. A 192.0.2.2",
    ]
    assert texts(resolve(resolver, "www.other.test.")) == ["www.other.test. A 192.0.2.2"]
    assert FAKE["other"] in network.addresses_asked()


def test_out_of_bailiwick_glue_and_soa_are_dropped() -> None:
    # test.'s server gives, with its referral, glue for a name outside test.
    # (pointing at a server of ours) and an SOA for a zone not its own.
    poisoned_glue = make_rrset("ns.nic. 86400 A 10.0.0.66")
    evil_soa = make_rrset("nic. 86400 SOA ns.nic. h.nic. 1 2 3 4 5")
    referral = Authority.from_text(TEST.format(**FAKE) + "evil IN NS ns.nic.\n")
    network = fake_network(
        test=Adding([referral], additional=[poisoned_glue], authority=[evil_soa])
    )
    network.servers["10.0.0.66"] = FakeServer(zones(FAKE)["example"])
    resolver, _ = resolver_on(network)
    answer = resolve(resolver, "www.evil.test.")
    # ns.nic. was resolved from the root (which serves it, and not evil.test.).
    assert "10.0.0.66" not in network.addresses_asked()
    assert answer.rcode == dns.rcode.SERVFAIL
    nx = resolve(resolver, "nothing.test.")
    assert [rrset.name for rrset in nx.authority] == [dns.name.from_text("test.")]


def test_records_of_another_class_are_dropped() -> None:
    chaos = dns.rrset.from_text("txt.example.test.", 60, "CH", "TXT", '"spoofed"')
    network = fake_network(example=Adding(zones(FAKE)["example"], answer=[chaos]))
    resolver, _ = resolver_on(network)
    assert texts(resolve(resolver, "txt.example.test.", "TXT")) == [
        'txt.example.test. TXT "hello world"'
    ]


# What a hostile server of example.test. may send, in any section: its own
# zone's records (its to give), referrals up, sideways and down (to itself
# and elsewhere), and records for names outside its zone, all 6.6.6.6.
HOSTILE_POOL = [
    make_rrset(text)
    for text in (
        "www.example.test. 60 A 192.0.2.1",
        "alias.example.test. 60 CNAME www.other.test.",
        "alias.example.test. 60 CNAME alias.example.test.",
        "www.example.test. 60 CNAME x.sub.example.test.",
        "example.test. 60 SOA ns hostmaster 1 2 3 4 5",
        "sub.example.test. 60 NS ns.sub.example.test.",
        "sub.example.test. 60 NS ns.other.test.",
        "ns.sub.example.test. 60 A 10.0.0.3",
        "example.test. 60 NS ns.example.test.",
        "test. 60 NS ns1.test.",
        ". 60 NS ns.nic.",
        "www.other.test. 86400 A 6.6.6.6",
        "ns.other.test. 86400 A 6.6.6.6",
        "ns1.test. 86400 A 6.6.6.6",
        "ns.nic. 86400 A 6.6.6.6",
        "other.test. 86400 SOA ns hostmaster 1 2 3 4 5",
        "www.other.test. 86400 CNAME www.example.test.",
    )
]


class Recording(logging.Handler):
    """Keeps the error records logged (a traceback would be one)."""

    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_hostile_server_gets_no_poison_in_and_no_traceback_out(data: st.DataObject) -> None:
    sections = st.lists(st.sampled_from(HOSTILE_POOL), max_size=5)

    class Hostile:
        def query(self, q: Question) -> Deferred[Answer]:
            return succeed(
                Answer(
                    rcode=data.draw(
                        st.sampled_from(
                            [dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL]
                        )
                    ),
                    answer=data.draw(sections),
                    authority=data.draw(sections),
                    additional=data.draw(sections),
                    authoritative=data.draw(st.booleans()),
                )
            )

    network = fake_network(example=Hostile())
    resolver, reactor = resolver_on(network, max_queries=40)
    errors: list[logging.LogRecord] = []
    handler = Recording(errors)
    logging.getLogger("torsion.names").addHandler(handler)
    try:
        for name in ("alias.example.test.", "www.example.test.", "www.other.test."):
            answer = success_result_of(resolver.query(question(name)))
            assert answer.rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL)
            assert not answer.authoritative
            records = [str(rrset) for rrset in answer.answer + answer.authority]
            assert "6.6.6.6" not in str(records)
    finally:
        logging.getLogger("torsion.names").removeHandler(handler)
    assert len(network.asked) <= 3 * 40
    assert "6.6.6.6" not in network.addresses_asked()
    assert resolver.resolving == 0
    assert reactor.get_delayed_calls() == []
    assert errors == []


def test_a_referral_sideways_is_lame() -> None:
    sideways = make_rrset("elsewhere. 86400 NS ns.nic.")

    class Sideways:
        def query(self, q: Question) -> Deferred[Answer]:
            return succeed(Answer(authority=[sideways]))

    network = fake_network(test=Sideways())
    resolver, _ = resolver_on(network)
    assert resolve(resolver, "www.example.test.").rcode == dns.rcode.SERVFAIL
    assert network.addresses_asked() == [FAKE["root"], FAKE["test"]]


def test_ds_records_are_asked_of_the_parent() -> None:
    ds = "example IN DS 12345 8 2 " + "ab" * 32 + "\n"
    network = fake_network(test=FakeServer([Authority.from_text(TEST.format(**FAKE) + ds)]))
    resolver, _ = resolver_on(network)
    answer = resolve(resolver, "example.test.", "DS")
    assert [rrset.rdtype for rrset in answer.answer] == [dns.rdatatype.DS]
    assert FAKE["example"] not in network.addresses_asked()


# QNAME minimisation.


def test_qname_minimisation_asks_each_zone_one_label_below_it() -> None:
    network = fake_network()
    resolver, _ = resolver_on(network, qname_minimisation=True)
    assert texts(resolve(resolver, "host.ent.example.test.")) == [
        "host.ent.example.test. A 192.0.2.9"
    ]
    assert [(address, str(q)) for address, _, q in network.asked] == [
        (FAKE["root"], "test. A"),
        (FAKE["test"], "example.test. A"),
        # ent.example.test. exists without records (an empty non-terminal).
        (FAKE["example"], "ent.example.test. A"),
        (FAKE["example"], "host.ent.example.test. A"),
    ]
    network.asked.clear()
    # The whole question is asked only of the zone that holds the name.
    assert texts(resolve(resolver, "alias.example.test.", "AAAA")) == [
        "alias.example.test. CNAME www.other.test."
    ]
    assert [(address, str(q)) for address, _, q in network.asked] == [
        (FAKE["example"], "alias.example.test. AAAA"),
        (FAKE["test"], "other.test. A"),
        (FAKE["example"], "ns2.example.test. A"),
        (FAKE["other"], "www.other.test. AAAA"),
    ]


def test_qname_minimisation_stops_at_a_missing_ancestor() -> None:
    network = fake_network()
    resolver, _ = resolver_on(network, qname_minimisation=True)
    answer = resolve(resolver, "x.y.nothing.example.test.")
    assert answer.rcode == dns.rcode.NXDOMAIN
    assert [rrset.name for rrset in answer.authority] == [dns.name.from_text("example.test.")]
    # RFC 8020: nothing.example.test. does not exist, so neither does anything below it.
    assert [str(q) for _, _, q in network.asked][-1] == "nothing.example.test. A"


def test_qname_minimisation_is_bounded_for_long_names() -> None:
    network = fake_network()
    resolver, _ = resolver_on(network, qname_minimisation=True)
    name = "a.b.c.d.e.f.g.h.i.j.k.l.example.test."
    assert texts(resolve(resolver, name)) == [f"{name} A 192.0.2.10"]
    asked = [str(q) for address, _, q in network.asked if address == FAKE["example"]]
    # Ten minimised questions at most (RFC 9156 section 2.3), then the whole one.
    assert len(asked) == 11
    assert asked[0] == "l.example.test. A"
    assert asked[-1] == f"{name} A"


def test_qname_minimisation_gives_the_same_answers() -> None:
    full, _ = resolver_on(fake_network())
    minimised, _ = resolver_on(fake_network(), qname_minimisation=True)
    for name, rdtype in [
        ("www.example.test.", "A"),
        ("www.other.test.", "A"),
        ("deep.example.test.", "A"),
        ("dangling.example.test.", "A"),
        ("www.example.test.", "MX"),
        ("www.half.test.", "A"),
        ("www.lame.test.", "A"),
        ("loop.example.test.", "A"),
        ("example.test.", "DS"),
    ]:
        expected = resolve(full, name, rdtype)
        got = resolve(minimised, name, rdtype)
        assert (got.rcode, texts(got)) == (expected.rcode, texts(expected)), name


# Limits.


def test_upstream_queries_per_question_are_bounded() -> None:
    network = fake_network()
    resolver, _ = resolver_on(network, max_queries=2)
    assert resolve(resolver, "www.example.test.").rcode == dns.rcode.SERVFAIL
    assert len(network.asked) == 2
    resolver, _ = resolver_on(fake_network(), max_queries=3)
    assert texts(resolve(resolver, "www.example.test.")) == ["www.example.test. A 192.0.2.1"]


def test_referrals_are_bounded() -> None:
    network = fake_network()
    resolver, _ = resolver_on(network, max_referrals=1)
    assert resolve(resolver, "www.example.test.").rcode == dns.rcode.SERVFAIL
    assert network.addresses_asked() == [FAKE["root"], FAKE["test"]]


def test_name_servers_in_each_others_zones_without_glue_end() -> None:
    # a.test.'s server is named in b.test. and b.test.'s in a.test., no glue.
    cycle = TEST.format(**FAKE) + "a IN NS ns.b\nb IN NS ns.a\n"
    network = fake_network(test=FakeServer([Authority.from_text(cycle)]))
    resolver, _ = resolver_on(network)
    assert resolve(resolver, "www.a.test.").rcode == dns.rcode.SERVFAIL
    assert len(network.asked) <= 64


def test_identical_questions_share_one_resolution() -> None:
    pending: list[Deferred[Answer]] = []
    cancelled: list[Question] = []

    class Slow:
        def query(self, q: Question) -> Deferred[Answer]:
            d: Deferred[Answer] = Deferred(lambda _: cancelled.append(q))
            pending.append(d)
            return d

    network = Network({FAKE["root"]: Slow()})
    resolver, _ = resolver_on(network)
    first = resolver.query(question("www.example.test."))
    second = resolver.query(question("www.example.test."))
    other = resolver.query(question("www.other.test."))
    assert resolver.resolving == 2
    assert len(pending) == 2
    assert_no_result(first)
    root = zones(FAKE)["root"][0]
    pending[0].callback(root.lookup(question("nothing.")))
    # Both callers get the one outcome.
    assert success_result_of(first).rcode == dns.rcode.NXDOMAIN
    assert success_result_of(second).rcode == dns.rcode.NXDOMAIN
    # Cancelling the only caller stops the resolution and its query.
    other.cancel()
    failure_result_of(other)
    assert cancelled == [question("www.other.test.")]
    assert resolver.resolving == 0


def test_a_caller_cancelling_leaves_the_others_their_answer() -> None:
    pending: list[Deferred[Answer]] = []

    class Slow:
        def __init__(self, server: DNSResolver) -> None:
            self.server = server

        def query(self, q: Question) -> Deferred[Answer]:
            d: Deferred[Answer] = Deferred()
            pending.append(d)
            self.server.query(q).add_callback(lambda answer: pending.append(succeed(answer)))
            return d

    network = fake_network()
    network.servers[FAKE["root"]] = Slow(network.servers[FAKE["root"]])
    resolver, _ = resolver_on(network)
    first = resolver.query(question("www.example.test."))
    second = resolver.query(question("www.example.test."))
    first.cancel()
    failure_result_of(first)
    waiting, ready = pending
    waiting.callback(success_result_of(ready))
    assert texts(success_result_of(second)) == ["www.example.test. A 192.0.2.1"]


def test_concurrent_resolutions_are_bounded() -> None:
    class Never:
        def query(self, q: Question) -> Deferred[Answer]:
            return Deferred()

    network = Network({FAKE["root"]: Never()})
    resolver, reactor = resolver_on(network, max_resolutions=2)
    first = resolver.query(question("a.test."))
    second = resolver.query(question("b.test."))
    third = resolver.query(question("c.test."))
    assert isinstance(failure_result_of(third), QueueOverflowError)
    # The same question as one under way joins it instead.
    again = resolver.query(question("a.test."))
    assert_no_result(again)
    for d in (first, second, again):
        d.cancel()
        failure_result_of(d)
    assert resolver.resolving == 0
    assert reactor.get_delayed_calls() == []


def test_a_resolution_taking_too_long_is_servfail_and_stops() -> None:
    cancelled: list[Question] = []

    class Never:
        def query(self, q: Question) -> Deferred[Answer]:
            return Deferred(lambda _: cancelled.append(q))

    network = Network({FAKE["root"]: Never()})
    resolver, reactor = resolver_on(network, resolution_timeout=5.0)
    d = resolver.query(question("www.example.test."))
    reactor.advance(4.9)
    assert_no_result(d)
    reactor.advance(0.1)
    assert success_result_of(d).rcode == dns.rcode.SERVFAIL
    assert cancelled == [question("www.example.test.")]
    assert resolver.resolving == 0
    assert reactor.get_delayed_calls() == []


def test_close_stops_every_resolution() -> None:
    cancelled: list[Question] = []

    class Never:
        def query(self, q: Question) -> Deferred[Answer]:
            return Deferred(lambda _: cancelled.append(q))

    resolver, reactor = resolver_on(Network({FAKE["root"]: Never()}))
    waiting = [resolver.query(question(name)) for name in ("a.test.", "b.test.", "a.test.")]
    resolver.close()
    assert [success_result_of(d).rcode for d in waiting] == [dns.rcode.SERVFAIL] * 3
    assert sorted(str(q.name) for q in cancelled) == ["a.test.", "b.test."]
    assert resolver.resolving == 0
    assert reactor.get_delayed_calls() == []


def test_other_classes_are_not_resolved() -> None:
    resolver, _ = resolver_on(fake_network())
    chaos = Question(dns.name.from_text("version.bind."), dns.rdatatype.TXT, dns.rdataclass.CH)
    assert isinstance(failure_result_of(resolver.query(chaos)), NotMineError)


def test_an_external_cache_is_used_and_filled() -> None:
    network = fake_network()
    reactor = MemoryReactor()
    cache = CacheResolver(reactor)
    resolver = RecursiveResolver(
        reactor, hints={"ns.nic.": [FAKE["root"]]}, cache=cache, network=network
    )
    success_result_of(resolver.query(question("www.example.test.")))
    assert resolver.cache is cache
    assert texts(success_result_of(cache.query(question("www.example.test.")))) == [
        "www.example.test. A 192.0.2.1"
    ]


def test_ipv6_servers_are_skipped_when_ipv6_is_off() -> None:
    network = fake_network()
    reactor = MemoryReactor()
    resolver = RecursiveResolver(
        reactor, hints={"ns.nic.": ["2001:db8::53"]}, network=network, ipv6=False
    )
    assert success_result_of(resolver.query(question("a.test."))).rcode == dns.rcode.SERVFAIL
    assert network.asked == []


# Root hints.


def test_the_built_in_root_hints_are_ianas() -> None:
    network = Network({})
    resolver = RecursiveResolver(MemoryReactor(), network=network)
    success_result_of(resolver.query(question("example.")))
    # Every root server, over IPv4 and IPv6, and nothing else.
    assert sorted(network.addresses_asked()) == sorted(ROOT_ADDRESSES)


ROOT_ADDRESSES = {
    "198.41.0.4", "2001:503:ba3e::2:30", "170.247.170.2", "2801:1b8:10::b",
    "192.33.4.12", "2001:500:2::c", "199.7.91.13", "2001:500:2d::d",
    "192.203.230.10", "2001:500:a8::e", "192.5.5.241", "2001:500:2f::f",
    "192.112.36.4", "2001:500:12::d0d", "198.97.190.53", "2001:500:1::53",
    "192.36.148.17", "2001:7fe::53", "192.58.128.30", "2001:503:c27::2:30",
    "193.0.14.129", "2001:7fd::1", "199.7.83.42", "2001:500:9f::42",
    "202.12.27.33", "2001:dc3::35",
}  # fmt: skip


def test_root_hints_files_are_read(tmp_path: Path) -> None:
    hints = tmp_path / "named.root"
    hints.write_text(
        ";       This file holds the information on root name servers\n"
        ".                        3600000      NS    A.ROOT.TEST.\n"
        "A.ROOT.TEST.             3600000      A     127.0.0.2\n"
        "A.ROOT.TEST.             3600000      AAAA  ::1\n"
        ".                        3600000      NS    B.ROOT.TEST.\n"
    )
    assert load_root_hints(hints) == {dns.name.from_text("a.root.test."): ("127.0.0.2", "::1")}
    with pytest.raises(ZoneError):
        load_root_hints(tmp_path / "missing")
    with pytest.raises(ZoneError):
        parse_root_hints(".  3600000 NS b.root.test.\n")
    with pytest.raises(ZoneError):
        parse_root_hints("a.test. 3600 A 192.0.2.1\n")
    with pytest.raises(ZoneError):
        parse_root_hints(". 3600 NS\n")


@pytest.mark.parametrize(
    "options",
    [
        {"hints": {"ns.nic.": ["not an address"]}},
        {"hints": {"ns.nic.": []}},
        {"hints": {"x" * 64 + ".": ["192.0.2.1"]}},
        {"port": 0},
        {"timeout": 0},
        {"max_queries": 0},
        {"max_cname_chain": -1},
    ],
)
def test_bad_arguments(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (each case says why in its message)
        RecursiveResolver(MemoryReactor(), **options)  # type: ignore[arg-type]


# A real hierarchy on 127.0.0.x, every server on one port.

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

REAL = {
    "root": "127.0.0.2",
    "test": "127.0.0.3",
    "example": "127.0.0.4",
    "other": "127.0.0.5",
    "lame": "127.0.0.6",
}

BIG = [f'big.example.test. TXT "{n:02} {"x" * 120}"' for n in range(20)]

# Each question, and what resolving it gives: the response code and the
# answer section (zone-file lines without TTLs, each RRset sorted).
EXPECTED: list[tuple[str, str, str, list[str]]] = [
    ("www.example.test.", "A", "NOERROR", ["www.example.test. A 192.0.2.1"]),
    ("www.example.test.", "AAAA", "NOERROR", ["www.example.test. AAAA 2001:db8::1"]),
    ("www.other.test.", "A", "NOERROR", ["www.other.test. A 192.0.2.2"]),
    (
        "alias.example.test.",
        "A",
        "NOERROR",
        ["alias.example.test. CNAME www.other.test.", "www.other.test. A 192.0.2.2"],
    ),
    (
        "deep.example.test.",
        "A",
        "NOERROR",
        [
            "deep.example.test. CNAME back.other.test.",
            "back.other.test. CNAME www.example.test.",
            "www.example.test. A 192.0.2.1",
        ],
    ),
    ("mail.example.test.", "MX", "NOERROR", ["mail.example.test. MX 10 www.example.test."]),
    ("txt.example.test.", "TXT", "NOERROR", ['txt.example.test. TXT "hello world"']),
    ("big.example.test.", "TXT", "NOERROR", BIG),
    ("www.half.test.", "A", "NOERROR", ["www.half.test. A 192.0.2.3"]),
    ("host.ent.example.test.", "A", "NOERROR", ["host.ent.example.test. A 192.0.2.9"]),
    ("ent.example.test.", "A", "NOERROR", []),
    (
        "a.b.c.d.e.f.g.h.i.j.k.l.example.test.",
        "A",
        "NOERROR",
        ["a.b.c.d.e.f.g.h.i.j.k.l.example.test. A 192.0.2.10"],
    ),
    ("x.y.nothing.example.test.", "A", "NXDOMAIN", []),
    ("nothing.example.test.", "A", "NXDOMAIN", []),
    ("www.example.test.", "MX", "NOERROR", []),
    ("nothing.other.test.", "A", "NXDOMAIN", []),
    ("www.other.test.", "TXT", "NOERROR", []),
    (
        "dangling.example.test.",
        "A",
        "NXDOMAIN",
        ["dangling.example.test. CNAME nothing.other.test."],
    ),
    ("nothing.test.", "A", "NXDOMAIN", []),
    ("www.lame.test.", "A", "SERVFAIL", []),
    ("loop.example.test.", "A", "SERVFAIL", []),
]


def outcome(answer: Answer) -> tuple[str, list[str]]:
    return dns.rcode.to_text(answer.rcode), texts(answer)


@contextlib.asynccontextmanager
async def serving_hierarchy(
    reactor: Reactor, directory: Path, port: int = 0
) -> AsyncIterator[int]:
    """Serve the hierarchy on REAL's addresses, one port for all; yield the port.

    torsion's DNSServer serves ".", "test.", "example.test." with
    "half.test." and the lame server; nsd serves "other.test.". With port 0
    the first server's port is taken for the others, and the whole
    hierarchy is started again on another port if one of them finds it taken.
    """
    authorities = zones(REAL)
    last: OSError | None = None
    for attempt in range(5):
        async with contextlib.AsyncExitStack() as stack:
            try:
                chosen = port
                for role in ("root", "test", "example", "lame"):
                    server = DNSServer(authorities[role])
                    ports = server.listen(reactor, chosen, interface=REAL[role])
                    stack.push_async_callback(ports.stop_listening)
                    chosen = ports.port
                stack.enter_context(
                    running_nsd_at(
                        directory / f"nsd{attempt}",
                        "other.test",
                        OTHER.format(**REAL),
                        REAL["other"],
                        chosen,
                    )
                )
            except OSError as exc:  # CannotListenError, or nsd's bind
                if port != 0:
                    raise
                last = exc
                continue
            yield chosen
            return
    assert last is not None
    raise last


def real_resolver(reactor: Reactor, port: int, **options: bool) -> RecursiveResolver:
    return RecursiveResolver(
        reactor, hints={"ns.nic.": [REAL["root"]]}, port=port, timeout=5.0, **options
    )


@BOTH_LOOPS
@pytest.mark.parametrize("minimise", [False, True], ids=["full", "minimised"])
async def test_resolving_a_local_hierarchy(
    reactor: Reactor, loop: str, minimise: bool, tmp_path: Path
) -> None:
    async with serving_hierarchy(reactor, tmp_path) as port:
        resolver = real_resolver(reactor, port, qname_minimisation=minimise)
        for name, rdtype, rcode, answer in EXPECTED:
            result = await resolver.query(question(name, rdtype))
            assert outcome(result) == (rcode, answer), (name, rdtype)
            if rcode == "NXDOMAIN" or (rcode == "NOERROR" and not answer):
                [soa] = result.authority
                assert soa.rdtype == dns.rdatatype.SOA
                # The SOA of the zone of the chain's last name.
                last = result.answer[-1][0].target if result.answer else question(name).name
                assert last.is_subdomain(soa.name)
        assert resolver.resolving == 0


@BOTH_LOOPS
async def test_dig_through_a_recursive_server(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    async with serving_hierarchy(reactor, tmp_path) as port:
        resolver = real_resolver(reactor, port)
        front = DNSServer([ResolverChain([CacheResolver(reactor), resolver])], recursive=True)
        front_ports = front.listen(reactor, 0)
        try:
            for transport in ("+notcp", "+tcp"):
                output = await dig(front_ports.port, transport, "alias.example.test.", "A")
                assert "status: NOERROR" in output
                assert re.search(r"flags: qr rd ra;", output)
                assert [line.split(None, 2)[::2] for line in records(output)] == [
                    ["alias.example.test.", "IN CNAME www.other.test."],
                    ["www.other.test.", "IN A 192.0.2.2"],
                ]
            nx = await dig(front_ports.port, "nothing.other.test.", "A")
            assert "status: NXDOMAIN" in nx
            assert records(nx)[0].startswith("other.test. 300 IN SOA ns2.example.test. ")
            # Large answers come over TCP from the zone's server, whole.
            big = await dig(front_ports.port, "+tcp", "big.example.test.", "TXT")
            assert len(records(big)) == 20
            lame = await dig(front_ports.port, "www.lame.test.", "A")
            assert "status: SERVFAIL" in lame
        finally:
            await front_ports.stop_listening()


# unbound, the recursive peer, on the same hierarchy on port 53.

UNBOUND_CONF = """\
server:
    interface: 127.0.0.1@{port}
    do-daemonize: no
    do-ip6: no
    do-not-query-localhost: no
    root-hints: "{dir}/root.hints"
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    # "test." is one of unbound's default local zones (RFC 6761); resolve it.
    local-zone: "test." nodefault
    local-zone: "torsion-ready." static
    local-data: "torsion-ready. A 127.0.0.1"
remote-control:
    control-enable: no
"""


@contextlib.contextmanager
def running_unbound(directory: Path, root: str) -> Iterator[int]:
    """Run unbound with ``root`` as its only root server; yield its port on 127.0.0.1."""
    program = require_peer("unbound", package="unbound")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "root.hints").write_text(f".  3600000 NS ns.nic.\nns.nic. 3600000 A {root}\n")
    port = free_port()
    conf = directory / "unbound.conf"
    conf.write_text(UNBOUND_CONF.format(port=port, dir=directory))
    log = directory / "unbound.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [program, "-d", "-c", str(conf)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        # Waited for by asking it a name it answers itself (the hierarchy's
        # servers run on this thread's loop: nothing may need them yet).
        query = dns.message.make_query("torsion-ready.", "A")
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                pytest.fail(f"unbound exited with {process.returncode}: {log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"unbound did not answer within 15 s: {log.read_text()}")
            try:
                dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
            except (dns.exception.Timeout, OSError):
                continue
            break
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a wedged unbound
            process.kill()
            process.wait()


@BOTH_LOOPS
@pytest.mark.timeout(30)
async def test_the_same_answers_as_unbound(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    require_peer("unbound", package="unbound")
    if os.geteuid() != 0:
        pytest.skip("needs root to serve a hierarchy on port 53")
    try:
        hierarchy = serving_hierarchy(reactor, tmp_path, port=53)
        await hierarchy.__aenter__()
    except OSError as exc:
        pytest.skip(f"127.0.0.x:53 is taken: {exc}")
    try:
        with running_unbound(tmp_path / "unbound", REAL["root"]) as unbound_port:
            ours = real_resolver(reactor, 53)
            minimised = real_resolver(reactor, 53, qname_minimisation=True)
            # unbound asked through a client of one try, like any stub resolver.
            client = DNSClient(reactor, [("127.0.0.1", unbound_port)], timeout=10.0, attempts=1)
            for name, rdtype, rcode, answer in EXPECTED:
                q = question(name, rdtype)
                theirs = outcome(await client.query(q))
                assert theirs == (rcode, answer), (name, rdtype)
                assert outcome(await ours.query(q)) == theirs, (name, rdtype)
                assert outcome(await minimised.query(q)) == theirs, (name, rdtype)
            assert client.outstanding == 0
    finally:
        await hierarchy.__aexit__(None, None, None)

"""Tests for the search list and the resolv.conf options the client honours, on fakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from torsion.defer import CancelledError, Deferred, fail, succeed
from torsion.errors import DNSLookupError
from torsion.names._answer import Answer, Question
from torsion.names._client import AddressResolver, DNSClient
from torsion.names._search import SearchList, lookup_addresses
from torsion.testing import MemoryReactor
from torsion.testing._memory_datagrams import MemoryUDPPort


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


def texts(names: list[dns.name.Name]) -> list[str]:
    return [name.to_text() for name in names]


SEARCH = SearchList.of(["corp.example", "lab.example"])


# Which names are tried, and in what order.


def test_a_name_with_fewer_dots_than_ndots_goes_through_the_search_list_first() -> None:
    assert texts(SEARCH.names("db")) == ["db.corp.example.", "db.lab.example.", "db."]


def test_a_name_with_enough_dots_is_tried_as_it_is_first() -> None:
    assert texts(SEARCH.names("www.example.org")) == [
        "www.example.org.",
        "www.example.org.corp.example.",
        "www.example.org.lab.example.",
    ]
    deep = SearchList.of(["corp.example"], ndots=3)
    assert texts(deep.names("a.b.c")) == ["a.b.c.corp.example.", "a.b.c."]
    assert texts(deep.names("a.b.c.d")) == ["a.b.c.d.", "a.b.c.d.corp.example."]


def test_a_final_dot_or_an_absolute_name_is_asked_alone() -> None:
    assert texts(SEARCH.names("db.")) == ["db."]
    assert texts(SEARCH.names(dns.name.from_text("db.example."))) == ["db.example."]
    # A relative dns.name.Name goes through the search list like text.
    assert texts(SEARCH.names(dns.name.from_text("db", None)))[0] == "db.corp.example."


def test_no_tld_query_never_asks_a_single_label_alone() -> None:
    strict = SearchList.of(["corp.example"], tld_query=False)
    assert texts(strict.names("db")) == ["db.corp.example."]
    assert texts(strict.names("db.x")) == ["db.x.", "db.x.corp.example."]


def test_too_long_candidates_are_skipped_and_bad_names_refused() -> None:
    long_domain = ".".join(["d" * 60] * 3)
    search = SearchList.of([long_domain, "ok.example"])
    name = "n" * 60 + "." + "m" * 10
    assert texts(search.names(name)) == [f"{name}.", f"{name}.ok.example."]
    with pytest.raises(ValueError, match="domain name"):
        SEARCH.names("a" * 64)
    with pytest.raises(ValueError, match="domain name"):
        SEARCH.names("")
    with pytest.raises(ValueError, match="ndots"):
        SearchList.of([], ndots=-1)


# Which answer wins, on a scripted resolver.


class Scripted:
    """A resolver answering each name with a given rcode, records, or an error."""

    def __init__(self, script: dict[str, dns.rcode.Rcode | str | Exception]) -> None:
        self.script = script
        self.asked: list[str] = []

    def query(self, question: Question) -> Deferred[Answer]:
        name = question.name.to_text()
        self.asked.append(f"{name} {question.rdtype.name}")
        what = self.script.get(name, dns.rcode.NXDOMAIN)
        if isinstance(what, Exception):
            return fail(what)
        if isinstance(what, str):
            if question.rdtype != dns.rdatatype.from_text(what.split()[0]):
                return succeed(Answer())
            rrset = dns.rrset.from_text(question.name, 60, "IN", *what.split())
            return succeed(Answer(answer=[rrset]))
        return succeed(Answer(rcode=what))


def test_nxdomain_moves_on_and_the_first_records_win() -> None:
    resolver = Scripted({"db.lab.example.": "A 192.0.2.7", "db.": "A 192.0.2.99"})
    answer = result_of(SEARCH.query(resolver, "db", dns.rdatatype.A))
    assert str(answer.answer[0][0]) == "192.0.2.7"
    assert resolver.asked == ["db.corp.example. A", "db.lab.example. A"]


def test_servfail_and_timeouts_do_not_hide_a_later_success() -> None:
    resolver = Scripted(
        {
            "db.corp.example.": dns.rcode.SERVFAIL,
            "db.lab.example.": TimeoutError("no answer"),
            "db.": "A 192.0.2.99",
        }
    )
    answer = result_of(SEARCH.query(resolver, "db", dns.rdatatype.A))
    assert str(answer.answer[0][0]) == "192.0.2.99"


def test_without_records_nodata_beats_failure_which_beats_nxdomain() -> None:
    nodata = Scripted({"db.corp.example.": dns.rcode.SERVFAIL, "db.lab.example.": "MX 10 m."})
    answer = result_of(SEARCH.query(nodata, "db", dns.rdatatype.A))
    assert (answer.rcode, answer.answer) == (dns.rcode.NOERROR, [])
    assert len(nodata.asked) == 3
    servfail = Scripted({"db.lab.example.": dns.rcode.SERVFAIL})
    assert result_of(SEARCH.query(servfail, "db", dns.rdatatype.A)).rcode == dns.rcode.SERVFAIL
    timeout = Scripted({"db.lab.example.": TimeoutError("no answer")})
    assert isinstance(failure_of(SEARCH.query(timeout, "db", dns.rdatatype.A)), TimeoutError)
    nothing = Scripted({})
    assert result_of(SEARCH.query(nothing, "db", dns.rdatatype.A)).rcode == dns.rcode.NXDOMAIN


def test_addresses_take_the_first_name_with_either_kind() -> None:
    resolver = Scripted(
        {
            "db.corp.example.": dns.rcode.SERVFAIL,
            "db.lab.example.": "AAAA 2001:db8::7",
            "db.": "A 192.0.2.99",
        }
    )
    assert result_of(SEARCH.addresses(resolver, "db")) == ["2001:db8::7"]
    assert resolver.asked == [
        "db.corp.example. A",
        "db.corp.example. AAAA",
        "db.lab.example. A",
        "db.lab.example. AAAA",
    ]
    silent = Scripted({name: TimeoutError("x") for name in SEARCH_NAMES})
    assert isinstance(failure_of(SEARCH.addresses(silent, "db")), TimeoutError)
    # One answer anywhere (here an NXDOMAIN) makes "no address", not a failure.
    partly = Scripted(
        {"db.corp.example.": TimeoutError("x"), "db.lab.example.": TimeoutError("x")}
    )
    assert result_of(SEARCH.addresses(partly, "db")) == []


SEARCH_NAMES = ["db.corp.example.", "db.lab.example.", "db."]


def test_lookup_addresses_asks_only_the_name_given() -> None:
    resolver = Scripted({"db.": "A 192.0.2.99"})
    assert result_of(lookup_addresses(resolver, dns.name.from_text("db."))) == ["192.0.2.99"]
    assert resolver.asked == ["db. A", "db. AAAA"]


def test_cancelling_a_search_cancels_the_query_under_way() -> None:
    cancelled: list[Question] = []

    class Pending:
        def query(self, question: Question) -> Deferred[Answer]:
            return Deferred(lambda _: cancelled.append(question))

    d = SEARCH.query(Pending(), "db", dns.rdatatype.A)
    d.cancel()
    assert isinstance(failure_of(d), CancelledError)
    assert [question.name.to_text() for question in cancelled] == ["db.corp.example."]


# The client: the lookups search, query() does not.

SERVERS = [("192.0.2.53", 53), ("192.0.2.54", 53)]


def request_of(port: MemoryUDPPort) -> dns.message.Message:
    return dns.message.from_wire(port.written[-1][0])


def answer_port(
    port: MemoryUDPPort, *records: str, rcode: dns.rcode.Rcode = dns.rcode.NOERROR
) -> None:
    request = request_of(port)
    response = dns.message.make_response(request)
    response.set_rcode(rcode)
    [question] = request.question
    if records:
        response.answer.append(
            dns.rrset.from_text(question.name, 60, "IN", question.rdtype, *records)
        )
    port.deliver(response.to_wire())


def test_the_clients_lookups_use_its_search_list_and_query_does_not() -> None:
    reactor = MemoryReactor()
    client = DNSClient(reactor, SERVERS, search=["corp.example"], attempts=1)
    d = client.lookup_mail_exchange("mail")
    first = reactor.udp_ports[-1]
    assert request_of(first).question[0].name.to_text() == "mail.corp.example."
    answer_port(first, rcode=dns.rcode.NXDOMAIN)
    second = reactor.udp_ports[-1]
    assert request_of(second).question[0].name.to_text() == "mail."
    answer_port(second, "10 mx.example.")
    assert str(result_of(d).answer[0][0]) == "10 mx.example."
    client.query(Question(dns.name.from_text("mail."), dns.rdatatype.MX))
    assert request_of(reactor.udp_ports[-1]).question[0].name.to_text() == "mail."


def test_the_address_resolver_uses_the_clients_search_list() -> None:
    reactor = MemoryReactor()
    client = DNSClient(reactor, SERVERS, search=["corp.example"], attempts=1)
    d = AddressResolver(client).resolve_all("db")
    a_port, aaaa_port = reactor.udp_ports
    assert request_of(a_port).question[0].name.to_text() == "db.corp.example."
    answer_port(a_port, "192.0.2.7")
    answer_port(aaaa_port)
    assert result_of(d) == ["192.0.2.7"]
    # Given its own search list, it uses that one.
    other = AddressResolver(client, SearchList.of(["lab.example"]))
    other.resolve_all("db")
    assert request_of(reactor.udp_ports[-2]).question[0].name.to_text() == "db.lab.example."
    bad = AddressResolver(client).resolve_all("a" * 64)
    assert isinstance(failure_of(bad), DNSLookupError)


def test_resolv_conf_gives_search_ndots_rotate_edns0_and_use_vc(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(
        "nameserver 192.0.2.1\nnameserver fe80::1%lo\n"
        "search corp.example\noptions ndots:2 rotate use-vc edns0\n"
    )
    client = DNSClient(MemoryReactor(), resolv_conf=str(path))
    assert client.servers == (("192.0.2.1", 53), ("fe80::1%lo", 53))
    assert client.search_list == SearchList.of(["corp.example"], ndots=2)
    assert client.rotate
    assert client.use_tcp
    assert client.edns_payload == 1232
    path.write_text("nameserver 192.0.2.1\n")
    plain = DNSClient(MemoryReactor(), resolv_conf=str(path))
    # No "options edns0": no OPT record, as the C library sends none.
    assert plain.edns_payload == 0
    assert (plain.rotate, plain.use_tcp) == (False, False)
    # Servers given: EDNS0 on, no search list, whatever the file says.
    given = DNSClient(MemoryReactor(), SERVERS, resolv_conf=str(path))
    assert given.edns_payload == 1232
    assert given.search_list == SearchList()


def test_without_edns0_the_query_carries_no_opt_record(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 192.0.2.1\n")
    reactor = MemoryReactor()
    DNSClient(reactor, resolv_conf=str(path)).query(
        Question(dns.name.from_text("a."), dns.rdatatype.A)
    )
    assert request_of(reactor.udp_ports[0]).edns == -1


def test_rotate_starts_each_query_with_the_next_server() -> None:
    reactor = MemoryReactor()
    client = DNSClient(
        reactor, [*SERVERS, ("192.0.2.55", 53)], rotate=True, timeout=1.0, attempts=1
    )
    question = Question(dns.name.from_text("a."), dns.rdatatype.A)
    for _ in range(4):
        client.query(question)
    firsts = [port.peer.host for port in reactor.udp_ports if port.peer is not None]
    assert firsts == ["192.0.2.53", "192.0.2.54", "192.0.2.55", "192.0.2.53"]
    # A query still goes round every server: the second one's next is the third.
    reactor.advance(1.0)
    assert reactor.udp_ports[5].peer is not None
    assert reactor.udp_ports[5].peer.host == "192.0.2.55"


def test_use_tcp_asks_over_tcp_from_the_start() -> None:
    reactor = MemoryReactor()
    client = DNSClient(reactor, SERVERS, use_tcp=True, attempts=1)
    client.query(Question(dns.name.from_text("a."), dns.rdatatype.A))
    assert reactor.udp_ports == []
    [call] = reactor.tcp_clients
    assert (call.host, call.port) == SERVERS[0]


def test_a_scoped_servers_answer_is_accepted_with_or_without_the_scope() -> None:
    reactor = MemoryReactor()
    client = DNSClient(reactor, [("fe80::1%lo", 53)], attempts=1)
    d = client.query(Question(dns.name.from_text("a."), dns.rdatatype.A))
    [port] = reactor.udp_ports
    request = request_of(port)
    response = dns.message.make_response(request)
    port.protocol.datagram_received(response.to_wire(), ("fe80::1", 53, 0, 1))
    assert result_of(d).rcode == dns.rcode.NOERROR

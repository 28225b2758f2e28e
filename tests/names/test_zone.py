"""Authority: answers from a BIND zone file, with the semantics of RFC 1034, 2308 and 4592."""

from __future__ import annotations

from pathlib import Path

import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest

from torsion.names._answer import Answer, NotMineError, Question
from torsion.names._zone import Authority, ZoneError
from torsion.testing import failure_result_of, success_result_of

ZONE = """\
$ORIGIN example.test.
$TTL 3600
@       IN SOA ns1 hostmaster ( 2026112401 7200 900 1209600 300 )
        IN NS  ns1
        IN NS  ns2.elsewhere.test.
        IN MX  10 mail
        IN A   192.0.2.1
ns1     IN A   192.0.2.53
mail    IN A   192.0.2.25
        IN AAAA 2001:db8::25
www     IN CNAME web
web     IN CNAME host
host    IN A   192.0.2.80
out     IN CNAME www.elsewhere.test.
loop1   IN CNAME loop2
loop2   IN CNAME loop1
dangling IN CNAME missing
txt     IN TXT "hello world" "second string"
_sip._tcp IN SRV 0 5 5060 host
a.b.c   IN A   192.0.2.99
*.wild  IN A   192.0.2.42
*.wild  IN TXT "wildcard"
sub     IN NS  ns.sub
ns.sub  IN A   192.0.2.200
deep.sub IN A  192.0.2.201
"""

ORIGIN = dns.name.from_text("example.test.")


@pytest.fixture
def authority() -> Authority:
    return Authority.from_text(ZONE)


def ask(authority: Authority, name: str, rdtype: str) -> Answer:
    question = Question(dns.name.from_text(name), dns.rdatatype.from_text(rdtype))
    return success_result_of(authority.query(question))


def texts(rrsets: list[dns.rrset.RRset]) -> list[str]:
    return [line for rrset in rrsets for line in rrset.to_text().splitlines()]


def test_records_with_aa(authority: Authority) -> None:
    answer = ask(authority, "host.example.test.", "A")
    assert answer.rcode == dns.rcode.NOERROR
    assert answer.authoritative
    assert texts(answer.answer) == ["host.example.test. 3600 IN A 192.0.2.80"]
    assert answer.authority == []


def test_relative_names_are_completed_with_the_origin(authority: Authority) -> None:
    answer = ask(authority, "example.test.", "MX")
    assert texts(answer.answer) == ["example.test. 3600 IN MX 10 mail.example.test."]


def test_blank_owner_belongs_to_the_previous_owner(authority: Authority) -> None:
    answer = ask(authority, "mail.example.test.", "AAAA")
    assert texts(answer.answer) == ["mail.example.test. 3600 IN AAAA 2001:db8::25"]


def test_txt_strings_with_spaces_stay_whole(authority: Authority) -> None:
    (rrset,) = ask(authority, "txt.example.test.", "TXT").answer
    (rdata,) = rrset
    assert rdata.strings == (b"hello world", b"second string")


def test_mx_target_address_in_additional(authority: Authority) -> None:
    answer = ask(authority, "example.test.", "MX")
    assert texts(answer.additional) == [
        "mail.example.test. 3600 IN A 192.0.2.25",
        "mail.example.test. 3600 IN AAAA 2001:db8::25",
    ]


def test_ns_targets_in_zone_get_addresses_others_not(authority: Authority) -> None:
    answer = ask(authority, "example.test.", "NS")
    assert len(answer.answer[0]) == 2
    assert texts(answer.additional) == ["ns1.example.test. 3600 IN A 192.0.2.53"]


def test_srv_target_address_in_additional(authority: Authority) -> None:
    answer = ask(authority, "_sip._tcp.example.test.", "SRV")
    assert texts(answer.answer) == [
        "_sip._tcp.example.test. 3600 IN SRV 0 5 5060 host.example.test."
    ]
    assert texts(answer.additional) == ["host.example.test. 3600 IN A 192.0.2.80"]


def test_cname_chain_is_followed_inside_the_zone(authority: Authority) -> None:
    answer = ask(authority, "www.example.test.", "A")
    assert answer.authoritative
    assert texts(answer.answer) == [
        "www.example.test. 3600 IN CNAME web.example.test.",
        "web.example.test. 3600 IN CNAME host.example.test.",
        "host.example.test. 3600 IN A 192.0.2.80",
    ]


def test_cname_asked_for_is_not_followed(authority: Authority) -> None:
    answer = ask(authority, "www.example.test.", "CNAME")
    assert texts(answer.answer) == ["www.example.test. 3600 IN CNAME web.example.test."]


def test_cname_out_of_the_zone_stops_there(authority: Authority) -> None:
    answer = ask(authority, "out.example.test.", "A")
    assert answer.rcode == dns.rcode.NOERROR
    assert texts(answer.answer) == ["out.example.test. 3600 IN CNAME www.elsewhere.test."]


def test_cname_loop_ends(authority: Authority) -> None:
    answer = ask(authority, "loop1.example.test.", "A")
    assert texts(answer.answer) == [
        "loop1.example.test. 3600 IN CNAME loop2.example.test.",
        "loop2.example.test. 3600 IN CNAME loop1.example.test.",
    ]


def test_cname_to_a_missing_name_is_nxdomain_with_the_chain(authority: Authority) -> None:
    # RFC 6604: the rcode is that of the last name in the chain.
    answer = ask(authority, "dangling.example.test.", "A")
    assert answer.rcode == dns.rcode.NXDOMAIN
    assert len(answer.answer) == 1
    assert answer.authority[0].rdtype == dns.rdatatype.SOA


def test_nodata_has_the_soa_with_the_negative_ttl(authority: Authority) -> None:
    answer = ask(authority, "host.example.test.", "AAAA")
    assert answer.rcode == dns.rcode.NOERROR
    assert answer.authoritative
    assert answer.answer == []
    (soa,) = answer.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.name == ORIGIN
    # min(SOA TTL 3600, MINIMUM 300): RFC 2308 section 5.
    assert soa.ttl == 300


def test_negative_ttl_is_the_soa_ttl_when_smaller() -> None:
    authority = Authority.from_text(
        "$ORIGIN z.test.\n@ 60 IN SOA ns h 1 2 3 4 900\n@ 60 IN NS ns\nns 60 IN A 192.0.2.1\n"
    )
    answer = ask(authority, "nope.z.test.", "A")
    assert answer.authority[0].ttl == 60


def test_nxdomain_has_the_soa_and_aa(authority: Authority) -> None:
    answer = ask(authority, "nothing.example.test.", "A")
    assert answer.rcode == dns.rcode.NXDOMAIN
    assert answer.authoritative
    assert answer.answer == []
    assert texts(answer.authority) == [
        "example.test. 300 IN SOA ns1.example.test. hostmaster.example.test. "
        "2026112401 7200 900 1209600 300"
    ]


def test_empty_non_terminal_is_nodata(authority: Authority) -> None:
    answer = ask(authority, "b.c.example.test.", "A")
    assert answer.rcode == dns.rcode.NOERROR
    assert answer.answer == []
    assert answer.authority[0].rdtype == dns.rdatatype.SOA


def test_delegation_is_a_referral_with_glue_without_aa(authority: Authority) -> None:
    for name in ("sub.example.test.", "deep.sub.example.test.", "x.y.sub.example.test."):
        answer = ask(authority, name, "A")
        assert answer.rcode == dns.rcode.NOERROR
        assert not answer.authoritative
        assert answer.answer == []
        assert texts(answer.authority) == ["sub.example.test. 3600 IN NS ns.sub.example.test."]
        assert texts(answer.additional) == ["ns.sub.example.test. 3600 IN A 192.0.2.200"]


def test_ds_at_the_cut_is_answered_by_the_parent(authority: Authority) -> None:
    answer = ask(authority, "sub.example.test.", "DS")
    assert answer.authoritative
    assert answer.authority[0].rdtype == dns.rdatatype.SOA


def test_wildcard_synthesises_records_for_the_name_asked(authority: Authority) -> None:
    answer = ask(authority, "anything.wild.example.test.", "A")
    assert answer.authoritative
    assert texts(answer.answer) == ["anything.wild.example.test. 3600 IN A 192.0.2.42"]
    nodata = ask(authority, "anything.wild.example.test.", "MX")
    assert nodata.rcode == dns.rcode.NOERROR
    assert nodata.answer == []


def test_wildcard_does_not_cover_below_an_existing_name(authority: Authority) -> None:
    # RFC 4592 section 2.2.1: only "*.<closest encloser>" answers.
    answer = ask(authority, "x.host.example.test.", "A")
    assert answer.rcode == dns.rcode.NXDOMAIN


def test_any_returns_every_rrset(authority: Authority) -> None:
    answer = ask(authority, "mail.example.test.", "ANY")
    assert sorted(rrset.rdtype for rrset in answer.answer) == [
        dns.rdatatype.A,
        dns.rdatatype.AAAA,
    ]


def test_outside_the_zone_is_not_mine(authority: Authority) -> None:
    for question in (
        Question(dns.name.from_text("example.org."), dns.rdatatype.A),
        Question(dns.name.from_text("test."), dns.rdatatype.A),
        Question(ORIGIN, dns.rdatatype.A, dns.rdataclass.CH),
    ):
        failure_result_of(authority.query(question), NotMineError)


def test_transfer_is_soa_everything_soa(authority: Authority) -> None:
    records = authority.transfer()
    assert records[0].rdtype == dns.rdatatype.SOA
    assert records[-1].rdtype == dns.rdatatype.SOA
    assert sum(1 for rrset in records if rrset.rdtype == dns.rdatatype.SOA) == 2
    names = {rrset.name for rrset in records}
    assert dns.name.from_text("*.wild.example.test.") in names
    assert dns.name.from_text("ns.sub.example.test.") in names


def test_from_file_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "example.test.zone"
    path.write_text(ZONE)
    authority = Authority.from_file(path)
    assert authority.origin == ORIGIN
    assert texts(ask(authority, "host.example.test.", "A").answer) == [
        "host.example.test. 3600 IN A 192.0.2.80"
    ]
    path.write_text(ZONE.replace("192.0.2.80", "192.0.2.81"))
    authority.reload()
    assert texts(ask(authority, "host.example.test.", "A").answer) == [
        "host.example.test. 3600 IN A 192.0.2.81"
    ]
    # A broken file leaves the zone served as it was.
    path.write_text("$ORIGIN example.test.\n@ IN A 192.0.2.1\n")
    with pytest.raises(ZoneError):
        authority.reload()
    assert ask(authority, "host.example.test.", "A").answer[0][0].to_text() == "192.0.2.81"


def test_file_without_origin_takes_the_one_given(tmp_path: Path) -> None:
    path = tmp_path / "zone"
    path.write_text("@ 60 IN SOA ns h 1 2 3 4 5\n@ 60 IN NS ns\n@ 60 IN MX 10 mail\n")
    authority = Authority.from_file(path, origin="given.test.")
    answer = ask(authority, "given.test.", "MX")
    assert texts(answer.answer) == ["given.test. 60 IN MX 10 mail.given.test."]


def test_bad_files_are_zone_errors(tmp_path: Path) -> None:
    with pytest.raises(ZoneError, match="cannot read"):
        Authority.from_file(tmp_path / "missing")
    path = tmp_path / "bad"
    path.write_text("$ORIGIN bad.test.\n@ IN SOA ns h 1 2 3 4\n")
    with pytest.raises(ZoneError):
        Authority.from_file(path)
    with pytest.raises(ZoneError):
        Authority.from_text("@ IN A 192.0.2.1\n", origin="nosoa.test.")


def test_a_relativized_zone_answers_with_absolute_names() -> None:
    zone = dns.zone.from_text(ZONE, relativize=True)
    authority = Authority(zone)
    answer = ask(authority, "www.example.test.", "A")
    assert texts(answer.answer)[-1] == "host.example.test. 3600 IN A 192.0.2.80"
    mx = ask(authority, "example.test.", "MX")
    assert texts(mx.answer) == ["example.test. 3600 IN MX 10 mail.example.test."]
    assert len(mx.additional) == 2


def test_a_zone_built_in_python() -> None:
    zone = dns.zone.Zone("py.test.", relativize=False)
    origin = dns.name.from_text("py.test.")
    with zone.writer() as txn:
        txn.add(origin, 60, dns.rdata.from_text("IN", "SOA", "ns.py.test. h.py.test. 1 2 3 4 5"))
        txn.add(origin, 60, dns.rdata.from_text("IN", "NS", "ns.py.test."))
        txn.add(dns.name.from_text("ns.py.test."), 60, dns.rdata.from_text("IN", "A", "192.0.2.1"))
    answer = ask(Authority(zone), "ns.py.test.", "A")
    assert texts(answer.answer) == ["ns.py.test. 60 IN A 192.0.2.1"]


def test_negative_answers_get_their_own_soa(authority: Authority) -> None:
    first = ask(authority, "nothing.example.test.", "A")
    first.authority[0].ttl = 1
    assert ask(authority, "nothing.example.test.", "A").authority[0].ttl == 300


def test_names_match_whatever_their_case(authority: Authority) -> None:
    answer = ask(authority, "HoSt.Example.TEST.", "A")
    assert texts(answer.answer) == ["HoSt.Example.TEST. 3600 IN A 192.0.2.80"]

"""DNSServer on fakes: transfers of primary and secondary zones, IXFR, NOTIFY and TSIG."""

from __future__ import annotations

import base64
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.zone
import pytest

from torsion.defer import Deferred, succeed
from torsion.names._secondary import NotifiedZone, SecondaryAuthority
from torsion.names._server import DNSServer
from torsion.names._zone import Authority, ServedZone
from torsion.testing import Clock, success_result_of

ORIGIN = dns.name.from_text("example.test.")
ZONE = """\
$ORIGIN example.test.
$TTL 3600
@       IN SOA ns1 hostmaster {serial} 100 20 500 300
        IN NS  ns1
ns1     IN A   192.0.2.53
host    IN A   {address}
"""


def zone(serial: int, address: str = "192.0.2.80") -> dns.zone.Zone:
    text = ZONE.format(serial=serial, address=address)
    return dns.zone.from_text(text, relativize=False)


class Primary:
    """A primary that answers at once with the zone it holds now."""

    def __init__(self, held: dns.zone.Zone) -> None:
        self.held = held
        self.asked = 0

    def serial(self, origin: dns.name.Name) -> Deferred[int]:
        self.asked += 1
        rdataset = self.held.get_rdataset(origin, "SOA")
        assert rdataset is not None
        return succeed(int(rdataset[0].serial))

    def transfer(self, origin: dns.name.Name) -> Deferred[dns.zone.Zone]:
        return succeed(self.held)


def secondary(clock: Clock, primary: Primary, master: str = "192.0.2.1") -> SecondaryAuthority:
    return SecondaryAuthority(clock, "example.test.", (master, 53), primary=primary)


def respond(server: DNSServer, wire: bytes, *, tcp: bool, client: str) -> list[bytes]:
    return success_result_of(server.respond(wire, client, tcp=tcp))


def ask(
    server: DNSServer,
    message: dns.message.Message,
    *,
    tcp: bool = False,
    client: str = "192.0.2.1",
) -> list[dns.message.Message]:
    wires = respond(server, message.to_wire(), tcp=tcp, client=client)
    return [dns.message.from_wire(wire, one_rr_per_rrset=True) for wire in wires]


def test_authorities_and_secondaries_are_served_zones_and_only_secondaries_hear_notify() -> None:
    clock = Clock()
    authority = Authority(zone(1))
    held = secondary(clock, Primary(zone(1)))
    assert isinstance(authority, ServedZone)
    assert isinstance(held, ServedZone)
    assert isinstance(held, NotifiedZone)
    assert not isinstance(authority, NotifiedZone)
    assert held.zone is None
    with pytest.raises(Exception, match="not loaded"):
        held.transfer()


def test_a_loaded_secondary_is_transferred_like_a_primary_zone() -> None:
    clock = Clock()
    held = secondary(clock, Primary(zone(7)))
    server = DNSServer([held], allow_axfr=["192.0.2.0/24"])
    axfr = dns.message.make_query(ORIGIN, "AXFR")
    (before,) = ask(server, axfr, tcp=True)
    assert before.rcode() == dns.rcode.SERVFAIL  # nothing to transfer yet
    held.start()
    assert held.loaded
    (whole,) = ask(server, axfr, tcp=True)
    assert whole.rcode() == dns.rcode.NOERROR
    assert whole.flags & dns.flags.AA
    names = [(str(rrset.name), dns.rdatatype.to_text(rrset.rdtype)) for rrset in whole.answer]
    assert names[0] == names[-1] == ("example.test.", "SOA")
    assert ("host.example.test.", "A") in names
    (refused,) = ask(server, axfr, tcp=True, client="198.51.100.1")
    assert refused.rcode() == dns.rcode.REFUSED
    held.stop()


def test_a_secondarys_answers_take_the_fast_path_until_it_transfers_again() -> None:
    clock = Clock()
    primary = Primary(zone(1))
    held = secondary(clock, primary)
    held.start()
    server = DNSServer([held])
    wire = dns.message.make_query("host.example.test.", "A").to_wire()
    respond(server, wire, tcp=False, client="192.0.2.9")
    assert server.cached_response(wire, tcp=False) is not None
    primary.held = zone(2, "192.0.2.81")
    held.refresh_now()
    assert held.serial == 2
    # A new zone object: the rendered answers are forgotten.
    assert server.cached_response(wire, tcp=False) is None
    (answer,) = ask(server, dns.message.make_query("host.example.test.", "A"))
    assert answer.answer[0][0].address == "192.0.2.81"
    held.stop()


def ixfr(serial: int | None) -> dns.message.Message:
    message = dns.message.make_query(ORIGIN, "IXFR")
    if serial is not None:
        # RFC 1995 section 3: the client's SOA in the authority section.
        soa = f"ns1.example.test. hostmaster.example.test. {serial} 100 20 500 300"
        message.authority.append(dns.rrset.from_text(ORIGIN, 3600, "IN", "SOA", soa))
    return message


def test_ixfr_is_answered_with_the_whole_zone_or_the_soa() -> None:
    server = DNSServer([Authority(zone(10))], allow_axfr=["192.0.2.0/24"])
    (old,) = ask(server, ixfr(9), tcp=True)
    assert old.rcode() == dns.rcode.NOERROR
    assert old.flags & dns.flags.AA
    types = [dns.rdatatype.to_text(rrset.rdtype) for rrset in old.answer]
    assert types[0] == types[-1] == "SOA"
    assert len(types) > 3  # the whole zone, AXFR-style (RFC 1995 section 4)
    assert old.authority == []
    for current in (10, 11):  # the client is current (or ahead): the SOA alone
        (up_to_date,) = ask(server, ixfr(current), tcp=True)
        assert [rrset.rdtype for rrset in up_to_date.answer] == [dns.rdatatype.SOA]
    (no_soa,) = ask(server, ixfr(None), tcp=True)
    assert len(no_soa.answer) > 3
    # Over UDP the SOA alone tells the client to ask over TCP (section 2).
    (udp,) = ask(server, ixfr(9))
    assert [rrset.rdtype for rrset in udp.answer] == [dns.rdatatype.SOA]
    assert udp.answer[0][0].serial == 10
    # The AXFR rules hold.
    (refused,) = ask(server, ixfr(9), tcp=True, client="198.51.100.1")
    assert refused.rcode() == dns.rcode.REFUSED
    (refused_udp,) = ask(server, ixfr(9), client="198.51.100.1")
    assert refused_udp.rcode() == dns.rcode.REFUSED
    other = dns.message.make_query("example.org.", "IXFR")
    assert ask(server, other, tcp=True)[0].rcode() == dns.rcode.REFUSED


def notify(name: str = "example.test.", rdtype: str = "SOA") -> dns.message.Message:
    message = dns.message.make_query(name, rdtype)
    message.set_opcode(dns.opcode.NOTIFY)
    message.flags &= ~dns.flags.RD
    return message


def test_notify_from_the_primary_refreshes_at_once() -> None:
    clock = Clock()
    primary = Primary(zone(1))
    held = secondary(clock, primary, master="192.0.2.1")
    held.start()
    other = ZONE.format(serial=1, address="192.0.2.1").replace("example.test.", "other.test.")
    server = DNSServer([Authority.from_text(other), held])
    primary.held = zone(2)
    message = notify()
    for tcp in (False, True):
        (answer,) = ask(server, message, tcp=tcp, client="192.0.2.1")
        assert answer.id == message.id
        assert answer.opcode() == dns.opcode.NOTIFY
        assert answer.rcode() == dns.rcode.NOERROR
        assert answer.flags & dns.flags.QR
        assert answer.flags & dns.flags.AA
        assert answer.question == message.question
    assert held.serial == 2
    assert primary.asked == 2
    # The primary's address as IPv4-mapped IPv6 (a dual-stack socket) is the primary.
    (mapped,) = ask(server, message, client="::ffff:192.0.2.1")
    assert mapped.rcode() == dns.rcode.NOERROR
    held.stop()


def test_notify_from_others_or_for_other_zones_is_refused() -> None:
    clock = Clock()
    primary = Primary(zone(1))
    held = secondary(clock, primary)
    held.start()
    other = ZONE.format(serial=1, address="192.0.2.1").replace("example.test.", "other.test.")
    server = DNSServer([Authority.from_text(other), held])
    asked = primary.asked
    for message, client in (
        (notify(), "192.0.2.66"),  # not the primary
        (notify("other.test."), "192.0.2.1"),  # a primary zone here
        (notify("example.org."), "192.0.2.1"),  # not served
        (notify("host.example.test."), "192.0.2.1"),  # not a zone's apex
    ):
        (answer,) = ask(server, message, client=client)
        assert answer.rcode() == dns.rcode.REFUSED
        assert not answer.flags & dns.flags.AA
        assert answer.opcode() == dns.opcode.NOTIFY
    (not_soa,) = ask(server, notify(rdtype="A"))
    assert not_soa.rcode() == dns.rcode.NOTIMP
    assert primary.asked == asked
    held.stop()


class SlowPrimary(Primary):
    def __init__(self, held: dns.zone.Zone) -> None:
        super().__init__(held)
        self.pending: list[Deferred[int]] = []

    def serial(self, origin: dns.name.Name) -> Deferred[int]:
        self.asked += 1
        d: Deferred[int] = Deferred()
        self.pending.append(d)
        return d


def test_a_notify_during_a_check_starts_another_after_it() -> None:
    clock = Clock()
    primary = SlowPrimary(zone(1))
    held = secondary(clock, primary)
    held.start()  # the first transfer: at once
    assert held.serial == 1
    assert held.notified("192.0.2.1")
    assert primary.asked == 1
    assert held.notified("192.0.2.1")  # while that check is under way
    assert primary.asked == 1
    primary.pending[0].callback(1)  # that check found serial 1...
    assert primary.asked == 2  # ...and the second check begins at once
    primary.held = zone(3)
    primary.pending[1].callback(3)
    assert held.serial == 3
    assert primary.asked == 2
    held.stop()
    assert clock.get_delayed_calls() == []


KEYRING = dns.tsigkeyring.from_text({"key.example.": base64.b64encode(b"k" * 32).decode()})


@pytest.mark.parametrize("tcp", [False, True])
@pytest.mark.parametrize("rdtype", ["A", "AXFR", "SOA"])
def test_tsig_signed_messages_get_notauth_badkey_unsigned(tcp: bool, rdtype: str) -> None:
    server = DNSServer([Authority(zone(1))], allow_axfr=["0.0.0.0/0"])
    message = dns.message.make_query("example.test.", rdtype, use_edns=0)
    message.use_tsig(KEYRING, keyname="key.example.")
    if rdtype == "SOA":
        message.set_opcode(dns.opcode.NOTIFY)
    (wire,) = respond(server, message.to_wire(), tcp=tcp, client="192.0.2.1")
    # Read without checking the MAC: there is none, as RFC 8945 section 5.3.2 says.
    response = dns.message.from_wire(wire, keyring=False)
    assert response.id == message.id
    assert response.rcode() == dns.rcode.NOTAUTH
    assert response.answer == []
    assert response.tsig is not None
    assert response.tsig.name == dns.name.from_text("key.example.")
    tsig: Any = response.tsig[0]
    assert isinstance(tsig, dns.rdtypes.ANY.TSIG.TSIG)
    assert tsig.error == dns.rcode.BADKEY == 17
    assert tsig.mac == b""
    assert tsig.original_id == message.id
    assert tsig.algorithm == dns.tsig.default_algorithm
    assert response.edns == 0
    # dnspython's own client reads it as the error it is.
    with pytest.raises(dns.tsig.PeerBadKey):
        dns.message.from_wire(wire, keyring=KEYRING, request_mac=message.mac)

"""Secondary zones: the SOA timers on a fake clock, and AXFR from nsd and from torsion's server."""

from __future__ import annotations

import re
from collections.abc import Iterator

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.zone
import pytest
from _dns_peers import dig as _dig
from _dns_peers import free_port, running_nsd

from torsion.defer import CancelledError, Deferred
from torsion.internet import Protocol, Reactor
from torsion.names._answer import NotMineError, Question
from torsion.names._secondary import AXFRClient, SecondaryAuthority, TransferError, serial_gt
from torsion.names._server import DNSServer
from torsion.names._zone import Authority, ZoneError
from torsion.protocols import Int16StringReceiver
from torsion.testing import (
    Clock,
    MemoryReactor,
    failure_result_of,
    success_result_of,
)

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

# REFRESH 100, RETRY 20, EXPIRE 500.
ZONE = """\
$ORIGIN example.test.
$TTL 3600
@       IN SOA ns1 hostmaster {serial} 100 20 500 300
        IN NS  ns1
ns1     IN A   192.0.2.53
host    IN A   {address}
www     IN CNAME host
"""

ORIGIN = dns.name.from_text("example.test.")


def zone(serial: int, address: str = "192.0.2.80") -> dns.zone.Zone:
    return dns.zone.from_text(ZONE.format(serial=serial, address=address), relativize=False)


def question(name: str, rdtype: str = "A") -> Question:
    return Question(dns.name.from_text(name), dns.rdatatype.from_text(rdtype))


def host_address(secondary: SecondaryAuthority) -> str:
    answer = success_result_of(secondary.query(question("host.example.test.")))
    return str(answer.answer[-1][0])


def test_serial_arithmetic_wraps() -> None:
    assert serial_gt(2, 1)
    assert not serial_gt(1, 2)
    assert not serial_gt(5, 5)
    assert serial_gt(1, 4294967295)  # wrapped around
    assert serial_gt(0, 4294967295)
    assert not serial_gt(4294967295, 0)
    assert serial_gt(2**31 - 1, 0)
    # Exactly half the space apart: undefined, so neither is greater.
    assert not serial_gt(2**31, 0)
    assert not serial_gt(0, 2**31)


class FakePrimary:
    """A primary whose answers the test gives, one call at a time."""

    def __init__(self) -> None:
        self.serials: list[Deferred[int]] = []
        self.transfers: list[Deferred[dns.zone.Zone]] = []
        self.cancelled: list[Deferred[object]] = []

    def serial(self, origin: dns.name.Name) -> Deferred[int]:
        assert origin == ORIGIN
        d: Deferred[int] = Deferred(self.cancelled.append)
        self.serials.append(d)
        return d

    def transfer(self, origin: dns.name.Name) -> Deferred[dns.zone.Zone]:
        assert origin == ORIGIN
        d: Deferred[dns.zone.Zone] = Deferred(self.cancelled.append)
        self.transfers.append(d)
        return d


def make(clock: Clock, primary: FakePrimary, **kwargs: float) -> SecondaryAuthority:
    return SecondaryAuthority(
        clock, "example.test.", ("192.0.2.1", 53), primary=primary, initial_retry=30, **kwargs
    )


def test_servfail_until_the_first_transfer_then_answers() -> None:
    clock, primary = Clock(), FakePrimary()
    secondary = make(clock, primary)
    assert not secondary.loaded
    failure = failure_result_of(secondary.query(question("host.example.test.")))
    assert isinstance(failure, ZoneError)
    outside = failure_result_of(secondary.query(question("example.org.")))
    assert isinstance(outside, NotMineError)
    secondary.start()
    assert len(primary.transfers) == 1  # no serial check without a copy
    primary.transfers[0].callback(zone(7))
    assert secondary.loaded
    assert secondary.serial == 7
    answer = success_result_of(secondary.query(question("www.example.test.")))
    assert answer.authoritative
    assert [rrset.rdtype for rrset in answer.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    secondary.stop()
    assert clock.get_delayed_calls() == []


def test_refresh_checks_the_serial_and_transfers_when_it_grew() -> None:
    clock, primary = Clock(), FakePrimary()
    secondary = make(clock, primary)
    secondary.start()
    primary.transfers[0].callback(zone(7))
    clock.advance(99)
    assert primary.serials == []
    clock.advance(1)  # REFRESH
    assert len(primary.serials) == 1
    primary.serials[0].callback(7)  # current: no transfer
    assert len(primary.transfers) == 1
    clock.advance(100)
    assert len(primary.serials) == 2
    primary.serials[1].callback(8)
    assert len(primary.transfers) == 2
    assert host_address(secondary) == "192.0.2.80"  # served while transferring
    primary.transfers[1].callback(zone(8, "192.0.2.81"))
    assert secondary.serial == 8
    assert host_address(secondary) == "192.0.2.81"
    # A serial that wrapped past 2**32 still counts as grown.
    secondary.stop()


def test_serial_wraparound_and_backwards_serials() -> None:
    clock, primary = Clock(), FakePrimary()
    secondary = make(clock, primary)
    secondary.start()
    primary.transfers[0].callback(zone(4294967295))
    clock.advance(100)
    primary.serials[0].callback(3)  # 4294967295 + 4, wrapped: grown
    primary.transfers[1].callback(zone(3, "192.0.2.82"))
    assert secondary.serial == 3
    assert host_address(secondary) == "192.0.2.82"
    clock.advance(100)
    primary.serials[1].callback(2)  # backwards: ignored, the copy is current
    assert len(primary.transfers) == 2
    secondary.stop()


def test_retry_after_failures_then_expire() -> None:
    clock, primary = Clock(), FakePrimary()
    secondary = make(clock, primary, expire=505)
    secondary.start()
    # Before the first copy, failures are retried every initial_retry.
    primary.transfers[0].errback(TransferError("refused"))
    clock.advance(29)
    assert len(primary.transfers) == 1
    clock.advance(1)
    assert len(primary.transfers) == 2
    primary.transfers[1].callback(zone(7))
    # From then on, RETRY (20) after each failed check, until EXPIRE.
    clock.advance(100)
    primary.serials[0].errback(TimeoutError("silent"))
    for n in range(1, 21):
        clock.advance(20)
        assert len(primary.serials) == n + 1
        assert secondary.loaded
        primary.serials[n].errback(TimeoutError("silent"))
    assert clock.seconds() == 530
    clock.advance(4.9)
    assert secondary.loaded
    clock.advance(0.1)  # 505 s after the last success (the transfer at 30 s)
    assert not secondary.loaded
    failure = failure_result_of(secondary.query(question("host.example.test.")))
    assert isinstance(failure, ZoneError)
    # The next try (RETRY after the last failure) is a whole transfer.
    clock.advance(15)
    assert len(primary.serials) == 21
    assert len(primary.transfers) == 3
    primary.transfers[2].callback(zone(7))
    assert secondary.loaded
    secondary.stop()
    assert clock.get_delayed_calls() == []


def test_a_successful_check_postpones_expiry() -> None:
    clock, primary = Clock(), FakePrimary()
    secondary = make(clock, primary, refresh=400, expire=500)
    secondary.start()
    primary.transfers[0].callback(zone(7))
    clock.advance(400)
    primary.serials[0].callback(7)
    clock.advance(300)  # 700 s after the transfer, 300 after the check
    assert secondary.loaded
    secondary.stop()


def test_given_timers_override_the_soa() -> None:
    clock, primary = Clock(), FakePrimary()
    secondary = make(clock, primary, refresh=10, retry=3, expire=1000)
    secondary.start()
    primary.transfers[0].callback(zone(7))
    clock.advance(10)
    assert len(primary.serials) == 1
    primary.serials[0].errback(TimeoutError())
    clock.advance(3)
    assert len(primary.serials) == 2
    secondary.stop()


def test_refresh_now_and_stop() -> None:
    clock, primary = Clock(), FakePrimary()
    secondary = make(clock, primary)
    secondary.refresh_now()  # not started: nothing
    assert primary.transfers == []
    secondary.start()
    secondary.refresh_now()  # a transfer is under way: not another
    assert len(primary.transfers) == 1
    update = secondary.next_update()
    primary.transfers[0].callback(zone(7))
    assert success_result_of(update) is True
    secondary.refresh_now()  # SIGHUP: check now, not in 100 s
    assert len(primary.serials) == 1
    failed = secondary.next_update()
    primary.serials[0].errback(TransferError("no"))
    assert success_result_of(failed) is False
    secondary.refresh_now()
    assert len(primary.serials) == 2
    secondary.stop()  # cancels the check under way and every timer
    assert primary.cancelled == [primary.serials[1]]
    assert clock.get_delayed_calls() == []
    assert secondary.loaded  # the copy stays until expiry would have come


def test_a_transfer_that_does_not_grow_the_serial_is_rejected() -> None:
    clock, primary = Clock(), FakePrimary()
    secondary = make(clock, primary)
    secondary.start()
    primary.transfers[0].callback(zone(7))
    clock.advance(100)
    primary.serials[0].callback(8)
    primary.transfers[1].callback(zone(7, "192.0.2.99"))  # said 8, sent 7
    assert secondary.serial == 7
    assert host_address(secondary) == "192.0.2.80"
    secondary.stop()


# Real transfers.


BIG = ZONE + "".join(f'n{n} IN TXT "{"z" * 200}"\n' for n in range(600))


@BOTH_LOOPS
async def test_transfer_from_torsions_server_then_refresh(reactor: Reactor, loop: str) -> None:
    master = Authority.from_text(BIG.format(serial=1, address="192.0.2.80"))
    server = DNSServer([master], allow_axfr=["127.0.0.1/32"])
    ports = server.listen(reactor, 0)
    secondary = SecondaryAuthority(reactor, "example.test.", ("127.0.0.1", ports.port), timeout=10)
    try:
        update = secondary.next_update()
        secondary.start()
        assert await update is True
        assert secondary.serial == 1
        # More than one message's worth: 600 TXT records of 200 bytes.
        answer = await secondary.query(question("n599.example.test.", "TXT"))
        assert answer.authoritative
        host = await secondary.query(question("host.example.test."))
        assert str(host.answer[0][0]) == "192.0.2.80"
        # The primary's zone changes; SIGHUP's refresh_now finds the new serial.
        server.resolvers[0] = Authority.from_text(BIG.format(serial=2, address="192.0.2.81"))
        server.zones_changed()
        update = secondary.next_update()
        secondary.refresh_now()
        assert await update is True
        assert secondary.serial == 2
        answer = await secondary.query(question("host.example.test."))
        assert str(answer.answer[0][0]) == "192.0.2.81"
    finally:
        secondary.stop()
        await ports.stop_listening()


@BOTH_LOOPS
async def test_refused_and_hostile_transfers_fail(reactor: Reactor, loop: str) -> None:
    master = Authority.from_text(ZONE.format(serial=1, address="192.0.2.80"))
    refusing = DNSServer([master])  # no allow_axfr
    ports = refusing.listen(reactor, 0)
    try:
        client = AXFRClient(reactor, ("127.0.0.1", ports.port), timeout=10)
        with pytest.raises(TransferError, match="refused"):
            await client.transfer(ORIGIN)
        assert await client.serial(ORIGIN) == 1
        with pytest.raises(TransferError, match="not authoritative"):
            await client.serial(dns.name.from_text("example.org."))
    finally:
        await ports.stop_listening()

    class Garbage(Int16StringReceiver):
        def string_received(self, string: bytes) -> None:
            self.send_string(string[:2] + b"\x84\x00" + b"\xff" * 40)

    class Endless(Int16StringReceiver):
        def string_received(self, string: bytes) -> None:
            query = dns.message.from_wire(string)
            records = Authority.from_text(ZONE.format(serial=1, address="192.0.2.80")).transfer()
            first = dns.message.make_response(query)
            first.answer = [records[0]]  # the opening SOA
            self.send_string(first.to_wire())
            more = dns.message.make_response(query)
            more.answer = [records[1]]
            for _ in range(50):  # and records without end
                self.send_string(more.to_wire())

    class Silent(Protocol):
        pass

    for factory, expected in (
        (Garbage, "malformed"),
        (Endless, "exceeds"),
        (Silent, "too long"),
    ):
        listener = reactor.listen_tcp(0, lambda _, f=factory: f(), interface="127.0.0.1")
        try:
            client = AXFRClient(
                reactor, ("127.0.0.1", listener.port), timeout=0.5, max_transfer_size=2000
            )
            with pytest.raises((TransferError, TimeoutError), match=expected):
                await client.transfer(ORIGIN)
        finally:
            await listener.stop_listening()
    closed = free_port()
    client = AXFRClient(reactor, ("127.0.0.1", closed), timeout=5)
    with pytest.raises(TransferError, match="cannot connect"):
        await client.transfer(ORIGIN)


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """nsd as the primary of example.test, giving transfers to 127.0.0.1; yields its port."""
    directory = tmp_path_factory.mktemp("nsd-primary")
    zone = BIG.format(serial=2026112401, address="192.0.2.80")
    with running_nsd(directory, "example.test", zone, provide_xfr=True) as port:
        yield port


async def dig(port: int, *args: str) -> str:
    return await _dig(port, *args, recursion=False)


@BOTH_LOOPS
async def test_secondary_of_nsd_served_to_dig(reactor: Reactor, loop: str, nsd: int) -> None:
    secondary = SecondaryAuthority(reactor, "example.test.", ("127.0.0.1", nsd), timeout=10)
    server = DNSServer([secondary])
    ports = server.listen(reactor, 0)
    try:
        before = await dig(ports.port, "host.example.test.", "A")
        assert "status: SERVFAIL" in before
        update = secondary.next_update()
        secondary.start()
        assert await update is True
        assert secondary.serial == 2026112401
        after = await dig(ports.port, "www.example.test.", "A")
        assert re.search(r"flags: qr aa;", after)
        assert "host.example.test.\t3600\tIN\tA\t192.0.2.80" in after
        txt = await dig(ports.port, "+tcp", "n123.example.test.", "TXT")
        assert "status: NOERROR" in txt
        assert "ANSWER: 1," in txt
        nx = await dig(ports.port, "nothing.example.test.", "A")
        assert "status: NXDOMAIN" in nx
        # A check against nsd: the serial is current, nothing is transferred.
        update = secondary.next_update()
        secondary.refresh_now()
        assert await update is True
        assert secondary.serial == 2026112401
        refused = await dig(ports.port, "example.org.", "A")
        assert "status: REFUSED" in refused
    finally:
        secondary.stop()
        await ports.stop_listening()


def test_transfer_timers_and_connections_are_cleaned_up() -> None:
    reactor = MemoryReactor()
    client = AXFRClient(reactor, ("192.0.2.1", 53), timeout=10)  # type: ignore[arg-type]
    # Cancelled while connecting: no timer left, the attempt abandoned.
    d = client.transfer(ORIGIN)
    assert len(reactor.get_delayed_calls()) == 1
    d.cancel()
    assert isinstance(failure_result_of(d), CancelledError)
    assert reactor.get_delayed_calls() == []
    # Refused: a TransferError at once, no timer left.
    d = client.transfer(ORIGIN)
    reactor.tcp_clients[-1].fail(ConnectionRefusedError("refused"))
    assert "cannot connect" in str(failure_result_of(d, TransferError))
    assert reactor.get_delayed_calls() == []
    # Connected, then the primary says nothing: TimeoutError, connection closed.
    d = client.transfer(ORIGIN)
    exchange = reactor.tcp_clients[-1].connect()
    assert exchange.transport.value().startswith(b"\x00")  # the length-prefixed query
    reactor.advance(10)
    failure_result_of(d, TimeoutError)
    assert exchange.transport.is_closing()
    # Connected, then closed early: TransferError.
    d = client.transfer(ORIGIN)
    exchange = reactor.tcp_clients[-1].connect()
    exchange.connection_lost(None)
    assert "closed the transfer" in str(failure_result_of(d, TransferError))
    assert reactor.get_delayed_calls() == []


def test_an_unexpected_failure_is_retried_too(caplog: pytest.LogCaptureFixture) -> None:
    clock, primary = Clock(), FakePrimary()
    secondary = make(clock, primary)
    secondary.start()
    primary.transfers[0].errback(RuntimeError("surprise"))
    assert "surprise" in caplog.text
    assert "Traceback" not in caplog.text
    clock.advance(30)
    primary.transfers[1].callback(zone(7))
    assert secondary.loaded
    secondary.stop()

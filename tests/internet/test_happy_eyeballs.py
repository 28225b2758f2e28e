"""HostnameEndpoint (RFC 8305) on the fake reactor, and once over real sockets; Handover."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from torsion.defer import CancelledError, Deferred
from torsion.errors import DNSLookupError
from torsion.internet import Address, HostnameEndpoint, IPv4Address, Protocol, Reactor
from torsion.internet._handover import Handover, HandoverOverflowError
from torsion.internet._happy_eyeballs import interleave_families
from torsion.testing import (
    MemoryReactor,
    StringTransport,
    assert_no_result,
    failure_result_of,
    success_result_of,
)

Wait = Callable[..., Any]


class Recorder(Protocol):
    def __init__(self, address: Address) -> None:
        self.address = address
        self.received: list[bytes] = []
        self.eof = False
        self.first_data: Deferred[bytes] = Deferred()

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        if not self.first_data.called:
            self.first_data.callback(data)

    def eof_received(self) -> bool:
        self.eof = True
        return True


def recording_factory() -> tuple[list[Recorder], Callable[[Address], Recorder]]:
    made: list[Recorder] = []

    def factory(address: Address) -> Recorder:
        made.append(Recorder(address))
        return made[-1]

    return made, factory


def test_interleave_families_alternates_starting_with_the_first() -> None:
    assert interleave_families(["::1", "::2", "10.0.0.1", "10.0.0.2", "10.0.0.3"]) == [
        "::1",
        "10.0.0.1",
        "::2",
        "10.0.0.2",
        "10.0.0.3",
    ]
    assert interleave_families(["10.0.0.1", "::1", "::2"]) == ["10.0.0.1", "::1", "::2"]
    assert interleave_families(["10.0.0.1", "10.0.0.2"]) == ["10.0.0.1", "10.0.0.2"]
    assert interleave_families([]) == []


def test_an_ip_address_is_tried_alone_without_a_lookup() -> None:
    reactor = MemoryReactor()
    made, factory = recording_factory()
    d = HostnameEndpoint(reactor, "192.0.2.1", 25).connect(factory)
    [attempt] = reactor.tcp_clients
    assert (attempt.host, attempt.port) == ("192.0.2.1", 25)
    attempt.connect()
    assert success_result_of(d) is made[0]
    assert made[0].address == IPv4Address("192.0.2.1", 25)
    assert reactor.get_delayed_calls() == []


def test_the_next_attempt_starts_after_the_attempt_delay() -> None:
    reactor = MemoryReactor(hosts={"mail.test": ["2001:db8::1", "192.0.2.1"]})
    made, factory = recording_factory()
    d = HostnameEndpoint(reactor, "mail.test", 25, attempt_delay=0.3).connect(factory)
    assert reactor.lookups == ["mail.test"]
    assert [c.host for c in reactor.tcp_clients] == ["2001:db8::1"]
    reactor.advance(0.29)
    assert len(reactor.tcp_clients) == 1
    reactor.advance(0.01)
    assert [c.host for c in reactor.tcp_clients] == ["2001:db8::1", "192.0.2.1"]
    # The second wins; the first, still connecting, is cancelled.
    reactor.tcp_clients[1].connect()
    assert success_result_of(d) is made[0]
    assert made[0].address == IPv4Address("192.0.2.1", 25)
    assert len(made) == 1
    assert reactor.tcp_clients[0].connector.state == "failed"  # cancelled
    assert reactor.get_delayed_calls() == []


def test_a_failed_attempt_starts_the_next_at_once() -> None:
    reactor = MemoryReactor(hosts={"mail.test": ["2001:db8::1", "192.0.2.1", "192.0.2.2"]})
    made, factory = recording_factory()
    d = HostnameEndpoint(reactor, "mail.test", 25).connect(factory)
    reactor.tcp_clients[0].fail()
    assert [c.host for c in reactor.tcp_clients] == ["2001:db8::1", "192.0.2.1"]
    reactor.tcp_clients[1].connect()
    assert made[0].address == IPv4Address("192.0.2.1", 25)
    assert success_result_of(d) is made[0]
    assert len(reactor.tcp_clients) == 2  # the third address was never needed
    assert reactor.get_delayed_calls() == []


def test_when_every_attempt_fails_the_last_error_is_the_result() -> None:
    reactor = MemoryReactor(hosts={"mail.test": ["2001:db8::1", "192.0.2.1"]})
    _, factory = recording_factory()
    d = HostnameEndpoint(reactor, "mail.test", 25).connect(factory)
    reactor.advance(0.25)
    reactor.tcp_clients[1].fail(ConnectionRefusedError("v4 refused"))
    assert_no_result(d)  # the IPv6 attempt is still under way
    reactor.tcp_clients[0].fail(OSError("network unreachable"))
    assert str(failure_result_of(d, OSError)) == "network unreachable"
    assert reactor.get_delayed_calls() == []


def test_the_overall_timeout_cancels_every_attempt() -> None:
    reactor = MemoryReactor(hosts={"mail.test": ["2001:db8::1", "192.0.2.1"]})
    _, factory = recording_factory()
    d = HostnameEndpoint(reactor, "mail.test", 25, timeout=5).connect(factory)
    reactor.advance(0.25)
    reactor.advance(4.75)
    failure_result_of(d, TimeoutError)
    assert [attempt.connector.state for attempt in reactor.tcp_clients] == ["failed", "failed"]
    assert reactor.get_delayed_calls() == []


def test_cancelling_cancels_every_attempt() -> None:
    reactor = MemoryReactor(hosts={"mail.test": ["2001:db8::1", "192.0.2.1"]})
    _, factory = recording_factory()
    d = HostnameEndpoint(reactor, "mail.test", 25).connect(factory)
    reactor.advance(0.25)
    d.cancel()
    failure_result_of(d, CancelledError)
    assert [attempt.connector.state for attempt in reactor.tcp_clients] == ["failed", "failed"]
    assert reactor.get_delayed_calls() == []


def test_a_name_without_addresses_fails_the_lookup() -> None:
    reactor = MemoryReactor()
    _, factory = recording_factory()
    d = HostnameEndpoint(reactor, "nowhere.test", 25).connect(factory)
    failure_result_of(d, DNSLookupError)
    assert reactor.tcp_clients == []
    assert reactor.get_delayed_calls() == []


def test_a_factory_error_fails_the_connect_and_closes_the_connection() -> None:
    reactor = MemoryReactor(hosts={"mail.test": ["192.0.2.1"]})

    def broken(address: Address) -> Protocol:
        raise RuntimeError("no protocol today")

    d = HostnameEndpoint(reactor, "mail.test", 25).connect(broken)
    transport = StringTransport()
    reactor.tcp_clients[0].connect(transport)
    assert str(failure_result_of(d, RuntimeError)) == "no protocol today"
    assert transport.closed


def test_attempt_delay_has_the_rfc_minimum() -> None:
    with pytest.raises(ValueError, match=r"at least 0\.01 s"):
        HostnameEndpoint(MemoryReactor(), "mail.test", 25, attempt_delay=0.001)


# -- Handover ----------------------------------------------------------------------------


def test_handover_replays_data_and_eof_in_order() -> None:
    stand_in = Handover()
    transport = StringTransport()
    transport.set_protocol(stand_in)
    stand_in.connection_made(transport)
    stand_in.data_received(b"220 ready\r\n")
    stand_in.data_received(b"more")
    assert stand_in.eof_received() is True  # keeps the connection for the real protocol
    stand_in.pause_writing()
    real = Recorder(IPv4Address("192.0.2.1", 25))
    paused: list[bool] = []
    real.pause_writing = lambda: paused.append(True)  # type: ignore[method-assign]
    stand_in.hand_over(real)
    assert real.transport is transport
    assert transport.get_protocol() is real
    assert real.received == [b"220 ready\r\n", b"more"]
    assert real.eof
    assert paused == [True]
    assert not transport.closed  # the real protocol's eof_received kept it open


def test_handover_closes_after_eof_when_the_real_protocol_says_so() -> None:
    stand_in = Handover()
    transport = StringTransport()
    stand_in.connection_made(transport)
    stand_in.eof_received()
    stand_in.hand_over(Protocol())
    assert transport.closed


def test_handover_bounds_what_it_keeps() -> None:
    stand_in = Handover(max_held=10)
    transport = StringTransport()
    stand_in.connection_made(transport)
    stand_in.data_received(b"0123456789")
    stand_in.data_received(b"!")
    assert transport.aborted
    assert isinstance(stand_in.lost, HandoverOverflowError)
    with pytest.raises(ConnectionResetError):
        stand_in.hand_over(Protocol())


def test_handover_after_the_connection_was_lost() -> None:
    stand_in = Handover()
    stand_in.connection_made(StringTransport())
    stand_in.connection_lost(None)
    with pytest.raises(ConnectionResetError):
        stand_in.hand_over(Protocol())


# -- over real sockets --------------------------------------------------------------------


class Greeter(Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(b"hello\r\n")


def test_localhost_reaches_a_server_on_one_family_only(real_reactor: Reactor, wait: Wait) -> None:
    """localhost may resolve to ::1 and 127.0.0.1; the server is on 127.0.0.1 alone."""
    r = real_reactor
    listener = r.listen_tcp(0, lambda _: Greeter(), interface="127.0.0.1")
    made, factory = recording_factory()
    protocol = wait(r, HostnameEndpoint(r, "localhost", listener.port, timeout=5).connect(factory))
    assert protocol is made[0]
    assert protocol.address == IPv4Address("127.0.0.1", listener.port)
    assert wait(r, protocol.first_data) == b"hello\r\n"
    protocol.transport.close()
    wait(r, listener.stop_listening())
    assert r.get_delayed_calls() == []

"""Policies: connection limits, connection rate, idle timeout, throttling."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import pytest
import trustme

from torsion.internet import (
    Address,
    IPv4Address,
    IPv6Address,
    Protocol,
    ProtocolWrapper,
    Reactor,
    TransportWrapper,
    UNIXAddress,
    client_context,
)
from torsion.protocols import Echo
from torsion.protocols._idle import IdleTimeout
from torsion.protocols._limits import ConnectionLimit, ConnectionRateLimit, client_key
from torsion.protocols._throttle import Throttle, TokenBucket
from torsion.testing import Clock, StringTransport

A = IPv4Address("192.0.2.1", 40000)
A2 = IPv4Address("192.0.2.1", 40001)
B = IPv4Address("192.0.2.2", 40000)


class Recorder(Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.lost: list[Exception | None] = []
        self.pauses: list[str] = []

    def data_received(self, data: bytes) -> None:
        self.received += data

    def pause_writing(self) -> None:
        super().pause_writing()
        self.pauses.append("pause")

    def resume_writing(self) -> None:
        super().resume_writing()
        self.pauses.append("resume")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
        super().connection_lost(exc)


def connect(factory: Any, address: Address) -> tuple[Any, StringTransport]:
    protocol = factory(address)
    transport = StringTransport()
    if protocol is not None:
        protocol.connection_made(transport)
    return protocol, transport


# -- client keys --------------------------------------------------------------------------


def test_clients_are_ipv4_addresses_and_ipv6_prefixes() -> None:
    assert client_key(A) == "192.0.2.1"
    assert client_key(IPv6Address("2001:db8:1:2:3::4", 1)) == "2001:db8:1:2::/64"
    assert client_key(IPv6Address("2001:db8:1:2:ffff::9", 1)) == "2001:db8:1:2::/64"
    assert client_key(IPv6Address("2001:db8:1:2:3::4", 1), ipv6_prefix=128) == (
        "2001:db8:1:2:3::4/128"
    )
    assert client_key(IPv6Address("::ffff:192.0.2.1", 1)) == "192.0.2.1"
    assert client_key(IPv6Address("fe80::1%eth0", 1, scope_id=2)) == "fe80::/64"
    assert client_key(UNIXAddress("/run/x.sock")) == "local"


# -- connection limits --------------------------------------------------------------------


def test_connection_limit_per_address_refuses_and_releases(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limit = ConnectionLimit(clock, per_address=2)
    factory = limit.wrap(lambda _: Recorder())
    first, _ = connect(factory, A)
    second, _ = connect(factory, A2)
    assert limit.count_for(A) == 2
    with caplog.at_level(logging.WARNING, "torsion.protocols.policies"):
        refused, _ = connect(factory, A)
    assert refused is None
    assert (
        "Refused a connection from 192.0.2.1:40000: 2 connections already open from 192.0.2.1"
        in caplog.text
    )
    other, _ = connect(factory, B)  # another client is not held back
    assert other is not None
    first.connection_lost(None)
    first.connection_lost(None)  # counted once, however often it is told
    assert limit.count_for(A) == 1
    assert limit.count == 2
    again, _ = connect(factory, A)
    assert again is not None
    assert isinstance(again.wrapped, Recorder)
    second.connection_lost(None)
    again.connection_lost(None)
    other.connection_lost(None)
    assert limit.count == 0
    assert limit.count_for(A) == 0


def test_connection_limit_in_total_is_shared_by_the_factories_it_wraps() -> None:
    limit = ConnectionLimit(Clock(), total=2)
    plain = limit.wrap(lambda _: Recorder())
    other = limit.wrap(lambda _: Recorder())
    connect(plain, A)
    two, _ = connect(other, B)
    assert connect(plain, IPv4Address("192.0.2.3", 1))[0] is None
    two.connection_lost(None)
    assert connect(plain, IPv4Address("192.0.2.3", 1))[0] is not None


def test_a_refusal_by_the_wrapped_factory_is_not_counted() -> None:
    limit = ConnectionLimit(Clock(), per_address=1)
    factory = limit.wrap(lambda _: None)
    assert connect(factory, A)[0] is None
    assert limit.count == 0


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="per_address must be at least 1"):
        ConnectionLimit(Clock(), per_address=0)
    with pytest.raises(ValueError, match="period must be positive"):
        ConnectionRateLimit(Clock(), per_address=1, period=0)


def test_refusals_are_logged_once_per_quiet_period_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limit = ConnectionLimit(clock, per_address=1)
    factory = limit.wrap(lambda _: Recorder())
    connect(factory, A)
    with caplog.at_level(logging.WARNING, "torsion.protocols.policies"):
        for _ in range(50):
            connect(factory, A)
        assert len(caplog.records) == 1
        clock.advance(61)
        connect(factory, A)
    assert len(caplog.records) == 2
    assert "(49 more since the last report)" in caplog.records[1].getMessage()


# -- connection rate ----------------------------------------------------------------------


def test_connection_rate_allows_a_burst_then_one_per_interval() -> None:
    clock = Clock()
    rate = ConnectionRateLimit(clock, per_address=3, period=3.0)
    factory = rate.wrap(lambda _: Recorder())
    assert all(connect(factory, A)[0] is not None for _ in range(3))
    assert connect(factory, A)[0] is None
    assert connect(factory, B)[0] is not None  # each client has its own bucket
    clock.advance(0.9)
    assert connect(factory, A)[0] is None
    clock.advance(0.1)  # one connection a second refills
    assert connect(factory, A)[0] is not None
    assert connect(factory, A)[0] is None
    clock.advance(100)
    assert all(connect(factory, A)[0] is not None for _ in range(3))  # the burst is capped
    assert connect(factory, A)[0] is None


def test_connection_rate_remembers_a_bounded_number_of_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("torsion.protocols._limits._MAX_TRACKED_ADDRESSES", 10)
    rate = ConnectionRateLimit(Clock(), per_address=1, period=60)
    for n in range(100):
        assert rate.allow(IPv4Address(f"198.51.100.{n}", 1))
    assert len(rate._buckets) == 10


# -- idle timeout -------------------------------------------------------------------------


def test_idle_connections_are_closed_then_aborted(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    factory = IdleTimeout(clock, 10, grace=5).wrap(lambda _: Recorder())
    protocol, transport = connect(factory, A)
    clock.advance(6)
    protocol.data_received(b"x")  # activity moves the deadline
    clock.advance(9)
    assert not transport.closed
    protocol.wrapper_transport.write(b"y")  # so does writing
    clock.advance(9.5)
    assert not transport.closed
    with caplog.at_level(logging.INFO, "torsion.protocols.policies"):
        clock.advance(0.5)
    assert transport.closed
    assert not transport.aborted
    assert "idle for 10s" in caplog.text
    clock.advance(5)
    assert transport.aborted
    protocol.connection_lost(None)
    assert clock.get_delayed_calls() == []
    assert protocol.wrapped.received == b"x"


def test_idle_timeout_can_ignore_writes_and_stops_with_the_connection() -> None:
    clock = Clock()
    factory = IdleTimeout(clock, 10, count_writes=False).wrap(lambda _: Recorder())
    protocol, transport = connect(factory, A)
    clock.advance(5)
    protocol.wrapper_transport.write(b"streaming")
    clock.advance(5)
    assert transport.closed
    assert transport.value() == b"streaming"
    protocol.connection_lost(None)
    assert clock.get_delayed_calls() == []

    quiet, _ = connect(factory, B)
    quiet.connection_lost(None)  # ends before the timeout: its timer goes
    assert clock.get_delayed_calls() == []


# -- throttling ---------------------------------------------------------------------------


def test_token_bucket_saves_up_to_the_burst_and_goes_into_debt() -> None:
    clock = Clock()
    bucket = TokenBucket(clock, rate=100, burst=50)
    assert bucket.tokens() == 50
    bucket.take(80)
    assert bucket.tokens() == -30
    assert bucket.wait() == pytest.approx(0.3)
    assert bucket.wait(need=20) == pytest.approx(0.5)
    clock.advance(10)
    assert bucket.tokens() == 50
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenBucket(clock, rate=0)


def test_reads_pause_while_the_read_bucket_is_in_debt() -> None:
    clock = Clock()
    factory = Throttle(clock, read_rate=1000, burst=1000).wrap(lambda _: Recorder())
    protocol, transport = connect(factory, A)
    protocol.data_received(b"x" * 500)
    assert transport.is_reading()
    protocol.data_received(b"x" * 1500)  # 1000 bytes of debt: a second to pay
    assert protocol.wrapped.received == b"x" * 2000  # delivered, then paused
    assert not transport.is_reading()
    clock.advance(0.5)
    assert not transport.is_reading()
    clock.advance(0.5)
    assert transport.is_reading()
    # The protocol's own pause outlasts the throttle's.
    protocol.wrapper_transport.pause_reading()
    protocol.data_received(b"x" * 2000)
    clock.advance(5)
    assert not transport.is_reading()
    assert not protocol.wrapper_transport.is_reading()
    protocol.wrapper_transport.resume_reading()
    assert transport.is_reading()
    protocol.connection_lost(None)
    assert clock.get_delayed_calls() == []


def test_writes_are_let_out_at_the_rate_in_order_and_pause_the_protocol() -> None:
    clock = Clock()
    factory = Throttle(clock, write_rate=10_000, burst=10_000).wrap(lambda _: Recorder())
    protocol, transport = connect(factory, A)
    wrapper = protocol.wrapper_transport
    payload = bytes(range(256)) * 400  # 102,400 bytes: ten seconds at this rate
    wrapper.write(payload[:50_000])
    wrapper.write(payload[50_000:])
    assert len(transport.value()) == 10_000  # the first burst at once
    assert protocol.wrapped.pauses == ["pause"]  # the throttle's queue is over 64 KiB
    queued = len(payload) - 10_000
    assert wrapper.get_write_buffer_size() == queued + transport.get_write_buffer_size()
    sent = []
    for _ in range(10):
        clock.advance(1)
        sent.append(len(transport.value()))
    assert sent == [
        20_000,
        30_000,
        40_000,
        50_000,
        60_000,
        70_000,
        80_000,
        90_000,
        100_000,
        102_400,
    ]
    assert transport.value() == payload
    assert protocol.wrapped.pauses == ["pause", "resume"]  # resumed under 16 KiB queued
    assert clock.get_delayed_calls() == []


def test_close_and_eof_wait_for_the_queue_and_abort_drops_it() -> None:
    clock = Clock()
    factory = Throttle(clock, write_rate=1000, burst=1000).wrap(lambda _: Recorder())
    protocol, transport = connect(factory, A)
    wrapper = protocol.wrapper_transport
    wrapper.write(b"a" * 2500)
    wrapper.write_eof()
    assert not transport.eof_written
    clock.pump([0.5] * 4)
    assert transport.value() == b"a" * 2500
    assert transport.eof_written
    protocol2, transport2 = connect(factory, B)
    protocol2.wrapper_transport.write(b"b" * 2500)
    protocol2.wrapper_transport.close()
    assert protocol2.wrapper_transport.is_closing()
    protocol2.wrapper_transport.write(b"late")  # dropped, as a closing transport drops it
    assert not transport2.closed
    clock.pump([0.5] * 4)
    assert transport2.closed
    assert transport2.value() == b"b" * 2500
    protocol3, transport3 = connect(factory, IPv4Address("192.0.2.3", 1))
    protocol3.wrapper_transport.write(b"c" * 5000)
    protocol3.wrapper_transport.abort()
    assert transport3.aborted
    protocol3.connection_lost(None)
    assert clock.get_delayed_calls() == []


def test_total_rates_are_shared_between_connections() -> None:
    clock = Clock()
    throttle = Throttle(clock, total_write_rate=1000, burst=1000)
    factory = throttle.wrap(lambda _: Recorder())
    one, t1 = connect(factory, A)
    two, t2 = connect(factory, B)
    one.wrapper_transport.write(b"1" * 1000)
    two.wrapper_transport.write(b"2" * 1000)
    assert len(t1.value()) + len(t2.value()) == 1000
    clock.advance(1)
    assert len(t1.value()) + len(t2.value()) == 2000


# -- over real connections ----------------------------------------------------------------


class Upgrading(Protocol):
    """Says hello in clear, then upgrades to TLS when asked and echoes."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context

    def data_received(self, data: bytes) -> None:
        if data == b"STARTTLS\n":
            self.transport.write(b"GO\n")
            self.start_tls(self.context, server_side=True)
        else:
            self.transport.write(data)


async def test_start_tls_through_stacked_wrappers(reactor: Reactor) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    limit = ConnectionLimit(reactor, per_address=5)
    factory = IdleTimeout(reactor, 60).wrap(
        Throttle(reactor, write_rate=10_000_000, read_rate=10_000_000).wrap(
            limit.wrap(lambda _: Upgrading(server_context))
        )
    )
    listener = reactor.listen_tcp(0, factory, interface="127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(b"STARTTLS\n")
    assert await reader.readline() == b"GO\n"
    context = client_context(ca_data=ca.cert_pem.bytes().decode())
    await writer.start_tls(context, server_hostname="localhost")
    writer.write(b"secret")
    assert await reader.readexactly(6) == b"secret"
    assert limit.count == 1
    writer.close()
    await writer.wait_closed()
    await listener.stop_listening()


async def test_echo_through_a_throttle_keeps_every_byte_in_order(reactor: Reactor) -> None:
    throttle = Throttle(reactor, read_rate=50_000_000, write_rate=50_000_000)
    listener = reactor.listen_tcp(0, throttle.wrap(lambda _: Echo()), interface="127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    payload = bytes(range(256)) * 4096  # 1 MiB
    writer.write(payload)
    writer.write_eof()  # half-close passes through the throttle after the queue
    echoed = await reader.read()
    writer.close()
    await writer.wait_closed()
    await listener.stop_listening()
    assert echoed == payload


def test_wrappers_pass_everything_through() -> None:
    inner = Recorder()
    wrapper = ProtocolWrapper(inner)
    transport = StringTransport(peer=("192.0.2.9", 4))
    wrapper.connection_made(transport)
    wrapped = inner.transport
    assert isinstance(wrapped, TransportWrapper)
    assert wrapped.get_extra_info("peername") == ("192.0.2.9", 4)
    wrapped.writelines([b"a", b"b"])
    assert transport.value() == b"ab"
    replacement = Recorder()
    wrapped.set_protocol(replacement)
    assert wrapped.get_protocol() is replacement
    wrapper.data_received(b"to the new one")
    assert replacement.received == b"to the new one"
    assert wrapper.eof_received() is None
    wrapper.connection_lost(None)
    assert replacement.lost == [None]

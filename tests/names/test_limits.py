"""The DNS server's flood limits on fakes: UDP rate per client network, stream bounds."""

from __future__ import annotations

import logging
from typing import Any

import dns.message
import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.internet import IPv4Address, IPv6Address
from torsion.names._limits import QueryLimits, QueryRateLimiter
from torsion.names._server import DNSDatagramProtocol, DNSServer
from torsion.names._zone import Authority
from torsion.testing import Clock, StringTransport

ZONE = """\
$ORIGIN example.test.
$TTL 3600
@       IN SOA ns1 hostmaster 1 7200 900 1209600 300
        IN NS  ns1
ns1     IN A   192.0.2.53
host    IN A   192.0.2.80
"""


def limiter(clock: Clock, **kwargs: Any) -> QueryRateLimiter:
    options: dict[str, Any] = {"exempt": ()}
    options.update(kwargs)
    rate = options.pop("rate", 10)
    burst = options.pop("burst", 5)
    return QueryRateLimiter(rate, burst, clock=clock, **options)


def allowed(limit: QueryRateLimiter, host: str, times: int) -> int:
    return sum(limit.allow(host) for _ in range(times))


def test_a_client_gets_its_burst_then_the_rate() -> None:
    clock = Clock()
    limit = limiter(clock)
    assert allowed(limit, "192.0.2.1", 8) == 5
    assert limit.dropped == 3
    clock.advance(0.1)  # one token at 10 a second
    assert allowed(limit, "192.0.2.1", 3) == 1
    clock.advance(100)  # refilled to the burst, not beyond
    assert allowed(limit, "192.0.2.1", 10) == 5
    assert limit.dropped == 10


def test_ipv4_is_counted_by_24_and_ipv6_by_56() -> None:
    clock = Clock()
    limit = limiter(clock)
    assert allowed(limit, "192.0.2.1", 3) + allowed(limit, "192.0.2.200", 3) == 5
    assert allowed(limit, "192.0.3.1", 5) == 5  # another /24
    assert allowed(limit, "::ffff:192.0.2.9", 1) == 0  # IPv4-mapped: the same /24
    assert allowed(limit, "2001:db8:0:ff::1", 3) + allowed(limit, "2001:db8:0:1::2", 3) == 5
    assert allowed(limit, "2001:db8:0:100::1", 5) == 5  # another /56
    assert allowed(limit, "fe80::1%eth0", 5) == 5
    assert allowed(limit, "not an address:", 6) == 5  # counted as itself
    assert len(limit) == 6


def test_exempt_networks_are_never_limited() -> None:
    clock = Clock()
    limit = QueryRateLimiter(10, 5, clock=clock)  # loopback exempt by default
    assert allowed(limit, "127.0.0.1", 1000) == 1000
    assert allowed(limit, "::1", 1000) == 1000
    assert allowed(limit, "192.0.2.1", 10) == 5
    custom = limiter(clock, exempt=["192.0.2.0/25"])
    assert allowed(custom, "192.0.2.7", 100) == 100
    assert allowed(custom, "127.0.0.1", 10) == 5


def test_the_table_is_bounded_and_forgets_refilled_buckets_first() -> None:
    clock = Clock()
    limit = limiter(clock, max_clients=8)
    for n in range(4):
        assert allowed(limit, f"198.51.{n}.1", 5) == 5  # emptied
    clock.advance(1.0)  # these four refill (5 tokens at 10 a second)
    for n in range(4):
        limit.allow(f"203.0.{n}.1")
    assert len(limit) == 8
    limit.allow("192.0.2.1")  # full: the refilled ones go
    assert len(limit) == 5
    for n in range(10):
        limit.allow(f"10.0.{n}.1")
    assert len(limit) <= 8
    # With nothing refilled, the oldest go: never more than the bound.
    busy = limiter(clock, max_clients=8)
    for n in range(100):
        assert allowed(busy, f"10.1.{n}.1", 6) == 5
        assert len(busy) <= 8


def test_drops_are_logged_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limit = limiter(clock, log_interval=60)
    with caplog.at_level(logging.WARNING, logger="torsion.names"):
        allowed(limit, "192.0.2.1", 100)
        clock.advance(30)
        allowed(limit, "192.0.2.1", 400)
        assert len(caplog.records) == 1
        assert "refused 1 queries" in caplog.records[0].getMessage()
        clock.advance(31)
        allowed(limit, "192.0.2.1", 6)
    assert len(caplog.records) == 2
    # Every drop is counted, and the next line says how many were not logged.
    assert limit.dropped == 95 + 395 + 1
    assert "refused 490 queries" in caplog.records[1].getMessage()
    assert "491 in all" in caplog.records[1].getMessage()


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="udp_rate"):
        QueryLimits(udp_rate=0)
    with pytest.raises(ValueError, match="max_connections"):
        QueryLimits(max_connections=0)
    with pytest.raises(ValueError, match="max_connections_per_client"):
        QueryLimits(max_connections_per_client=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        QueryLimits(idle_timeout=0)
    with pytest.raises(ValueError, match="does not appear"):
        QueryLimits(exempt=("nonsense",))
    with pytest.raises(ValueError, match="positive"):
        QueryRateLimiter(0, 1)
    assert QueryRateLimiter.from_limits(QueryLimits(udp_rate=None), None) is None


class FakeUDPTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def test_udp_queries_over_the_rate_are_dropped_on_both_paths() -> None:
    clock = Clock()
    limits = QueryLimits(udp_rate=1, udp_burst=3, exempt=())
    server = DNSServer([Authority.from_text(ZONE)], limits=limits)
    protocol = server.datagram_protocol(clock)
    assert isinstance(protocol, DNSDatagramProtocol)
    transport = FakeUDPTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    cached = dns.message.make_query("host.example.test.", "A").to_wire()
    for _ in range(5):  # the first takes the full path, the next the fast one
        protocol.datagram_received(cached, ("192.0.2.9", 1000))
    assert len(transport.sent) == 3
    protocol.datagram_received(cached, ("192.0.3.9", 1000))  # another client
    assert len(transport.sent) == 4
    clock.advance(1)
    protocol.datagram_received(cached, ("192.0.2.9", 1000))
    protocol.datagram_received(cached, ("192.0.2.9", 1000))
    assert len(transport.sent) == 5
    # The ports of one server share one table.
    assert server.datagram_protocol(clock)._limiter is server.udp_limiter
    assert server.udp_limiter is not None
    assert server.udp_limiter.dropped == 3


def test_the_default_limits_spare_loopback_and_can_be_turned_off() -> None:
    server = DNSServer([Authority.from_text(ZONE)])
    assert server.limits == QueryLimits()
    clock = Clock()
    protocol = server.datagram_protocol(clock)
    transport = FakeUDPTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    wire = dns.message.make_query("host.example.test.", "A").to_wire()
    for _ in range(5000):  # over the default burst of 2,000
        protocol.datagram_received(wire, ("127.0.0.1", 1000))
    for _ in range(2500):
        protocol.datagram_received(wire, ("192.0.2.1", 1000))
    assert len(transport.sent) == 5000 + 2000
    unlimited = DNSServer([], limits=QueryLimits(udp_rate=None))
    assert unlimited.datagram_protocol(clock)._limiter is None


def test_stream_connections_are_bounded_per_client_and_in_total(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limits = QueryLimits(max_connections=5, max_connections_per_client=2)
    factory = DNSServer([], limits=limits).stream_factory(clock)
    first = IPv4Address("192.0.2.9", 5000)
    other = IPv4Address("192.0.2.10", 5000)
    made = []
    with caplog.at_level(logging.WARNING):
        for address in (first, first, first, other, IPv6Address("2001:db8::1", 1)):
            protocol = factory(address)
            if protocol is not None:
                transport = StringTransport(protocol)
                protocol.connection_made(transport)
                made.append(protocol)
    assert len(made) == 4  # the third from 192.0.2.9 is refused
    assert factory.open_from(first) == 2
    assert factory.open_from(IPv6Address("2001:db8::2", 1)) == 1  # the same /64
    assert "2 DNS connections open from 192.0.2.9" in caplog.text
    made[0].connection_lost(None)
    assert factory.open_from(first) == 1
    assert factory(first) is not None  # counted at once, before connection_made
    assert factory(first) is None
    # The total: loopback is exempt from the per-client bound, not from it.
    local = IPv4Address("127.0.0.1", 4000)
    for _ in range(2):
        protocol = factory(local)
        assert protocol is not None
        protocol.connection_made(StringTransport(protocol))
    assert factory.open_from(local) == 0
    assert factory(local) is None
    assert "DNS connections open" in caplog.text


def test_stream_limits_come_from_the_server_unless_given() -> None:
    clock = Clock()
    server = DNSServer([], limits=QueryLimits(idle_timeout=3))
    protocol = server.stream_factory(clock)(IPv4Address("192.0.2.9", 1))
    assert protocol is not None
    transport = StringTransport(protocol)
    protocol.connection_made(transport)
    clock.advance(2.9)
    assert not transport.is_closing()
    clock.advance(0.2)
    assert transport.is_closing()
    protocol.connection_lost(None)
    given = server.stream_factory(clock, idle_timeout=100)(IPv4Address("192.0.2.9", 1))
    assert given is not None
    transport = StringTransport(given)
    given.connection_made(transport)
    clock.advance(50)
    assert not transport.is_closing()
    transport.abort()
    given.connection_lost(None)
    assert clock.get_delayed_calls() == []


@given(
    arrivals=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=0.5),
            st.sampled_from(["192.0.2.1", "192.0.2.7", "198.51.100.1"]),
        ),
        max_size=300,
    ),
    rate=st.floats(min_value=1, max_value=100),
    burst=st.integers(min_value=1, max_value=20),
)
def test_no_network_ever_gets_more_than_burst_plus_rate(
    arrivals: list[tuple[float, str]], rate: float, burst: int
) -> None:
    clock = Clock()
    limit = limiter(clock, rate=rate, burst=burst)
    passed: dict[str, list[float]] = {}
    for delay, host in arrivals:
        clock.advance(delay)
        if limit.allow(host):
            passed.setdefault(host.rpartition(".")[0], []).append(clock.seconds())
    for times in passed.values():
        for first in range(len(times)):
            for last in range(first, len(times)):
                window = times[last] - times[first]
                assert last - first + 1 <= burst + rate * window + 1e-6


@given(
    gaps=st.lists(st.floats(min_value=0, max_value=5), max_size=100),
    rate=st.floats(min_value=0.5, max_value=50),
)
def test_a_client_within_the_rate_is_never_dropped(gaps: list[float], rate: float) -> None:
    clock = Clock()
    limit = limiter(clock, rate=rate, burst=1)
    for gap in gaps:
        clock.advance(1 / rate + gap)
        assert limit.allow("192.0.2.1")
    assert limit.dropped == 0

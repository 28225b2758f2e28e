"""Flood limits for the DNS server: a query rate per client on UDP, and the stream bounds.

A DNS server answers anyone, and a UDP query costs its sender one datagram
whose source address it may forge. ``QueryRateLimiter`` keeps one client
from taking the whole server: each client has a token bucket of ``burst``
queries refilled at ``rate`` per second, and a query that finds it empty is
dropped without an answer (a resolver asks again, or asks another server;
an answer would feed a reflection attack on the forged source). A client
is a source network, not an address, as response-rate limiting counts them:
IPv4 addresses by their /24, IPv6 by their /56 (one customer's allocation,
RFC 6177), IPv4-mapped IPv6 addresses as the IPv4 address they carry. This
bounds what any one network gets, not what a flood from forged random
sources costs; that cost stays bounded by the per-packet work and the
queries in flight.

Networks in ``exempt`` are never limited: by default the loopback ones,
whose sources cannot come from another host (they must not appear outside
one, RFC 1122 section 3.2.1.3 and RFC 4291 section 2.5.3, and Linux drops
packets from them that arrive on any other interface), and from which
benchmarks and local resolvers ask.

The table of buckets is bounded (``max_clients``): when it is full, the
buckets that have refilled (which remember nothing) are forgotten, and if
that frees too little, the oldest ones; a forgotten client starts again
with a full bucket. Drops are counted (``dropped``) and logged at most once
per ``log_interval`` seconds, with the count since the last line, so that a
flood does not become a flood of log lines.

``QueryLimits`` gathers the server's limits, for UDP and for streams (TCP
and TLS), with their defaults.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["QueryLimits", "QueryRateLimiter"]

_log = logging.getLogger("torsion.names")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# An IPv4-mapped IPv6 address (RFC 4291 section 2.5.5.2) opens with these.
_MAPPED = bytes(10) + b"\xff\xff"
_IPV6_PREFIX_BYTES = 7  # /56
_LOOPBACK = ("127.0.0.0/8", "::1/128")

# The bucket of an exempt client: never read but for its identity.
_EXEMPT: list[float] = [0.0]


class _Seconds(Protocol):
    def seconds(self) -> float: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryLimits:
    """How much one client, and all of them, may ask of a ``DNSServer``.

    The UDP rate is per client network (IPv4 /24, IPv6 /56), 1,000 queries
    a second by default with bursts of 2,000: more than a resolver serving a
    whole network asks of one server, and a small share of what the server
    answers from its fast path (over 50,000 a second), so that one network
    cannot take the server from the others. A load test from one address of
    another host asks far more: raise ``udp_rate`` for it, exempt its
    network, or set ``udp_rate=None``. Loopback is exempt by default, so a
    benchmark on the same host measures the server, not the limit.

    Attributes:
        udp_rate: Queries per second a client may send over UDP (and
            over HTTPS, where the excess is answered 429), on average
            (1,000); None for no limit.
        udp_burst: Queries a client may send at once after a quiet spell
            (2,000).
        max_clients: How many clients' buckets to remember at most (100,000).
        exempt: The networks never limited (UDP rate and connections per
            client): loopback by default.
        log_interval: Seconds between two log lines about dropped queries
            (60).
        max_connections: Stream (TCP and TLS) connections open at once, in
            total (100).
        max_connections_per_client: Stream connections open at once from
            one client, an IPv4 address or an IPv6 /64 (16); None for no
            limit.
        idle_timeout: Seconds a stream connection may stay without a query
            in flight (10; RFC 7766 section 6.2.3, RFC 7858 section 3.4).
        max_in_flight: Queries of one stream connection answered at once;
            reading it pauses beyond (16; RFC 7766 section 6.2.1.1).
        max_udp_in_flight: Queries of a UDP port answered at once (those
            waiting for an upstream server); more are dropped (1,000). DNS
            over HTTPS answers 503 beyond as many.
    """

    udp_rate: float | None = 1000.0
    udp_burst: int = 2000
    max_clients: int = 100_000
    exempt: tuple[str, ...] = _LOOPBACK
    log_interval: float = 60.0
    max_connections: int = 100
    max_connections_per_client: int | None = 16
    idle_timeout: float = 10.0
    max_in_flight: int = 16
    max_udp_in_flight: int = 1000

    def __post_init__(self) -> None:
        if self.udp_rate is not None and self.udp_rate <= 0:
            raise ValueError(f"udp_rate must be above 0 (or None), not {self.udp_rate}")
        for name in (
            "udp_burst",
            "max_clients",
            "max_connections",
            "max_in_flight",
            "max_udp_in_flight",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        per_client = self.max_connections_per_client
        if per_client is not None and per_client < 1:
            raise ValueError(f"max_connections_per_client must be at least 1, not {per_client}")
        if self.idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be above 0, not {self.idle_timeout}")
        exempt_networks(self.exempt)  # refuse a malformed network now, not at the first query


def exempt_networks(networks: Iterable[str | Network]) -> list[Network]:
    """``networks`` parsed (host bits allowed).

    Raises:
        ValueError: One is not a network such as ``192.0.2.0/24``.
    """
    return [ipaddress.ip_network(network, strict=False) for network in networks]


def is_exempt(host: str, networks: list[Network]) -> bool:
    """Whether the address ``host`` is in one of ``networks`` (IPv4-mapped as IPv4)."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class QueryRateLimiter:
    """Token buckets per client network: whether a UDP query is answered or dropped.

    Args:
        rate: Queries per second, on average, per client.
        burst: Queries at once, after a quiet spell.
        clock: Tells the time; None for ``time.monotonic``.
        max_clients: How many buckets to keep at most.
        exempt: Networks never limited.
        log_interval: Seconds between two log lines about drops.

    Attributes:
        dropped: How many queries were dropped, in all.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: _Seconds | None = None,
        max_clients: int = 100_000,
        exempt: Iterable[str | Network] = _LOOPBACK,
        log_interval: float = 60.0,
    ) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate, burst and max_clients must be positive")
        self.rate = float(rate)
        self.burst = float(burst)
        self._interval = 1.0 / self.rate
        # A query is dropped when the bucket would be full later than this:
        # burst - 1 queries ahead (with a hair of slack for rounding).
        self._depth = (self.burst - 1.0 + 1e-6) * self._interval
        self._seconds: Callable[[], float] = time.monotonic if clock is None else clock.seconds
        self.max_clients = max_clients
        self._exempt = exempt_networks(exempt)
        self.log_interval = log_interval
        # client key -> [when its bucket is full again]; in the order first seen.
        self._buckets: dict[str | bytes, list[float]] = {}
        # source address -> its network's bucket (bounded like the buckets).
        self._hosts: dict[str, list[float]] = {}
        self.dropped = 0
        self._unlogged = 0
        self._next_log = float("-inf")

    @classmethod
    def from_limits(cls, limits: QueryLimits, clock: _Seconds | None) -> QueryRateLimiter | None:
        """The limiter ``limits`` ask for, or None when they set no UDP rate."""
        if limits.udp_rate is None:
            return None
        return cls(
            limits.udp_rate,
            limits.udp_burst,
            clock=clock,
            max_clients=limits.max_clients,
            exempt=limits.exempt,
            log_interval=limits.log_interval,
        )

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, host: str) -> bool:
        """Take a token from the bucket of ``host``'s network: False to drop the query.

        Args:
            host: The source address, as the socket gives it (``"192.0.2.1"``,
                ``"2001:db8::1"``, ``"fe80::1%eth0"``, ``"::ffff:192.0.2.1"``).
        """
        # This runs for every datagram, ahead of the fast path: a client
        # seen before costs one lookup by its address string (the network's
        # bucket, or the exempt mark), the clock, and a little arithmetic.
        bucket = self._hosts.get(host)
        if bucket is None:
            bucket = self._bucket_for(host)
        if bucket is _EXEMPT:
            return True
        # The token bucket kept as the time it will be full again (the
        # "theoretical arrival time" of the generic cell rate algorithm):
        # one number per client, and no division or min() per query.
        now = self._seconds()
        full_at = bucket[0]
        if full_at < now:
            full_at = now
        if full_at - now > self._depth:
            self._drop(host, now)
            return False
        bucket[0] = full_at + self._interval
        return True

    def _bucket_for(self, host: str) -> list[float]:
        """The bucket of ``host``'s network (made full if new), remembered for ``host``."""
        key = self._ipv6_key(host) if ":" in host else host[: host.rfind(".")]
        bucket = self._buckets.get(key)
        if bucket is None:
            now = self._seconds()
            if len(self._buckets) >= self.max_clients:
                self._evict(now)
            bucket = _EXEMPT if is_exempt(host, self._exempt) else [now]
            self._buckets[key] = bucket
        if len(self._hosts) >= self.max_clients:
            # Only a shortcut to the buckets: forgetting it forgets no counts.
            self._hosts.clear()
        self._hosts[host] = bucket
        return bucket

    @staticmethod
    def _ipv6_key(host: str) -> str | bytes:
        try:
            packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
        except OSError:
            return host  # not an address: its own client
        if packed[:12] == _MAPPED:
            return host[host.rfind(":") + 1 : host.rfind(".")]  # ::ffff:a.b.c.d is a.b.c
        return packed[:_IPV6_PREFIX_BYTES]

    def _evict(self, now: float) -> None:
        """Forget the refilled buckets; if under a quarter of them, the oldest too."""
        buckets = self._buckets
        idle = [key for key, bucket in buckets.items() if bucket is _EXEMPT or bucket[0] <= now]
        for key in idle:
            del buckets[key]
        target = self.max_clients * 3 // 4
        if len(buckets) > target:
            # Dicts keep the order of insertion: the first are the oldest.
            for key in list(buckets)[: len(buckets) - target]:
                del buckets[key]
        # The addresses may point at forgotten buckets: they look them up again.
        self._hosts.clear()

    def _drop(self, host: str, now: float) -> None:
        self.dropped += 1
        self._unlogged += 1
        if now >= self._next_log:
            _log.warning(
                "refused %d queries from clients over %g a second (UDP ones dropped, "
                "DNS over HTTPS ones answered 429; %d in all; the latest from %s)",
                self._unlogged,
                self.rate,
                self.dropped,
                host,
            )
            self._unlogged = 0
            self._next_log = now + self.log_interval

    def __repr__(self) -> str:
        return (
            f"<QueryRateLimiter {self.rate:g}/s burst {self.burst:g}, "
            f"{len(self._buckets)} clients, {self.dropped} dropped>"
        )

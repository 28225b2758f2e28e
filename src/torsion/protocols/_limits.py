"""Admission policies: how many connections, from whom, how fast.

``ConnectionLimit`` caps the connections open at once, in total and per
client address; ``ConnectionRateLimit`` caps how often one address may open
a new connection. Both wrap a protocol factory: a connection over a limit
is closed as soon as it is accepted, before any protocol sees it, and the
refusal is logged (``RefusalLog`` keeps a flood of refusals from flooding
the log too). Wrapped factories compose, and one policy object may wrap the
factories of several ports so that they share its counts.

Client addresses are counted per IPv4 address and per IPv6 /64 prefix (one
host usually has a whole /64 to pick addresses from), IPv4-mapped IPv6
addresses as the IPv4 address they carry; every Unix-socket client counts
as one local address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable

from torsion.internet import (
    Address,
    Clock,
    IPv4Address,
    IPv6Address,
    ProtocolFactory,
    ProtocolWrapper,
)

__all__ = ["ConnectionLimit", "ConnectionRateLimit", "RefusalLog", "client_key"]

_log = logging.getLogger("torsion.protocols.policies")

# Bounds on what a policy remembers per address, whatever the peers do.
_MAX_TRACKED_ADDRESSES = 100_000
_MAX_LOGGED_KEYS = 10_000


def client_key(address: Address, *, ipv6_prefix: int = 64) -> str:
    """Return the key a client is counted under: its IPv4 address or IPv6 prefix.

    Args:
        address: The peer's address.
        ipv6_prefix: How many leading bits of an IPv6 address name a client.
    """
    if isinstance(address, IPv4Address):
        return address.host
    if isinstance(address, IPv6Address):
        ip = ipaddress.IPv6Address(address.host.partition("%")[0])
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        network = ipaddress.IPv6Network((ip, ipv6_prefix), strict=False)
        return str(network)
    return "local"


class RefusalLog:
    """Logs refused connections, collapsing repeats.

    The first refusal of a client for a reason is logged at once (WARNING);
    more of the same within ``quiet_period`` seconds are counted, and the
    next one logged after it says how many there were.

    Args:
        clock: Tells the time.
        quiet_period: Seconds during which repeats are only counted.
        logger: Where the lines go.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        quiet_period: float = 60.0,
        logger: logging.Logger = _log,
    ) -> None:
        self._clock = clock
        self.quiet_period = quiet_period
        self._logger = logger
        # (reason, client) -> (when last logged, refusals not logged since).
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def refused(self, address: Address, key: str, reason: str) -> None:
        """Record that a connection from ``address`` was refused for ``reason``."""
        now = self._clock.seconds()
        entry = (reason, key)
        seen = self._seen.get(entry)
        if seen is not None and now - seen[0] < self.quiet_period:
            self._seen[entry] = (seen[0], seen[1] + 1)
            return
        more = "" if seen is None or not seen[1] else f" ({seen[1]} more since the last report)"
        self._logger.warning("Refused a connection from %s: %s%s", address, reason, more)
        self._seen.pop(entry, None)
        self._seen[entry] = (now, 0)
        if len(self._seen) > _MAX_LOGGED_KEYS:
            del self._seen[next(iter(self._seen))]


class _Counted(ProtocolWrapper):
    """Tells its limit when the connection ends."""

    def __init__(self, wrapped: asyncio.BaseProtocol, release: Callable[[], None]) -> None:
        super().__init__(wrapped)
        self._release: Callable[[], None] | None = release

    def connection_lost(self, exc: Exception | None) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()
        super().connection_lost(exc)


class ConnectionLimit:
    """Caps the connections open at once, in total and per client address.

    Args:
        clock: Tells the time (for the refusal log).
        total: The most connections at once over every wrapped factory
            (None: no cap).
        per_address: The most at once from one client (None: no cap).
        ipv6_prefix: The IPv6 prefix length that names one client.
        log: Where refusals are reported (a ``RefusalLog`` of its own if None).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        total: int | None = None,
        per_address: int | None = None,
        ipv6_prefix: int = 64,
        log: RefusalLog | None = None,
    ) -> None:
        for name, value in (("total", total), ("per_address", per_address)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        self.total = total
        self.per_address = per_address
        self.ipv6_prefix = ipv6_prefix
        self._log = log if log is not None else RefusalLog(clock)
        self.count = 0
        self._per_key: dict[str, int] = {}

    def count_for(self, address: Address) -> int:
        """Return how many connections from ``address``'s client are open."""
        return self._per_key.get(client_key(address, ipv6_prefix=self.ipv6_prefix), 0)

    def wrap(self, factory: ProtocolFactory) -> ProtocolFactory:
        """Return a factory that builds with ``factory`` while under the limits."""

        def build(address: Address) -> asyncio.BaseProtocol | None:
            key = client_key(address, ipv6_prefix=self.ipv6_prefix)
            if self.total is not None and self.count >= self.total:
                self._log.refused(address, key, f"{self.total} connections already open")
                return None
            held = self._per_key.get(key, 0)
            if self.per_address is not None and held >= self.per_address:
                self._log.refused(
                    address, key, f"{self.per_address} connections already open from {key}"
                )
                return None
            protocol = factory(address)
            if protocol is None:
                return None
            self.count += 1
            self._per_key[key] = held + 1
            return _Counted(protocol, lambda: self._release(key))

        return build

    def _release(self, key: str) -> None:
        self.count -= 1
        left = self._per_key[key] - 1
        if left:
            self._per_key[key] = left
        else:
            del self._per_key[key]

    def __repr__(self) -> str:
        limits = f"total={self.total} per_address={self.per_address}"
        return f"<ConnectionLimit {self.count} open, {limits}>"


class ConnectionRateLimit:
    """Caps how often one client may open a connection.

    Each client has a bucket of ``per_address`` connections that refills
    evenly over ``period`` seconds: a client may open that many at once,
    then one each ``period / per_address`` seconds. A connection with its
    bucket empty is refused.

    Args:
        clock: Tells the time.
        per_address: Connections a client may open per ``period``.
        period: Seconds.
        ipv6_prefix: The IPv6 prefix length that names one client.
        log: Where refusals are reported (a ``RefusalLog`` of its own if None).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        per_address: int,
        period: float = 1.0,
        ipv6_prefix: int = 64,
        log: RefusalLog | None = None,
    ) -> None:
        if per_address < 1:
            raise ValueError(f"per_address must be at least 1, not {per_address}")
        if period <= 0:
            raise ValueError(f"period must be positive, not {period}")
        self._clock = clock
        self.per_address = per_address
        self.period = period
        self.ipv6_prefix = ipv6_prefix
        self._log = log if log is not None else RefusalLog(clock)
        # client -> (tokens, when counted); oldest first, bounded.
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, address: Address) -> bool:
        """Take one connection from ``address``'s bucket; return whether it had one."""
        key = client_key(address, ipv6_prefix=self.ipv6_prefix)
        now = self._clock.seconds()
        tokens, then = self._buckets.pop(key, (float(self.per_address), now))
        tokens = min(
            float(self.per_address), tokens + (now - then) * self.per_address / self.period
        )
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        # Re-inserted last: the dict stays ordered by last use, and the
        # least recently seen client is the one forgotten when it is full.
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > _MAX_TRACKED_ADDRESSES:
            del self._buckets[next(iter(self._buckets))]
        return allowed

    def wrap(self, factory: ProtocolFactory) -> ProtocolFactory:
        """Return a factory that builds with ``factory`` while a client is under its rate."""

        def build(address: Address) -> asyncio.BaseProtocol | None:
            if not self.allow(address):
                key = client_key(address, ipv6_prefix=self.ipv6_prefix)
                self._log.refused(
                    address,
                    key,
                    f"more than {self.per_address} connections in {self.period:g}s from {key}",
                )
                return None
            return factory(address)

        return build

    def __repr__(self) -> str:
        return f"<ConnectionRateLimit {self.per_address} per {self.period:g}s>"

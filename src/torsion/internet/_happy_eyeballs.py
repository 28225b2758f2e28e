"""Connecting to a host name the way RFC 8305 (Happy Eyeballs v2) says.

A name often has IPv6 and IPv4 addresses, and one family may be broken on
the path between here and there. Trying the addresses one after another
makes a broken family cost a whole connect timeout; trying them all at once
floods the server. RFC 8305 races them with a head start: the addresses are
ordered with the families interleaved (section 4), one attempt starts, and
the next starts when that one fails or after the "connection attempt delay"
(section 5, 250 ms recommended), whichever comes first. The first connection
made wins; the others are cancelled or closed.

Only the winner is given to the caller's factory: each attempt is held by a
stand-in protocol until it has won (see ``Handover``).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from torsion.defer import Deferred, ensure_deferred
from torsion.errors import DNSLookupError
from torsion.internet._address import Address, ip_endpoint
from torsion.internet._connector import Connector
from torsion.internet._delayed import Clock, DelayedCall
from torsion.internet._handover import Handover
from torsion.internet._resolve import is_ip_address

__all__ = ["HostnameEndpoint", "interleave_families"]

P = TypeVar("P", bound=asyncio.BaseProtocol)

# RFC 8305 section 5: "a recommended value of 250 milliseconds", never below
# 10 ms ("MUST NOT be less than 10 milliseconds").
DEFAULT_ATTEMPT_DELAY = 0.25
_MIN_ATTEMPT_DELAY = 0.01


class _ConnectsByAddress(Clock, Protocol):
    """What ``HostnameEndpoint`` needs from a reactor: a clock, names, TCP."""

    def resolve_all(self, host: str) -> Awaitable[list[str]]:
        """Every address of ``host``, best first."""
        ...

    def connect_tcp(
        self,
        host: str,
        port: int,
        factory: Callable[[Address], P],
        *,
        timeout: float | None = 30.0,
    ) -> Connector[P]:
        """Connect to an IP address."""
        ...


def interleave_families(addresses: list[str]) -> list[str]:
    """Order addresses as RFC 8305 section 4 says: alternate the families.

    The first address keeps its place (the resolver's order is the
    preference of RFC 6724); then the other family's first, and so on,
    taking each family in its own order.
    """
    if not addresses:
        return []
    first_v6 = ipaddress.ip_address(addresses[0]).version == 6
    v6 = [a for a in addresses if ipaddress.ip_address(a).version == 6]
    v4 = [a for a in addresses if ipaddress.ip_address(a).version == 4]
    first, second = (v6, v4) if first_v6 else (v4, v6)
    ordered: list[str] = []
    for i in range(max(len(first), len(second))):
        ordered.extend(family[i] for family in (first, second) if i < len(family))
    return ordered


def _as_deferred(awaitable: Awaitable[list[str]]) -> Deferred[list[str]]:
    if isinstance(awaitable, Deferred):
        return awaitable
    if isinstance(awaitable, Coroutine):
        return ensure_deferred(awaitable)
    return Deferred.from_future(awaitable)


class HostnameEndpoint:
    """A client endpoint for a host name: resolves it, then races its addresses.

    Args:
        reactor: Provides time, name resolution and TCP connections.
        host: A host name (or an IP address, which is tried alone).
        port: The port to connect to.
        timeout: Seconds for the whole attempt, resolution included (None
            for no limit beyond each connect's own).
        attempt_delay: Seconds between starting one attempt and the next
            (RFC 8305's "connection attempt delay", at least 10 ms).

    Attributes:
        host, port, timeout, attempt_delay: As given.
    """

    def __init__(
        self,
        reactor: _ConnectsByAddress,
        host: str,
        port: int,
        *,
        timeout: float | None = 30.0,
        attempt_delay: float = DEFAULT_ATTEMPT_DELAY,
    ) -> None:
        if attempt_delay < _MIN_ATTEMPT_DELAY:
            raise ValueError(f"attempt_delay must be at least {_MIN_ATTEMPT_DELAY} s (RFC 8305)")
        self._reactor = reactor
        self.host = host
        self.port = port
        self.timeout = timeout
        self.attempt_delay = attempt_delay

    def connect(self, factory: Callable[[Address], P]) -> Deferred[P]:
        """Connect, and give the winning connection to ``factory``'s protocol.

        Returns:
            A Deferred that fires with the protocol once connected; or fails
            with ``DNSLookupError``, ``TimeoutError`` (the overall timeout),
            or the error of the last attempt to fail when all did. Cancelling
            it cancels every attempt.
        """
        race = _Race(self, factory)
        return race.start()

    def __repr__(self) -> str:
        return f"<HostnameEndpoint {self.host}:{self.port}>"


class _Race:
    """One ``connect`` call: resolution, staggered attempts, the winner."""

    def __init__(self, endpoint: HostnameEndpoint, factory: Callable[[Address], Any]) -> None:
        self._endpoint = endpoint
        self._reactor = endpoint._reactor
        self._factory = factory
        self._result: Deferred[Any] = Deferred(self._cancel)
        self._pending: list[str] = []
        self._attempts: dict[Connector[Handover], str] = {}
        self._next_timer: DelayedCall | None = None
        self._timeout_timer: DelayedCall | None = None
        self._lookup: Deferred[list[str]] | None = None
        self._last_error: BaseException | None = None
        self._done = False

    def start(self) -> Deferred[Any]:
        endpoint = self._endpoint
        if endpoint.timeout is not None:
            self._timeout_timer = self._reactor.call_later(endpoint.timeout, self._timed_out)
        if is_ip_address(endpoint.host):
            self._resolved([endpoint.host])
        else:
            lookup = _as_deferred(self._reactor.resolve_all(endpoint.host))
            self._lookup = lookup
            lookup.add_callbacks(self._resolved, self._finish_with_error)
        return self._result

    def _resolved(self, addresses: list[str]) -> None:
        self._lookup = None
        if self._done:
            return
        self._pending = interleave_families(list(addresses))
        if not self._pending:
            self._finish_with_error(DNSLookupError(self._endpoint.host))
            return
        self._start_next()

    def _start_next(self) -> None:
        if self._next_timer is not None and self._next_timer.active():
            self._next_timer.cancel()
        self._next_timer = None
        if self._done or not self._pending:
            return
        address = self._pending.pop(0)
        connector = self._reactor.connect_tcp(
            address, self._endpoint.port, lambda _: Handover(), timeout=None
        )
        self._attempts[connector] = address
        connector.deferred.add_callbacks(
            lambda stand_in: self._won(connector, stand_in),
            lambda exc: self._attempt_failed(connector, exc),
        )
        if self._pending and not self._done:
            self._next_timer = self._reactor.call_later(
                self._endpoint.attempt_delay, self._start_next
            )

    def _attempt_failed(self, connector: Connector[Handover], exc: BaseException) -> None:
        self._attempts.pop(connector, None)
        if self._done:
            return
        self._last_error = exc
        if self._pending:
            # RFC 8305 section 5: a failure starts the next attempt at once.
            self._start_next()
        elif not self._attempts:
            self._finish_with_error(exc)

    def _won(self, connector: Connector[Handover], stand_in: Handover) -> None:
        address = self._attempts.pop(connector)
        if self._done:
            connector.disconnect()
            return
        port = self._endpoint.port
        peer = ip_endpoint(address, port)
        if stand_in.lost is not None:
            # Connected, then lost before its turn came: count it as failed.
            self._attempt_failed(connector, stand_in.lost)
            return
        self._finish()
        try:
            protocol = self._factory(peer)
            stand_in.hand_over(protocol)
        except Exception as exc:
            connector.disconnect()
            self._result.errback(exc)
            return
        self._result.callback(protocol)

    def _timed_out(self) -> None:
        self._timeout_timer = None
        self._finish_with_error(
            TimeoutError(f"connecting to {self._endpoint.host}:{self._endpoint.port} timed out")
        )

    def _cancel(self, _: Deferred[Any]) -> None:
        self._finish()

    def _finish_with_error(self, exc: BaseException) -> None:
        if self._done:
            return
        self._finish()
        self._result.errback(exc)

    def _finish(self) -> None:
        """Stop everything still under way."""
        self._done = True
        for timer in (self._next_timer, self._timeout_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._next_timer = self._timeout_timer = None
        self._pending = []
        if self._lookup is not None:
            lookup, self._lookup = self._lookup, None
            lookup.cancel()
        attempts, self._attempts = self._attempts, {}
        for connector in attempts:
            connector.disconnect()

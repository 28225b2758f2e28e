"""Secondary zones: a zone copied from its primary server by zone transfer (AXFR).

``SecondaryAuthority`` pulls the whole zone from the primary ("master") over
TCP (RFC 5936), then answers from it as an ``Authority`` does. It keeps the
copy fresh the way RFC 1035 section 4.3.5 describes, with the timers of the
zone's SOA record (or the ones given):

- every ``refresh`` seconds it asks the primary for the SOA, and transfers
  the zone again when the serial has grown (serials compare in RFC 1982
  arithmetic: they wrap around at 2**32);
- after a failed check or transfer it tries again every ``retry`` seconds;
- when no check has succeeded for ``expire`` seconds the copy is too old to
  be trusted, and the zone is no longer served until a transfer succeeds.

Until the first transfer, and after expiry, questions about names in the
zone fail with ``ZoneError``, which a ``DNSServer`` answers with SERVFAIL
(RFC 1035: the server is configured for the zone but has no data it may
give); names outside the zone are ``NotMineError``, as for any zone.

What the primary sends is bounded: each message is at most 65,535 bytes (the
length prefix of RFC 1035 section 4.2.2), a whole transfer at most
``max_transfer_size`` bytes and ``timeout`` seconds, and dnspython's
``dns.xfr.Inbound`` checks the transfer's structure (the SOA first and
last, every record inside the zone).

A loaded copy is served on as a primary's is: the ``DNSServer`` transfers
it (AXFR, IXFR) to the clients allowed to (``ServedZone``). A NOTIFY
(RFC 1996) from the primary's address starts a check at once, without
waiting for the refresh timer (``NotifiedZone``); one that arrives while a
check is under way starts another after it, since the change it announces
may have come after that check asked (RFC 1996 section 4.4).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import dns.xfr
import dns.zone

from torsion.defer import CancelledError, Deferred, ensure_deferred, fail
from torsion.errors import TorsionError
from torsion.internet import Connector, DelayedCall
from torsion.names._answer import Answer, NotMineError, Question
from torsion.names._client import DNSClient, ReactorForDNS
from torsion.names._zone import Authority, ZoneError
from torsion.protocols import Int16StringReceiver

__all__ = [
    "AXFRClient",
    "NotifiedZone",
    "Primary",
    "SecondaryAuthority",
    "TransferError",
    "serial_gt",
]

_log = logging.getLogger("torsion.names")

_SERIAL_HALF = 2**31
_SERIAL_MOD = 2**32


class TransferError(TorsionError):
    """A zone transfer, or the check of the primary's serial, failed."""


def serial_gt(s1: int, s2: int) -> bool:
    """Whether serial ``s1`` is greater than ``s2`` (RFC 1982 section 3.2, SERIAL_BITS 32).

    Serials wrap: 1 is greater than 4294967295. Two serials exactly 2**31
    apart are not comparable; neither is greater.
    """
    s1 %= _SERIAL_MOD
    s2 %= _SERIAL_MOD
    return (s1 < s2 and s2 - s1 > _SERIAL_HALF) or (s1 > s2 and s1 - s2 < _SERIAL_HALF)


class Primary(Protocol):
    """What a secondary asks its primary server (``AXFRClient`` over the network)."""

    def serial(self, origin: dns.name.Name) -> Deferred[int]:
        """The serial of the primary's SOA for ``origin``; fails with ``TransferError``."""
        ...

    def transfer(self, origin: dns.name.Name) -> Deferred[dns.zone.Zone]:
        """The whole zone ``origin``; fails with ``TransferError``."""
        ...


@runtime_checkable
class NotifiedZone(Protocol):
    """A zone that hears NOTIFY messages (RFC 1996) about changes at its primary."""

    @property
    def origin(self) -> dns.name.Name:
        """The zone's name."""
        ...

    @property
    def rdclass(self) -> dns.rdataclass.RdataClass:
        """The zone's class."""
        ...

    def notified(self, source: str) -> bool:
        """A NOTIFY for this zone came from the address ``source``.

        Returns:
            True when it is accepted (it comes from the primary, and a check
            of the primary's serial begins); False to refuse it.
        """
        ...


class _Clock(Protocol):
    def seconds(self) -> float: ...

    def call_later(self, delay: float, f: Callable[..., object], /, *args: Any) -> DelayedCall: ...


class SecondaryAuthority:
    """Answers for a zone transferred from a primary server, kept fresh by the SOA timers.

    Call ``start`` to begin (the first transfer), ``stop`` to end.

    Args:
        reactor: Runs the timers and connects to the primary.
        domain: The zone's name.
        master: The primary's ``(ip_address, port)``.
        refresh: Seconds between serial checks; None for the SOA's REFRESH.
        retry: Seconds between tries after a failure; None for the SOA's
            RETRY (before the first transfer, ``initial_retry``).
        expire: Seconds without a successful check before the zone is no
            longer served; None for the SOA's EXPIRE.
        initial_retry: Seconds between tries before the first transfer.
        timeout: Seconds a serial check or a transfer may take.
        max_transfer_size: The most bytes a transfer may have.
        primary: Asks the primary (an ``AXFRClient`` by default; tests give
            a fake).
    """

    def __init__(
        self,
        reactor: _Clock,
        domain: dns.name.Name | str,
        master: tuple[str, int],
        *,
        refresh: float | None = None,
        retry: float | None = None,
        expire: float | None = None,
        initial_retry: float = 60.0,
        timeout: float = 30.0,
        max_transfer_size: int = 64 * 1024 * 1024,
        primary: Primary | None = None,
    ) -> None:
        self.origin = dns.name.from_text(domain) if isinstance(domain, str) else domain
        if not self.origin.is_absolute():
            raise ValueError(f"the zone's name must be absolute, not {self.origin}")
        self.master = master
        self.rdclass = dns.rdataclass.IN
        self._clock = reactor
        self._refresh = refresh
        self._retry = retry
        self._expire = expire
        self._initial_retry = initial_retry
        if primary is None:
            primary = AXFRClient(
                reactor,  # type: ignore[arg-type]
                master,
                timeout=timeout,
                max_transfer_size=max_transfer_size,
            )
        self.primary = primary
        self._authority: Authority | None = None
        self._serial: int | None = None
        self._timer: DelayedCall | None = None
        self._expiry: DelayedCall | None = None
        self._busy: Deferred[None] | None = None
        self._running = False
        self._again = False
        self._waiters: list[Deferred[bool]] = []

    @property
    def loaded(self) -> bool:
        """Whether the zone is being served (transferred, and not expired)."""
        return self._authority is not None

    @property
    def serial(self) -> int | None:
        """The serial of the copy held, if any."""
        return self._serial

    @property
    def zone(self) -> dns.zone.Zone | None:
        """The copy served now: None before the first transfer and after expiry.

        Each transfer makes a new zone object.
        """
        return None if self._authority is None else self._authority.zone

    def transfer(self) -> list[dns.rrset.RRset]:
        """The copy as a zone transfer sends it: SOA, the rest, SOA (RFC 5936).

        Raises:
            ZoneError: No copy is served now.
        """
        if self._authority is None:
            raise ZoneError(f"zone {self.origin} is not loaded from its primary")
        return self._authority.transfer()

    def notified(self, source: str) -> bool:
        """A NOTIFY came from ``source``: check the primary now if it is the primary.

        RFC 1996 section 3.10 lets a NOTIFY from anyone but the primary be
        ignored; the server answers it REFUSED.

        Returns:
            Whether ``source`` is the primary's address.
        """
        if not _same_address(source, self.master[0]):
            return False
        if self._busy is not None:
            self._again = True  # the change may be newer than the check under way
        else:
            self.refresh_now()
        return True

    def query(self, question: Question) -> Deferred[Answer]:
        """Answer from the copy of the zone.

        Returns:
            A Deferred with the answer, or failing with ``NotMineError`` for
            a name outside the zone, or ``ZoneError`` while no copy is served.
        """
        if question.rdclass != self.rdclass or not question.name.is_subdomain(self.origin):
            return fail(NotMineError(f"{question} is not in zone {self.origin}"))
        if self._authority is None:
            return fail(ZoneError(f"zone {self.origin} is not loaded from its primary"))
        return self._authority.query(question)

    def next_update(self) -> Deferred[bool]:
        """Fires when the next check or transfer ends: True if it succeeded, False if not."""
        d: Deferred[bool] = Deferred(self._forget_waiter)
        self._waiters.append(d)
        return d

    def _forget_waiter(self, d: Deferred[bool]) -> None:
        if d in self._waiters:
            self._waiters.remove(d)

    def _notify(self, succeeded: bool) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(succeeded)

    def start(self) -> None:
        """Transfer the zone now, and keep it fresh from then on."""
        if not self._running:
            self._running = True
            self.refresh_now()

    def stop(self) -> None:
        """Stop the timers and the check or transfer under way (the copy stays)."""
        self._running = False
        self._again = False
        for call in (self._timer, self._expiry):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._expiry = None
        busy, self._busy = self._busy, None
        if busy is not None:
            busy.cancel()

    def refresh_now(self) -> None:
        """Check the primary now (SIGHUP), unless a check is already under way."""
        if not self._running or self._busy is not None:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._again = False
        busy = ensure_deferred(self._update())
        if not busy.called:
            self._busy = busy
        busy.add_errback(_ignore_cancel)
        busy.add_callback(self._check_again)

    def _check_again(self, _: object) -> None:
        """A NOTIFY came during the check that just ended: check once more."""
        if self._again:
            self.refresh_now()

    async def _update(self) -> None:
        try:
            if self._authority is not None and self._serial is not None:
                serial = await self.primary.serial(self.origin)
                if not serial_gt(serial, self._serial):
                    # Checked and current: the copy is good for EXPIRE more seconds.
                    _log.debug("zone %s is current at serial %d", self.origin, self._serial)
                    self._checked()
                    return
            zone = await self.primary.transfer(self.origin)
            authority = Authority(zone)
            new_serial = _soa(zone).serial
            if (
                self._serial is not None
                and self._authority is not None
                and not serial_gt(new_serial, self._serial)
            ):
                raise TransferError(
                    f"the transfer has serial {new_serial}, not above {self._serial}"
                )
        except CancelledError:
            raise
        except Exception as exc:
            # Whatever went wrong (the primary's doing, mostly), the zone
            # is tried again later: the refresh cycle must not stop.
            self._failed(exc)
            return
        finally:
            self._busy = None
        self._authority = authority
        self._serial = new_serial
        _log.info(
            "zone %s transferred from %s:%d, serial %d",
            self.origin,
            self.master[0],
            self.master[1],
            new_serial,
        )
        self._checked()

    def _checked(self) -> None:
        """A check or transfer succeeded: refresh later, expire later still."""
        soa = _soa(self._authority.zone) if self._authority is not None else None
        refresh = self._refresh if self._refresh is not None else soa.refresh if soa else 3600
        expire = self._expire if self._expire is not None else soa.expire if soa else 604800
        self._schedule(float(refresh))
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = self._clock.call_later(float(expire), self._expired)
        self._notify(True)

    def _failed(self, exc: BaseException) -> None:
        if self._authority is None:
            retry = self._initial_retry
        elif self._retry is not None:
            retry = self._retry
        else:
            retry = _soa(self._authority.zone).retry
        _log.warning(
            "zone %s: no transfer from %s:%d (%s); trying again in %gs",
            self.origin,
            self.master[0],
            self.master[1],
            exc,
            retry,
        )
        self._schedule(float(retry))
        self._notify(False)

    def _schedule(self, delay: float) -> None:
        if self._running:
            self._timer = self._clock.call_later(delay, self._due)

    def _due(self) -> None:
        self._timer = None
        self.refresh_now()

    def _expired(self) -> None:
        self._expiry = None
        if self._authority is not None:
            _log.error(
                "zone %s expired: no check with %s:%d succeeded; not served until one does",
                self.origin,
                self.master[0],
                self.master[1],
            )
        # After expiry the next success is a whole transfer.
        self._authority = None
        self._serial = None

    def __repr__(self) -> str:
        state = f"serial {self._serial}" if self._authority is not None else "not loaded"
        host, port = self.master
        return f"<SecondaryAuthority for {self.origin} from {host}:{port}, {state}>"


def _same_address(a: str, b: str) -> bool:
    """Whether two address strings name one address (IPv4-mapped IPv6 as IPv4)."""
    try:
        first = ipaddress.ip_address(a.partition("%")[0])
        second = ipaddress.ip_address(b.partition("%")[0])
    except ValueError:
        return False
    if isinstance(first, ipaddress.IPv6Address) and first.ipv4_mapped is not None:
        first = first.ipv4_mapped
    if isinstance(second, ipaddress.IPv6Address) and second.ipv4_mapped is not None:
        second = second.ipv4_mapped
    return first == second


def _soa(zone: dns.zone.Zone) -> dns.rdtypes.ANY.SOA.SOA:
    assert zone.origin is not None
    rdataset = zone.get_rdataset(zone.origin, dns.rdatatype.SOA)
    if rdataset is None:
        raise TransferError(f"zone {zone.origin} has no SOA")
    rdata = rdataset[0]
    assert isinstance(rdata, dns.rdtypes.ANY.SOA.SOA)
    return rdata


def _ignore_cancel(error: BaseException) -> None:
    if not isinstance(error, CancelledError):
        _log.error("zone refresh failed", exc_info=error)


class AXFRClient:
    """Asks a primary server for its SOA serial (over UDP) and its zones (AXFR over TCP).

    Args:
        reactor: Gives time, UDP ports and TCP connections.
        master: The primary's ``(ip_address, port)``.
        timeout: Seconds a serial query or a whole transfer may take.
        max_transfer_size: The most bytes a transfer may have.
    """

    def __init__(
        self,
        reactor: ReactorForDNS,
        master: tuple[str, int],
        *,
        timeout: float = 30.0,
        max_transfer_size: int = 64 * 1024 * 1024,
    ) -> None:
        self.reactor = reactor
        self.master = master
        self.timeout = timeout
        self.max_transfer_size = max_transfer_size
        self._client = DNSClient(reactor, [master], timeout=timeout, attempts=1)

    def serial(self, origin: dns.name.Name) -> Deferred[int]:
        """The serial of the primary's SOA for ``origin``.

        Returns:
            A Deferred firing with the serial, or failing with
            ``TransferError`` (no SOA, not authoritative) or ``TimeoutError``.
        """
        return ensure_deferred(self._serial(origin))

    async def _serial(self, origin: dns.name.Name) -> int:
        answer = await self._client.query(Question(origin, dns.rdatatype.SOA))
        if answer.rcode != dns.rcode.NOERROR or not answer.authoritative:
            raise TransferError(
                f"{self.master[0]}:{self.master[1]} is not authoritative for {origin} "
                f"({dns.rcode.to_text(answer.rcode)})"
            )
        for rrset in answer.answer:
            if rrset.name == origin and rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                rdata = rrset[0]
                assert isinstance(rdata, dns.rdtypes.ANY.SOA.SOA)
                return int(rdata.serial)
        raise TransferError(f"no SOA for {origin} from {self.master[0]}:{self.master[1]}")

    def transfer(self, origin: dns.name.Name) -> Deferred[dns.zone.Zone]:
        """Transfer the zone ``origin`` (RFC 5936).

        Returns:
            A Deferred firing with the zone (absolute names), or failing
            with ``TransferError`` (refused, malformed, too large, cut short)
            or ``TimeoutError``. Cancelling it closes the connection.
        """
        exchange = _AXFRExchange(origin, self.max_transfer_size)
        connectors: list[Connector[_AXFRExchange]] = []

        def cancel(_: Deferred[dns.zone.Zone]) -> None:
            if timer.active():
                timer.cancel()
            for connector in connectors:
                connector.disconnect()
            exchange.close()

        result: Deferred[dns.zone.Zone] = Deferred(cancel)

        def done(outcome: dns.zone.Zone | BaseException) -> None:
            if timer.active():
                timer.cancel()
            if result.called:
                return
            if isinstance(outcome, BaseException):
                result.errback(outcome)
            else:
                result.callback(outcome)

        def connect_failed(exc: BaseException) -> None:
            if not isinstance(exc, CancelledError):
                exchange.finish(TransferError(f"cannot connect for the transfer: {exc}"))

        # The outcome may come at once (a connection refused synchronously):
        # everything that reports it is in place before connecting.
        exchange.on_done = done
        timer = self.reactor.call_later(
            self.timeout,
            lambda: exchange.finish(TimeoutError(f"the transfer of {origin} took too long")),
        )
        connector = self.reactor.connect_tcp(
            self.master[0], self.master[1], lambda _: exchange, timeout=self.timeout
        )
        connectors.append(connector)
        connector.deferred.add_errback(connect_failed)
        return result


class _AXFRExchange(Int16StringReceiver):
    """One AXFR over TCP: the query, then the messages until the closing SOA."""

    def __init__(self, origin: dns.name.Name, max_size: int) -> None:
        super().__init__()
        self.origin = origin
        self.max_size = max_size
        self.received = 0
        self.query = dns.message.make_query(origin, dns.rdatatype.AXFR, use_edns=False)
        self.query.id = secrets.randbelow(65536)
        self.zone = dns.zone.Zone(origin, relativize=False)
        self.inbound = dns.xfr.Inbound(self.zone, dns.rdatatype.AXFR)
        self.first = True
        self.on_done: Callable[[dns.zone.Zone | BaseException], None] | None = None
        self.outcome: dns.zone.Zone | BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the query (after its two-byte length)."""
        super().connection_made(transport)
        if self.outcome is not None:
            self.transport.close()
            return
        self.send_string(self.query.to_wire())

    def string_received(self, string: bytes) -> None:
        """Take one message of the transfer."""
        if self.outcome is not None:
            return
        self.received += len(string)
        if self.received > self.max_size:
            self.finish(
                TransferError(f"the transfer of {self.origin} exceeds {self.max_size} bytes")
            )
            return
        try:
            message = dns.message.from_wire(
                string, xfr=True, origin=self.zone.from_wire_origin(), one_rr_per_rrset=False
            )
            if not self.query.is_response(message, xfr_continuation=not self.first):
                raise TransferError("a message that is not an answer to the transfer query")
            self.first = False
            done = self.inbound.process_message(message)
        except dns.xfr.TransferError as exc:
            self.finish(TransferError(f"the primary refused the transfer: {exc}"))
            return
        except TransferError as exc:
            self.finish(exc)
            return
        except (dns.exception.DNSException, ValueError, KeyError, IndexError, UnicodeError) as exc:
            self.finish(TransferError(f"a malformed transfer of {self.origin}: {exc!r}"))
            return
        if done:
            self.finish(self.zone)

    def connection_lost(self, exc: Exception | None) -> None:
        """Cut short unless finished."""
        super().connection_lost(exc)
        self.finish(TransferError(f"the primary closed the transfer of {self.origin} early"))

    def close(self) -> None:
        """Give up (cancelled): close without reporting."""
        if self.outcome is None:
            self.outcome = TransferError("cancelled")
            self._close()

    def finish(self, outcome: dns.zone.Zone | BaseException) -> None:
        """Report the outcome (once) and close the connection."""
        if self.outcome is not None:
            return
        self.outcome = outcome
        self._close()
        if self.on_done is not None:
            self.on_done(outcome)

    def _close(self) -> None:
        # The transaction the transfer began, if it did not finish, is dropped.
        txn = self.inbound.txn
        if txn is not None:
            self.inbound.txn = None
            txn.rollback()
        transport = getattr(self, "transport", None)
        if transport is not None and not transport.is_closing():
            transport.close()

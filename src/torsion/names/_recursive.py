"""A recursive resolver: answers found by asking the servers from the root down.

``RecursiveResolver`` starts from the root hints (the root servers' names
and addresses; IANA's by default) and follows referrals, zone cut by zone
cut, to the servers of the zone holding the name (RFC 1034 section 5.3.3,
RFC 1035 section 7). Each server is asked through a ``DNSClient`` of one
server (random ID and source port, answers matched to the question, TCP
when truncated), with one try: the resolver itself moves on to another
server of the same zone when one times out, answers SERVFAIL or REFUSED, or
is lame (it answers without authority and without a referral downwards).
Servers that answered lately are asked first.

What a server says is believed only within its bailiwick, the zone it was
asked as a server of: records in the answer and authority sections owned
by names outside that zone, and glue addresses outside it, are dropped
(the defence against the cache poisoning of RFC 5452 section 6 and of
"Kaminsky"-style referrals). A referral is followed only downwards (a cut
strictly below the zone asked and above the name), so every referral gets
closer to the name. NS names that come without glue are resolved on their
own, to a bounded depth; those inside the zone they serve cannot be (no
glue, no way in) and are skipped.

CNAMEs are followed across zones, up to a chain length, and a name met
twice is a loop: SERVFAIL. Negative answers (NXDOMAIN, NODATA) carry the
SOA the zone's server gave, so that caches downstream keep them for their
RFC 2308 time. Every client question has a budget: upstream queries,
referrals, and a deadline; when it runs out, or no server answers, the
answer is SERVFAIL. Identical questions asked while one is being resolved
share that resolution, and only so many are resolved at once.

Delegations (the NS names and glue of each cut) are kept for their TTLs,
and whole answers in a ``CacheResolver`` (its RFC 2308 rules included).

Every server is asked the full question, as RFC 1034 does, unless QNAME
minimisation is asked for (RFC 9156): each zone's servers are then asked
only for the name one label below their zone (type A), a label more at a
time, so that the root and TLD servers never see the whole name.

Usage, as a recursive server's resolver::

    resolver = RecursiveResolver(reactor)
    server = DNSServer([*zones, resolver], recursive=True)
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import dns.exception
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from torsion.defer import (
    CancelledError,
    Deferred,
    QueueOverflowError,
    ensure_deferred,
    fail,
    succeed,
)
from torsion.errors import TorsionError
from torsion.internet import DelayedCall, is_ip_address
from torsion.names._answer import Answer, DNSResolver, NotMineError, Question
from torsion.names._cache import CacheResolver
from torsion.names._client import DNSClient, ReactorForDNS
from torsion.names._zone import ZoneError

__all__ = [
    "ReactorForRecursion",
    "RecursiveResolver",
    "load_root_hints",
    "parse_root_hints",
]

_log = logging.getLogger("torsion.names")

RootHints = dict[dns.name.Name, tuple[str, ...]]

# IANA's root hints (https://www.internic.net/domain/named.root, version
# 2024041801): the 13 root server names with their IPv4 and IPv6 addresses.
_NAMED_ROOT = """\
.                        3600000      NS    A.ROOT-SERVERS.NET.
A.ROOT-SERVERS.NET.      3600000      A     198.41.0.4
A.ROOT-SERVERS.NET.      3600000      AAAA  2001:503:ba3e::2:30
.                        3600000      NS    B.ROOT-SERVERS.NET.
B.ROOT-SERVERS.NET.      3600000      A     170.247.170.2
B.ROOT-SERVERS.NET.      3600000      AAAA  2801:1b8:10::b
.                        3600000      NS    C.ROOT-SERVERS.NET.
C.ROOT-SERVERS.NET.      3600000      A     192.33.4.12
C.ROOT-SERVERS.NET.      3600000      AAAA  2001:500:2::c
.                        3600000      NS    D.ROOT-SERVERS.NET.
D.ROOT-SERVERS.NET.      3600000      A     199.7.91.13
D.ROOT-SERVERS.NET.      3600000      AAAA  2001:500:2d::d
.                        3600000      NS    E.ROOT-SERVERS.NET.
E.ROOT-SERVERS.NET.      3600000      A     192.203.230.10
E.ROOT-SERVERS.NET.      3600000      AAAA  2001:500:a8::e
.                        3600000      NS    F.ROOT-SERVERS.NET.
F.ROOT-SERVERS.NET.      3600000      A     192.5.5.241
F.ROOT-SERVERS.NET.      3600000      AAAA  2001:500:2f::f
.                        3600000      NS    G.ROOT-SERVERS.NET.
G.ROOT-SERVERS.NET.      3600000      A     192.112.36.4
G.ROOT-SERVERS.NET.      3600000      AAAA  2001:500:12::d0d
.                        3600000      NS    H.ROOT-SERVERS.NET.
H.ROOT-SERVERS.NET.      3600000      A     198.97.190.53
H.ROOT-SERVERS.NET.      3600000      AAAA  2001:500:1::53
.                        3600000      NS    I.ROOT-SERVERS.NET.
I.ROOT-SERVERS.NET.      3600000      A     192.36.148.17
I.ROOT-SERVERS.NET.      3600000      AAAA  2001:7fe::53
.                        3600000      NS    J.ROOT-SERVERS.NET.
J.ROOT-SERVERS.NET.      3600000      A     192.58.128.30
J.ROOT-SERVERS.NET.      3600000      AAAA  2001:503:c27::2:30
.                        3600000      NS    K.ROOT-SERVERS.NET.
K.ROOT-SERVERS.NET.      3600000      A     193.0.14.129
K.ROOT-SERVERS.NET.      3600000      AAAA  2001:7fd::1
.                        3600000      NS    L.ROOT-SERVERS.NET.
L.ROOT-SERVERS.NET.      3600000      A     199.7.83.42
L.ROOT-SERVERS.NET.      3600000      AAAA  2001:500:9f::42
.                        3600000      NS    M.ROOT-SERVERS.NET.
M.ROOT-SERVERS.NET.      3600000      A     202.12.27.33
M.ROOT-SERVERS.NET.      3600000      AAAA  2001:dc3::35
"""

_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
# A referral naming more servers than this is cut short: more would only
# let a hostile server make us ask more (each is still bounded by the budget).
_MAX_SERVERS = 16
_MAX_ADDRESSES = 8
# RFC 8767 section 4 caps TTLs at 7 days; a delegation is kept a day at most.
_MAX_DELEGATION_TTL = 86400
# How long a server's failures count against it before it is tried first again.
_FAILURE_MEMORY = 300.0
_MAX_HEALTH_ENTRIES = 10000
# RFC 9156 section 2.3: at most this many minimised queries for one name.
_MAX_MINIMISE = 10


class ReactorForRecursion(ReactorForDNS, Protocol):
    """What the recursive resolver needs of a reactor: a clock, UDP and TCP."""

    def seconds(self) -> float:
        """The time now, in seconds."""
        ...


def parse_root_hints(text: str) -> RootHints:
    """Read root hints in the BIND named.root format (the NS records of "." and their addresses).

    Returns:
        Each root server's name and its addresses (IPv4 first), in the
        order of the NS records; names without an address are left out.

    Raises:
        ZoneError: The text cannot be parsed, or names no server with an
            address.
    """
    try:
        zone = dns.zone.from_text(text, origin=dns.name.root, relativize=False, check_origin=False)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ZoneError(f"not valid root hints: {exc}") from exc
    ns = zone.get_rdataset(dns.name.root, dns.rdatatype.NS)
    if ns is None:
        raise ZoneError("the root hints have no NS records for the root")
    hints: RootHints = {}
    for rdata in ns:
        target = rdata.target
        addresses: list[str] = []
        for rdtype in _ADDRESS_TYPES:
            rdataset = zone.get_rdataset(target, rdtype)
            if rdataset is not None:
                addresses.extend(str(record.address) for record in rdataset)
        if addresses:
            hints[target] = tuple(addresses)
    if not hints:
        raise ZoneError("the root hints give no root server an address")
    return hints


def load_root_hints(path: str | os.PathLike[str]) -> RootHints:
    """Read a root hints file (BIND's named.root format; see ``parse_root_hints``).

    Raises:
        ZoneError: The file cannot be read or parsed.
    """
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ZoneError(f"cannot read root hints {os.fspath(path)!r}: {exc}") from exc
    return parse_root_hints(text)


class _FailedError(TorsionError):
    """This resolution (or this part of it) cannot succeed: SERVFAIL."""


class _OutOfBudgetError(_FailedError):
    """The question has used all the upstream queries it may."""


@dataclass(slots=True)
class _Delegation:
    """A zone cut: the zone's name, its servers' names and the addresses known for them."""

    zone: dns.name.Name
    servers: list[dns.name.Name]
    addresses: dict[dns.name.Name, list[str]] = field(default_factory=dict)
    expires: float = math.inf


@dataclass(slots=True)
class _Budget:
    """What one client question may still spend."""

    queries: int


class _Shared:
    """One resolution under way, and the callers waiting for it."""

    def __init__(self) -> None:
        self.waiters: list[Deferred[Answer]] = []
        self.work: Deferred[Answer] | None = None
        self.timer: DelayedCall | None = None
        self.timed_out = False
        self.answer: Answer | None = None


class RecursiveResolver:
    """Resolves questions from the root servers down, as a recursive server does.

    Args:
        reactor: Tells the time, runs the timers, opens the UDP ports and
            TCP connections to the servers.
        hints: The root servers, name to addresses (``load_root_hints``
            reads a named.root file); IANA's root servers by default.
        port: The port every server is asked on (53; another port only
            makes sense for a test hierarchy sharing one port, since glue
            carries addresses only).
        timeout: Seconds to wait for one server's answer.
        ipv6: Whether to ask servers over IPv6 too.
        cache: Where whole answers are kept for their TTLs (a new
            ``CacheResolver`` by default).
        max_queries: Upstream queries one client question may cause.
        max_referrals: Referrals followed for one name.
        max_cname_chain: CNAMEs followed for one question.
        max_ns_depth: How deep the resolution of NS names without glue
            may nest (resolving a server's name may need another's...).
        max_resolutions: Client questions resolved at once; one more is
            refused (``QueueOverflowError``).
        max_delegations: Zone cuts remembered.
        resolution_timeout: Seconds one client question may take in all
            before it is answered SERVFAIL.
        qname_minimisation: Whether each zone's servers are asked only for
            the name one label below their zone until the zone holding the
            name is found (RFC 9156), instead of the whole question.
        network: Makes the resolver that asks one server, from its address
            and port; by default a ``DNSClient`` of that server alone, with
            one try. Tests give a map of fake servers.

    Attributes:
        port: As given.
        cache: The answer cache.
        hints: The root servers it starts from: name -> addresses.
    """

    def __init__(
        self,
        reactor: ReactorForRecursion,
        *,
        hints: Mapping[str, Iterable[str]] | Mapping[dns.name.Name, Iterable[str]] | None = None,
        port: int = 53,
        timeout: float = 2.0,
        ipv6: bool = True,
        cache: CacheResolver | None = None,
        max_queries: int = 64,
        max_referrals: int = 16,
        max_cname_chain: int = 8,
        max_ns_depth: int = 3,
        max_resolutions: int = 1000,
        max_delegations: int = 10000,
        resolution_timeout: float = 15.0,
        qname_minimisation: bool = False,
        network: Callable[[str, int], DNSResolver] | None = None,
    ) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"not a port: {port}")
        for name, value in (
            ("timeout", timeout),
            ("resolution_timeout", resolution_timeout),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value}")
        for name, count in (
            ("max_queries", max_queries),
            ("max_referrals", max_referrals),
            ("max_resolutions", max_resolutions),
            ("max_delegations", max_delegations),
        ):
            if count < 1:
                raise ValueError(f"{name} must be at least 1, not {count}")
        if max_cname_chain < 0 or max_ns_depth < 0:
            raise ValueError("max_cname_chain and max_ns_depth cannot be negative")
        self.reactor = reactor
        self.port = port
        self.timeout = timeout
        self.ipv6 = ipv6
        self.cache = CacheResolver(reactor) if cache is None else cache
        self.max_queries = max_queries
        self.max_referrals = max_referrals
        self.max_cname_chain = max_cname_chain
        self.max_ns_depth = max_ns_depth
        self.max_resolutions = max_resolutions
        self.max_delegations = max_delegations
        self.resolution_timeout = resolution_timeout
        self.qname_minimisation = qname_minimisation
        self._network = self._client if network is None else network
        self._root = _hints_delegation(parse_root_hints(_NAMED_ROOT) if hints is None else hints)
        self.hints: Mapping[dns.name.Name, tuple[str, ...]] = {
            server: tuple(self._root.addresses[server]) for server in self._root.servers
        }
        self._delegations: OrderedDict[dns.name.Name, _Delegation] = OrderedDict()
        # Address -> (consecutive failures, when the last one was).
        self._health: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._pending: dict[Question, _Shared] = {}

    def close(self) -> None:
        """Stop every resolution under way: their callers get SERVFAIL, no timer is left.

        The resolver may be used again afterwards.
        """
        for shared in list(self._pending.values()):
            if shared.work is not None:
                shared.work.cancel()

    @property
    def resolving(self) -> int:
        """How many client questions are being resolved now."""
        return len(self._pending)

    def query(self, question: Question) -> Deferred[Answer]:
        """Resolve ``question`` from the root down (or from the caches).

        Returns:
            A Deferred firing with the answer: records (after the CNAMEs
            leading to them), NXDOMAIN or NODATA with the zone's SOA, or
            SERVFAIL when resolution failed; never authoritative. It fails
            with ``NotMineError`` for a class other than IN, and with
            ``QueueOverflowError`` when ``max_resolutions`` questions are
            being resolved already. Cancelling it stops the resolution
            unless other callers wait for it too.
        """
        if question.rdclass != dns.rdataclass.IN:
            return fail(NotMineError(f"{question}: only class IN is resolved"))
        cached = self._cached(question)
        if cached is not None:
            return succeed(cached)
        shared = self._pending.get(question)
        if shared is None:
            if len(self._pending) >= self.max_resolutions:
                return fail(
                    QueueOverflowError(f"{self.max_resolutions} DNS questions are being resolved")
                )
            shared = self._start(question)
            if shared.answer is not None:
                # Resolved at once (everything it needed was cached).
                return succeed(shared.answer)
        return self._wait_for(shared)

    # Sharing one resolution between identical questions.

    def _start(self, question: Question) -> _Shared:
        shared = _Shared()
        self._pending[question] = shared
        shared.timer = self.reactor.call_later(self.resolution_timeout, self._timed_out, shared)
        work = ensure_deferred(self._resolve_question(question))
        if not work.called:
            shared.work = work
        work.add_callbacks(
            lambda answer: self._finished(question, shared, answer),
            lambda exc: self._failed(question, shared, exc),
        )
        return shared

    def _wait_for(self, shared: _Shared) -> Deferred[Answer]:
        def cancel(waiter: Deferred[Answer]) -> None:
            if waiter in shared.waiters:
                shared.waiters.remove(waiter)
            if not shared.waiters and shared.work is not None:
                # Nobody wants the answer any more: stop asking.
                shared.work.cancel()

        waiter: Deferred[Answer] = Deferred(cancel)
        shared.waiters.append(waiter)
        return waiter

    def _timed_out(self, shared: _Shared) -> None:
        shared.timer = None
        shared.timed_out = True
        if shared.work is not None:
            shared.work.cancel()

    def _failed(self, question: Question, shared: _Shared, exc: BaseException) -> None:
        if isinstance(exc, CancelledError):
            if shared.timed_out:
                _log.info(
                    "SERVFAIL for %s: not resolved in %s s", question, self.resolution_timeout
                )
        else:
            _log.error("SERVFAIL for %s", question, exc_info=exc)
        self._finished(question, shared, Answer(dns.rcode.SERVFAIL))

    def _finished(self, question: Question, shared: _Shared, answer: Answer) -> None:
        if self._pending.get(question) is shared:
            del self._pending[question]
        if shared.timer is not None:
            shared.timer.cancel()
            shared.timer = None
        shared.work = None
        shared.answer = answer
        waiters, shared.waiters = shared.waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(answer)

    async def _resolve_question(self, question: Question) -> Answer:
        try:
            return await self._resolve(question, _Budget(self.max_queries), 0)
        except _FailedError as exc:
            _log.debug("SERVFAIL for %s: %s", question, exc)
            return Answer(dns.rcode.SERVFAIL)

    # Resolution.

    async def _resolve(self, question: Question, budget: _Budget, depth: int) -> Answer:
        """The whole answer to ``question``: CNAMEs followed, from the cache or the servers.

        Raises:
            _FailedError: It cannot be resolved.
        """
        cached = self._cached(question)
        if cached is not None:
            return cached
        chain: list[dns.rrset.RRset] = []
        seen = {question.name}
        name = question.name
        while True:
            asked = name
            step = await self._iterate(
                Question(name, question.rdtype, question.rdclass), budget, depth
            )
            records = {(rrset.name, rrset.rdtype): rrset for rrset in step.answer}
            while True:
                final = _final_records(step.answer, records, name, question.rdtype)
                if final:
                    answer = Answer(dns.rcode.NOERROR, answer=[*chain, *final])
                    self.cache.add(question, answer)
                    return answer
                cname = (
                    None
                    if question.rdtype == dns.rdatatype.CNAME
                    else records.get((name, dns.rdatatype.CNAME))
                )
                if cname is None:
                    break
                chain.append(cname)
                target = cname[0].target
                if len(chain) > self.max_cname_chain:
                    raise _FailedError(
                        f"{question}: a CNAME chain longer than {self.max_cname_chain}"
                    )
                if target in seen:
                    raise _FailedError(f"{question}: a CNAME loop at {target}")
                seen.add(target)
                name = target
            soa = [rrset for rrset in step.authority if rrset.rdtype == dns.rdatatype.SOA]
            if name == asked or (soa and name.is_subdomain(soa[0].name)):
                # No records for the last name, and the server that said so
                # speaks for it: NXDOMAIN or NODATA (RFC 6604: the response
                # code is the last name's).
                answer = Answer(step.rcode, answer=chain, authority=soa)
                self.cache.add(question, answer)
                return answer
            # The chain left the zone that answered: ask for its end anew.

    async def _iterate(self, question: Question, budget: _Budget, depth: int) -> Answer:
        """The answer of the servers of ``question.name``'s zone, referrals followed.

        Returns:
            What those servers said, cut to their bailiwick.

        Raises:
            _FailedError: No server answered, or too many referrals.
        """
        start = question.name
        if question.rdtype == dns.rdatatype.DS and start != dns.name.root:
            # The DS records of a cut are the parent's (RFC 4035 section 3.1.4.1).
            start = start.parent()
        delegation = self._closest(start)
        # QNAME minimisation (RFC 9156): each zone's servers are asked for
        # the name one label below the zone (type A, section 2.1), one more
        # label each time they have no cut there, and the whole question
        # at the name itself or after MAX_MINIMISE_COUNT steps (section 2.3).
        minimise = self.qname_minimisation and question.rdtype != dns.rdatatype.DS
        labels = len(delegation.zone) + 1
        steps = referrals = 0
        while True:
            asked = question
            if minimise and labels < len(question.name) and steps < _MAX_MINIMISE:
                asked = Question(question.name.split(labels)[1], dns.rdatatype.A)
            answer, referral = await self._ask_zone(delegation, asked, budget, depth)
            if referral is not None:
                referrals += 1
                if referrals > self.max_referrals:
                    raise _FailedError(f"{question}: more than {self.max_referrals} referrals")
                self._remember(referral)
                delegation = referral
                labels = len(delegation.zone) + 1
                continue
            if asked is question or answer.rcode == dns.rcode.NXDOMAIN:
                # A name that does not exist has no names below it either
                # (RFC 8020): the NXDOMAIN of an ancestor is the question's.
                return _in_bailiwick(answer, delegation.zone)
            labels += 1
            steps += 1

    async def _ask_zone(
        self, delegation: _Delegation, question: Question, budget: _Budget, depth: int
    ) -> tuple[Answer, _Delegation | None]:
        """Ask the servers of one zone until one answers or refers us downwards.

        Returns:
            The answer, and the delegation it refers to (None for an answer).
        """
        tried: set[str] = set()
        without_glue = [name for name in delegation.servers if not delegation.addresses.get(name)]
        while True:
            candidates = [
                address
                for name in delegation.servers
                for address in delegation.addresses.get(name, ())
                if address not in tried and (self.ipv6 or ":" not in address)
            ]
            if candidates:
                address = self._preferred(candidates)
                tried.add(address)
                answer = await self._ask(address, question, budget)
                if answer is None:
                    continue
                kind = self._classify(answer, delegation, question)
                if kind is None:
                    _log.debug("lame server %s for %s", address, delegation.zone)
                    self._note(address, failed=True)
                    continue
                self._note(address, failed=False)
                return answer, (kind if isinstance(kind, _Delegation) else None)
            while without_glue:
                server = without_glue.pop(0)
                if server.is_subdomain(delegation.zone) or depth >= self.max_ns_depth:
                    # Inside its own zone, without glue, nobody can say where it is.
                    continue
                addresses = await self._addresses(server, budget, depth + 1)
                if addresses:
                    delegation.addresses[server] = addresses
                    break
            else:
                raise _FailedError(f"no server of {delegation.zone} answered {question}")

    async def _addresses(self, server: dns.name.Name, budget: _Budget, depth: int) -> list[str]:
        """Resolve a server's name (A; AAAA too when it has no A and IPv6 is used)."""
        addresses: list[str] = []
        for rdtype in _ADDRESS_TYPES:
            if rdtype == dns.rdatatype.AAAA and (addresses or not self.ipv6):
                break
            try:
                answer = await self._resolve(Question(server, rdtype), budget, depth)
            except _OutOfBudgetError:
                raise
            except _FailedError as exc:
                _log.debug("cannot resolve name server %s: %s", server, exc)
                continue
            for rrset in answer.answer:
                if rrset.rdtype == rdtype:
                    addresses.extend(str(rdata.address) for rdata in rrset)
        return addresses[:_MAX_ADDRESSES]

    async def _ask(self, address: str, question: Question, budget: _Budget) -> Answer | None:
        """One server's answer, or None when it did not answer usefully."""
        if budget.queries <= 0:
            raise _OutOfBudgetError(f"{question}: more than {self.max_queries} upstream queries")
        budget.queries -= 1
        try:
            answer = await self._network(address, self.port).query(question)
        except (TimeoutError, TorsionError, OSError) as exc:
            _log.debug("%s did not answer %s: %r", address, question, exc)
            self._note(address, failed=True)
            return None
        if answer.rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            _log.debug("%s answered %s to %s", address, dns.rcode.to_text(answer.rcode), question)
            self._note(address, failed=True)
            return None
        return answer

    def _classify(
        self, answer: Answer, delegation: _Delegation, question: Question
    ) -> _Delegation | bool | None:
        """What a server's response is: an answer (True), a referral, or lame (None)."""
        zone = delegation.zone
        relevant = _in_bailiwick(answer, zone)
        soa = bool(relevant.authority)
        if answer.rcode == dns.rcode.NOERROR and not relevant.answer and not soa:
            referral = self._referral(answer, zone, question)
            if referral is not None:
                return referral
        if answer.authoritative:
            return True
        # Without authority and without a referral downwards: a lame server
        # (RFC 1034 section 4.2.1: it does not serve the zone it was named for).
        return None

    def _referral(
        self, answer: Answer, zone: dns.name.Name, question: Question
    ) -> _Delegation | None:
        """The delegation a referral names, if it leads below ``zone`` towards the name."""
        for rrset in answer.authority:
            cut = rrset.name
            if (
                rrset.rdtype != dns.rdatatype.NS
                or rrset.rdclass != dns.rdataclass.IN
                or cut == zone
                or not cut.is_subdomain(zone)
                or not question.name.is_subdomain(cut)
                or (question.rdtype == dns.rdatatype.DS and cut == question.name)
                or not len(rrset)
            ):
                continue
            servers: list[dns.name.Name] = []
            for rdata in rrset:
                if rdata.target not in servers and len(servers) < _MAX_SERVERS:
                    servers.append(rdata.target)
            ttl = rrset.ttl
            addresses: dict[dns.name.Name, list[str]] = {}
            for glue in answer.additional:
                # Glue is believed only from within the zone asked about.
                if (
                    glue.rdtype in _ADDRESS_TYPES
                    and glue.rdclass == dns.rdataclass.IN
                    and glue.name in servers
                    and glue.name.is_subdomain(zone)
                ):
                    known = addresses.setdefault(glue.name, [])
                    for rdata in glue:
                        if len(known) < _MAX_ADDRESSES and is_ip_address(str(rdata.address)):
                            known.append(str(rdata.address))
                    ttl = min(ttl, glue.ttl)
            expires = self.reactor.seconds() + min(ttl, _MAX_DELEGATION_TTL)
            return _Delegation(cut, servers, addresses, expires)
        return None

    # Delegations and servers remembered.

    def _closest(self, name: dns.name.Name) -> _Delegation:
        """The deepest live delegation known at or above ``name`` (the root's at worst)."""
        now = self.reactor.seconds()
        probe = name
        while probe != dns.name.root:
            delegation = self._delegations.get(probe)
            if delegation is not None:
                if delegation.expires > now:
                    self._delegations.move_to_end(probe)
                    return delegation
                del self._delegations[probe]
            probe = probe.parent()
        return self._root

    def _remember(self, delegation: _Delegation) -> None:
        if delegation.expires <= self.reactor.seconds():
            return
        self._delegations[delegation.zone] = delegation
        self._delegations.move_to_end(delegation.zone)
        while len(self._delegations) > self.max_delegations:
            self._delegations.popitem(last=False)

    def _preferred(self, addresses: list[str]) -> str:
        """The address to ask first: fewest recent failures, then chance."""
        now = self.reactor.seconds()

        def failures(address: str) -> int:
            count, when = self._health.get(address, (0, 0.0))
            return count if now - when < _FAILURE_MEMORY else 0

        least = min(failures(address) for address in addresses)
        return random.choice([address for address in addresses if failures(address) == least])

    def _note(self, address: str, *, failed: bool) -> None:
        if not failed:
            self._health.pop(address, None)
            return
        count, _ = self._health.pop(address, (0, 0.0))
        self._health[address] = (count + 1, self.reactor.seconds())
        while len(self._health) > _MAX_HEALTH_ENTRIES:
            self._health.popitem(last=False)

    def _cached(self, question: Question) -> Answer | None:
        found: list[Answer] = []
        self.cache.query(question).add_callbacks(found.append, _ignore)
        return found[0] if found else None

    def _client(self, address: str, port: int) -> DNSResolver:
        # Iterative queries: RD clear (RFC 1034, section 5.3.3).
        return DNSClient(
            self.reactor,
            [(address, port)],
            timeout=self.timeout,
            attempts=1,
            recursion_desired=False,
        )

    def __repr__(self) -> str:
        return f"<RecursiveResolver port {self.port}, {len(self._pending)} resolving>"


def _hints_delegation(
    hints: Mapping[str, Iterable[str]] | Mapping[dns.name.Name, Iterable[str]],
) -> _Delegation:
    servers: list[dns.name.Name] = []
    addresses: dict[dns.name.Name, list[str]] = {}
    for name, given in hints.items():
        try:
            server = dns.name.from_text(name) if isinstance(name, str) else name
        except dns.exception.DNSException as exc:
            raise ValueError(f"root hint: not a domain name: {name!r}") from exc
        if not server.is_absolute():
            server = server.concatenate(dns.name.root)
        listed = list(given)
        for address in listed:
            if not is_ip_address(address):
                raise ValueError(f"root hint {server}: not an IP address: {address!r}")
        if listed:
            servers.append(server)
            addresses[server] = listed
    if not servers:
        raise ValueError("the root hints give no server an address")
    return _Delegation(dns.name.root, servers, addresses)


def _in_bailiwick(answer: Answer, zone: dns.name.Name) -> Answer:
    """``answer`` without what its server has no authority over; never AA, no additional.

    Kept: the answer section's IN records owned by names in ``zone``, and
    the authority section's SOA records of ``zone`` or below. The additional
    section is never more than a hint, and is not passed on.
    """

    def ours(rrset: dns.rrset.RRset) -> bool:
        return rrset.rdclass == dns.rdataclass.IN and rrset.name.is_subdomain(zone)

    return Answer(
        rcode=answer.rcode,
        answer=[rrset for rrset in answer.answer if ours(rrset)],
        authority=[
            rrset
            for rrset in answer.authority
            if rrset.rdtype == dns.rdatatype.SOA and ours(rrset)
        ],
    )


def _final_records(
    answer: list[dns.rrset.RRset],
    records: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], dns.rrset.RRset],
    name: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
) -> list[dns.rrset.RRset]:
    if rdtype == dns.rdatatype.ANY:
        return [rrset for rrset in answer if rrset.name == name]
    found = records.get((name, rdtype))
    return [] if found is None else [found]


def _ignore(_: BaseException) -> None:
    return None

"""The search list: which names a relative name is tried as, and in what order.

A name typed by a person ("www", "db.internal") is relative: the resolver
tries it in each domain of the search list, the way glibc's
``res_nsearch`` does (resolver(3), resolv.conf(5)):

- a name with a final dot is absolute and asked as it is, only;
- a name with at least ``ndots`` dots is asked as it is first, then in
  each search domain;
- any other name is asked in each search domain first, then as it is (a
  name without a dot is not asked on its own under ``no-tld-query``).

The first positive answer (NOERROR with records) wins. NXDOMAIN and NODATA
move on to the next name; so do SERVFAIL, REFUSED and timeouts, so that a
server failing for one domain does not hide an answer in a later one (glibc
stops at a timeout; this resolver keeps going). When no name had records,
the answer is, as glibc ranks them: a NODATA if any name had one, else the
failure (a SERVFAIL answer, or the error) if any, else the NXDOMAIN.

Only the lookups made from text use the search list (``DNSClient.lookup``
and its ``lookup_*`` helpers, ``AddressResolver``); ``query`` asks exactly
the question it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Self

import dns.exception
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from torsion.defer import Deferred, Failed, ensure_deferred, settle
from torsion.names._answer import Answer, DNSResolver, Question

__all__ = [
    "NameLike",
    "SearchList",
    "address_answers",
    "addresses_of",
    "lookup_addresses",
    "to_name",
]

NameLike = str | dns.name.Name


def to_name(name: NameLike) -> dns.name.Name:
    """Return ``name`` as an absolute ``dns.name.Name`` (text names are from the root).

    Raises:
        ValueError: ``name`` is not a valid domain name (a label over 63
            bytes, a name over 255).
    """
    if isinstance(name, dns.name.Name):
        return name if name.is_absolute() else name.concatenate(dns.name.root)
    try:
        return dns.name.from_text(name, dns.name.root)
    except dns.exception.DNSException as exc:
        raise ValueError(f"not a domain name: {name!r} ({exc})") from exc


@dataclass(frozen=True, slots=True)
class SearchList:
    """The domains relative names are tried in, and when a name counts as whole.

    Attributes:
        domains: The search domains, in order (absolute names).
        ndots: A name with at least this many dots is tried as it is first.
        tld_query: Whether a name without a dot is also tried on its own.
    """

    domains: tuple[dns.name.Name, ...] = ()
    ndots: int = 1
    tld_query: bool = True

    @classmethod
    def of(cls, domains: Iterable[NameLike], *, ndots: int = 1, tld_query: bool = True) -> Self:
        """Build a search list from domain names given as text or names.

        Raises:
            ValueError: A domain is not a valid domain name, or ``ndots`` is negative.
        """
        if ndots < 0:
            raise ValueError(f"ndots must not be negative, not {ndots}")
        return cls(tuple(to_name(domain) for domain in domains), ndots, tld_query)

    def names(self, name: NameLike) -> list[dns.name.Name]:
        """Return the absolute names to ask for ``name``, in order.

        Args:
            name: Text (absolute if it ends with a dot) or a ``dns.name.Name``
                (absolute or relative).

        Raises:
            ValueError: ``name`` is not a valid domain name, or is empty.
        """
        if isinstance(name, str):
            try:
                name = dns.name.from_text(name, None)
            except dns.exception.DNSException as exc:
                raise ValueError(f"not a domain name: {name!r} ({exc})") from exc
        if name.is_absolute():
            return [name]
        if not name.labels:
            raise ValueError("not a domain name: ''")
        dots = len(name.labels) - 1
        candidates: list[dns.name.Name] = []
        whole = name.concatenate(dns.name.root)
        if dots >= self.ndots:
            candidates.append(whole)
        for domain in self.domains:
            try:
                candidates.append(name.concatenate(domain))
            except dns.name.NameTooLong:
                continue
        if dots < self.ndots and (dots or self.tld_query):
            candidates.append(whole)
        unique: list[dns.name.Name] = []
        for candidate in candidates:
            if candidate not in unique:
                unique.append(candidate)
        return unique

    def query(
        self,
        resolver: DNSResolver,
        name: NameLike,
        rdtype: dns.rdatatype.RdataType,
        rdclass: dns.rdataclass.RdataClass = dns.rdataclass.IN,
    ) -> Deferred[Answer]:
        """Ask ``resolver`` for ``name`` in turn in each of the names of the search list.

        Returns:
            A Deferred of the first answer with records, else the best
            negative answer (see the module's description); it fails only
            when no name got an answer and one failed (a timeout). Cancel it
            to stop asking.

        Raises:
            ValueError: ``name`` is not a valid domain name.
        """
        return ensure_deferred(_search_records(resolver, self.names(name), rdtype, rdclass))

    def addresses(self, resolver: DNSResolver, name: NameLike) -> Deferred[list[str]]:
        """Ask ``resolver`` for the addresses of ``name``, in each name in turn.

        Each name is asked A and AAAA at once; the first to have an address
        of either kind is the answer.

        Returns:
            A Deferred of the IPv4 then IPv6 addresses, empty when no name
            has any (NXDOMAIN, NODATA, SERVFAIL); it fails with the first
            error when no query got an answer at all (every one timed out).

        Raises:
            ValueError: ``name`` is not a valid domain name.
        """
        return ensure_deferred(_search_addresses(resolver, self.names(name)))


async def _search_records(
    resolver: DNSResolver,
    names: Sequence[dns.name.Name],
    rdtype: dns.rdatatype.RdataType,
    rdclass: dns.rdataclass.RdataClass,
) -> Answer:
    nodata: Answer | None = None
    failed: Answer | None = None
    error: Exception | None = None
    nxdomain: Answer | None = None
    for name in names:
        try:
            answer = await resolver.query(Question(name, rdtype, rdclass))
        except Exception as exc:  # timeouts, a chain's NotMineError: on to the next name
            error = error or exc
            continue
        if answer.rcode == dns.rcode.NOERROR:
            if answer.answer:
                return answer
            nodata = nodata or answer
        elif answer.rcode == dns.rcode.NXDOMAIN:
            nxdomain = nxdomain or answer
        else:
            failed = failed or answer
    if nodata is not None:
        return nodata
    if failed is not None:
        return failed
    if error is not None:
        raise error
    assert nxdomain is not None
    return nxdomain


def address_answers(
    resolver: DNSResolver, name: dns.name.Name
) -> Deferred[list[Answer | BaseException]]:
    """Ask ``resolver`` for the A and AAAA records of ``name`` at once.

    Returns:
        A Deferred of the two outcomes, A's then AAAA's: an Answer or the
        error it failed with. It fails only if cancelled.
    """
    queries = [resolver.query(Question(name, rdtype)) for rdtype in _ADDRESS_TYPES]
    return settle(queries).add_callback(
        lambda outcomes: [
            outcome.error if isinstance(outcome, Failed) else outcome.value for outcome in outcomes
        ]
    )


def addresses_of(outcomes: Sequence[Answer | BaseException]) -> list[str]:
    """The addresses in ``address_answers``' outcomes: IPv4 then IPv6, once each."""
    addresses: list[str] = []
    for outcome, rdtype in zip(outcomes, _ADDRESS_TYPES, strict=True):
        if not isinstance(outcome, Answer) or outcome.rcode != dns.rcode.NOERROR:
            continue
        for rrset in outcome.answer:
            if rrset.rdtype != rdtype:
                continue
            for rdata in rrset:
                address = str(rdata.address)
                if address not in addresses:
                    addresses.append(address)
    return addresses


_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


def lookup_addresses(resolver: DNSResolver, name: dns.name.Name) -> Deferred[list[str]]:
    """Ask ``resolver`` for the A and AAAA records of ``name``, at once (no search list).

    Returns:
        A Deferred firing with the IPv4 addresses then the IPv6 ones (possibly
        none), or failing with the first error if both queries failed.
    """
    return ensure_deferred(_search_addresses(resolver, [name]))


async def _search_addresses(resolver: DNSResolver, names: Sequence[dns.name.Name]) -> list[str]:
    answered = False
    error: BaseException | None = None
    for name in names:
        outcomes = await address_answers(resolver, name)
        addresses = addresses_of(outcomes)
        if addresses:
            return addresses
        for outcome in outcomes:
            if isinstance(outcome, Answer):
                answered = True
            elif error is None:
                error = outcome
    if answered or error is None:
        return []
    raise error

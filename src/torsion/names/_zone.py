"""Authoritative answers from a zone: BIND zone files, or zones built in Python.

``Authority`` answers questions about the names of one zone the way
RFC 1034 section 4.3.2 says a name server does: records with the AA flag;
CNAME chains followed inside the zone; NODATA and NXDOMAIN with the zone's
SOA in the authority section, its TTL the negative-caching TTL of RFC 2308
section 5 (the lesser of the SOA's own TTL and its MINIMUM field);
referrals, without AA, at the zone cuts below the apex (NS records in the
authority section, glue addresses in the additional one); wildcards as
RFC 4592 defines them; and the addresses of MX, SRV and NS targets in the
additional section when the zone has them. A name outside the zone, or a
question of another class, is not its business: ``NotMineError``.

The zone itself is dnspython's: ``dns.zone.from_file`` parses the BIND
master-file format (RFC 1035 section 5: ``$ORIGIN``, ``$TTL``, names
relative to the origin, blank owners meaning the previous owner), and
``Authority.from_text`` takes the same format from a string.

``ServedZone`` is what a ``DNSServer`` asks of a resolver that holds a
zone of its own, whatever keeps it (a file, a primary server): the zone
for transfers (AXFR, and IXFR answered AXFR-style), and the zone object
whose identity says whether answers rendered from it are still current.
``Authority`` and ``SecondaryAuthority`` are such resolvers.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import dns.exception
import dns.name
import dns.node
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import dns.zone

from torsion.defer import Deferred, fail, succeed
from torsion.errors import TorsionError
from torsion.names._answer import Answer, NotMineError, Question

__all__ = ["Authority", "ServedZone", "ZoneError"]

# A CNAME chain longer than this inside one zone is a mistake (or a loop
# made of distinct names); stop there rather than follow it (RFC 1034
# section 3.6.2 allows the server to give up on chains).
_MAX_CHAIN = 16

_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
_WILDCARD = dns.name.Name((b"*",))
_EMPTY = dns.node.Node()  # type: ignore[no-untyped-call]


class ZoneError(TorsionError):
    """A zone file could not be read, or is not a valid zone."""


@runtime_checkable
class ServedZone(Protocol):
    """A resolver answering for one zone from a copy it holds (a server transfers it)."""

    @property
    def origin(self) -> dns.name.Name:
        """The zone's name (its apex)."""
        ...

    @property
    def rdclass(self) -> dns.rdataclass.RdataClass:
        """The zone's class."""
        ...

    @property
    def zone(self) -> dns.zone.Zone | None:
        """The zone served now, or None while there is none to serve.

        A change to the zone is a new object here (a reload, a transfer):
        what was computed from the old one is stale once this is another.
        """
        ...

    def transfer(self) -> list[dns.rrset.RRset]:
        """The whole zone as a zone transfer sends it: SOA, the rest, SOA (RFC 5936).

        Raises:
            ZoneError: There is no zone to serve now.
        """
        ...


class Authority:
    """Answers authoritatively for the names of one zone.

    Args:
        zone: The zone (a dnspython ``Zone``, its names relative or absolute).
        path: The file it was read from, if any: ``reload()`` reads it again.

    Attributes:
        path: As given.
    """

    def __init__(self, zone: dns.zone.Zone, *, path: str | os.PathLike[str] | None = None) -> None:
        self.path = path
        self._set_zone(zone)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, origin: dns.name.Name | str | None = None
    ) -> Authority:
        """Read a zone from a BIND master file.

        Args:
            path: The file.
            origin: The zone's name; None to take it from the file's
                ``$ORIGIN``.

        Raises:
            ZoneError: The file cannot be read or is not a valid zone (no
                SOA or NS at the apex, a syntax error...).
        """
        return cls(_read_file(path, origin), path=path)

    @classmethod
    def from_text(cls, text: str, *, origin: dns.name.Name | str | None = None) -> Authority:
        """Make a zone from BIND master-file text (a zone defined in Python).

        Raises:
            ZoneError: The text is not a valid zone.
        """
        try:
            zone = dns.zone.from_text(text, origin=origin, relativize=False)
        except (dns.exception.DNSException, ValueError) as exc:
            raise ZoneError(f"not a valid zone: {exc}") from exc
        return cls(zone)

    def _set_zone(self, zone: dns.zone.Zone) -> None:
        origin = zone.origin
        if origin is None or not origin.is_absolute():
            raise ZoneError("the zone has no absolute origin")
        if zone.relativize:
            # Answers carry absolute names: the names inside the records of a
            # relativized zone (an MX's "mail") are completed once, here.
            zone = dns.zone.from_text(
                zone.to_text(), origin=origin, rdclass=zone.rdclass, relativize=False
            )
        soa = zone.get_rdataset(origin, dns.rdatatype.SOA)
        if soa is None:
            raise ZoneError(f"zone {origin}: no SOA record at the apex")
        names: set[dns.name.Name] = set()
        nodes: dict[dns.name.Name, dns.node.Node] = {}
        for name, node in zone.nodes.items():
            absolute = name.derelativize(origin)
            nodes[absolute] = node
            # Every name in the zone, and the empty non-terminals above them
            # (RFC 4592 section 2.2.2: they exist, with no records).
            while absolute != origin and absolute not in names:
                names.add(absolute)
                absolute = absolute.parent()
        names.add(origin)
        self._zone = zone
        self._origin: dns.name.Name = origin
        self._rdclass = zone.rdclass
        self._nodes = nodes
        self._names = frozenset(names)
        soa_rdata = soa[0]
        assert isinstance(soa_rdata, dns.rdtypes.ANY.SOA.SOA)
        negative = _rrset(origin, soa)
        negative.ttl = min(soa.ttl, soa_rdata.minimum)
        self._negative_soa = negative

    def _negative(self) -> dns.rrset.RRset:
        """A copy of the SOA of negative answers (whoever gets it may change its TTL)."""
        soa = self._negative_soa
        return dns.rrset.from_rdata_list(soa.name, soa.ttl, list(soa))

    @property
    def zone(self) -> dns.zone.Zone:
        """The zone served now."""
        return self._zone

    @property
    def origin(self) -> dns.name.Name:
        """The zone's name (its apex)."""
        return self._origin

    @property
    def rdclass(self) -> dns.rdataclass.RdataClass:
        """The zone's class."""
        return dns.rdataclass.RdataClass.make(self._rdclass)

    def reload(self) -> None:
        """Read the zone file again; the old zone stays if the new one is bad.

        Raises:
            ZoneError: The file cannot be read or is not a valid zone.
            ValueError: This zone was not read from a file.
        """
        if self.path is None:
            raise ValueError("this zone was not read from a file")
        self._set_zone(_read_file(self.path, self._origin))

    def query(self, question: Question) -> Deferred[Answer]:
        """Answer ``question`` from the zone (see ``lookup``); fails with ``NotMineError``."""
        try:
            return succeed(self.lookup(question))
        except NotMineError as exc:
            return fail(exc)

    def lookup(self, question: Question) -> Answer:
        """Answer ``question`` from the zone, now.

        Raises:
            NotMineError: The name is outside the zone, or the class is not
                the zone's.
        """
        if question.rdclass != self._rdclass or not question.name.is_subdomain(self._origin):
            raise NotMineError(f"{question} is not in zone {self._origin}")
        result = Answer(authoritative=True)
        name = question.name
        rdtype = question.rdtype
        seen: set[dns.name.Name] = set()
        while True:
            seen.add(name)
            referral = self._cut_above(name, rdtype)
            if referral is not None:
                if result.answer:
                    # A chain that leads below a cut: what we have is ours, the
                    # rest the resolver asks the delegated servers for.
                    break
                result.authoritative = False
                result.authority.append(referral)
                result.additional.extend(self._addresses_of(_targets(referral), glue=True))
                return result
            node = self._find(name)
            if node is None:
                result.rcode = dns.rcode.NXDOMAIN
                result.authority.append(self._negative())
                return result
            found = self._rrsets(node, name, rdtype)
            if found:
                result.answer.extend(found)
                break
            cname = node.get_rdataset(self._rdclass, dns.rdatatype.CNAME)
            if cname is None or rdtype == dns.rdatatype.CNAME:
                # NODATA: the name exists, without records of this type.
                result.authority.append(self._negative())
                return result
            rrset = _rrset(name, cname)
            result.answer.append(rrset)
            target = cname[0].target
            assert isinstance(target, dns.name.Name)
            if not target.is_subdomain(self._origin) or target in seen or len(seen) >= _MAX_CHAIN:
                # Outside the zone the asker follows it; a loop ends here.
                break
            name = target
        result.additional.extend(self._additional(result.answer))
        return result

    def transfer(self) -> list[dns.rrset.RRset]:
        """The whole zone, as a zone transfer sends it: SOA, the rest, SOA (RFC 5936)."""
        apex_soa = self._zone.get_rdataset(self._origin, dns.rdatatype.SOA)
        assert apex_soa is not None
        soa = _rrset(self._origin, apex_soa)
        records = [soa]
        for name in sorted(self._nodes):
            for rdataset in self._nodes[name].rdatasets:
                if name == self._origin and rdataset.rdtype == dns.rdatatype.SOA:
                    continue
                rrset = _rrset(name, rdataset)
                records.append(rrset)
        records.append(soa)
        return records

    def _cut_above(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.rrset.RRset | None:
        """The NS records of the highest zone cut at or above ``name``, below the apex."""
        labels = len(self._origin)
        for depth in range(labels + 1, len(name) + 1):
            ancestor = name.split(depth)[1]
            node = self._nodes.get(ancestor)
            if node is None:
                continue
            ns = node.get_rdataset(self._rdclass, dns.rdatatype.NS)
            if ns is None:
                continue
            if ancestor == name and rdtype == dns.rdatatype.DS:
                # The DS records of a child live on the parent's side of the
                # cut (RFC 4035 section 3.1.4.1).
                return None
            rrset = _rrset(ancestor, ns)
            return rrset
        return None

    def _find(self, name: dns.name.Name) -> dns.node.Node | None:
        """The node for ``name``: its own, an empty one, or a wildcard's (RFC 4592).

        Returns:
            The node, or None if the name does not exist.
        """
        node = self._nodes.get(name)
        if node is not None:
            return node
        if name in self._names:
            return _EMPTY
        # The closest encloser is the longest existing ancestor; only
        # "*.<closest encloser>" may answer (RFC 4592 section 3.3.1).
        encloser = name.parent()
        while encloser not in self._names:
            encloser = encloser.parent()
        return self._nodes.get(_WILDCARD.concatenate(encloser))

    def _rrsets(
        self, node: dns.node.Node, owner: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> list[dns.rrset.RRset]:
        """The records of ``node`` that answer ``rdtype``, owned by ``owner``."""
        if rdtype == dns.rdatatype.ANY:
            chosen = list(node.rdatasets)
        else:
            rdataset = node.get_rdataset(self._rdclass, rdtype)
            chosen = [] if rdataset is None else [rdataset]
        rrsets = []
        for rdataset in chosen:
            rrset = _rrset(owner, rdataset)
            rrsets.append(rrset)
        return rrsets

    def _additional(self, answer: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
        """The addresses of the answer's MX, SRV and NS targets, when the zone has them."""
        targets: list[dns.name.Name] = []
        for rrset in answer:
            targets.extend(_targets(rrset))
        return self._addresses_of(targets, glue=False)

    def _addresses_of(self, targets: list[dns.name.Name], *, glue: bool) -> list[dns.rrset.RRset]:
        additional: list[dns.rrset.RRset] = []
        done: set[dns.name.Name] = set()
        for target in targets:
            if target in done or not target.is_subdomain(self._origin):
                continue
            done.add(target)
            # Below a cut only glue is ours to give, and only in referrals.
            if not glue and self._cut_above(target, dns.rdatatype.A) is not None:
                continue
            node = self._nodes.get(target)
            if node is None:
                continue
            for rdtype in _ADDRESS_TYPES:
                rdataset = node.get_rdataset(self._rdclass, rdtype)
                if rdataset is not None:
                    rrset = _rrset(target, rdataset)
                    additional.append(rrset)
        return additional

    def __repr__(self) -> str:
        return f"<Authority for {self._origin}>"


def _rrset(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    """``rdataset``'s records, owned by ``name``."""
    return dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))


def _targets(rrset: dns.rrset.RRset) -> list[dns.name.Name]:
    """The names an MX, SRV or NS rrset points to."""
    if rrset.rdtype == dns.rdatatype.MX:
        return [rdata.exchange for rdata in rrset]
    if rrset.rdtype in (dns.rdatatype.SRV, dns.rdatatype.NS):
        return [rdata.target for rdata in rrset]
    return []


def _read_file(path: str | os.PathLike[str], origin: dns.name.Name | str | None) -> dns.zone.Zone:
    try:
        return dns.zone.from_file(os.fspath(path), origin=origin, relativize=False)
    except OSError as exc:
        raise ZoneError(f"cannot read zone file {os.fspath(path)!r}: {exc.strerror}") from exc
    except (dns.exception.DNSException, ValueError, UnicodeDecodeError) as exc:
        raise ZoneError(f"zone file {os.fspath(path)!r}: {exc}") from exc

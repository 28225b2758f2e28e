"""What every part of torsion.names answers with, and the resolver interface.

A resolver (the network client, a hosts file, a cache, an authoritative
zone, a chain of them) takes a question and answers with an ``Answer``: the
response code and the three record sections, as dnspython ``RRset``s. The
server builds its responses from Answers; the client parses responses into
them. A resolver that has nothing to say about a name (a zone asked for a
name outside it, a cache that missed) raises ``NotMineError``, and a chain asks
the next one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from torsion.defer import Deferred
from torsion.errors import TorsionError

__all__ = ["Answer", "DNSResolver", "NotMineError", "Question"]


@dataclass(frozen=True, slots=True)
class Question:
    """A DNS question: a name, a type and a class.

    Attributes:
        name: The absolute name asked for.
        rdtype: The record type (``dns.rdatatype.A``...).
        rdclass: The class (IN, nearly always).
    """

    name: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    rdclass: dns.rdataclass.RdataClass = dns.rdataclass.IN

    def __str__(self) -> str:
        klass = "" if self.rdclass == dns.rdataclass.IN else f" {self.rdclass.name}"
        return f"{self.name}{klass} {self.rdtype.name}"


@dataclass(slots=True)
class Answer:
    """A resolver's answer to a question.

    Attributes:
        rcode: NOERROR (answer or NODATA), NXDOMAIN, SERVFAIL, REFUSED...
        answer: The answer section (CNAME chain first, then the records).
        authority: The authority section (the SOA of a negative answer, the
            NS records of a referral).
        additional: The additional section (glue, targets' addresses).
        authoritative: Whether it comes from a zone served here (the AA flag).
    """

    rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    authoritative: bool = False


class NotMineError(TorsionError):
    """The resolver has nothing to say about this question: ask the next one."""


class DNSResolver(Protocol):
    """Anything that answers DNS questions."""

    def query(self, question: Question) -> Deferred[Answer]:
        """Answer ``question``.

        Returns:
            A Deferred firing with the answer (negative answers, NXDOMAIN
            and NODATA, are answers too), or failing with ``NotMineError`` when
            this resolver does not know, ``TimeoutError`` when no server
            answered in time, or another ``TorsionError``.
        """
        ...

"""A cache of answers, honouring their TTLs, with negative caching (RFC 2308).

An answer is kept for the smallest TTL of its records; when served from
the cache its records' TTLs are lowered by the time it spent there (RFC 1035,
section 7.3), so that whoever the answer is passed on to does not keep it
longer than its source allowed. A negative answer (NXDOMAIN, or NODATA: no
error and no records) is kept for the SOA's TTL or its MINIMUM field,
whichever is less (RFC 2308, section 5), and not at all without an SOA.
Failures (SERVFAIL, REFUSED...) are not cached.

The cache holds at most ``max_entries`` answers, dropping the least recently
used; a question it has no live answer for raises ``NotMineError``, so that
a ``ResolverChain`` asks the next resolver (and feeds the cache its answer).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import dns.rcode
import dns.rdatatype
import dns.rrset

from torsion.defer import Deferred, fail, succeed
from torsion.names._answer import Answer, NotMineError, Question

__all__ = ["CacheResolver"]

# RFC 8767, section 4, suggests capping TTLs at 7 days; a day is plenty here.
_MAX_TTL = 86400
# RFC 2308, section 5: negative answers are kept 1 to 3 hours at most.
_MAX_NEGATIVE_TTL = 3 * 3600


class _Seconds(Protocol):
    def seconds(self) -> float: ...


@dataclass(slots=True)
class _Entry:
    answer: Answer
    stored: float
    expires: float


class CacheResolver:
    """Answers from answers it was given, while their TTLs last.

    Args:
        clock: Tells the time (a reactor, or a test's ``Clock``).
        max_entries: How many answers it keeps at most.
        max_ttl: The longest any answer is kept, whatever its TTL says.
        max_negative_ttl: The longest a negative answer is kept.
    """

    def __init__(
        self,
        clock: _Seconds,
        *,
        max_entries: int = 10000,
        max_ttl: int = _MAX_TTL,
        max_negative_ttl: int = _MAX_NEGATIVE_TTL,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.clock = clock
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self._entries: OrderedDict[Question, _Entry] = OrderedDict()

    def __len__(self) -> int:
        """How many answers it holds (some may have expired, not yet dropped)."""
        return len(self._entries)

    def query(self, question: Question) -> Deferred[Answer]:
        """Answer from the cache.

        Returns:
            A Deferred (already fired) with a copy of the cached answer, its
            TTLs lowered by the time spent here, or failing with
            ``NotMineError`` when nothing live is cached for ``question``.
        """
        entry = self._entries.get(question)
        now = self.clock.seconds()
        if entry is None:
            return fail(NotMineError(str(question)))
        if now >= entry.expires:
            del self._entries[question]
            return fail(NotMineError(str(question)))
        self._entries.move_to_end(question)
        return succeed(_aged(entry.answer, int(now - entry.stored)))

    def add(self, question: Question, answer: Answer) -> bool:
        """Cache ``answer`` to ``question``, if it may be cached.

        Returns:
            Whether it was cached (not a failure, not a TTL of 0, and a
            negative answer with an SOA).
        """
        ttl = self._ttl(answer)
        if ttl is None or ttl <= 0:
            return False
        now = self.clock.seconds()
        self._entries[question] = _Entry(answer, now, now + ttl)
        self._entries.move_to_end(question)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True

    def clear(self) -> None:
        """Forget every answer."""
        self._entries.clear()

    def _ttl(self, answer: Answer) -> int | None:
        negative = answer.rcode == dns.rcode.NXDOMAIN or (
            answer.rcode == dns.rcode.NOERROR and not answer.answer
        )
        if negative:
            # RFC 2308, section 5: the SOA's TTL, capped by its MINIMUM field.
            for rrset in answer.authority:
                if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                    minimum = min(int(rdata.minimum) for rdata in rrset)
                    return min(rrset.ttl, minimum, self.max_negative_ttl)
            return None
        if answer.rcode != dns.rcode.NOERROR:
            return None
        ttls = [rrset.ttl for rrset in _rrsets(answer)]
        return min([*ttls, self.max_ttl])

    def __repr__(self) -> str:
        return f"<CacheResolver {len(self._entries)}/{self.max_entries} entries>"


def _rrsets(answer: Answer) -> list[dns.rrset.RRset]:
    return [*answer.answer, *answer.authority, *answer.additional]


def _aged(answer: Answer, elapsed: int) -> Answer:
    def age(rrsets: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
        aged = []
        for rrset in rrsets:
            aged.append(
                dns.rrset.from_rdata_list(rrset.name, max(rrset.ttl - elapsed, 0), list(rrset))
            )
        return aged

    return Answer(
        rcode=answer.rcode,
        answer=age(answer.answer),
        authority=age(answer.authority),
        additional=age(answer.additional),
        authoritative=False,
    )

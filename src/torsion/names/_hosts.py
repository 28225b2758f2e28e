"""The hosts file as a resolver: A, AAAA and PTR answers from /etc/hosts.

hosts(5): each line is an IP address, a canonical name and aliases; ``#``
starts a comment. The file is read when first asked and again whenever its
modification time or size changes (checked at most once a second), so an
edited file takes effect without a restart. A file that cannot be read
answers nothing (every question is "not mine").

Names the file does not list, and other record types, raise
``NotMineError`` so that a chain asks the next resolver; a name it lists
with no address of the asked family is NODATA (NOERROR, empty), as a
server authoritative for it would answer.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from torsion.defer import Deferred, fail, succeed
from torsion.names._answer import Answer, NotMineError, Question

__all__ = ["HostsResolver", "parse_hosts"]

# A hosts file is small; one larger than this is not read past it.
_MAX_SIZE = 4 * 1024 * 1024
# How long a checked file is trusted before looking at it again.
_RECHECK = 1.0

Addresses = dict[dns.name.Name, list[str]]


def parse_hosts(text: str) -> tuple[Addresses, dict[dns.name.Name, list[dns.name.Name]]]:
    """Parse a hosts file.

    Args:
        text: The file's contents.

    Returns:
        The addresses of each name (in the file's order), and the names of
        each reverse name (the canonical name first). Lines with a bad address
        or name are skipped.
    """
    addresses: Addresses = {}
    names: dict[dns.name.Name, list[dns.name.Name]] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 2:
            continue
        try:
            # A scope (fe80::1%eth0) cannot go in an AAAA record: drop it.
            address = str(ipaddress.ip_address(words[0].split("%", 1)[0]))
        except ValueError:
            continue
        reverse = dns.reversename.from_address(address)
        for word in words[1:]:
            try:
                name = dns.name.from_text(word, dns.name.root)
            except dns.exception.DNSException:
                continue
            listed = addresses.setdefault(name, [])
            if address not in listed:
                listed.append(address)
            owners = names.setdefault(reverse, [])
            if name not in owners:
                owners.append(name)
    return addresses, names


class HostsResolver:
    """Answers A, AAAA and PTR questions from a hosts file.

    Args:
        path: The file (/etc/hosts by default).
        ttl: The TTL given to the records it answers with.
        now: The time source used to rate-limit checks of the file.
    """

    def __init__(
        self,
        path: str = "/etc/hosts",
        *,
        ttl: int = 60,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.ttl = ttl
        self._now = now
        self._stamp: tuple[int, int] | None = None
        self._checked: float | None = None
        self._addresses: Addresses = {}
        self._names: dict[dns.name.Name, list[dns.name.Name]] = {}

    def query(self, question: Question) -> Deferred[Answer]:
        """Answer from the file.

        Returns:
            A Deferred (already fired) with the answer, or failing with
            ``NotMineError`` for a name the file does not list, another class,
            or a type other than A, AAAA and PTR.
        """
        self._refresh()
        if question.rdclass != dns.rdataclass.IN:
            return fail(NotMineError(str(question)))
        if question.rdtype == dns.rdatatype.PTR:
            owners = self._names.get(question.name)
            if not owners:
                return fail(NotMineError(str(question)))
            rrset = dns.rrset.from_text_list(
                question.name, self.ttl, "IN", "PTR", [owner.to_text() for owner in owners]
            )
            return succeed(Answer(answer=[rrset]))
        if question.rdtype not in (dns.rdatatype.A, dns.rdatatype.AAAA):
            return fail(NotMineError(str(question)))
        listed = self._addresses.get(question.name)
        if listed is None:
            return fail(NotMineError(str(question)))
        version = 4 if question.rdtype == dns.rdatatype.A else 6
        matching = [a for a in listed if ipaddress.ip_address(a).version == version]
        if not matching:
            return succeed(Answer())
        rrset = dns.rrset.from_text_list(question.name, self.ttl, "IN", question.rdtype, matching)
        return succeed(Answer(answer=[rrset]))

    def _refresh(self) -> None:
        now = self._now()
        if self._checked is not None and now - self._checked < _RECHECK:
            return
        self._checked = now
        try:
            status = os.stat(self.path)
        except OSError:
            self._stamp = None
            self._addresses, self._names = {}, {}
            return
        stamp = (status.st_mtime_ns, status.st_size)
        if stamp == self._stamp:
            return
        try:
            with open(self.path, encoding="utf-8", errors="replace") as file:
                text = file.read(_MAX_SIZE)
        except OSError:
            self._stamp = None
            self._addresses, self._names = {}, {}
            return
        self._stamp = stamp
        self._addresses, self._names = parse_hosts(text)

    def __repr__(self) -> str:
        return f"<HostsResolver {self.path}>"
